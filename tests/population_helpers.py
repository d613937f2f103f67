"""Small hand-made deliveries for exact assertions."""
from __future__ import annotations

from pathlib import Path

from pipelines.ingest import ingest_file

CUTRU_HEADER = ["SO_DINH_DANH", "SO_CMND", "HO_TEN", "NGAY_SINH", "GIOI_TINH", "QUOC_TICH", "DAN_TOC",
                "MA_TINH_TT", "MA_XA_TT", "DIA_CHI_TT", "SO_HO", "QUAN_HE_CHU_HO", "NGAY_CAP_NHAT"]
HOTICH_HEADER = ["SO_SU_KIEN", "LOAI_SU_KIEN", "NGAY_SU_KIEN", "NGAY_DANG_KY", "MA_XA_DANG_KY",
                 "SO_DINH_DANH", "HO_TEN", "SO_DINH_DANH_LIEN_QUAN"]


def person(pid="001090000001", name="Nguyễn Văn An", born="12/03/1990", sex="Nam", ward="00004",
           province="01", updated="01/08/2025 10:00:00", address="12 Phố Huế", household="HK1",
           relation="Chủ hộ", nationality="VN", old_id="", ethnicity="Kinh") -> list[str]:
    return [pid, old_id, name, born, sex, nationality, ethnicity, province, ward, address, household,
            relation, updated]


def event(no="HT-1", kind="KHAI_TU", date="10/10/2026", registered="11/10/2026", ward="00004",
          pid="001090000001", name="Nguyễn Văn An", related="") -> list[str]:
    return [no, kind, date, registered, ward, pid, name, related]


def csv_text(header: list[str], rows: list[list[str]], delimiter: str = ",") -> str:
    def cell(v: str) -> str:
        if any(ch in v for ch in (delimiter, '"', "\n")):
            return '"' + v.replace('"', '""') + '"'
        return v
    return "".join(delimiter.join(cell(v) for v in line) + "\n" for line in [header, *rows])


def write(folder: Path, name: str, text: str, encoding: str = "utf-8", newline: str = "\n") -> Path:
    path = folder / name
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


def deliver(folder: Path, name: str, header: list[str], rows: list[list[str]], **kw) -> dict:
    return ingest_file(write(folder, name, csv_text(header, rows), **kw))


def to_cp1258(text: str) -> bytes:
    """Windows-1258 as Vietnamese offices write it: precomposed vowels, tones as combining marks."""
    import unicodedata

    out = []
    for ch in unicodedata.normalize("NFC", text):
        try:
            out.append(ch.encode("cp1258"))
        except UnicodeEncodeError:
            base, *marks = unicodedata.normalize("NFD", ch)
            letter = [m for m in marks if m in "\u0302\u0306\u031b"]  # circumflex, breve, horn: part of the letter
            if letter:
                base = unicodedata.normalize("NFC", base + letter[0])
                marks = [m for m in marks if m != letter[0]]
            out.append((base + "".join(marks)).encode("cp1258"))
    return b"".join(out)
