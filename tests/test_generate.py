"""pipelines.generate: sample deliveries with known defects (no database).

The manifests are checked against an independent re-implementation of the pipeline's row rules
(`_reasons` below, written from the brief and the contracts, not from the generator), so "exact
counts" means: every defect row breaks exactly the one rule the manifest claims, and every other
row breaks none.
"""
from __future__ import annotations

import calendar
import codecs
import csv
import datetime as dt
import hashlib
import io
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from pipelines import generate as gen
from pipelines import refdata

REFORM = dt.date(2025, 7, 1)

# ----------------------------------------------------------------- an independent checker


def _fold(s: str) -> str:
    s = unicodedata.normalize("NFD", s.lower())
    return "".join(c for c in s if unicodedata.category(c) != "Mn").replace("đ", "d").replace(" ", "")


def _clean(v: str | None) -> str | None:
    if v is None:
        return None
    v = unicodedata.normalize("NFC", v).strip()
    return None if v in ("", "NULL") else v


def _date(v: str) -> dt.date | None:
    m = re.fullmatch(r"(\d{2})/(\d{2})/(\d{4})", v)
    if not m:
        return None
    try:
        return dt.date(int(m[3]), int(m[2]), int(m[1]))
    except ValueError:
        return None


def _partial_year(v: str) -> int | None:
    if re.fullmatch(r"\d{4}", v):
        return int(v)
    m = re.fullmatch(r"00/(\d{2})/(\d{4})", v)
    if m:
        return int(m[2]) if m[1] == "00" or 1 <= int(m[1]) <= 12 else None
    d = _date(v)
    return d.year if d else None


