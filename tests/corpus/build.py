"""Builds the bytes of each corpus case from its manifest entry (tests/corpus/manifest.yaml).

An entry names its bytes in one of three ways:
  text: ...        literal text (YAML escapes such as "\\x00" allowed)
  base: FEED       a small valid delivery of that feed (two rows), see BASES
  build: NAME      a function of this module (for bytes that are big or binary), with `args`
then optionally `replace: [[old, new], ...]`, `append: ...`, `encoding: ...` (default utf-8,
`raw` keeps the latin-1 code points of the text as bytes), and `wrap: gzip | zip | bom-utf8 | ...`, then
`cut: N` drops the last N bytes.
"""
from __future__ import annotations

import codecs
import gzip
import io
import random
import zipfile
from pathlib import Path

import yaml

from population_helpers import CUTRU_HEADER, HOTICH_HEADER, csv_text, event, person

MANIFEST = Path(__file__).with_name("manifest.yaml")

DKKD_HEADER = ["MA_SO_DN", "TEN_DN", "TEN_TIENG_ANH", "TEN_VIET_TAT", "LOAI_HINH", "NGAY_THANH_LAP", "TINH_TRANG",
               "VON_DIEU_LE", "NGANH_NGHE_CHINH", "MA_TINH_TRU_SO", "MA_XA_TRU_SO", "DIA_CHI_TRU_SO",
               "SO_DINH_DANH_NDD", "HO_TEN_NDD"]


def enterprise(code="0100109106", name="Công ty cổ phần Sữa Hà Nội", form="Công ty cổ phần", address="12 Phố Huế"):
    return [code, name, "", "", form, "12/03/2010", "Đang hoạt động", "1.000.000.000", "1050", "01", "00004",
            address, "", ""]


BASES = {
    "cutru": csv_text(CUTRU_HEADER, [person(), person(pid="001190000002", name="Trần Thị Bình", sex="Nữ")]),
    "hotich": csv_text(HOTICH_HEADER, [event(kind="KHAI_SINH", no="HT-1"), event(kind="KHAI_SINH", no="HT-2")]),
    "dkkd": csv_text(DKKD_HEADER, [enterprise(), enterprise(code="0100109113", name="Công ty TNHH Bình An",
                                                            form="Công ty TNHH một thành viên")]),
}
HEADERS = {"cutru": CUTRU_HEADER, "hotich": HOTICH_HEADER, "dkkd": DKKD_HEADER}


def load_manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


# -- builders for bytes a literal cannot hold -----------------------------------------------------
def long_line(feed: str, size: int) -> bytes:
    """A valid delivery whose second data row holds one field of `size` bytes."""
    rows = BASES[feed].encode()
    head, first, *_ = rows.split(b"\n")
    return head + b"\n" + first + b"\n" + first.replace(b"12 Ph", b"X" * size + b"12 Ph", 1) + b"\n"


def binary_junk(size: int, seed: int = 6) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(size))


def workbook(rows: list[list], title: str | None = None, sheets: bool = True) -> bytes:
    """An .xlsx written by openpyxl; sheets=False removes every sheet from xl/workbook.xml."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "DKKD"
    if title:
        ws.append([title])
    for row in rows:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    data = buf.getvalue()
    if not sheets:
        import re

        members = _members(data)
        members["xl/workbook.xml"] = re.sub(rb"<sheets>.*</sheets>", b"<sheets/>", members["xl/workbook.xml"])
        data = _zip(members)
    return data


def dkkd_workbook(rows: int = 2, sheets: bool = True, truncate: int = 0, header: bool = True) -> bytes:
    lines = [DKKD_HEADER] if header else []
    lines += [enterprise(), enterprise(code="0100109113")][:rows]
    data = workbook(lines, sheets=sheets)
    return data[:-truncate] if truncate else data


def workbook_part_truncated(part: str, keep: int) -> bytes:
    members = _members(dkkd_workbook())
    members[part] = members[part][:keep]
    return _zip(members)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


BUILDERS = {"long_line": long_line, "binary_junk": binary_junk, "dkkd_workbook": dkkd_workbook,
            "workbook_part_truncated": workbook_part_truncated}
WRAPS = {
    "gzip": lambda b: gzip.compress(b, mtime=0),
    "zip": lambda b: _zip({"delivery.csv": b}),
    "bom-utf8": lambda b: codecs.BOM_UTF8 + b,
    "bom-utf8-twice": lambda b: codecs.BOM_UTF8 + codecs.BOM_UTF8 + b,
    "bom-utf32le": lambda b: codecs.BOM_UTF32_LE + b,
    "bom-utf16le": lambda b: codecs.BOM_UTF16_LE + b,
    "pdf": lambda b: b"%PDF-1.7\n" + b,
}


def case_bytes(case: dict) -> bytes:
    if "build" in case:
        data = BUILDERS[case["build"]](**case.get("args", {}))
    else:
        text = BASES[case["base"]] if "base" in case else case["text"]
        for old, new in case.get("replace", []):
            assert old in text, (case["id"], old)
            text = text.replace(old, new)
        text += case.get("append", "")
        encoding = case.get("encoding", "utf-8")
        data = text.encode("latin-1") if encoding == "raw" else text.encode(encoding)
    for wrap in case.get("wrap", []):
        data = WRAPS[wrap](data)
    return data[:-case["cut"]] if case.get("cut") else data


def write_case(case: dict, folder: Path) -> Path:
    path = folder / case["file"]
    path.write_bytes(case_bytes(case))
    return path