def _timestamp(v: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(v, "%d/%m/%Y %H:%M:%S") if re.fullmatch(
            r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}", v) else None
    except ValueError:
        return None


class Ref:
    def __init__(self):
        self.legacy_provinces = set(refdata.legacy_province_codes())
        self.province_now = {}      # any province code -> current province
        self.current = {}           # current ward -> current province
        self.legacy = {}            # legacy ward -> (legacy province, successor)
        for p in gen._current_provinces():
            units = refdata.provinces_of(p)
            for w in units["current_wards"]:
                self.current[w] = p
            for w, lp, succ in units["legacy_wards"]:
                self.legacy[w] = (lp, succ)
                self.province_now[lp] = p
            self.province_now[p] = p

    def ward_now(self, code: str, on: dt.date | None) -> str | None:
        """The current ward a code means on that date (None: unknown)."""
        if on is None:
            return None
        if on < REFORM:
            return self.legacy[code][1] if code in self.legacy else None
        if code in self.current:
            return code
        return self.legacy[code][1] if code in self.legacy else None


REF = None


def ref() -> Ref:
    global REF
    if REF is None:
        REF = Ref()
    return REF


def _valid_pid(v: str) -> bool:
    return bool(re.fullmatch(r"\d{12}", v)) and v[0] == "0" and v[1:3] in ref().legacy_provinces \
        and v[3] in "012345"


CUTRU_REQUIRED = ("SO_DINH_DANH", "HO_TEN", "NGAY_SINH", "GIOI_TINH", "MA_TINH_TT", "MA_XA_TT", "NGAY_CAP_NHAT")
RELATIONS = {_fold(r) for r in ("Chủ hộ", "Vợ", "Chồng", "Con", "Bố", "Mẹ", "Cháu", "Khác")}


def _cutru_reasons(row: dict, province: str, delivery: dt.date) -> set[str]:
    v = {k: _clean(x) for k, x in row.items()}
    out = set()
    if any(v[c] is None for c in CUTRU_REQUIRED):
        out.add("missing_required")
    pid = v["SO_DINH_DANH"]
    if pid is not None and not _valid_pid(pid):
        out.add("invalid_personal_id")
    year = _partial_year(v["NGAY_SINH"]) if v["NGAY_SINH"] else None
    ts = _timestamp(v["NGAY_CAP_NHAT"]) if v["NGAY_CAP_NHAT"] else None
    if (v["NGAY_SINH"] and year is None) or (v["NGAY_CAP_NHAT"] and ts is None):
        out.add("invalid_date")
    sex = _fold(v["GIOI_TINH"]) if v["GIOI_TINH"] else None
    if (sex is not None and sex not in ("nam", "nu")) \
            or (v["QUAN_HE_CHU_HO"] and _fold(v["QUAN_HE_CHU_HO"]) not in RELATIONS) \
            or (v["QUOC_TICH"] and not re.fullmatch(r"[A-Z]{2}", v["QUOC_TICH"].upper())):
        out.add("invalid_code")
    r = ref()
    if v["MA_TINH_TT"] and v["MA_TINH_TT"] not in r.province_now:
        out.add("unknown_admin_unit")
    if v["MA_XA_TT"] and ts and r.ward_now(v["MA_XA_TT"], ts.date()) is None:
        out.add("unknown_admin_unit")
    if pid and _valid_pid(pid) and year and sex in ("nam", "nu"):
        female = sex == "nu"
        if pid[3:6] != f"{(year // 100 - 19) * 2 + female}{year % 100:02d}":
            out.add("id_mismatch")
    if not out:   # a valid row must also be plausible
        ward = r.ward_now(v["MA_XA_TT"], ts.date())
        assert r.current[ward] == province, row
        assert r.province_now[v["MA_TINH_TT"]] == province, row
        assert ts.date() < delivery, row
        assert ts.date() not in (dt.date(2025, 6, 30), REFORM), row
        assert ts.year >= year, row
        if ts.date() < REFORM:  # a legacy code with its legacy province
            assert r.legacy[v["MA_XA_TT"]][0] == v["MA_TINH_TT"], row
        elif v["MA_XA_TT"] in r.current:   # after the reform a shared code means the current ward
            assert v["MA_TINH_TT"] == province, row
    return out


HOTICH_REQUIRED = ("SO_SU_KIEN", "LOAI_SU_KIEN", "NGAY_SU_KIEN", "NGAY_DANG_KY", "MA_XA_DANG_KY",
                   "SO_DINH_DANH", "HO_TEN")
EVENTS = {"khai_sinh", "khai_tu", "ket_hon", "ly_hon"}


def _hotich_reasons(row: dict, province: str, delivery: dt.date) -> set[str]:
    v = {k: _clean(x) for k, x in row.items()}
    out = set()
    etype = _fold(v["LOAI_SU_KIEN"]) if v["LOAI_SU_KIEN"] else None
    if any(v[c] is None for c in HOTICH_REQUIRED) or (
            etype in ("ket_hon", "ly_hon") and v["SO_DINH_DANH_LIEN_QUAN"] is None):
        out.add("missing_required")
    if etype is not None and etype not in EVENTS:
        out.add("invalid_code")
    event = _date(v["NGAY_SU_KIEN"]) if v["NGAY_SU_KIEN"] else None
    reg = _date(v["NGAY_DANG_KY"]) if v["NGAY_DANG_KY"] else None
    if (v["NGAY_SU_KIEN"] and event is None) or (v["NGAY_DANG_KY"] and reg is None):
        out.add("invalid_date")
    if v["MA_XA_DANG_KY"] and reg and ref().ward_now(v["MA_XA_DANG_KY"], reg) is None:
        out.add("unknown_admin_unit")
    for c in ("SO_DINH_DANH", "SO_DINH_DANH_LIEN_QUAN"):
        if v[c] is not None and not _valid_pid(v[c]):
            out.add("invalid_personal_id")
    if not out:
        assert ref().current[ref().ward_now(v["MA_XA_DANG_KY"], reg)] == province, row
        assert event <= reg <= delivery, row
        if etype == "khai_sinh":   # a newborn's number agrees with the birth date
            assert v["SO_DINH_DANH"][3:6][1:] == f"{event.year % 100:02d}", row
        if etype in ("khai_sinh", "khai_tu"):
            assert v["SO_DINH_DANH_LIEN_QUAN"] is None, row
    return out


KEYS = {"CUTRU": "SO_DINH_DANH", "HOTICH": "SO_SU_KIEN"}
CHECKS = {"CUTRU": _cutru_reasons, "HOTICH": _hotich_reasons}


def check(path: str, feed: str, province: str, delivery: dt.date) -> tuple[Counter, int, int, list[dict]]:
    """(rows per reason, rows with any reason, rows read, rows) as the pipeline would find them."""
    rows = list(gen.read_delivery(path))
    reasons = [CHECKS[feed](r, province, delivery) for r in rows]
    key = KEYS[feed]
    by_key: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        k = _clean(r[key])
        if k is not None:
            by_key.setdefault(k, []).append(i)
    for k, idx in by_key.items():
        contents = {tuple(sorted(rows[i].items())) for i in idx}
        if len(idx) > 1 and len(contents) > 1:
            for i in idx:
                reasons[i].add("duplicate_key")
    counts = Counter()
    for rs in reasons:
        assert len(rs) <= 1, f"a row broke several rules: {rs}"
        counts.update(rs)
    return counts, sum(1 for rs in reasons if rs), len(rows), rows


def _decode(path) -> str:
    raw = Path(path).read_bytes()
    enc, _, _ = gen.sniff(path)
    return raw.decode(enc).lstrip("\ufeff")


# ----------------------------------------------------------------- tests


def test_file_name_and_manifest(tmp_path):
    m = gen.generate("CUTRU", 1000, "01", 0.05, tmp_path, date=dt.date(2026, 3, 9), seq=7)
    assert Path(m["path"]).name == "CUTRU_01_20260309_007.csv"
    assert list(tmp_path.iterdir()) == [Path(m["path"])]      # only the delivery in the inbox
    assert m["feed"] == "CUTRU" and m["province"] == "01" and m["rows_read"] == 1000
    assert m["defect_rows"] == 50 == sum(m["rejections"].values())
    assert set(m["rejections"]) == set(gen.FEEDS["CUTRU"].codes)
    assert m["rejections"]["duplicate_key"] % 2 == 0


def test_manifest_file_only_when_asked(tmp_path):
    m = gen.generate("HOTICH", 20, "79", 0.0, tmp_path, manifest=True)
    side = Path(m["path"] + ".manifest.json")
    assert json.loads(side.read_text(encoding="utf-8")) == m
    from pipelines.delivery import NAME   # the inbox's file-name pattern must not take it for a delivery
    assert not NAME.match(side.name)


@pytest.mark.parametrize("feed,province,rate", [("CUTRU", "79", 0.07), ("CUTRU", "01", 0.0),
                                                 ("HOTICH", "79", 0.1), ("HOTICH", "48", 0.013)])
def test_counts_are_exact(tmp_path, feed, province, rate):
    date = dt.date(2026, 11, 20)
    m = gen.generate(feed, 3000, province, rate, tmp_path, date=date, seed=3)
    counts, defect_rows, n, _ = check(m["path"], feed, province, date)
    assert n == m["rows_read"] == 3000
    assert dict(counts) == m["rejections"]
    assert defect_rows == m["defect_rows"] == round(3000 * rate)


def test_counts_exact_before_the_reform_and_without_quirks(tmp_path):
    for date, quirks in ((dt.date(2025, 3, 2), True), (dt.date(2025, 7, 3), True), (dt.date(2026, 1, 5), False)):
        for feed in ("CUTRU", "HOTICH"):
            m = gen.generate(feed, 800, "92", 0.1, tmp_path, date=date, quirks=quirks)
            counts, defect_rows, _, _ = check(m["path"], feed, "92", date)
            assert dict(counts) == m["rejections"] and defect_rows == m["defect_rows"] == 80


def test_small_and_odd_defect_counts(tmp_path):
    for rows, rate, expected in ((1, 1.0, 1), (3, 1.0, 3), (7, 0.5, 4), (0, 0.5, 0)):
        m = gen.generate("CUTRU", rows, "01", rate, tmp_path, seed=rows)
        counts, defect_rows, n, _ = check(m["path"], "CUTRU", "01", gen.DEFAULT_DATE)
        assert (n, defect_rows, m["defect_rows"]) == (rows, expected, expected)
        assert dict(counts) == m["rejections"]


def test_duplicate_pair_present(tmp_path):
    m = gen.generate("CUTRU", 500, "79", 0.1, tmp_path, seed=5)
    rows = list(gen.read_delivery(m["path"]))
    ids = Counter(r["SO_DINH_DANH"] for r in rows)
    dups = [k for k, c in ids.items() if c > 1]
    assert len(dups) * 2 == m["rejections"]["duplicate_key"]
    for k in dups:
        a, b = [r for r in rows if r["SO_DINH_DANH"] == k]
        assert a != b and a["NGAY_SINH"] == b["NGAY_SINH"] and a["GIOI_TINH"] == b["GIOI_TINH"]
    h = gen.generate("HOTICH", 500, "79", 0.1, tmp_path, seed=5)
    events = Counter(r["SO_SU_KIEN"] for r in gen.read_delivery(h["path"]))
    assert sum(c for c in events.values() if c > 1) == h["rejections"]["duplicate_key"] > 0


def test_valid_rows_consistent_and_unique(tmp_path):
    m = gen.generate("CUTRU", 4000, "01", 0.0, tmp_path, seed=11)
    rows = list(gen.read_delivery(m["path"]))
    ids = [r["SO_DINH_DANH"].strip() for r in rows]
    assert len(set(ids)) == len(ids)
    for r in rows:
        pid = r["SO_DINH_DANH"].strip()
        year = int(r["NGAY_SINH"].strip()[-4:])
        female = _fold(r["GIOI_TINH"]) == "nu"
        assert pid[3] == str((year // 100 - 19) * 2 + female) and pid[4:6] == f"{year % 100:02d}"
        assert gen.personal_id_agrees(pid, r["NGAY_SINH"], r["GIOI_TINH"])
    # households share SO_HO and address; ward codes of both eras appear
    by_house = {}
    for r in rows:
        by_house.setdefault(r["SO_HO"], set()).add((r["MA_XA_TT"], r["DIA_CHI_TT"]))
    assert sum(1 for k, v in by_house.items() if k and len(v) == 1) > 0.9 * len(by_house)
    ref_ = ref()
    legacy_used = sum(1 for r in rows if _timestamp(r["NGAY_CAP_NHAT"]).date() < REFORM)
    assert 0.3 * len(rows) < legacy_used < 0.6 * len(rows)
    assert any(r["MA_XA_TT"] not in ref_.current for r in rows
               if _timestamp(r["NGAY_CAP_NHAT"]).date() >= REFORM)     # legacy-only codes, recent dates


def test_quirks_present(tmp_path):
    m = gen.generate("CUTRU", 5000, "79", 0.0, tmp_path, seed=2)
    rows = list(gen.read_delivery(m["path"]))
    names = [r["HO_TEN"] for r in rows]
    assert any(n == n.upper() and n.strip() for n in names)
    assert any("  " in n.strip() for n in names)
    assert any(not unicodedata.is_normalized("NFC", n) for n in names)
    assert {r["GIOI_TINH"] for r in rows} >= {"Nam", "Nữ", "NAM", "NỮ", "Nu", "nam"}
    births = [r["NGAY_SINH"] for r in rows]
    assert any(re.fullmatch(r"00/\d\d/\d{4}", b) and b[3:5] != "00" for b in births)
    assert any(b.startswith("00/00/") for b in births) and any(re.fullmatch(r"\d{4}", b) for b in births)
    assert any(r["QUOC_TICH"] == "NULL" for r in rows) and any(r["QUOC_TICH"] == "" for r in rows)
    assert any(r["QUOC_TICH"] not in ("", "VN", "vn", " VN", "NULL") for r in rows)
    assert len({r["QUAN_HE_CHU_HO"] for r in rows}) > 16
    assert any("," in r["DIA_CHI_TT"] for r in rows) and any('"' in r["DIA_CHI_TT"] for r in rows)
    header = next(gen.read_rows(m["path"]))
    assert header != list(gen.CUTRU_COLUMNS)
    assert sorted(h.strip().upper() for h in header) == sorted(gen.CUTRU_COLUMNS)
    plain = gen.generate("CUTRU", 300, "79", 0.0, tmp_path / "plain", quirks=False)
    rows = list(gen.read_delivery(plain["path"]))
    assert next(gen.read_rows(plain["path"])) == list(gen.CUTRU_COLUMNS)
    assert {r["GIOI_TINH"] for r in rows} == {"Nam", "Nữ"}
    assert all(unicodedata.is_normalized("NFC", r["HO_TEN"]) and "NULL" not in r.values() for r in rows)


def test_rfc4180_quoting_matches_csv_module(tmp_path):
    """The file is byte for byte what csv.writer writes for the records it holds."""
    for encoding in ("utf-8", "utf-16"):
        m = gen.generate("CUTRU", 2000, "79", 0.05, tmp_path / encoding, encoding=encoding, crlf=True)
        text = _decode(m["path"])
        delimiter = "\t" if encoding == "utf-16" else ","
        recs = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
        buf = io.StringIO()
        csv.writer(buf, delimiter=delimiter, lineterminator="\r\n").writerows(recs)
        assert buf.getvalue() == text
        assert all(len(r) == 13 for r in recs)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp1258", "utf-16"])
def test_encodings_decode_to_the_same_text(tmp_path, encoding):
    base = gen.generate("CUTRU", 1500, "01", 0.02, tmp_path / "base", seed=9)
    other = gen.generate("CUTRU", 1500, "01", 0.02, tmp_path / encoding, seed=9, encoding=encoding)
    raw = Path(other["path"]).read_bytes()
    if encoding == "utf-16":
        assert raw.startswith(codecs.BOM_UTF16_LE)
        text = raw.decode("utf-16")
        assert "\t" in text.split("\n", 1)[0] and "," not in text.split("\n", 1)[0]
        delimiter = "\t"
    elif encoding == "utf-8-sig":
        assert raw.startswith(codecs.BOM_UTF8)
        text, delimiter = raw.decode("utf-8-sig"), ","
    else:
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        text, delimiter = raw.decode("cp1258"), ","
        assert "\u0303" in text or "\u0301" in text     # tone marks as combining characters
    nfc = lambda recs: [[unicodedata.normalize("NFC", v) for v in r] for r in recs]  # noqa: E731
    want = list(csv.reader(io.StringIO(Path(base["path"]).read_text(encoding="utf-8"), newline="")))
    got = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    assert nfc(got) == nfc(want)
    assert other["rejections"] == base["rejections"]
    counts, _, _, _ = check(other["path"], "CUTRU", "01", gen.DEFAULT_DATE)
    assert dict(counts) == other["rejections"]


def test_file_quirks_crlf_blank_lines_repeated_header(tmp_path):
    m = gen.generate("HOTICH", 100, "01", 0.0, tmp_path, crlf=True, trailing_blank_lines=3, repeat_header_at=40)
    raw = Path(m["path"]).read_bytes()
    assert raw.endswith(b"\r\n\r\n\r\n\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    lines = raw.decode("utf-8").split("\r\n")
    assert lines[41] == lines[0]              # after 40 data rows
    assert len(lines) == 1 + 100 + 1 + 3 + 1
    assert len(list(gen.read_delivery(m["path"]))) == 100 == m["rows_read"]


def test_deterministic(tmp_path):
    digest = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()  # noqa: E731
    for feed in ("CUTRU", "HOTICH"):
        a = gen.generate(feed, 2000, "79", 0.03, tmp_path / "a", seed=42, encoding="cp1258")
        b = gen.generate(feed, 2000, "79", 0.03, tmp_path / "b", seed=42, encoding="cp1258")
        c = gen.generate(feed, 2000, "79", 0.03, tmp_path / "c", seed=43, encoding="cp1258")
        assert digest(a["path"]) == digest(b["path"]) != digest(c["path"])


def test_provinces_never_share_numbers(tmp_path):
    ids = {}
    for p in ("01", "79", "48"):
        m = gen.generate("CUTRU", 3000, p, 0.0, tmp_path / p)
        ids[p] = {r["SO_DINH_DANH"].strip() for r in gen.read_delivery(m["path"])}
    assert not (ids["01"] & ids["79"]) and not (ids["01"] & ids["48"]) and not (ids["79"] & ids["48"])


def test_hotich_person_ids(tmp_path):
    c = gen.generate("CUTRU", 2000, "79", 0.0, tmp_path / "c")
    persons = [(r["SO_DINH_DANH"].strip(), r["HO_TEN"]) for r in gen.read_delivery(c["path"])]
    known = {p for p, _ in persons}
    h = gen.generate("HOTICH", 400, "79", 0.0, tmp_path / "h", person_ids=persons)
    rows = list(gen.read_delivery(h["path"]))
    deaths = [r["SO_DINH_DANH"] for r in rows if _fold(r["LOAI_SU_KIEN"]) == "khai_tu"]
    assert deaths and all(d in known for d in deaths) and len(set(deaths)) == len(deaths)
    births = [r["SO_DINH_DANH"] for r in rows if _fold(r["LOAI_SU_KIEN"]) == "khai_sinh"]
    assert births and not set(births) & known
    marriages = [r for r in rows if _fold(r["LOAI_SU_KIEN"]) in ("ket_hon", "ly_hon")]
    assert marriages and all(r["SO_DINH_DANH_LIEN_QUAN"] in known for r in marriages)
    assert len({r["SO_SU_KIEN"] for r in rows}) == 400
    assert all(re.fullmatch(r"HT-79-\d+", r["SO_SU_KIEN"]) for r in rows)
    counts, defect_rows, _, _ = check(h["path"], "HOTICH", "79", gen.DEFAULT_DATE)
    assert defect_rows == 0


def test_snapshot_changes(tmp_path):
    week1 = gen.generate("CUTRU", 6000, "79", 0.0, tmp_path / "w1", encoding="utf-8-sig", crlf=True,
                         repeat_header_at=100, trailing_blank_lines=2)
    res = gen.snapshot_changes(week1["path"], tmp_path / "w2", changed=0.02, removed=0.01, new=0.015)
    assert Path(res["path"]).name == "CUTRU_79_20261127_002.csv"
    assert res["rows_read"] == 6000
    assert (res["changed"], res["removed"], res["new"]) == (120, 60, 90)
    assert res["unchanged"] == 6000 - 120 - 60
    raw = Path(res["path"]).read_bytes()
    assert raw.startswith(codecs.BOM_UTF8) and b"\r\n" in raw
    old = {r["SO_DINH_DANH"]: r for r in gen.read_delivery(week1["path"])}
    new = {r["SO_DINH_DANH"]: r for r in gen.read_delivery(res["path"])}
    assert len(new) == len(list(gen.read_delivery(res["path"])))          # still unique
    assert len(old.keys() - new.keys()) == res["removed"]
    assert len(new.keys() - old.keys()) == res["new"]
    both = old.keys() & new.keys()
    changed = [k for k in both if old[k] != new[k]]
    legacy_kept = 0
    assert len(changed) == res["changed"]
    for k in changed:
        assert _timestamp(new[k]["NGAY_CAP_NHAT"]) > _timestamp(old[k]["NGAY_CAP_NHAT"])
        assert _timestamp(new[k]["NGAY_CAP_NHAT"]).date() >= dt.date(2026, 11, 20)
        assert new[k]["NGAY_SINH"] == old[k]["NGAY_SINH"] and new[k]["GIOI_TINH"] == old[k]["GIOI_TINH"]
        code = new[k]["MA_XA_TT"]
        if _timestamp(old[k]["NGAY_CAP_NHAT"]).date() < REFORM and code == old[k]["MA_XA_TT"]:
            assert ref().legacy[code][1] == code      # kept only where the successor has the same code
            legacy_kept += 1
    for k in new.keys() - old.keys():
        assert _timestamp(new[k]["NGAY_CAP_NHAT"]).date() >= dt.date(2026, 11, 20)
    counts, defect_rows, n, _ = check(res["path"], "CUTRU", "79", dt.date(2026, 11, 27))
    assert defect_rows == 0 and n == 6000 - 60 + 90
    # unchanged rows are copied as sent
    old_lines = set(_decode(week1["path"]).split("\r\n"))
    assert sum(1 for line in _decode(res["path"]).split("\r\n") if line in old_lines) >= res["unchanged"]
    # a week later again: newcomers never reuse a number of either week
    res3 = gen.snapshot_changes(res["path"], tmp_path / "w3", seq=3)
    week3 = {r["SO_DINH_DANH"] for r in gen.read_delivery(res3["path"])}
    added = week3 - new.keys()
    assert len(added) == res3["new"] == round((6000 - 60 + 90) * 0.005)
    assert not added & old.keys()
    assert Path(res3["path"]).name == "CUTRU_79_20261204_003.csv"


def test_snapshot_changes_counts_are_exact_for_odd_shares(tmp_path):
    w1 = gen.generate("CUTRU", 997, "46", 0.0, tmp_path, encoding="utf-16", seed=4)
    res = gen.snapshot_changes(w1["path"], tmp_path / "next", changed=0.333, removed=0.25, new=1.7, seed=8)
    assert (res["changed"], res["removed"], res["new"], res["unchanged"]) == (332, 249, 1695, 997 - 332 - 249)
    counts, defect_rows, n, _ = check(res["path"], "CUTRU", "46", gen.DEFAULT_DATE + dt.timedelta(days=7))
    assert defect_rows == 0 and n == 997 - 249 + 1695


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        gen.generate("CUTRU", 10, "02", 0.0, tmp_path)      # Hà Giang: a pre-2025 province only
    with pytest.raises(ValueError):
        gen.generate("XYZ", 10, "01", 0.0, tmp_path)
    with pytest.raises(ValueError):
        gen.generate("CUTRU", 10, "01", 0.0, tmp_path, encoding="latin-1")
    assert not list(tmp_path.iterdir())


def test_streams_in_bounded_chunks(tmp_path, monkeypatch):
    """Rows go to the file in chunks of at most 4096 lines: nothing accumulates with `rows`."""
    sizes = []
    real = gen._Out.write_lines

    def spy(self, lines):
        sizes.append(len(lines))
        real(self, lines)
    monkeypatch.setattr(gen._Out, "write_lines", spy)
    m = gen.generate("CUTRU", 20_000, "79", 0.01, tmp_path)
    assert max(sizes) <= 4096 and sum(sizes) == 1 + 20_000 and len(sizes) >= 5
    sizes.clear()
    gen.snapshot_changes(m["path"], tmp_path / "next")
    assert max(sizes) <= 4096 + 1 and len(sizes) >= 5


def test_no_partial_file_in_the_inbox(tmp_path, monkeypatch):
    """The file appears under its delivery name only once complete; a failure leaves nothing."""
    def boom(self, code, row, spec):
        raise RuntimeError("disk full")
    monkeypatch.setattr(gen._Cutru, "_inject", boom)
    with pytest.raises(RuntimeError):
        gen.generate("CUTRU", 10_000, "01", 0.01, tmp_path)
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------- DKKD, the enterprise register

from stdnum.vn import mst  # noqa: E402  (an independent implementation of the tax-code check digit)

DKKD_REQUIRED = ("MA_SO_DN", "TEN_DN", "LOAI_HINH", "NGAY_THANH_LAP", "TINH_TRANG", "MA_TINH_TRU_SO", "MA_XA_TRU_SO")
DKKD_FORMS = {_fold(f) for f in ("Công ty TNHH một thành viên", "Công ty TNHH hai thành viên trở lên",
                                 "Công ty cổ phần", "Công ty hợp danh", "Doanh nghiệp tư nhân", "Chi nhánh",
                                 "Văn phòng đại diện")}
DKKD_STATUSES = {_fold(s) for s in ("Đang hoạt động", "Tạm ngừng kinh doanh", "Đang làm thủ tục giải thể",
                                    "Đã giải thể", "Bị thu hồi GCN ĐKDN", "Phá sản")}
VSIC_DIVISIONS = {f"{d:02d}" for d in [1, 2, 3, *range(5, 34), *range(35, 40), 41, 42, 43, 45, 46, 47,
                                       *range(49, 54), 55, 56, *range(58, 67), 68, *range(69, 76),
                                       *range(77, 83), 84, 85, 86, 87, 88, *range(90, 100)]}


def _tax_code_ok(v: str) -> bool:
    return bool(re.fullmatch(r"[0-9]{10}(-[0-9]{3})?", v)) and mst.is_valid(v)


def _money_ok(v: str) -> bool:
    m = re.fullmatch(r"([0-9]+|[0-9]{1,3}(?:\.[0-9]{3})+)(?:,0+)?", v)
    return bool(m) and len(m[1].replace(".", "")) <= 18


def _dkkd_reasons(row: dict, province: str, delivery: dt.date) -> set[str]:
    v = {k: _clean(x) for k, x in row.items()}
    out = set()
    if any(v[c] is None for c in DKKD_REQUIRED):
        out.add("missing_required")
    if v["MA_SO_DN"] is not None and not _tax_code_ok(v["MA_SO_DN"]):
        out.add("invalid_tax_code")
    if (v["LOAI_HINH"] and _fold(v["LOAI_HINH"]) not in DKKD_FORMS) \
            or (v["TINH_TRANG"] and _fold(v["TINH_TRANG"]) not in DKKD_STATUSES) \
            or (v["NGANH_NGHE_CHINH"] and not (re.fullmatch(r"[0-9]{4,5}", v["NGANH_NGHE_CHINH"])
                                               and v["NGANH_NGHE_CHINH"][:2] in VSIC_DIVISIONS)):
        out.add("invalid_code")
    founded = _date(v["NGAY_THANH_LAP"]) if v["NGAY_THANH_LAP"] else None
    if v["NGAY_THANH_LAP"] and founded is None:
        out.add("invalid_date")
    if v["VON_DIEU_LE"] and not _money_ok(v["VON_DIEU_LE"]):
        out.add("invalid_number")
    r = ref()
    if v["MA_TINH_TRU_SO"] and v["MA_TINH_TRU_SO"] not in r.province_now:
        out.add("unknown_admin_unit")
    # the ward is read on the registration date (an unreadable one: as a current code)
    if v["MA_XA_TRU_SO"] and r.ward_now(v["MA_XA_TRU_SO"], founded or REFORM) is None:
        out.add("unknown_admin_unit")
    if v["SO_DINH_DANH_NDD"] is not None and not _valid_pid(v["SO_DINH_DANH_NDD"]):
        out.add("invalid_personal_id")
    if not out:   # a valid row must also be plausible
        ward = r.ward_now(v["MA_XA_TRU_SO"], founded)
        assert r.current[ward] == province, row
        assert r.province_now[v["MA_TINH_TRU_SO"]] == province, row
        assert dt.date(1991, 1, 1) <= founded < delivery and founded not in (dt.date(2025, 6, 30), REFORM), row
        if founded < REFORM:
            assert r.legacy[v["MA_XA_TRU_SO"]][0] == v["MA_TINH_TRU_SO"], row
        dependent = _fold(v["LOAI_HINH"]) in ("chinhanh", "vanphongdaidien")
        assert dependent == ("-" in v["MA_SO_DN"]), row
    return out


KEYS["DKKD"] = "MA_SO_DN"
CHECKS["DKKD"] = _dkkd_reasons


def _dkkd_findings(rows: list[dict], province: str, delivery: dt.date, person_ids) -> dict:
    """orphan_branch and unresolved_person among the rows the pipeline loads, found independently."""
    reasons = [_dkkd_reasons(r, province, delivery) for r in rows]
    keys = Counter(_clean(r["MA_SO_DN"]) for r in rows)
    valid = [r for r, rs in zip(rows, reasons)
             if not rs and (keys[_clean(r["MA_SO_DN"])] == 1
                            or len({tuple(sorted(x.items())) for x in rows if x["MA_SO_DN"] == r["MA_SO_DN"]}) == 1)]
    codes = {_clean(r["MA_SO_DN"]) for r in valid}
    known = set(person_ids or ())
    orphans = sum(1 for r in valid if "-" in r["MA_SO_DN"] and _clean(r["MA_SO_DN"])[:10] not in codes)
    unresolved = sum(1 for r in valid if _clean(r["SO_DINH_DANH_NDD"]) and _clean(r["SO_DINH_DANH_NDD"]) not in known)
    return {k: n for k, n in (("orphan_branch", orphans), ("unresolved_person", unresolved)) if n}


@pytest.mark.parametrize("province,rate,date,quirks", [
    ("01", 0.05, dt.date(2026, 11, 20), True), ("79", 0.2, dt.date(2026, 11, 20), True),
    ("48", 0.013, dt.date(2025, 3, 2), True), ("92", 0.1, dt.date(2026, 1, 5), False), ("01", 0.0, None, True),
])
def test_dkkd_counts_and_findings_are_exact(tmp_path, province, rate, date, quirks):
    people = [p for p, _ in (("001090000001", 0),)] + [f"0{province}0{80 + i % 20:02d}{i:06d}" for i in range(200)]
    m = gen.generate("DKKD", 3000, province, rate, tmp_path, date=date, seed=3, quirks=quirks, person_ids=people)
    counts, defect_rows, n, rows = check(m["path"], "DKKD", province, date or gen.DEFAULT_DATE)
    assert n == m["rows_read"] == 3000
    assert dict(counts) == m["rejections"] and defect_rows == m["defect_rows"] == round(3000 * rate)
    if rate:
        assert set(m["rejections"]) == set(gen.FEEDS["DKKD"].codes)
    assert m["findings"] == _dkkd_findings(rows, province, date or gen.DEFAULT_DATE, people)
    assert m["findings"]["orphan_branch"] > 0 and m["findings"]["unresolved_person"] > 0


def test_dkkd_enterprises_branches_and_representatives(tmp_path):
    known = [f"0010{80 + i % 20:02d}{i:06d}" for i in range(100)]
    m = gen.generate("DKKD", 5000, "01", 0.0, tmp_path, seed=8, person_ids=known)
    rows = list(gen.read_delivery(m["path"]))
    codes = [r["MA_SO_DN"].strip() for r in rows]
    assert len(set(codes)) == len(codes) and all(mst.is_valid(c) and gen.is_valid_tax_code(c) for c in codes)
    by_code = {r["MA_SO_DN"].strip(): r for r in rows}
    branches = [r for r in rows if "-" in r["MA_SO_DN"]]
    assert 0.1 * len(rows) < len(branches) < 0.25 * len(rows)
    with_parent = [b for b in branches if b["MA_SO_DN"][:10] in by_code]
    assert len(with_parent) == len(branches) - m["findings"]["orphan_branch"]
    for b in with_parent:             # registered after the parent, named after it
        parent = by_code[b["MA_SO_DN"][:10]]
        assert _date(b["NGAY_THANH_LAP"].strip()) >= _date(parent["NGAY_THANH_LAP"].strip())
        assert _nfc_upper(b["TEN_DN"]).startswith(("CHI NHÁNH", "VĂN PHÒNG ĐẠI DIỆN"))
        assert _nfc_upper(parent["TEN_DN"]) in _nfc_upper(b["TEN_DN"])
    reps = Counter(r["SO_DINH_DANH_NDD"].strip() for r in rows if r["SO_DINH_DANH_NDD"].strip() not in ("", "NULL"))
    assert max(reps.values()) > 1                      # some people represent several enterprises
    assert sum(n for p, n in reps.items() if p in known) > 0.6 * sum(reps.values())
    assert all(_valid_pid(p) for p in reps)
    # what offices send: names in capitals as registered, other name quirks, every legal form and status
    names = [r["TEN_DN"] for r in rows]
    assert any(n.strip() == n.strip().upper() for n in names) and any("  " in n.strip() for n in names)
    assert any(not unicodedata.is_normalized("NFC", n) for n in names)
    assert {_fold(r["LOAI_HINH"]) for r in rows} == DKKD_FORMS
    assert {_fold(r["TINH_TRANG"]) for r in rows} == DKKD_STATUSES
    capitals = [r["VON_DIEU_LE"] for r in rows]
    assert any(re.fullmatch(r"\d{1,3}(\.\d{3})+", c) for c in capitals) and any(c.isdigit() for c in capitals)
    assert any(c.endswith(",00") for c in capitals) and "NULL" in capitals
    assert any("," in r["TEN_VIET_TAT"] for r in rows)          # quoted in the file


def _nfc_upper(s: str) -> str:
    return " ".join(unicodedata.normalize("NFC", s).split()).upper()


def test_dkkd_workbook_holds_the_same_rows_as_the_csv_file(tmp_path):
    from python_calamine import CalamineWorkbook

    csv_m = gen.generate("DKKD", 2000, "79", 0.05, tmp_path / "csv", seed=4, repeat_header_at=700)
    xlsx_m = gen.generate("DKKD", 2000, "79", 0.05, tmp_path / "xlsx", seed=4, repeat_header_at=700,
                          file_type="xlsx", title_row="DANH SÁCH DOANH NGHIỆP")
    assert Path(xlsx_m["path"]).name == "DKKD_79_20261120_001.xlsx"
    assert {k: v for k, v in xlsx_m.items() if k != "path"} == {k: v for k, v in csv_m.items() if k != "path"}
    assert list(gen.read_delivery(xlsx_m["path"])) == list(gen.read_delivery(csv_m["path"]))
    with CalamineWorkbook.from_path(xlsx_m["path"]) as wb:
        assert wb.sheet_names == ["DKKD"]
        cells = wb.get_sheet_by_index(0).to_python(skip_empty_area=False)
    assert cells[0] == ["DANH SÁCH DOANH NGHIỆP"] + [""] * (len(cells[0]) - 1) and not any(cells[1])
    kinds = Counter(type(v).__name__ for row in cells[3:] for v in row)
    assert kinds["date"] + kinds["datetime"] > 500 and kinds["float"] + kinds["int"] > 1000 and kinds["str"]
    again = gen.generate("DKKD", 2000, "79", 0.05, tmp_path / "again", seed=4, repeat_header_at=700,
                         file_type="xlsx", title_row="DANH SÁCH DOANH NGHIỆP")
    assert Path(again["path"]).read_bytes() == Path(xlsx_m["path"]).read_bytes()     # deterministic


def test_dkkd_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        gen.generate("DKKD", 10, "01", 0.0, tmp_path, title_row="X")                  # a title is for .xlsx
    with pytest.raises(ValueError):
        gen.generate("DKKD", 10, "01", 0.0, tmp_path, file_type="xlsx", encoding="cp1258")
    with pytest.raises(ValueError):
        gen.generate("DKKD", 10, "01", 0.0, tmp_path, file_type="ods")
    assert not list(tmp_path.iterdir())
