"""Realistic sample deliveries with known, injected defects (for tests, demos and benchmarks).

``generate()`` writes ONE delivery file ``<FEED>_<PROVINCE>_<YYYYMMDD>_<SEQ:03d>.csv`` the way an
agency office would send it (see /work/shared/agency-extracts.md) and returns a manifest saying
exactly what the pipeline must find in it::

    {"path": "/.../CUTRU_79_20261120_001.csv", "feed": "CUTRU", "province": "79",
     "rows_read": 100000,                      # data rows (repeated headers, blank lines excluded)
     "rejections": {"missing_required": 143, ..., "duplicate_key": 142},   # codes with count > 0
     "defect_rows": 1000}                      # = sum(rejections.values()) = round(rows * defect_rate)

Every defect row carries exactly ONE defect, so the counts are exact; a ``duplicate_key`` defect
is a pair of rows with the same key and different content (both rejected: it adds 2). Rows
without a defect are valid in every respect but exercise every quirk seen in real deliveries
(``quirks=True``): NFD text, ALL CAPS names, double spaces, surrounding spaces, the literal
``NULL`` in optional fields, sex and relation spellings, partial birth dates, pre-2025 ward and
province codes, random header order and case, BOM / CRLF / Windows-1258 / UTF-16 files, trailing
blank lines and a header repeated mid-file.

Assumptions about the pipeline's checks that keep the counts exact (they follow from
pipelines/rules.py: a type check judges only a *present* value; a row rule over a missing
or unparseable value does not fire):

* a missing or invalid NGAY_SINH / GIOI_TINH does not also raise ``id_mismatch``; a malformed
  SO_DINH_DANH raises only ``invalid_personal_id`` (``id_mismatch`` judges well-formed IDs);
* defects never touch the key (SO_DINH_DANH, SO_SU_KIEN: blank keys could group as duplicates)
  nor the record date (NGAY_CAP_NHAT, NGAY_DANG_KY: the ward is resolved on it), so
  ``missing_required`` blanks another required column and ``invalid_date`` breaks NGAY_SINH
  (CUTRU) / NGAY_SU_KIEN (HOTICH);
* record dates never fall on 30/06/2025 or 01/07/2025, so a local (UTC+7) timestamp is on the
  same side of the reorganisation whatever time zone the warehouse compares it in.

Memory does not grow with ``rows`` (rows are written in chunks as they are made, from pools
built once; 1M CUTRU rows take about 7 s of CPU on a slow 2-core machine, 137 MB). The file is
written under a hidden ``.<name>.part`` name and renamed when complete, so an inbox watcher never
sees half a delivery. Deterministic: the same arguments give the same bytes. Personal ID numbers
are unique within a file and never shared between provinces (see ``_Ids``).

``snapshot_changes()`` turns a CUTRU snapshot into next week's (changed / removed / new persons,
exact counts), streaming. ``read_delivery()`` reads any generated file back (all encodings).
Adding a feed = one maker + one entry in ``FEEDS``. Command line:
``python -m pipelines.generate CUTRU 1000000 79 /tmp/out --defect-rate 0.01``.
"""
from __future__ import annotations

import argparse
import functools
import codecs
import csv
import datetime as dt
import io
import json
import math
import operator
import os
import random
import re
import time
import unicodedata
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

from . import refdata

DEFAULT_DATE = dt.date(2026, 11, 20)
REFORM_DATE = dt.date(2025, 7, 1)
REGISTER_START = dt.date(2021, 7, 1)   # the national residence database went live
BASE_DATE = dt.date(1915, 1, 1)        # day index 0; nobody is born earlier
ENCODINGS = ("utf-8", "utf-8-sig", "cp1258", "utf-16")

_nfc = lambda s: unicodedata.normalize("NFC", s)  # noqa: E731


# ===================================================================== reference data

@dataclass(frozen=True)
class _Refs:
    province: str
    current_wards: tuple[str, ...]
    legacy_wards: tuple[tuple[str, str], ...]      # (legacy ward code, legacy province code)
    legacy_only: tuple[tuple[str, str], ...]       # legacy wards whose code is not a current code
    successor: dict                                # legacy ward code -> current ward code
    legacy_provinces: tuple[str, ...]              # all 63 pre-2025 province codes
    native: tuple[str, ...]                        # legacy provinces merged into this province (weighted)
    others: tuple[str, ...]                        # the other legacy provinces
    bad_provinces: tuple[str, ...]                 # 2-digit codes that are a province in neither era
    bad_wards: tuple[str, ...]                     # 5-digit codes that are a ward in neither era


@lru_cache(maxsize=1)
def _current_provinces() -> tuple[str, ...]:
    out = []
    for code in refdata.legacy_province_codes():   # current codes are a subset of the legacy ones
        try:
            refdata.provinces_of(code)
        except KeyError:
            continue
        out.append(code)
    return tuple(out)


@lru_cache(maxsize=1)
def _province_owner() -> dict[str, str]:
    """legacy province code -> the current province it was merged into."""
    owner = {}
    for p in _current_provinces():
        for _, lp, _ in refdata.provinces_of(p)["legacy_wards"]:
            owner[lp] = p
    return owner


@lru_cache(maxsize=None)
def _refs(province: str) -> _Refs:
    if province not in _current_provinces():
        raise ValueError(f"{province!r} is not a current (post-2025) province code; "
                         f"known: {', '.join(_current_provinces())}")
    units = refdata.provinces_of(province)
    current = tuple(units["current_wards"])
    legacy = tuple((code, lp) for code, lp, _ in units["legacy_wards"])
    all_current = {c for p in _current_provinces() for c in refdata.provinces_of(p)["current_wards"]}
    all_legacy = {c for p in _current_provinces() for c, _, _ in refdata.provinces_of(p)["legacy_wards"]}
    legacy_only = tuple((c, lp) for c, lp in legacy if c not in all_current)
    lps = tuple(refdata.legacy_province_codes())
    weight: dict[str, int] = {}
    for _, lp in legacy:
        weight[lp] = weight.get(lp, 0) + 1
    native = tuple(lp for lp, n in sorted(weight.items()) for _ in range(n))  # weighted by ward count
    others = tuple(lp for lp in lps if lp not in weight)
    bad_provinces = tuple(f"{i:02d}" for i in range(100) if f"{i:02d}" not in set(lps))
    known = all_current | all_legacy
    bad_wards = tuple(c for c in ("00000", "99999", "40000", "51234", "68001", "77777", "86420", "90909",
                                  "33333", "45678") if c not in known)
    successor = {code: succ for code, _, succ in units["legacy_wards"]}
    return _Refs(province, current, legacy, legacy_only, successor, lps, native, others, bad_provinces, bad_wards)


# ===================================================================== personal ID numbers

_A = 1_000_003   # multiplier of the per-bucket permutation (prime: coprime with every slice size)


def _century_sex(year: int, female: int) -> str:
    """Digits 4-6 of a personal ID number for a birth year and sex."""
    return f"{(year // 100 - 19) * 2 + female}{year % 100:02d}"


class _Ids:
    """Unique, valid personal ID numbers: 0 + legacy province, century/sex digit, two year digits,
    six digits. A bucket (the first six digits) draws its last six from a slice of 0..999999
    reserved for the delivering province, so that deliveries of different provinces never share a
    number: natives of a legacy province get 700,000 numbers in the current province it became
    part of, every other current province 9,000. The slice is walked through a fixed permutation;
    its first 6/7 belong to register persons (CUTRU: counted up from 0; snapshot_changes'
    newcomers: counted down from a date-dependent point of the upper half of that part), its last
    1/7 to HOTICH's fresh people (counted up from a point that depends on the delivery)."""

    NATIVE, OTHER = 700_000, 9_000

    def __init__(self, province: str, mode: str = "register", start=0, taken: set[str] | None = None):
        self.province = province
        self.mode = mode            # register | newcomer | civil
        self.start = start
        self.taken = taken if taken is not None else set()   # newcomer mode: numbers not to use
        self.buckets: dict[str, list] = {}
        self._others = [p for p in _current_provinces() if p != province]

    def _slice(self, prefix: str) -> tuple[int, int]:
        owner = _province_owner().get(prefix[1:])
        if owner is None or owner == self.province:
            return 0, self.NATIVE
        return self.NATIVE + self._others.index(owner) * self.OTHER, self.OTHER

    def bucket(self, key: str) -> list:
        """[next index, limit, base, offset, size, used] of a bucket (created on first use)."""
        b = self.buckets.get(key)
        if b is None:
            base, size = self._slice(key[:3])
            limit = size * 6 // 7
            off = zlib.crc32(f"{key}:{self.province}".encode()) % size
            nxt = 0
            if self.mode == "civil":
                nxt = zlib.crc32(f"{key}:{self.start}".encode()) % (size - limit)
            elif self.mode == "newcomer":
                half = limit // 2
                nxt = half + (self.start + zlib.crc32(key.encode())) % (limit - half)
            b = self.buckets[key] = [nxt, limit, base, off, size, 0]
        return b

    def make(self, prefix: str, year: int, female: int) -> str | None:
        """A new number, or None when the bucket is exhausted."""
        key = prefix + _century_sex(year, female)
        b = self.bucket(key)
        nxt, limit, base, off, size, used = b
        for _ in range(64):
            if self.mode == "register":
                if nxt >= limit:
                    return None
                c = nxt
                nxt += 1
            elif self.mode == "newcomer":
                if used >= limit - limit // 2:
                    return None
                c = nxt
                nxt = nxt - 1 if nxt > limit // 2 else limit - 1
            else:
                if used >= size - limit:
                    return None
                c = limit + (nxt + used) % (size - limit)
            used += 1
            pid = f"{key}{base + (c * _A + off) % size:06d}"
            if pid not in self.taken:
                if self.mode == "newcomer":
                    self.taken.add(pid)
                b[0], b[5] = nxt, used
                return pid
        b[0], b[5] = nxt, used
        return None

    def in_newcomer_range(self, pid: str) -> bool:
        """Whether an existing valid number lies where newcomers are numbered (snapshot_changes)."""
        _, limit, base, off, size, _ = self.bucket(pid[:6])
        s = int(pid[6:]) - base
        if not 0 <= s < size:
            return False
        c = ((s - off) * pow(_A, -1, size)) % size
        return limit // 2 <= c < limit


def is_valid_personal_id(pid: str) -> bool:
    """The pipeline's format rule: 12 digits, '0' + a pre-2025 province code, digit 4 in 0-5."""
    return (len(pid) == 12 and pid.isdigit() and pid[0] == "0" and pid[1:3] in _legacy_set()
            and pid[3] in "012345")


def known_people(person_ids) -> list[tuple[str, str | None]]:
    """(ID, name or None) of the people a generated file may refer to: IDs or (ID, name) pairs,
    those with a valid ID only (the people in core.person)."""
    out = []
    for p in person_ids or ():
        pid, name = (p, None) if isinstance(p, str) else (p[0], p[1])
        pid = pid.strip()
        if is_valid_personal_id(pid):
            out.append((pid, name))
    return out


def personal_id_agrees(pid: str, birth_text: str, sex_text: str) -> bool:
    """Digits 4-6 agree with the birth year (last 4 characters of NGAY_SINH) and the sex."""
    year = int(birth_text.strip()[-4:])
    female = 1 if _fold(sex_text) == "nu" else 0
    return pid[3:6] == _century_sex(year, female)


@lru_cache(maxsize=1)
def _legacy_set() -> frozenset[str]:
    return frozenset(refdata.legacy_province_codes())


def _fold(s: str) -> str:
    """Lower case, no diacritics, no spaces (as code lists are matched)."""
    s = unicodedata.normalize("NFD", s.strip().lower())
    return "".join(c for c in s if unicodedata.category(c) != "Mn").replace("đ", "d").replace(" ", "")


# ===================================================================== text pools

FAMILY = [("Nguyễn", 380), ("Trần", 110), ("Lê", 95), ("Phạm", 70), ("Hoàng", 35), ("Huỳnh", 16),
          ("Phan", 45), ("Vũ", 25), ("Võ", 14), ("Đặng", 21), ("Bùi", 20), ("Đỗ", 14), ("Hồ", 13),
          ("Ngô", 13), ("Dương", 10), ("Lý", 5), ("Đinh", 6), ("Trương", 6), ("Lâm", 4), ("Mai", 4),
          ("Trịnh", 4), ("Đoàn", 4), ("Lương", 3), ("Tạ", 2), ("Cao", 3), ("Hà", 3), ("Kiều", 1),
          ("Tô", 2), ("Quách", 1), ("La", 1), ("Châu", 2), ("Thái", 2), ("Lục", 1), ("Phùng", 2),
          ("Vương", 1), ("Triệu", 1), ("Chu", 1), ("Lưu", 2), ("Nông", 1), ("Âu", 1)]
MIDDLE_M = ["Văn"] * 12 + ["Đức"] * 4 + ["Minh"] * 4 + ["Quốc"] * 3 + ["Hữu"] * 3 + [
    "Công", "Thành", "Xuân", "Quang", "Anh", "Hoàng", "Tuấn", "Gia", "Đình", "Trọng", "Bá", "Thanh",
    "Hải", "Duy", "Mạnh", "Tiến", "Ngọc", "Việt", "Đăng", "Trung", "Nhật", "Bảo", "Hoài", "Văn Minh",
    "Đức Anh", "Quang Huy", "Hữu Nghĩa"]
MIDDLE_F = ["Thị"] * 14 + ["Ngọc"] * 3 + ["Thu"] * 2 + ["Thanh"] * 2 + [
    "Phương", "Minh", "Kim", "Hồng", "Thùy", "Bảo", "Mai", "Khánh", "Hoài", "Diệu", "Quỳnh", "Mỹ",
    "Lan", "Hải", "Tuyết", "Thị Thu", "Thị Ngọc", "Thị Kim", "Thị Hồng", "Ngọc Bảo", "Phương Thảo"]
GIVEN_M = ["An", "Anh", "Bảo", "Bình", "Cường", "Dũng", "Dương", "Đạt", "Đức", "Giang", "Hải", "Hiếu",
           "Hiển", "Hòa", "Hoàng", "Hùng", "Huy", "Hưng", "Khang", "Khánh", "Khoa", "Kiên", "Lâm",
           "Long", "Lộc", "Mạnh", "Minh", "Nam", "Nghĩa", "Nhân", "Phát", "Phong", "Phúc", "Quân",
           "Quang", "Sơn", "Tài", "Tâm", "Thắng", "Thành", "Thịnh", "Tiến", "Toàn", "Trung", "Tú",
           "Tuấn", "Vinh", "Việt", "Vũ", "Thái", "Hậu", "Lợi", "Quý", "Trí", "Tùng", "Duy", "Đông"]
GIVEN_F = ["An", "Anh", "Chi", "Diệp", "Dung", "Duyên", "Giang", "Hà", "Hạnh", "Hằng", "Hiền", "Hoa",
           "Hồng", "Huệ", "Hương", "Huyền", "Lan", "Liên", "Linh", "Loan", "Mai", "My", "Nga", "Ngân",
           "Ngọc", "Nhung", "Oanh", "Phương", "Quyên", "Quỳnh", "Tâm", "Thảo", "Thoa", "Thu", "Thủy",
           "Trang", "Trâm", "Tuyết", "Uyên", "Vân", "Vy", "Xuân", "Yến", "Nhi", "Hậu", "Lý", "Ánh"]
ETHNIC = ["Kinh"] * 85 + ["Tày", "Tày", "Thái", "Thái", "Mường", "Mường", "Khmer", "Hoa", "Nùng",
                          "H'Mông", "Dao", "Gia Rai", "Ê Đê", "Ba Na", "Chăm", "Sán Dìu"]
STREETS = ["Láng", "Nguyễn Trãi", "Lê Lợi", "Trần Hưng Đạo", "Hai Bà Trưng", "Lý Thường Kiệt",
           "Phan Đình Phùng", "Nguyễn Huệ", "Cách Mạng Tháng Tám", "Điện Biên Phủ", "Võ Văn Tần",
           "Hoàng Hoa Thám", "Giải Phóng", "Kim Mã", "Đội Cấn", "Nguyễn Văn Cừ", "Lê Duẩn",
           "Trường Chinh", "Quang Trung", "Bạch Đằng", "Hùng Vương", "Nguyễn Thị Minh Khai",
           "Phạm Văn Đồng", "Xô Viết Nghệ Tĩnh", "3 Tháng 2", "Tôn Đức Thắng", "Lạc Long Quân",
           "Âu Cơ", "Nguyễn Văn Linh", "Lê Văn Sỹ", "Huỳnh Tấn Phát", "Minh Khai", "Tây Sơn"]
VILLAGES = ["Đông", "Đoài", "Thượng", "Hạ", "Trung", "Tân Lập", "Yên Bình", "An Phú", "Phú Lợi",
            "Bình An", "Thạnh Mỹ", "Long Hòa", "Phước Hậu", "Na Hang", "Bản Phố"]
RELATIONS = ["Chủ hộ", "Vợ", "Chồng", "Con", "Bố", "Mẹ", "Cháu", "Khác"]
HEAD, WIFE, HUSBAND, CHILD, FATHER, MOTHER, GRANDCHILD, OTHER = range(8)


# ----- Windows-1258: base letters (with their shape marks) + combining tone marks

_TONE_MARKS = "\u0300\u0301\u0303\u0309\u0323"


@lru_cache(maxsize=1)
def _cp1258_tables() -> tuple[dict[int, str], dict[int, str]]:
    """(unencodable -> cp1258 decomposition, every toned letter -> cp1258 decomposition)."""
    safe, full = {}, {}
    for cp in range(0xC0, 0x1EFA):
        c = chr(cp)
        d = unicodedata.normalize("NFD", c)
        if len(d) == 1:
            continue
        tones = "".join(x for x in d if x in _TONE_MARKS)
        dec = unicodedata.normalize("NFC", "".join(x for x in d if x not in _TONE_MARKS)) + tones
        try:
            dec.encode("cp1258")
        except UnicodeEncodeError:
            continue
        if tones:
            full[cp] = dec
        try:
            c.encode("cp1258")
        except UnicodeEncodeError:
            safe[cp] = dec
    return safe, full


def _pool(rng: random.Random, pairs, size: int) -> list:
    """A list of exactly `size` items (a power of two: picked with a bit mask) in which each value
    appears in proportion to its weight, shuffled."""
    total = sum(w for _, w in pairs)
    out = [v for v, w in pairs for _ in range(max(1, round(w * size / total)))]
    rng.shuffle(out)
    out = (out * (size // len(out) + 1))[:size]
    rng.shuffle(out)
    return out


class _Out:
    """A delivery file being written: encoding, delimiter and line ends of the wire format.
    Lines are joined from values that are already CSV-quoted (see `quote`) and written in chunks."""

    def __init__(self, path: Path, encoding: str, crlf: bool):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}")
        self.delimiter = "\t" if encoding == "utf-16" else ","   # Excel "Unicode text": tabs
        self.nl = "\r\n" if crlf else "\n"
        codec = "utf-16-le" if encoding == "utf-16" else encoding
        # written under a hidden name and renamed when complete: an inbox watcher never sees a
        # half-written delivery
        self.path = path
        self.part = path.with_name(f".{path.name}.part")
        self.fh = open(self.part, "w", encoding=codec, newline="", buffering=1 << 20)
        if encoding == "utf-16":
            self.fh.write("\ufeff")
        # Windows-1258 holds Vietnamese as base letters + combining tone marks
        self.table = _cp1258_tables()[0] if encoding == "cp1258" else None
        self._buf = io.StringIO()
        self._csv = csv.writer(self._buf, delimiter=self.delimiter, lineterminator="")
        self.join = self.delimiter.join

    def line(self, values) -> str:
        """One CSV record (RFC 4180 quoting by the csv module), without its line end."""
        self._buf.seek(0)
        self._buf.truncate()
        self._csv.writerow(values)
        return self._buf.getvalue()

    def quote(self, value: str) -> str:
        """The value as it must appear in a record: quoted by the csv module when it holds the
        delimiter, a quote or a line break; as is otherwise."""
        if self.delimiter in value or '"' in value or "\n" in value or "\r" in value:
            return self.line([value])
        return value

    def write_lines(self, lines: list[str]) -> None:
        if lines:
            self.write(self.nl.join(lines) + self.nl)

    def write(self, text: str) -> None:
        if self.table:
            text = text.translate(self.table)
        self.fh.write(text)

    def close(self, complete: bool) -> None:
        """Close; move into place when complete, remove otherwise."""
        self.fh.close()
        if complete:
            os.replace(self.part, self.path)
        else:
            self.part.unlink(missing_ok=True)


# ===================================================================== the shared generator state

class _Gen:
    """Pools and state shared by the row makers of one file. Hot-path pools have a power-of-two
    size so that one getrandbits(64) call feeds several picks."""

    def __init__(self, province: str, date: dt.date, seed: int, quirks: bool, encoding: str,
                 out: _Out, id_mode: str = "register", id_start=0, taken: set[str] | None = None):
        self.province = province
        self.date = date
        self.quirks = quirks
        self.out = out
        rng = self.rng = random.Random(f"content:{seed}")
        self.grb = rng.getrandbits
        self.drng = random.Random(f"defects:{seed}")
        self.refs = refs = _refs(province)
        self.ids = _Ids(province, id_mode, id_start, taken)

        # days: DAYS[i] = "dd/mm/yyyy" of BASE_DATE + i, YEARS[i] its year
        n = (date - BASE_DATE).days + 1
        self.DAYS: list[str] = []
        self.YEARS: list[int] = []
        d, one = BASE_DATE, dt.timedelta(days=1)
        for _ in range(n):
            self.DAYS.append(f"{d.day:02d}/{d.month:02d}/{d.year}")
            self.YEARS.append(d.year)
            d += one
        self.YK = [(_century_sex(y, 0), _century_sex(y, 1)) for y in range(1900, 2200)]
        self.delivery = n - 1                 # index of the delivery date
        self.today = n - 2                    # the last day a register record may have changed
        self.TIMES = [f"{int(rng.triangular(6, 22, 10)):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
                      for _ in range(4096)]

        # record dates: the legacy era before the reform, the current era after; 30/06 and
        # 01/07/2025 are never used (a UTC+7 time could fall on either side of the reform in UTC)
        self.w0 = (REFORM_DATE - BASE_DATE).days - 1            # index of 30/06/2025
        lo = (min(REGISTER_START, date - dt.timedelta(days=400)) - BASE_DATE).days
        self.legacy_era = (lo, min(self.w0 - 1, self.today))
        self.current_era = (max(self.w0 + 2, lo), self.today)
        if self.legacy_era[0] > self.legacy_era[1]:
            self.legacy_era = None
        if self.current_era[0] > self.current_era[1]:
            self.current_era = None
        if not (self.legacy_era or self.current_era):
            raise ValueError(f"delivery date {date} leaves no day for records")

        if encoding == "cp1258":
            full = _cp1258_tables()[1]
            self.decompose = lambda s: s.translate(full)
        else:
            self.decompose = lambda s: unicodedata.normalize("NFD", s)

        # pools
        nfc = _nfc
        self.fam = _pool(rng, [(nfc(f), w) for f, w in FAMILY], 1024)
        self.mg = tuple(
            [nfc(f"{mid[rng.randrange(len(mid))]} {giv[rng.randrange(len(giv))]}") for _ in range(4096)]
            for mid, giv in ((MIDDLE_M, GIVEN_M), (MIDDLE_F, GIVEN_F)))
        natives = [("0" + lp, 800 / len(refs.native)) for lp in refs.native]
        others = [("0" + lp, 200 / len(refs.others)) for lp in refs.others] if refs.others else []
        self.prefixes = _pool(rng, natives + others, 1024)
        q = quirks
        self.name_q = 13 if q else 0          # of 128: ALL CAPS, double space, NFD, surrounding spaces
        self.partial_q = 8 if q else 0        # of 128: 00/mm/yyyy, 00/00/yyyy, yyyy
        self.legacy_only_share = 0.2 if q else 0.0
        if q:
            self.sexv = (_pool(rng, [("Nam", 24), ("NAM", 3), ("nam", 3), ("Nam ", 2)], 32),
                         _pool(rng, [("Nữ", 22), ("NỮ", 3), ("Nu", 3), (self.decompose("Nữ"), 2),
                                     (" Nữ", 2)], 32))
            self.relv = [_pool(rng, [(c, 11), (c.upper(), 1), (c.lower(), 1), (_bare(c), 1), (c.title(), 1),
                                     (f" {c}", 1)], 16) for c in RELATIONS]
            self.nat = _pool(rng, [("", 540), ("VN", 420), ("vn", 10), (" VN", 5), ("NULL", 15), ("CN", 3),
                                   ("KR", 2), ("LA", 2), ("KH", 1), ("US", 1), ("JP", 1)], 1024)
            self.eth = _pool(rng, [(e, 1) for e in ETHNIC] + [("", 3), ("NULL", 1), ("KINH", 2), ("kinh", 1)],
                             1024)
        else:
            self.sexv = (["Nam"] * 32, ["Nữ"] * 32)
            self.relv = [[c] * 16 for c in RELATIONS]
            self.nat = _pool(rng, [("", 55), ("VN", 45)], 1024)
            self.eth = _pool(rng, [(e, 1) for e in ETHNIC], 1024)
        self.eth = [out.quote(nfc(e)) for e in self.eth]
        self.addresses = [out.quote(self.address()) for _ in range(16384)]
        self.shapes = [self._shape() for _ in range(4096)]

    # ----- households

    _SIZES = [1] * 12 + [2] * 18 + [3] * 24 + [4] * 26 + [5] * 12 + [6] * 6 + [7] * 2

    def _shape(self) -> tuple:
        """A household: members (relation, female, age in days, family kind), head LAST (popped
        first). Family kind 0: the household's paternal family name, 1: a family name of one's own."""
        r = self.rng.random
        size = self._SIZES[int(r() * len(self._SIZES))]
        head_age = self.rng.triangular(20, 92, 42)
        rest = size - 1
        spouse = rest > 0 and r() < 0.85
        rest -= spouse
        female_head = r() < 0.3
        if female_head:
            members = [(HEAD, 1, head_age, 1 if spouse else 0)]
            if spouse:
                members.append((HUSBAND, 0, max(18.0, head_age + r() * 8 - 2), 0))
        else:
            members = [(HEAD, 0, head_age, 0)]
            if spouse:
                members.append((WIFE, 1, max(18.0, head_age - r() * 8 + 2), 1))
        for _ in range(rest):
            k = r()
            if k < 0.08 and head_age < 68:
                f = 1 if r() < 0.6 else 0
                members.append((MOTHER if f else FATHER, f, head_age + 20 + r() * 12,
                                1 if f or (female_head and spouse) else 0))
            elif k < 0.14:
                members.append((GRANDCHILD, 1 if r() < 0.49 else 0, r() * 18, 0 if r() < 0.5 else 1))
            elif k < 0.17:
                members.append((OTHER, 1 if r() < 0.5 else 0, 18 + r() * 50, 1))
            else:
                members.append((CHILD, 1 if r() < 0.49 else 0, r() * max(0.5, min(head_age - 19, 40)), 0))
        return tuple((rel, f, int(min(age, 99.0) * 365.25), kind) for rel, f, age, kind in reversed(members))

    # ----- values

    def name(self, female: int, family: str | None = None) -> str:
        x = self.grb(32)
        full = (family or self.fam[x & 1023]) + " " + self.mg[female][(x >> 10) & 4095]
        qn = (x >> 22) & 127
        return self.quirk_name(full, qn) if qn < self.name_q else full

    def quirk_name(self, full: str, qn: int) -> str:
        if qn < 5:
            return full.upper()
        if qn < 8:
            return full.replace(" ", "  ", 1)
        if qn < 12:
            return self.decompose(full)
        return f" {full} "

    def pick(self, seq):
        return seq[int(self.rng.random() * len(seq))]

    def ward_for(self, day: int, legacy_only_share: float | None = None) -> tuple[str, str]:
        """(MA_TINH, MA_XA) valid on that day: a pre-2025 ward with its pre-2025 province before the
        reform; after it a current ward with the current province, or (quirks) a pre-2025 code that
        is not also a current code, with either province code."""
        refs = self.refs
        r = self.rng.random
        if day < self.w0:
            code, lp = refs.legacy_wards[int(r() * len(refs.legacy_wards))]
            return lp, code
        share = self.legacy_only_share if legacy_only_share is None else legacy_only_share
        if refs.legacy_only and share and r() < share:
            code, lp = refs.legacy_only[int(r() * len(refs.legacy_only))]
            return (lp if r() < 0.5 else self.province), code
        return self.province, refs.current_wards[int(r() * len(refs.current_wards))]

    def address(self) -> str:
        """A street address as typed by the office (raw: quote it before use in a record)."""
        r = self.rng.random
        k = r()
        if k < 0.03:
            return "NULL" if self.quirks and k < 0.015 else ""
        s = STREETS[int(r() * len(STREETS))]
        n = 1 + int(r() ** 2 * 400)
        v = VILLAGES[int(r() * len(VILLAGES))]
        t = int(r() * 8)
        if t == 0:
            return f"Số {n}, ngõ {1 + int(r() * 300)}, phố {s}"
        if t == 1:
            return f"{n}/{1 + int(r() * 60)} đường {s}, khu phố {1 + int(r() * 9)}"
        if t == 2:
            return f"Số {n} đường {s}, tổ dân phố {1 + int(r() * 30)}"
        if t == 3:
            return f"Thôn {v}"
        if t == 4:
            return f"Xóm {1 + int(r() * 15)}, thôn {v}"
        if t == 5:
            return f"Ấp {v}"
        if t == 6:
            return f"Số {n} {s}"
        return f'Khu tập thể "{"ABCDE"[int(r() * 5)]}{1 + int(r() * 9)}", phòng {100 + int(r() * 400)}'

    def timestamp(self, lo: int, hi: int) -> str:
        r = self.rng.random
        return f"{self.DAYS[lo + int(r() * (hi - lo + 1))]} {self.TIMES[int(r() * 4096)]}"

    def new_id(self, birth: int, female: int, prefix: str | None = None) -> str:
        return self.new_id_year(self.YEARS[birth], female, prefix)

    def new_id_year(self, year: int, female: int, prefix: str | None = None) -> str:
        year = min(max(year, 1900), 2199)
        for attempt in range(200):
            p = prefix if prefix and attempt == 0 else self.prefixes[self.grb(10)]
            pid = self.ids.make(p, year, female)
            if pid:
                return pid
        raise RuntimeError(f"no personal ID number left for birth year {year} in province {self.province}")

    # ----- defect values (drawn from the defect RNG)

    def bad_personal_id(self, pid: str, year: int, female: int) -> str:
        """A malformed number whose century/sex/year digits (where still in place) agree with the
        person, so it breaks only the format rule. Unique when pid is."""
        d = self.drng
        v = d.randrange(6)
        if v == 0:
            return pid[1:]                              # Excel dropped the leading zero: 11 digits
        if v == 1:
            return pid + str(d.randrange(10))           # 13 digits
        if v == 2:
            return "O" + pid[1:]                        # letter O typed for the zero
        if v == 3:
            return "1" + pid[1:]                        # first three digits not 0 + a province
        if v == 4:
            return pid[:3] + "6789"[int(pid[3]) % 4] + pid[4:]   # century/sex digit outside 0-5
        bad = self.refs.bad_provinces[d.randrange(len(self.refs.bad_provinces))]
        return self.ids.make("0" + bad, min(max(year, 1900), 2199), female) or pid[1:]

    def bad_ward(self) -> str:
        return self.refs.bad_wards[self.drng.randrange(len(self.refs.bad_wards))]

    def bad_province(self) -> str:
        return self.refs.bad_provinces[self.drng.randrange(len(self.refs.bad_provinces))]


def _bare(s: str) -> str:
    s = "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")
    return s.replace("đ", "d").replace("Đ", "D")


# ===================================================================== feeds
#
# A feed is a maker: called with the file's _Gen and the options of generate() (person_ids, seq,
# ...; it ignores those it does not use), it returns the row function (or an object with a `row`
# attribute), which is called once per data row with the defect to inject (None, a rejection
# code, or "dup1"/"dup2" for the two rows of a duplicate_key pair) and returns the row's values
# in the feed's `columns` order, each already quoted for the file (gen.out.quote). All random
# choices come from gen.rng (content) and gen.drng (defects), so files are reproducible.

CUTRU_COLUMNS = ("SO_DINH_DANH", "SO_CMND", "HO_TEN", "NGAY_SINH", "GIOI_TINH", "QUOC_TICH", "DAN_TOC",
                 "MA_TINH_TT", "MA_XA_TT", "DIA_CHI_TT", "SO_HO", "QUAN_HE_CHU_HO", "NGAY_CAP_NHAT")
(C_ID, C_CMND, C_NAME, C_BIRTH, C_SEX, C_NAT, C_ETH, C_PROV, C_WARD, C_ADDR, C_HH, C_REL,
 C_TS) = range(len(CUTRU_COLUMNS))


class _Cutru:
    """CUTRU: one household after another (members share SO_HO, ward, address, ethnicity; children
    carry the father's family name; NGAY_CAP_NHAT after birth and in the era of the ward code)."""

    columns = CUTRU_COLUMNS
    codes = ("missing_required", "invalid_personal_id", "invalid_date", "invalid_code",
             "unknown_admin_unit", "id_mismatch", "duplicate_key")

    def __init__(self, g: _Gen, era: tuple[int, int] | None = None, **_):
        self.g = g
        self.era = era          # (first, last day) of NGAY_CAP_NHAT (snapshot_changes' newcomers)
        self.queue: list[tuple] = []     # members of the current household still to write
        self.house: list = []            # what they share (filled in place: the row function holds it)
        self.households = 0
        self.hh_off = zlib.crc32(g.province.encode())
        self.dup: tuple | None = None
        self.fast = g.ids.mode == "register"
        self.row = self._compile()

    def _household(self) -> None:
        g = self.g
        x = g.grb(64)
        if self.era:
            era = self.era
        elif g.legacy_era and (not g.current_era or (x & 1023) < 461):    # 45% before the reform
            era = g.legacy_era
        else:
            era = g.current_era
        prov, ward = g.ward_for(era[0])
        addr = g.addresses[(x >> 10) & 16383]
        eth = g.eth[(x >> 24) & 1023]
        shape = g.shapes[(x >> 34) & 4095]
        family = g.fam[(x >> 46) & 1023]
        self.households += 1
        so_ho = f"{g.province}{(self.households * 7919 + self.hh_off) % 100000000:08d}"
        if g.quirks and (x >> 56) & 127 == 0:
            so_ho = ""
        today, hi = g.today, era[1]
        jitter = g.grb(64)
        queue = self.queue
        for rel, female, age, kind in shape:
            birth = today - age - (jitter & 255)
            jitter >>= 8
            if birth > hi:
                birth = hi
            queue.append((rel, female, birth if birth > 0 else 0, None if kind else family))
        self.house[:] = (era[0], era[1], prov, ward, addr, so_ho, eth)

    def __call__(self, defect: str | None) -> list:
        return self.row(defect)

    def _compile(self):
        """The row function, with every pool in a local cell (this is the hot path)."""
        g = self.g
        grb, fam, name_q, quirk_name = g.grb, g.fam, g.name_q, g.quirk_name
        mg = tuple([" " + v for v in pool] for pool in g.mg)
        times = [" " + t for t in g.TIMES]
        DAYS, partial_q, quirks = g.DAYS, g.partial_q, g.quirks
        YK = [g.YK[y - 1900] for y in g.YEARS]            # digits 4-6 by day of birth and sex
        cmnd_before = (dt.date(2004, 1, 1) - BASE_DATE).days
        prefixes, new_id = g.prefixes, g.new_id
        buckets = g.ids.buckets if self.fast else {}        # fast path: register numbering only
        sexv, nat, relv = g.sexv, g.nat, g.relv
        queue, house, household = self.queue, self.house, self._household
        inject, dup2 = self._inject, self._dup2
        A = _A

        def row(defect: str | None) -> list:
            if defect == "dup2":
                return dup2()
            if not queue:
                household()
            spec = queue.pop()
            rel, female, birth, family = spec
            x = grb(64)
            y = grb(64)
            lo, hi, prov, ward, addr, so_ho, eth = house
            name = (family or fam[grb(10)]) + mg[female][x & 4095]
            qn = (x >> 12) & 127
            if qn < name_q:
                name = quirk_name(name, qn)
            born = DAYS[birth]
            pb = (x >> 19) & 127
            if pb < partial_q:
                born = "00/" + born[3:] if pb < 4 else "00/00/" + born[6:] if pb < 6 else born[6:]
            cm = (x >> 55) & 127
            if birth < cmnd_before and cm < 45:
                cmnd = "%09d" % ((y >> 32) % 1000000000)
            else:
                cmnd = "NULL" if cm == 127 and quirks else ""
            if birth > lo:
                lo = birth
            ts = DAYS[lo + (((y & 0xFFFFF) * (hi - lo + 1)) >> 20)] + times[(y >> 20) & 4095]
            prefix = prefixes[(x >> 45) & 1023]
            key = prefix + YK[birth][female]
            b = buckets.get(key)
            if b is not None and b[0] < b[1]:
                c = b[0]
                b[0] = c + 1
                pid = key + "%06d" % (b[2] + (c * A + b[3]) % b[4])
            else:
                pid = new_id(birth, female, prefix)
            values = [pid, cmnd, name, born, sexv[female][(x >> 26) & 31], nat[(x >> 31) & 1023], eth,
                      prov, ward, addr, so_ho, relv[rel][(x >> 41) & 15], ts]
            if defect:
                inject(defect, values, spec)
            return values
        return row

    def _inject(self, code: str, row: list, spec: tuple) -> None:
        g = self.g
        d = g.drng
        _, female, birth, _ = spec
        year = g.YEARS[birth]
        if code == "dup1":
            self.dup = (list(row), spec)
        elif code == "missing_required":     # never the key, nor the record date (see module doc)
            row[(C_NAME, C_WARD, C_BIRTH, C_SEX)[d.randrange(4)]] = ("", "NULL", "  ")[d.randrange(3)]
        elif code == "invalid_personal_id":
            row[C_ID] = g.bad_personal_id(row[C_ID], year, female)
        elif code == "invalid_date":         # NGAY_SINH; the year stays readable
            dm = g.DAYS[birth][:5]
            leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
            row[C_BIRTH] = d.choice([f"31/02/{year}", f"30/02/{year}", f"31/04/{year}", f"31/06/{year}",
                                     f"31/09/{year}", f"31/11/{year}", f"32/01/{year}", f"15/13/{year}",
                                     f"00/13/{year}", f"29/02/{year}" if not leap else f"31/11/{year}",
                                     "không rõ", "abc", dm])
        elif code == "invalid_code":
            v = d.randrange(3)
            if v == 0:
                row[C_SEX] = d.choice(["X", "K", "Khác", "M", "F", "0", "1"])
            elif v == 1:
                row[C_REL] = d.choice(["Anh", "Em", "Ông", "Bà", "Con dâu", "Con rể", "Chị", "CH"])
            else:
                row[C_NAT] = d.choice(["VNM", "Việt Nam", "V", "84", "Viet Nam"])
        elif code == "unknown_admin_unit":
            if d.random() < 0.75:
                row[C_WARD] = g.bad_ward()
            else:
                row[C_PROV] = g.bad_province()
        elif code == "id_mismatch":          # a fresh (unique) number from a wrong bucket
            prefix = row[C_ID][:3]
            v = d.randrange(3)
            if v == 0:      # the sex digit contradicts GIOI_TINH
                row[C_ID] = g.new_id_year(year, 1 - female, prefix)
            elif v == 1:    # the year digits contradict NGAY_SINH
                row[C_ID] = g.new_id_year(year + d.choice([-3, -2, -1, 1, 2, 3, 10]), female, prefix)
            else:           # the century contradicts NGAY_SINH
                row[C_ID] = g.new_id_year(year + (100 if year < 2000 else -100), female, prefix)
        else:
            raise ValueError(code)

    def _dup2(self) -> list:
        """The second row of a duplicate pair: same SO_DINH_DANH (and birth date, sex, so the number
        agrees), another name and address."""
        g = self.g
        first, spec = self.dup
        row = list(first)
        _, female, _, family = spec
        while _nfc(row[C_NAME]).strip() == _nfc(first[C_NAME]).strip():
            row[C_NAME] = g.name(female, family)
        while row[C_ADDR] in (first[C_ADDR], "", "NULL"):
            row[C_ADDR] = g.out.quote(g.address())
        return row


HOTICH_COLUMNS = ("SO_SU_KIEN", "LOAI_SU_KIEN", "NGAY_SU_KIEN", "NGAY_DANG_KY", "MA_XA_DANG_KY",
                  "SO_DINH_DANH", "HO_TEN", "SO_DINH_DANH_LIEN_QUAN")
H_NO, H_TYPE, H_EVENT, H_REG, H_WARD, H_ID, H_NAME, H_REL = range(len(HOTICH_COLUMNS))
EVENT_TYPES = ("KHAI_SINH", "KHAI_TU", "KET_HON", "LY_HON")


class _Hotich:
    """HOTICH: civil-status events registered on the delivery date (15%: a few days before, as
    when days are re-sent). Subjects: fresh people (a newborn's number agrees with the birth date),
    or taken from person_ids (deaths never repeat a person)."""

    columns = HOTICH_COLUMNS
    codes = ("missing_required", "invalid_code", "invalid_date", "unknown_admin_unit",
             "invalid_personal_id", "duplicate_key")
    _TYPES = [0] * 45 + [1] * 20 + [2] * 28 + [3] * 7

    def __init__(self, g: _Gen, person_ids=None, seq: int = 1, **_):
        self.g = g
        g.ids.mode = "civil"
        g.ids.start = f"{g.date}:{seq}"
        self.k = 0
        self.prefix = f"HT-{g.province}-{g.date:%Y%m%d}{seq:03d}"
        self.known = known_people(person_ids)
        self.dead: set[str] = set()
        self.dup: tuple | None = None
        self.type_values = [[t] * 10 + ([t.lower(), t.title(), f" {t} "] if g.quirks else [])
                            for t in EVENT_TYPES]

    def _known(self, female: int | None = None, death: bool = False) -> tuple[str, str] | None:
        if not self.known:
            return None
        r = self.g.rng.random
        for _ in range(20):
            pid, name = self.known[int(r() * len(self.known))]
            if pid in self.dead or (female is not None and int(pid[3]) % 2 != female):
                continue
            if death:
                self.dead.add(pid)
            return pid, self.g.out.quote(name) if name else self.g.name(int(pid[3]) % 2)
        return None

    def _fresh(self, age_lo: float, age_hi: float, day: int, female: int) -> tuple[str, str]:
        g = self.g
        birth = max(0, day - int((age_lo + g.rng.random() * (age_hi - age_lo)) * 365.25))
        return g.new_id(birth, female), g.name(female)

    def __call__(self, defect: str | None) -> list:
        g = self.g
        r = g.rng.random
        if defect == "dup2":     # the same event number again, with another name
            first, _ = self.dup
            row = list(first)
            while _nfc(row[H_NAME]).strip() == _nfc(first[H_NAME]).strip():
                row[H_NAME] = g.name(g.drng.randrange(2))
            return row
        self.k += 1
        t = self._TYPES[int(r() * 100)]
        reg = g.delivery if r() < 0.85 else g.delivery - 1 - int(r() * 7)
        if g.w0 <= reg <= g.w0 + 1:
            reg = g.w0 - 1
        if t == 0:      # birth: registered within 60 days, sometimes years late
            event = reg - int(r() * 60) if r() < 0.95 else reg - int(r() * 3650)
        elif t == 1:    # death: within days
            event = reg - int(r() ** 3 * 30)
        elif t == 2:    # marriage: registered the day it is concluded
            event = reg
        else:           # divorce: court decision, then registration
            event = reg - int(r() * 120)
        event = max(0, event)
        _, ward = g.ward_for(reg, 0.15 if g.quirks else 0.0)
        related = ""
        if t == 0:
            female = 1 if r() < 0.49 else 0
            refs = g.refs
            pid = g.new_id(event, female, "0" + refs.native[int(r() * len(refs.native))])
            name = g.name(female)
        elif t == 1:
            pid, name = self._known(death=True) or self._fresh(40, 95, event, 1 if r() < 0.45 else 0)
        else:
            lo, hi = (20, 40) if t == 2 else (25, 60)
            husband = self._known(0) or self._fresh(lo, hi, event, 0)
            wife = self._known(1) or self._fresh(lo, hi, event, 1)
            (pid, name), (related, _) = (husband, wife) if r() < 0.5 else (wife, husband)
        if not related and g.quirks and r() < 0.1:
            related = "NULL"
        row = [f"{self.prefix}{self.k:07d}", g.pick(self.type_values[t]), g.DAYS[event], g.DAYS[reg],
               ward, pid, name, related]
        if defect:
            self._inject(defect, row, t)
        return row

    def _inject(self, code: str, row: list, t: int) -> None:
        g = self.g
        d = g.drng
        if code == "dup1":
            self.dup = (list(row), t)
        elif code == "missing_required":     # never the key, nor the record date (NGAY_DANG_KY)
            cols = [H_NAME, H_ID, H_WARD, H_EVENT, H_TYPE] + ([H_REL] if t >= 2 else [])
            col = cols[d.randrange(len(cols))]
            if col == H_TYPE:
                row[H_REL] = ""       # without a type no spouse is required, nor expected
            row[col] = ("", "NULL", "  ")[d.randrange(3)]
        elif code == "invalid_code":
            row[H_TYPE] = d.choice(["NHAN_CON_NUOI", "GIAM_HO", "THAY_DOI_HO_TICH", "KS", "9"])
            row[H_REL] = ""
        elif code == "invalid_date":         # NGAY_SU_KIEN
            day_month, year = row[H_EVENT][:5], row[H_EVENT][6:]
            row[H_EVENT] = d.choice([f"31/02/{year}", f"30/02/{year}", f"31/04/{year}", f"31/11/{year}",
                                     f"00/{row[H_EVENT][3:]}", f"32/{row[H_EVENT][3:]}", day_month, "abc"])
        elif code == "unknown_admin_unit":
            row[H_WARD] = g.bad_ward()
        elif code == "invalid_personal_id":
            col = H_REL if t >= 2 and d.random() < 0.3 else H_ID
            pid = row[col]
            year = 1900 + (int(pid[3]) // 2) * 100 + int(pid[4:6])
            row[col] = g.bad_personal_id(pid, year, int(pid[3]) % 2)
        else:
            raise ValueError(code)


DKKD_COLUMNS = ("MA_SO_DN", "TEN_DN", "TEN_TIENG_ANH", "TEN_VIET_TAT", "LOAI_HINH", "NGAY_THANH_LAP",
                "TINH_TRANG", "VON_DIEU_LE", "NGANH_NGHE_CHINH", "MA_TINH_TRU_SO", "MA_XA_TRU_SO",
                "DIA_CHI_TRU_SO", "SO_DINH_DANH_NDD", "HO_TEN_NDD")
(D_CODE, D_NAME, D_EN, D_SHORT, D_FORM, D_DATE, D_STATUS, D_CAPITAL, D_VSIC, D_PROV, D_WARD, D_ADDR, D_REP,
 D_REP_NAME) = range(len(DKKD_COLUMNS))

TAX_WEIGHTS = (31, 29, 23, 19, 17, 13, 7, 5, 3)
# (legal form, weight, how the name starts, English suffix, abbreviation suffix)
LEGAL_FORMS = [("Công ty TNHH một thành viên", 38, "Công ty TNHH", "Company Limited", "CO., LTD"),
               ("Công ty TNHH hai thành viên trở lên", 20, "Công ty TNHH", "Company Limited", "CO., LTD"),
               ("Công ty cổ phần", 24, "Công ty cổ phần", "Joint Stock Company", "JSC"),
               ("Doanh nghiệp tư nhân", 6, "Doanh nghiệp tư nhân", "", ""),
               ("Công ty hợp danh", 1, "Công ty hợp danh", "Partnership", "")]
DEPENDENT_FORMS = ["Chi nhánh"] * 4 + ["Văn phòng đại diện"]
STATUSES = [("Đang hoạt động", 76), ("Tạm ngừng kinh doanh", 8), ("Đang làm thủ tục giải thể", 3),
            ("Đã giải thể", 8), ("Bị thu hồi GCN ĐKDN", 4), ("Phá sản", 1)]
TRADES = [("Thương mại", "Trading"), ("Dịch vụ", "Services"), ("Thương mại và Dịch vụ", "Trading and Services"),
          ("Xây dựng", "Construction"), ("Đầu tư", "Investment"), ("Đầu tư và Phát triển", "Investment and Development"),
          ("Sản xuất", "Manufacturing"), ("Sản xuất và Thương mại", "Manufacturing and Trading"),
          ("Công nghệ", "Technology"), ("Công nghệ Thông tin", "Information Technology"), ("Vận tải", "Transport"),
          ("Logistics", "Logistics"), ("Xuất nhập khẩu", "Import Export"), ("Tư vấn", "Consulting"),
          ("Kỹ thuật", "Engineering"), ("Môi trường", "Environment"), ("Thực phẩm", "Food"),
          ("Nông sản", "Agricultural Products"), ("Thủy sản", "Seafood"), ("Dược phẩm", "Pharmaceutical"),
          ("Thiết bị Y tế", "Medical Equipment"), ("Giáo dục", "Education"), ("Du lịch", "Travel"),
          ("Bất động sản", "Real Estate"), ("Nội thất", "Furniture"), ("Cơ khí", "Mechanical Engineering"),
          ("Điện tử", "Electronics"), ("May mặc", "Garment"), ("Vật liệu Xây dựng", "Building Materials"),
          ("Năng lượng", "Energy")]
BRANDS = ["Hoàng Long", "Minh Phát", "An Khang", "Thành Đạt", "Phú Quý", "Việt Tiến", "Sao Mai", "Hưng Thịnh",
          "Tân Phát", "Đại Nam", "Hòa Bình", "Phương Đông", "Trường Sơn", "Hồng Hà", "Cửu Long", "Nam Việt",
          "Bắc Á", "Kim Ngân", "Thiên Phú", "Vạn Xuân", "Đông Á", "Sông Hồng", "Hải Âu", "Ánh Dương", "Bình Minh",
          "Toàn Cầu", "Quang Minh", "Tiến Thành", "Gia Phát", "Lạc Hồng", "Phúc Lộc", "Đức Thịnh", "Vĩnh Hưng",
          "Mê Kông", "Tây Nguyên", "Hưng Long", "Trí Việt", "Nhật Minh", "Thăng Long", "Hà Thành", "Đất Việt",
          "Sen Vàng", "Ngọc Lan", "Bảo An", "Thịnh Vượng", "Tân Thế Kỷ", "Việt Hàn", "Việt Nhật", "Đông Dương",
          "Hoa Sen", "Phát Đạt", "Kim Long", "Hùng Vương", "Sài Gòn Xanh", "Thái Sơn", "Lộc Phát", "Hợp Nhất"]
NAME_TAILS = ["Việt Nam", "Miền Bắc", "Miền Nam", "Quốc tế", "Sài Gòn", "Hà Nội", "Số 1", "Toàn Cầu"]
PLACES = ["Hà Nội", "Thành phố Hồ Chí Minh", "Đà Nẵng", "Hải Phòng", "Cần Thơ", "Huế", "Quảng Ninh", "Nghệ An",
          "Khánh Hòa", "Đồng Nai", "Lâm Đồng", "Bắc Ninh", "Thái Nguyên"]
VSIC_CODES = ["0111", "0118", "0121", "0150", "0161", "0311", "0322", "1010", "1020", "1050", "1061", "1071",
              "1079", "1311", "1410", "1520", "1622", "1701", "1811", "2011", "2220", "2392", "2511", "2592",
              "2610", "2710", "2930", "3100", "3290", "3511", "3600", "3811", "4101", "4102", "4212", "4221",
              "4290", "4321", "4322", "4330", "4390", "4511", "4520", "4530", "4620", "4632", "4641", "4649",
              "4651", "4652", "4659", "4661", "4662", "4663", "4669", "4690", "4711", "4719", "4722", "4752",
              "4759", "4771", "4773", "4791", "4933", "5012", "5210", "5224", "5229", "5510", "5610", "5630",
              "5820", "6201", "6202", "6209", "6311", "6312", "6419", "6619", "6810", "6820", "6910", "6920",
              "7020", "7110", "7310", "7320", "7410", "7490", "7710", "7830", "7912", "8110", "8230", "8299",
              "8510", "8532", "8559", "8620", "8690", "9311", "9329", "9511", "9620",
              "01110", "01180", "03110", "10790", "46201", "46310", "46495", "46510", "47110", "49331", "56101",
              "62010", "68100", "41010", "43210", "47730", "55101", "85590"]
CAPITAL_MANTISSAS = [1, 1, 2, 3, 5, 5, 8, 10, 15, 20, 50]


def tax_check_digit(first9: str) -> str | None:
    """The tenth digit of an enterprise code (Circular 105/2020/TT-BTC: 10 - (S mod 11), S the nine
    digits weighted 31, 29, 23, 19, 17, 13, 7, 5, 3); None when S mod 11 = 0 (no valid code)."""
    r = 10 - sum(w * int(d) for w, d in zip(TAX_WEIGHTS, first9)) % 11
    return str(r) if r < 10 else None


def is_valid_tax_code(code: str) -> bool:
    """The pipeline's rule for MA_SO_DN, as the register writes codes (no dots, no spaces)."""
    if len(code) == 14 and code[10] == "-":
        if not (code[11:].isdigit() and code[11:].isascii()) or code[11:] == "000":
            return False
        code = code[:10]
    return (len(code) == 10 and code.isdigit() and code.isascii() and code[2:9] != "0000000"
            and tax_check_digit(code[:9]) == code[9])


def _grouped(amount: int) -> str:
    return f"{amount:,}".replace(",", ".")


class _Dkkd:
    """DKKD: the enterprise register of one province. Enterprises with valid tax codes (unique per
    province: the province code and a walk through a permutation of the seven middle digits), their
    dependent units (branches, representative offices: the parent's code + '-NNN', registered after
    it), a few orphan branches (a parent that no row carries), legal representatives (from
    person_ids when given: the IDs of people in core.person; otherwise or else fresh numbers, which
    are unresolved; some people represent several enterprises).

    Findings are counted on rows without a defect (a quarantined row has no findings):
    `orphan_branch` (its parent is not among this file's valid rows) and `unresolved_person` (its
    representative's ID is not one of person_ids). A branch's parent is always a valid row."""

    columns = DKKD_COLUMNS
    codes = ("missing_required", "invalid_tax_code", "invalid_code", "invalid_date", "invalid_number",
             "unknown_admin_unit", "invalid_personal_id", "duplicate_key")
    DEPENDENT_SHARE = 0.15
    ORPHAN_SHARE = 0.01
    KNOWN_REP_SHARE = 0.8       # of new representatives, when person_ids are given
    REPEAT_REP_SHARE = 0.08     # a representative of an earlier enterprise again
    A = 7_654_321               # multiplier of the permutation of the seven middle digits (coprime with 10)
    POOL = 1 << 15              # recent valid enterprises (branch parents) and representatives kept: memory stays flat

    def __init__(self, g: _Gen, person_ids=None, seq: int = 1, **_):
        self.g = g
        g.ids.mode = "civil"                 # fresh representatives never share a register person's number
        g.ids.start = f"DKKD:{g.date}:{seq}"
        self.k = 0
        self.off = zlib.crc32(f"DKKD:{g.province}".encode()) % 10**7
        self.parents: list[tuple[str, str, int]] = []      # (code, name, registration day): a ring of recent
        self.n_parents = 0                                  # valid enterprises, the branches' parents
        self.suffixes: dict[str, int] = {}                  # branches made so far, per parent in the ring
        self.reps: list[tuple[str, str]] = []               # a ring of recent representatives
        self.n_reps = 0
        self.known = known_people(person_ids)
        self.known_ids = {pid for pid, _ in self.known}
        self.findings = {"orphan_branch": 0, "unresolved_person": 0}
        self.bad_keys: set[str] = set()
        self.dup: list | None = None
        rng, q = g.rng, g.quirks
        self.forms = _pool(rng, [(i, w) for i, (_, w, _, _, _) in enumerate(LEGAL_FORMS)], 1024)
        self.statuses = _pool(rng, STATUSES, 1024)
        variants = (lambda v: [(v, 11), (v.upper(), 1), (v.lower(), 1), (_bare(v), 1), (f" {v} ", 1)]) if q else \
            (lambda v: [(v, 1)])
        self.form_values = {v: _pool(rng, variants(v), 16) for v, *_ in LEGAL_FORMS}
        self.form_values.update({v: _pool(rng, variants(v), 16) for v in set(DEPENDENT_FORMS)})
        self.status_values = {v: _pool(rng, variants(v), 16) for v, _ in STATUSES}
        self.first_day = (dt.date(1991, 1, 1) - BASE_DATE).days

    # -- values

    def _code(self) -> str:
        """A fresh valid ten-digit code of the province (never used before in this file)."""
        while True:
            self.k += 1
            middle = (self.k * self.A + self.off) % 10**7
            first9 = f"{self.g.province}{middle:07d}"
            check = tax_check_digit(first9)
            if middle and check:
                return first9 + check

    def _day(self) -> int:
        g = self.g
        day = g.today - int((g.today - self.first_day) * g.rng.random() ** 2)   # more of them recent
        return g.w0 - 1 if g.w0 <= day <= g.w0 + 1 else day

    def _name(self, plain: str) -> str:
        """The name as the office sends it: often in capitals (as registered), other quirks of names."""
        g = self.g
        if not g.quirks:
            return plain
        x = g.grb(16)
        if x & 3 == 0:
            return plain.upper()
        qn = (x >> 2) & 127
        return g.quirk_name(plain, qn) if qn < g.name_q else plain

    def _capital(self) -> str:
        g = self.g
        r = g.rng.random
        amount = CAPITAL_MANTISSAS[int(r() * len(CAPITAL_MANTISSAS))] * 10 ** (8 + int(r() * 4))
        k = r()
        if k < 0.7:
            return _grouped(amount)
        if k < 0.95 or not g.quirks:
            return str(amount)
        return _grouped(amount) + ",00" if k < 0.98 else "NULL"

    def _rep(self, optional: float) -> tuple[str, str]:
        """(SO_DINH_DANH_NDD, HO_TEN_NDD) as sent (raw; the caller quotes them)."""
        g = self.g
        r = g.rng.random
        if r() < optional:
            return ("NULL" if g.quirks and r() < 0.3 else ""), ""
        if self.reps and r() < self.REPEAT_REP_SHARE:
            return self.reps[int(r() * len(self.reps))]
        if self.known and r() < self.KNOWN_REP_SHARE:
            pid, name = self.known[int(r() * len(self.known))]
            return pid, name or g.name(int(pid[3]) % 2)
        female = 1 if r() < 0.3 else 0
        return g.new_id_year(g.date.year - 25 - int(r() * 45), female), g.name(female)

    # -- rows

    def __call__(self, defect: str | None) -> list:
        g = self.g
        r = g.rng.random
        quote = g.out.quote
        if defect == "dup2":     # the same code again, with another name and address
            row = list(self.dup)
            while _nfc(row[D_NAME]).strip() == _nfc(self.dup[D_NAME]).strip():
                row[D_NAME] = quote(self._name(self._enterprise_name(r)[0]))
            while row[D_ADDR] in (self.dup[D_ADDR], "", "NULL"):
                row[D_ADDR] = quote(g.address())
            return row
        k = r()
        orphan = k < self.ORPHAN_SHARE
        if orphan or (k < self.ORPHAN_SHARE + self.DEPENDENT_SHARE and self.parents):
            row, info = self._dependent(orphan)
        else:
            row, info = self._enterprise()
        if defect:
            self._inject(defect, row)
            return row
        # a valid row: it may be a branch's parent, and its findings count
        if info is not None:
            self._remember(self.parents, self.n_parents, info)
            self.n_parents += 1
        elif orphan:
            self.findings["orphan_branch"] += 1
        rep = row[D_REP].strip()
        if rep and rep != "NULL":
            self._remember(self.reps, self.n_reps, (row[D_REP], row[D_REP_NAME]))
            self.n_reps += 1
            if rep not in self.known_ids:
                self.findings["unresolved_person"] += 1
        return row

    def _remember(self, ring: list, n: int, item) -> None:
        if len(ring) < self.POOL:
            ring.append(item)
            return
        old = ring[n % self.POOL]
        ring[n % self.POOL] = item
        if ring is self.parents:             # no more branches of a parent that left the ring
            self.suffixes.pop(old[0], None)

    def _enterprise_name(self, r) -> tuple[str, int, int, str]:
        form = self.forms[int(r() * 1024)]
        trade = int(r() * len(TRADES))
        brand = BRANDS[int(r() * len(BRANDS))]
        name = f"{LEGAL_FORMS[form][2]} {TRADES[trade][0]} {brand}"
        if r() < 0.2:
            name += " " + NAME_TAILS[int(r() * len(NAME_TAILS))]
        return name, form, trade, brand

    def _enterprise(self) -> tuple[list, tuple]:
        g = self.g
        r = g.rng.random
        quote = g.out.quote
        code = self._code()
        name, form, trade, brand = self._enterprise_name(r)
        form_name, _, _, en_suffix, abbreviation = LEGAL_FORMS[form]
        ascii_brand = _bare(brand)
        english = f"{ascii_brand} {TRADES[trade][1]} {en_suffix}" if en_suffix and r() < 0.5 else ""
        short = f"{ascii_brand.upper()} {abbreviation}" if abbreviation and r() < 0.4 else ""
        day = self._day()
        prov, ward = g.ward_for(day)
        pid, rep_name = self._rep(0.04)
        row = [code, quote(self._name(name)), quote(english), quote(short), g.pick(self.form_values[form_name]),
               g.DAYS[day], g.pick(self.status_values[self.statuses[int(r() * 1024)]]), quote(self._capital()),
               g.pick(VSIC_CODES), prov, ward, g.addresses[int(r() * 16384)], pid, quote(rep_name)]
        return row, (code, name, day)

    def _dependent(self, orphan: bool) -> tuple[list, None]:
        g = self.g
        r = g.rng.random
        quote = g.out.quote
        if orphan:    # the parent is no row of this file
            parent, parent_name, parent_day = self._code(), self._enterprise_name(r)[0], self.first_day
            n = 1
        else:
            parent, parent_name, parent_day = self.parents[int(r() * len(self.parents))]
            n = self.suffixes.get(parent, 0) + 1
            if n > 999:
                return self._enterprise()
            self.suffixes[parent] = n
        kind = DEPENDENT_FORMS[int(r() * len(DEPENDENT_FORMS))]
        name = f"{kind} {parent_name} tại {PLACES[int(r() * len(PLACES))]}"
        day = parent_day + int((g.today - parent_day) * r())
        if g.w0 <= day <= g.w0 + 1:
            day = g.w0 + 2 if g.w0 + 2 <= g.today else g.w0 - 1
        prov, ward = g.ward_for(day)
        pid, rep_name = self._rep(0.5)
        capital = "NULL" if g.quirks and r() < 0.05 else ""
        status = "Đang hoạt động" if r() < 0.9 else self.statuses[int(r() * 1024)]
        row = [f"{parent}-{n:03d}", quote(self._name(name)), "", "", g.pick(self.form_values[kind]), g.DAYS[day],
               g.pick(self.status_values[status]), capital, g.pick(VSIC_CODES), prov, ward,
               g.addresses[int(r() * 16384)], pid, quote(rep_name)]
        return row, None

    # -- defects (drawn from the defect RNG); each breaks exactly one rule

    def _inject(self, code: str, row: list) -> None:
        g = self.g
        d = g.drng
        if code == "dup1":
            self.dup = list(row)
        elif code == "missing_required":     # never the key, nor the record date (NGAY_THANH_LAP)
            row[(D_NAME, D_FORM, D_STATUS, D_WARD, D_PROV)[d.randrange(5)]] = ("", "NULL", "  ")[d.randrange(3)]
        elif code == "invalid_tax_code":
            row[D_CODE] = self._bad_code(row[D_CODE])
        elif code == "invalid_code":
            v = d.randrange(3)
            if v == 0:
                row[D_FORM] = d.choice(["Hộ kinh doanh", "Công ty TNHH", "Hợp tác xã", "CTY CP", "DNTN", "TNHH MTV"])
            elif v == 1:
                row[D_STATUS] = d.choice(["Hoạt động", "Ngừng hoạt động", "Tạm dừng", "1", "Giải thể", "NNT ngừng hoạt động"])
            else:
                row[D_VSIC] = d.choice(["469", "04690", "G4690", "46.90", "Bán buôn", "4690-1", "34100", "0000"])
        elif code == "invalid_date":
            y = row[D_DATE][6:]
            row[D_DATE] = d.choice([f"31/02/{y}", f"30/02/{y}", f"31/04/{y}", f"32/01/{y}", f"15/13/{y}",
                                    f"00/00/{y}", y, f"{y}-{row[D_DATE][3:5]}-{row[D_DATE][:2]}", "không rõ"])
        elif code == "invalid_number":
            row[D_CAPITAL] = g.out.quote(d.choice(
                ["1,5 tỷ", "500 triệu", "1.000.000.5", "10.00.000", "12,5", "-500.000.000", "1,000,000,000",
                 "100.000.000đ", "2.000.000.000,50", "1.0000.000"]))
        elif code == "unknown_admin_unit":
            if d.random() < 0.75:
                row[D_WARD] = g.bad_ward()
            else:
                row[D_PROV] = g.bad_province()
        elif code == "invalid_personal_id":
            pid = row[D_REP].strip()
            if not pid or pid == "NULL":
                female = d.randrange(2)
                pid = g.new_id_year(g.date.year - 30, female)
                row[D_REP_NAME] = g.out.quote(g.name(female))
            year = 1900 + (int(pid[3]) // 2) * 100 + int(pid[4:6])
            row[D_REP] = g.bad_personal_id(pid, year, int(pid[3]) % 2)
        else:
            raise ValueError(code)

    def _bad_code(self, code: str) -> str:
        """A malformed code made from a valid unique one (so unique too: no duplicate_key besides)."""
        d = self.g.drng
        for _ in range(20):
            if len(code) == 14:              # a dependent unit
                parent, suffix = code[:10], code[11:]
                v = d.randrange(4)
                bad = (parent + suffix if v == 0 else                                    # no hyphen
                       f"{parent[:9]}{(int(parent[9]) + 1 + d.randrange(9)) % 10}-{suffix}" if v == 1 else
                       f"{parent[:4]}.{parent[4:7]}.{parent[7:]}-{suffix}" if v == 2 else   # dots
                       f"{self._code()}-000")                                            # suffix 000
            else:
                v = d.randrange(6)
                if v == 0:                   # wrong check digit
                    bad = code[:9] + str((int(code[9]) + 1 + d.randrange(9)) % 10)
                elif v == 1:                 # Excel dropped the leading zero / a digit lost
                    bad = code[1:] if code[0] == "0" else code[:9]
                elif v == 2:
                    bad = f"{code[:4]}.{code[4:7]}.{code[7:]}"
                elif v == 3:
                    bad = f"{code[:4]} {code[4:7]} {code[7:]}"
                elif v == 4:                 # a letter O typed for a zero, or an extra digit
                    bad = "O" + code[1:] if code[0] == "0" else code + "0"
                else:                        # a nine-digit prefix for which no check digit exists
                    s8 = sum(w * int(x) for w, x in zip(TAX_WEIGHTS, code[:8]))
                    n9 = (-s8 * 4) % 11
                    bad = code[:8] + str(n9) + code[9] if n9 < 10 else code[:9] + "X"
            if bad not in self.bad_keys and not is_valid_tax_code(bad):
                self.bad_keys.add(bad)
                return bad
        raise RuntimeError("no unique malformed enterprise code found")


class _XlsxOut:
    """A delivery written as an Excel workbook (.xlsx, one sheet named after the feed) by openpyxl
    in write-only mode (rows streamed to a temporary file: memory does not grow), with an optional
    title row and an empty row above the header. As Excel holds them, half of the rows (at random)
    carry typed cells: a valid date as a date cell (a timestamp as a date-time cell), VON_DIEU_LE's
    plain digits as a number, province and ward codes as numbers (their leading zeros lost). The
    zip is re-packed with fixed timestamps: the same arguments give the same bytes."""

    delimiter = ","
    nl = "\n"
    join = list

    def __init__(self, path: Path, sheet: str, title_row: str | None, date: dt.date, seed: int):
        from openpyxl import Workbook

        self.path = path
        self.part = path.with_name(f".{path.name}.part")
        self.stamp = dt.datetime.combine(date, dt.time(7, 30))
        self.wb = Workbook(write_only=True)
        self.wb.properties.created = self.wb.properties.modified = self.stamp
        self.wb.properties.creator = "corehub generate"
        self.ws = self.wb.create_sheet(sheet)
        if title_row:
            self.ws.append([title_row])
            self.ws.append([])
        self.rng = random.Random(f"cells:{seed}")
        self.kinds: dict[int, str] | None = None
        self.table = None

    def quote(self, value: str) -> str:
        return value

    def line(self, values) -> list:
        values = list(values)
        if self.kinds is None:               # the header: which columns get typed cells
            self.kinds = {}
            for i, name in enumerate(values):
                n = name.strip().upper()
                kind = ("timestamp" if n == "NGAY_CAP_NHAT" else "date" if n.startswith("NGAY_") else
                        "number" if n == "VON_DIEU_LE" else "code2" if n.startswith("MA_TINH") else
                        "code5" if n.startswith("MA_XA") else None)
                if kind:
                    self.kinds[i] = kind
        return values

    def _typed(self, row: list):
        if self.rng.random() < 0.5:
            return row
        row = list(row)
        for i, kind in self.kinds.items():
            v = row[i] if i < len(row) else ""
            if kind in ("date", "timestamp"):
                try:
                    if kind == "date" and len(v) == 10:
                        row[i] = dt.datetime.strptime(v, "%d/%m/%Y").date()
                    elif kind == "timestamp" and len(v) == 19:
                        row[i] = dt.datetime.strptime(v, "%d/%m/%Y %H:%M:%S")
                except ValueError:
                    pass
            elif v.isascii() and v.isdigit():
                width = {"code2": 2, "code5": 5}.get(kind)
                if (width and len(v) == width) or (kind == "number" and (v == "0" or v[0] != "0") and len(v) < 16):
                    row[i] = int(v)
        return row

    def write_lines(self, lines: list) -> None:
        append, typed = self.ws.append, self._typed
        for row in lines:
            append(typed(row))

    def write(self, text: str) -> None:
        for _ in range(text.count("\n")):
            self.ws.append([])

    def close(self, complete: bool) -> None:
        if complete:
            self.wb.save(self.part)
            _repack_zip(self.part, self.stamp)
            os.replace(self.part, self.path)
        else:
            self.part.unlink(missing_ok=True)


def _repack_zip(path: Path, stamp: dt.datetime) -> None:
    """Rewrite a zip with one fixed timestamp on every member (openpyxl stamps them with now)."""
    import shutil
    import zipfile

    tmp = path.with_name(path.name + ".repack")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
        for info in src.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=stamp.timetuple()[:6])
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16
            if info.filename == "docProps/core.xml":      # openpyxl writes the time of saving as modified
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + f"{stamp:%Y-%m-%dT%H:%M:%SZ}".encode(),
                              src.read(info))
                dst.writestr(member, data)
                continue
            with src.open(info) as fin, dst.open(member, "w", force_zip64=info.file_size > 1 << 31) as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
    os.replace(tmp, path)


# ===================================================================== TDDAT: land parcels

TDDAT_COLUMNS = ("MA_XA", "SO_TO", "SO_THUA", "DIEN_TICH", "MUC_DICH", "DIA_CHI", "HINH_THE")
T_WARD, T_SHEET, T_NO, T_AREA, T_USE, T_ADDR, T_GEOM = range(7)
LAND_USES = [("ONT", 40), ("ODT", 20), ("LUC", 10), ("CLN", 8), ("ONT+CLN", 8), ("BHK", 4), ("NTS", 3),
             ("TMD", 2), ("SKC", 2), ("LUK+NTS", 1), ("DGT", 1), ("HNK", 1)]
CELL = 0.0002            # a parcel's grid cell in degrees (about 21 m x 22 m)
MARGIN = 0.00001         # parcels keep this far inside their cell: neighbours never touch
PER_ROW, ROWS_PER_SHEET = 40, 25
EARTH_R = 6_371_007.2    # authalic radius: the spherical area is within a fraction of a percent of the geodesic


def parcel_key(communes: tuple[str, ...], k: int) -> tuple[str, str, str]:
    """(MA_XA, SO_TO, SO_THUA) of the k-th parcel of a province's generated land register: parcels
    go round the survey communes, 1,000 to a map sheet. GCN deliveries refer to these."""
    n = len(communes)
    idx = k // n
    return communes[k % n], str(idx // (PER_ROW * ROWS_PER_SHEET) + 1), str(idx % (PER_ROW * ROWS_PER_SHEET) + 1)


def survey_communes(province: str) -> tuple[str, ...]:
    """The province's pre-2025 communes (the cadastral surveys' codes), in a fixed order."""
    return tuple(sorted({code for code, _ in _refs(province).legacy_wards}))


class _Tddat:
    """TDDAT: the land register of one province, as CSV with WKT or as a GeoJSON FeatureCollection
    (file_type). Parcels are rectangles (some with a fifth vertex, some MultiPolygons of two) on a
    grid per survey commune, never touching; the k-th row is parcel_key(k). DIEN_TICH agrees with
    the geometry within 1% unless an area_mismatch is planted (25% off).

    Findings are counted on rows without a defect: `area_mismatch`, and `parcel_overlap` (a parcel
    moved half a cell onto its valid left neighbour: the finding on both)."""

    columns = TDDAT_COLUMNS
    codes = ("missing_required", "unknown_admin_unit", "invalid_parcel_ref", "invalid_number", "invalid_code",
             "invalid_geometry", "duplicate_key")
    MISMATCH_SHARE = 0.01
    OVERLAP_SHARE = 0.005
    MULTI_SHARE = 0.02

    def __init__(self, g: _Gen, **_):
        self.g = g
        self.geojson = isinstance(g.out, _GeojsonOut)
        self.communes = survey_communes(g.province)
        self.origin = {c: (102.6 + (i % 60) * 0.1, 8.7 + (i // 60 % 140) * 0.1) for i, c in enumerate(self.communes)}
        self.k = 0
        self.odd = 0                       # a counter for defect keys that can never collide
        self.left_ok: dict[str, bool] = {}  # per commune: its previous parcel is loaded where it belongs
        self.uses = _pool(g.rng, LAND_USES, 1024)
        self.findings = {"area_mismatch": 0, "parcel_overlap": 0}
        self.dup: list | None = None

    def _rect(self, x0, y0, x1, y1, bump=False) -> list[tuple[float, float]]:
        ring = [(x0, y0), (x1, y0), (x1, y1)]
        if bump:   # a fifth vertex, just above the top edge (inside the margin)
            ring.append(((x0 + x1) / 2, y1 + MARGIN / 2))
        return ring + [(x0, y1), (x0, y0)]

    def _geometry(self, polygons: list[list[tuple[float, float]]]) -> str:
        if self.geojson:
            coords = [[[[round(x, 7), round(y, 7)] for x, y in ring]] for ring in polygons]
            if len(coords) == 1:
                return '{"type":"Polygon","coordinates":' + json.dumps(coords[0], separators=(",", ":")) + "}"
            return '{"type":"MultiPolygon","coordinates":' + json.dumps(coords, separators=(",", ":")) + "}"
        rings = ["((" + ", ".join(f"{x:.7f} {y:.7f}" for x, y in ring) + "))" for ring in polygons]
        return self.g.out.quote(f"POLYGON {rings[0]}" if len(rings) == 1 else "MULTIPOLYGON (" + ", ".join(rings) + ")")

    @staticmethod
    def _area(ring: list[tuple[float, float]]) -> float:
        """Spherical area of a lon/lat ring (shoelace in x = R lon cos-free, y = R sin lat): equal-area."""
        s = 0.0
        for (x0, y0), (x1, y1) in zip(ring, ring[1:]):
            s += math.radians(x0) * math.sin(math.radians(y1)) - math.radians(x1) * math.sin(math.radians(y0))
        return abs(s) / 2 * EARTH_R ** 2

    def _area_text(self, area: float) -> str:
        g = self.g
        text = f"{area:.1f}".replace(".", ",")
        if area >= 1000 and g.quirks and g.rng.random() < 0.5:
            whole, frac = text.split(",")
            text = f"{int(whole):,}".replace(",", ".") + "," + frac
        return g.out.quote(text)

    @staticmethod
    def _area_value(text: str) -> float:
        return float(text.strip('"').replace(".", "").replace(",", "."))

    def __call__(self, defect: str | None) -> list:
        g = self.g
        r = g.rng.random
        if defect == "dup2":
            row = list(self.dup)
            row[T_AREA] = self._area_text(self._area_value(row[T_AREA]) + 7)
            return row
        k = self.k
        self.k += 1
        ward, sheet, no = parcel_key(self.communes, k)
        idx = k // len(self.communes)
        p = idx % (PER_ROW * ROWS_PER_SHEET)
        col, line = p % PER_ROW, p // PER_ROW
        ox, oy = self.origin[ward]
        x0 = ox + col * CELL + MARGIN
        y0 = oy + (int(sheet) - 1) * (ROWS_PER_SHEET + 1) * CELL + line * CELL + MARGIN
        x1, y1 = x0 + CELL - 2 * MARGIN, y0 + CELL - 2 * MARGIN
        shift = (defect is None and col > 0 and self.left_ok.get(ward, False) and r() < self.OVERLAP_SHARE * 2)
        if shift:
            x0, x1 = x0 - CELL / 2, x1 - CELL / 2
        if r() < self.MULTI_SHARE and not shift:
            mid = (x0 + x1) / 2
            polygons = [self._rect(x0, y0, mid - MARGIN, y1), self._rect(mid + MARGIN, y0, x1, y1)]
        else:
            polygons = [self._rect(x0, y0, x1, y1, bump=r() < 0.3)]
        area = sum(self._area(ring) for ring in polygons)
        mismatch = defect is None and r() < self.MISMATCH_SHARE
        use = self.uses[int(r() * 1024)]
        if g.quirks and r() < 0.05:
            use = use.lower() if r() < 0.5 else use.replace("+", " + ")
        row = [f" {ward} " if g.quirks and r() < 0.02 else ward, sheet, no,
               self._area_text(area * (1.25 if mismatch else 1.0)), use,
               g.addresses[int(r() * 16384)], self._geometry(polygons)]
        if defect:
            self.left_ok[ward] = False
            self._inject(defect, row, polygons)
            return row
        self.left_ok[ward] = not shift
        if shift:
            self.findings["parcel_overlap"] += 2
        if mismatch:
            self.findings["area_mismatch"] += 1
        return row

    def _inject(self, code: str, row: list, polygons) -> None:
        g = self.g
        d = g.drng
        self.odd += 1
        odd_no = str(90000 + self.odd % 10000)           # real parcels are numbered 1..1000 per sheet
        odd_sheet = str(self.odd // 10000 % 9999 + 1)
        if code == "dup1":
            self.dup = list(row)
        elif code == "missing_required":                 # never the key
            at = (T_AREA, T_USE, T_GEOM)[d.randrange(3)]
            row[at] = "" if at == T_GEOM else ("", "NULL", "  ")[d.randrange(3)]
        elif code == "unknown_admin_unit":
            row[T_WARD], row[T_SHEET], row[T_NO] = g.bad_ward(), odd_sheet, odd_no
        elif code == "invalid_parcel_ref":
            row[T_SHEET], row[T_NO] = (odd_sheet, f"{odd_no}A") if d.random() < 0.5 else (f"T{odd_sheet}", odd_no)
        elif code == "invalid_number":
            area = self._area_value(row[T_AREA])
            row[T_AREA] = g.out.quote(d.choice([f"{area:.1f}", f"{area:.0f} m2", "-50", "0", "khoảng 300", "1,2,3"]))
        elif code == "invalid_code":
            row[T_USE] = g.out.quote(d.choice(["ONT+XYZ", "ONT+ONT", "ONT,CLN", "Đất ở", "ONT/CLN", "OTN"]))
        elif code == "invalid_geometry":
            (x0, y0), (x1, _), (_, y1) = polygons[0][0], polygons[0][1], polygons[0][2]
            v = d.randrange(4)
            if v == 0:      # a bow tie: its corners in the wrong order
                row[T_GEOM] = self._geometry([[(x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0)]])
            elif v == 1:    # projected VN-2000 metres instead of longitude/latitude
                row[T_GEOM] = self._geometry([self._rect(587000.0, 2325000.0, 587020.0, 2325020.0)])
            elif v == 2:    # a point
                row[T_GEOM] = (f'{{"type":"Point","coordinates":[{x0:.7f},{y0:.7f}]}}' if self.geojson
                               else f"POINT ({x0:.7f} {y0:.7f})")
            else:           # a ring of two points
                row[T_GEOM] = (f'{{"type":"Polygon","coordinates":[[[{x0:.7f},{y0:.7f}],[{x0:.7f},{y0:.7f}]]]}}'
                               if self.geojson else g.out.quote(f"POLYGON (({x0:.7f} {y0:.7f}, {x1:.7f} {y1:.7f}))"))
        else:
            raise ValueError(code)


class _GeojsonOut:
    """A TDDAT delivery as a GeoJSON FeatureCollection: each 'line' is one feature, its properties
    the header's names (in the header's order and spelling), HINH_THE its geometry."""

    def __init__(self, path: Path):
        self.path = path
        self.part = path.with_name(f".{path.name}.part")
        self.fh = open(self.part, "w", encoding="utf-8", newline="", buffering=1 << 20)
        self.fh.write('{"type":"FeatureCollection","name":"TDDAT","features":[\n')
        self.header: list[str] = []
        self.nl = "\n"
        self.first = True

    def line(self, values) -> str:
        self.header = list(values)
        self.geom_at = [h.strip().upper() for h in self.header].index("HINH_THE")
        return ""                      # the header is no feature

    def quote(self, value: str) -> str:
        return value

    def join(self, values) -> str:
        props = ",".join(f"{json.dumps(h, ensure_ascii=False)}:{json.dumps(v, ensure_ascii=False)}"
                         for i, (h, v) in enumerate(zip(self.header, values)) if i != self.geom_at)
        geom = values[self.geom_at] or "null"
        return '{"type":"Feature","properties":{' + props + '},"geometry":' + geom + "}"

    def write_lines(self, lines: list[str]) -> None:
        lines = [x for x in lines if x]
        if lines:
            self.fh.write(("" if self.first else ",\n") + ",\n".join(lines))
            self.first = False

    def write(self, text: str) -> None:
        pass                           # no blank lines in JSON

    def close(self, complete: bool) -> None:
        if complete:
            self.fh.write("\n]}\n")
        self.fh.close()
        if complete:
            os.replace(self.part, self.path)
        else:
            self.part.unlink(missing_ok=True)


# ===================================================================== GCN: certificates and holders

GCN_COLUMNS = ("SO_PHAT_HANH", "SO_VAO_SO", "NGAY_CAP", "MA_XA", "SO_TO", "SO_THUA", "LOAI_CHU",
               "SO_DINH_DANH_CHU", "MA_SO_DN_CHU", "HO_TEN_CHU", "TY_LE", "TINH_TRANG")
(G_SERIAL, G_ENTRY, G_DATE, G_WARD, G_SHEET, G_NO, G_KIND, G_PID, G_ENT, G_NAME, G_SHARE,
 G_STATUS) = range(12)
CERT_STATUSES = [("Hiệu lực", 90), ("Đã thu hồi", 5), ("Đã chuyển nhượng", 5)]
SERIAL_LETTERS = ("CS", "CT", "CH", "BK", "BA", "AD")


class _Gcn:
    """GCN: land-use right certificates of one province, one row per (certificate, holder). The
    k-th certificate is on parcel_key(k) of the province's generated land register (deliver that
    TDDAT, defect-free and with at least as many rows, first). 80% of certificates have one holder,
    15% two (50 + 50), 5% three (40 + 30 + 30); a tenth of holders are organisations. Holders come
    from person_ids / enterprise_codes when given (the core's), else they are fresh (unresolved).

    A defect row is a certificate of its own with one holder, so a planted defect never leaves a
    co-holder behind. Findings (rows without a defect): unresolved_person, unresolved_enterprise,
    share_mismatch (a two-holder certificate with 60 + 30: both rows)."""

    columns = GCN_COLUMNS
    codes = ("missing_required", "invalid_serial", "invalid_date", "invalid_code", "invalid_personal_id",
             "invalid_tax_code", "invalid_number", "unknown_parcel", "duplicate_key")
    MISMATCH_SHARE = 0.02       # of two-holder certificates
    KNOWN_SHARE = 0.8

    def __init__(self, g: _Gen, person_ids=None, enterprise_codes=None, seq: int = 1, **_):
        self.g = g
        g.ids.mode = "civil"
        g.ids.start = f"GCN:{g.date}:{seq}"
        self.communes = survey_communes(g.province)
        self.k = 0
        self.pending: list[list] = []
        self.known_people = [pid for pid, _ in known_people(person_ids)]
        self.known_set = set(self.known_people)
        self.known_ents = [c for c in enterprise_codes or () if is_valid_tax_code(c)]
        self.ent_set = set(self.known_ents)
        self.fresh_ent = zlib.crc32(f"GCN:{g.province}:{seq}".encode()) % 10**6
        self.statuses = _pool(g.rng, CERT_STATUSES, 1024)
        self.findings = {"unresolved_person": 0, "unresolved_enterprise": 0, "share_mismatch": 0}
        self.first_day = (dt.date(1995, 1, 1) - BASE_DATE).days
        self.dup: list | None = None

    def _serial(self) -> str:
        c = self.k
        return f"{SERIAL_LETTERS[c // 1_000_000 % len(SERIAL_LETTERS)]} {c % 1_000_000:06d}"

    def _enterprise(self) -> str:
        if self.known_ents and self.g.rng.random() < self.KNOWN_SHARE:
            return self.known_ents[int(self.g.rng.random() * len(self.known_ents))]
        while True:
            self.fresh_ent += 1
            first9 = f"{self.g.province}{self.fresh_ent % 10**7:07d}"
            check = tax_check_digit(first9)
            if check and first9[2:] != "0000000":
                return first9 + check

    def _holder(self, org: bool, taken: set[str]) -> tuple[str, str, str, str]:
        """(LOAI_CHU, SO_DINH_DANH_CHU, MA_SO_DN_CHU, HO_TEN_CHU), not one of `taken`."""
        g = self.g
        r = g.rng.random
        while True:
            if org:
                code = self._enterprise()
                name = f"Công ty TNHH {BRANDS[int(r() * len(BRANDS))]}"
                holder = ("TC" if not g.quirks or r() < 0.9 else "tc", "", code, name)
            else:
                female = 1 if r() < 0.5 else 0
                if self.known_people and r() < self.KNOWN_SHARE:
                    pid = self.known_people[int(r() * len(self.known_people))]
                else:
                    pid = g.new_id_year(g.date.year - 25 - int(r() * 50), female)
                name = g.name(female)
                holder = ("CN", pid, "", name.upper() if g.quirks and r() < 0.2 else name)
            if (holder[1] or holder[2]) not in taken:
                taken.add(holder[1] or holder[2])
                return holder

    def _certificate(self, holders: int) -> list[list]:
        g = self.g
        r = g.rng.random
        ward, sheet, no = parcel_key(self.communes, self.k)
        serial = self._serial()
        self.k += 1
        day = self.first_day + int((g.today - self.first_day) * r())
        status = self.statuses[int(r() * 1024)]
        if g.quirks and r() < 0.05:
            status = status.upper()
        entry = f"CH{self.k:06d}" if r() < 0.7 else ""
        mismatch = holders == 2 and r() < self.MISMATCH_SHARE
        shares = {1: [("" if r() < 0.5 else "100")], 2: ["60", "30"] if mismatch else ["50", "50,0"],
                  3: ["40", "30", "30"]}[holders]
        taken: set[str] = set()
        rows = []
        for i in range(holders):
            kind, pid, ent, name = self._holder(r() < 0.1, taken)
            rows.append([serial, entry, g.DAYS[day], ward, sheet, no, kind, pid, ent, g.out.quote(name),
                         g.out.quote(shares[i]), status])
        return rows

    def __call__(self, defect: str | None) -> list:
        g = self.g
        if defect == "dup2":
            row = list(self.dup)
            row[G_NAME] = g.out.quote(_nfc(row[G_NAME]).strip('"') + " Bis")
            return row
        if defect:
            row = self._certificate(1)[0]
            self._inject(defect, row)
            return row
        if not self.pending:
            x = g.rng.random()
            holders = 1 if x < 0.8 else 2 if x < 0.95 else 3
            # only as many co-holders as rows remain for them (defects come between, on their own)
            if holders > getattr(g, "clean_rows_left", holders):
                holders = 1
            self.pending = self._certificate(holders)
            shares = [s.strip('"').replace(",", ".") for s in (row[G_SHARE] for row in self.pending)]
            if any(shares) and abs(sum(float(s or 0) for s in shares) - 100) > 1e-9:
                self.findings["share_mismatch"] += len(self.pending)
        row = self.pending.pop(0)
        if row[G_KIND].upper() == "CN" and row[G_PID] not in self.known_set:
            self.findings["unresolved_person"] += 1
        if row[G_KIND].upper() == "TC" and row[G_ENT] not in self.ent_set:
            self.findings["unresolved_enterprise"] += 1
        return row

    def _inject(self, code: str, row: list) -> None:
        g = self.g
        d = g.drng
        if code == "dup1":
            self.dup = list(row)
        elif code == "missing_required":        # never the serial nor the holder's id (the key)
            row[(G_NAME, G_STATUS, G_KIND, G_DATE)[d.randrange(4)]] = ("", "NULL", "  ")[d.randrange(3)]
        elif code == "invalid_serial":
            s = row[G_SERIAL]
            row[G_SERIAL] = d.choice([s.replace(" ", ""), s.lower(), s.replace(" ", "-"), s[:2] + " " + s[4:]])
        elif code == "invalid_date":
            y = row[G_DATE][6:]
            row[G_DATE] = d.choice([f"31/02/{y}", f"32/01/{y}", f"15/13/{y}", y, "không rõ"])
        elif code == "invalid_code":
            if d.random() < 0.5:
                row[G_KIND] = d.choice(["HGD", "CA NHAN", "1", "TO CHUC"])
            else:
                row[G_STATUS] = d.choice(["Còn hiệu lực", "Hủy", "Thế chấp"])
        elif code == "invalid_personal_id":
            female = d.randrange(2)
            pid = g.new_id_year(g.date.year - 40, female)
            row[G_KIND], row[G_ENT] = "CN", ""
            row[G_PID] = g.bad_personal_id(pid, g.date.year - 40, female)
        elif code == "invalid_tax_code":
            code10 = self._enterprise()
            row[G_KIND], row[G_PID] = "TC", ""
            row[G_ENT] = code10[:9] + str((int(code10[9]) + 1 + d.randrange(9)) % 10)
        elif code == "invalid_number":
            row[G_SHARE] = g.out.quote(d.choice(["50%", "1/2", "150", "0", "một nửa", "33.5"]))
        elif code == "unknown_parcel":
            row[G_NO] = str(90000 + d.randrange(10000))
        else:
            raise ValueError(code)


@dataclass(frozen=True)
class Feed:
    name: str
    columns: tuple[str, ...]     # canonical header, the order the row function returns values in
    codes: tuple[str, ...]       # the defects it injects, in round-robin order
    maker: Callable              # maker(gen, **options) -> row function (or object with .row)


# One entry per feed.
FEEDS: dict[str, Feed] = {
    "CUTRU": Feed("CUTRU", _Cutru.columns, _Cutru.codes, _Cutru),
    "HOTICH": Feed("HOTICH", _Hotich.columns, _Hotich.codes, _Hotich),
    "DKKD": Feed("DKKD", _Dkkd.columns, _Dkkd.codes, _Dkkd),
    "TDDAT": Feed("TDDAT", _Tddat.columns, _Tddat.codes, _Tddat),
    "GCN": Feed("GCN", _Gcn.columns, _Gcn.codes, _Gcn),
}


# ===================================================================== generate

def delivery_name(feed: str, province: str, date: dt.date, seq: int, ext: str = "csv") -> str:
    return f"{feed.upper()}_{province}_{date:%Y%m%d}_{seq:03d}.{ext}"


def _defect_plan(codes: tuple[str, ...], total: int) -> Iterator[str]:
    """Round-robin over the codes until `total` rows; a duplicate pair takes two rows
    ('dup1', 'dup2') and is skipped when only one row is left."""
    left, i = total, 0
    while left > 0:
        code = codes[i % len(codes)]
        i += 1
        if code == "duplicate_key":
            if left < 2:
                continue
            yield "dup1"
            yield "dup2"
            left -= 2
        else:
            yield code
            left -= 1


def generate(feed: str, rows: int, province: str, defect_rate: float, out_dir, *,
             date: dt.date | None = None, seq: int = 1, seed: int = 0, encoding: str = "utf-8",
             quirks: bool = True, crlf: bool = False, trailing_blank_lines: int = 0,
             repeat_header_at: int | None = None, person_ids=None, manifest: bool = False,
             file_type: str = "csv", title_row: str | None = None, enterprise_codes=None) -> dict:
    """Write one delivery file into out_dir and return its manifest (see the module doc).

    rows: data rows written (a repeated header line is not one); defect_rate: share of rows that
    carry exactly one defect (round(rows * defect_rate) rows spread at random, codes round-robin,
    a duplicate_key pair counting 2); date: the delivery date (default 2026-11-20); encoding:
    utf-8, utf-8-sig (BOM), cp1258, utf-16 (Excel "Unicode text": UTF-16 LE, BOM, tabs);
    repeat_header_at: write the header again after that many data rows; person_ids (HOTICH,
    DKKD): IDs or (ID, name) pairs to use as event subjects / legal representatives (the people
    in core.person); manifest=True also writes <file name>.manifest.json next to the file.
    file_type: csv, or xlsx (an Excel workbook written by openpyxl in write-only mode; see
    _XlsxOut; encoding and crlf do not apply); title_row: an xlsx's title, written on row 1 above
    an empty row and the header; or geojson (TDDAT only: a FeatureCollection, see _GeojsonOut).
    enterprise_codes (GCN): enterprise codes in core.enterprise, for organisation holders. A feed
    whose rows can carry findings (DKKD, TDDAT, GCN) adds "findings" to the manifest: rows without
    a defect that the pipeline loads with a finding."""
    feed = feed.upper()
    if feed not in FEEDS:
        raise ValueError(f"unknown feed {feed!r}; known: {', '.join(FEEDS)}")
    if rows < 0 or not 0 <= defect_rate <= 1:
        raise ValueError("rows must be >= 0 and defect_rate between 0 and 1")
    spec = FEEDS[feed]
    date = date or DEFAULT_DATE
    if file_type not in ("csv", "xlsx", "geojson"):
        raise ValueError("file_type must be csv, xlsx or geojson")
    if file_type == "geojson" and (feed != "TDDAT" or encoding != "utf-8" or crlf or repeat_header_at is not None
                                   or trailing_blank_lines):
        raise ValueError("geojson is for TDDAT, UTF-8, without CSV line quirks")
    if file_type == "xlsx" and (encoding != "utf-8" or crlf):
        raise ValueError("an .xlsx delivery has no text encoding or line ends to choose")
    if title_row is not None and file_type != "xlsx":
        raise ValueError("a title row is for an .xlsx delivery")
    _refs(province)                      # fails early on an unknown province
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / delivery_name(feed, province, date, seq, file_type)

    out = (_Out(path, encoding, crlf) if file_type == "csv" else _GeojsonOut(path) if file_type == "geojson"
           else _XlsxOut(path, feed, title_row, date, seed))
    complete = False
    try:
        g = _Gen(province, date, seed, quirks, encoding, out)
        maker = spec.maker(g, person_ids=person_ids, seq=seq, enterprise_codes=enterprise_codes)
        make = getattr(maker, "row", maker)   # the row function

        hrng = random.Random(f"header:{seed}")
        columns = list(spec.columns)
        order = list(range(len(columns)))
        header = list(columns)
        if quirks:                       # any column order; names in any case, with spaces
            hrng.shuffle(order)
            header = []
            for j in order:
                h, k = columns[j], hrng.random()
                header.append(h.lower() if k < 0.15 else f" {h} " if k < 0.25 else h.title() if k < 0.3 else h)
        reorder = operator.itemgetter(*order)
        join = out.join
        header_line = out.line(header)

        n_defects = round(rows * defect_rate)
        plan = _defect_plan(spec.codes, n_defects)
        counts: dict[str, int] = {}
        drandom = g.drng.random
        left = n_defects
        lines = [header_line]
        append = lines.append
        for i in range(rows):
            if i == repeat_header_at:
                append(header_line)
            if left and drandom() * (rows - i) < left:      # selection sampling: exactly n_defects
                code = next(plan)
                left -= 1
                key = "duplicate_key" if code in ("dup1", "dup2") else code
                counts[key] = counts.get(key, 0) + 1
                append(join(reorder(make(code))))
            else:
                g.clean_rows_left = rows - i - left     # co-holders of a certificate fit in what is left
                append(join(reorder(make(None))))
            if not i & 4095:
                out.write_lines(lines)
                lines.clear()
        if repeat_header_at is not None and repeat_header_at >= rows:
            append(header_line)
        out.write_lines(lines)
        out.write(out.nl * trailing_blank_lines)
        complete = True
    finally:
        out.close(complete)
    result = {"path": str(path), "feed": feed, "province": province, "rows_read": rows,
              "rejections": {c: counts[c] for c in spec.codes if c in counts},
              "defect_rows": sum(counts.values())}
    if hasattr(maker, "findings"):
        result["findings"] = {k: n for k, n in maker.findings.items() if n}
    if manifest:
        Path(f"{path}.manifest.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                                                 encoding="utf-8")
    return result


# ===================================================================== reading files back

def sniff(path) -> tuple[str, str, str]:
    """(Python codec, delimiter, line end) of a delivery file."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE):
        encoding = "utf-16"
    elif head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    else:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "cp1258"
    first = head.decode(encoding, errors="ignore").lstrip("\ufeff").split("\n", 1)[0]
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    return encoding, delimiter, "\r\n" if first.endswith("\r") else "\n"


def _norm_header(names) -> list[str]:
    return [h.strip().lstrip("\ufeff").strip().upper() for h in names]


def _data_lines(fh, header_line: str) -> Iterator[str]:
    """Lines after the header, without blank lines and repeated header lines."""
    for line in fh:
        s = line.rstrip("\r\n")
        if s and s != header_line and s.strip():
            yield s


def read_rows(path) -> Iterator[list[str]]:
    """The header (first item) and the data records of a delivery written by this module, values
    exactly as sent; blank lines and repeated header lines are skipped. An .xlsx delivery's values
    are the text its typed cells stand for (see _XlsxOut); rows above the header are skipped."""
    if str(path).endswith(".xlsx"):
        yield from _xlsx_rows(path)
        return
    encoding, delimiter, _ = sniff(path)
    with open(path, encoding=encoding, newline="") as fh:
        header_line = fh.readline().rstrip("\r\n").lstrip("\ufeff")
        yield next(csv.reader([header_line], delimiter=delimiter))
        yield from csv.reader(_data_lines(fh, header_line), delimiter=delimiter)


def _xlsx_rows(path) -> Iterator[list[str]]:
    """read_rows() of a workbook written by _XlsxOut (read with python-calamine, a reader
    independent of the pipeline's): the header is the first row with more than one value."""
    from python_calamine import CalamineWorkbook

    def text(v, width: int | None) -> str:
        if isinstance(v, dt.datetime):
            return f"{v:%d/%m/%Y}" if v.time() == dt.time() else f"{v:%d/%m/%Y %H:%M:%S}"
        if isinstance(v, dt.date):
            return f"{v:%d/%m/%Y}"
        if isinstance(v, bool):
            return "TRUE" if v else "FALSE"
        if isinstance(v, (int, float)):
            t = str(int(v)) if float(v).is_integer() else str(v)
            return t.zfill(width) if width else t
        return "" if v is None else str(v)

    with CalamineWorkbook.from_path(str(path)) as wb:
        rows = wb.get_sheet_by_index(0).to_python(skip_empty_area=False)
    header, widths = None, {}
    for raw in rows:
        if header is None:
            if sum(1 for v in raw if v not in ("", None)) > 1:
                header = [text(v, None) for v in raw]
                while header and header[-1] == "":
                    header.pop()
                for i, h in enumerate(header):
                    n = h.strip().upper()
                    widths[i] = 2 if n.startswith("MA_TINH") else 5 if n.startswith("MA_XA") else None
                yield header
            continue
        values = [text(v, widths.get(i)) for i, v in enumerate(raw[:len(header)])]
        values += [""] * (len(header) - len(values))
        if any(v.strip() for v in values) and values != header:
            yield values


def read_delivery(path) -> Iterator[dict[str, str]]:
    """Data rows of a delivery as {COLUMN (upper case, trimmed): value as sent}."""
    it = read_rows(path)
    header = _norm_header(next(it))
    for rec in it:
        yield dict(zip(header, rec))


# ===================================================================== weekly snapshots

_NAME = re.compile(r"^(?P<feed>[A-Za-z]+)_(?P<province>\d{2})_(?P<date>\d{8})_(?P<seq>\w+)\.csv$")


def snapshot_changes(src_path, out_dir, *, changed: float = 0.01, removed: float = 0.005,
                     new: float = 0.005, seed: int = 1, date: dt.date | None = None, seq: int = 2) -> dict:
    """Next week's CUTRU snapshot of a valid one (generated with defect_rate 0), streaming.

    Of the rows_read persons, round(rows_read * changed) change (moved to another ward and
    address, name corrected, moved to a household of their own, or ethnicity / old ID card
    corrected; NGAY_CAP_NHAT set to a day between the old and the new delivery date) and
    round(rows_read * removed) disappear; round(rows_read * new) newcomers (with personal ID
    numbers no snapshot of the province has used, NGAY_CAP_NHAT in the same week) are inserted
    at random places. Unchanged rows are copied byte for byte. The new file keeps the source's
    encoding, delimiter, line ends and header (repeated headers and blank lines are dropped);
    `date` defaults to the source's date + 7 days. Returns {"path", "rows_read", "changed",
    "removed", "new", "unchanged"}; rows written = changed + new + unchanged."""
    src = Path(src_path)
    m = _NAME.match(src.name)
    if not m or m["feed"].upper() != "CUTRU":
        raise ValueError(f"{src.name}: not a CUTRU delivery file name")
    province = m["province"]
    old_date = dt.datetime.strptime(m["date"], "%Y%m%d").date()
    date = date or old_date + dt.timedelta(days=7)
    if date <= old_date:
        raise ValueError("the new snapshot must be dated after the source")
    encoding, delimiter, newline = sniff(src)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / delivery_name("CUTRU", province, date, seq)
    if path.resolve() == src.resolve():
        raise ValueError("the new snapshot would overwrite its source")

    # pass 1: count the persons; note the numbers that lie where newcomers are numbered
    probe = _Ids(province, "newcomer")
    taken: set[str] = set()
    n = 0
    rows = read_rows(src)
    norm = _norm_header(next(rows))
    col = {name: norm.index(name) for name in CUTRU_COLUMNS}
    ci = col["SO_DINH_DANH"]
    for rec in rows:
        n += 1
        pid = rec[ci].strip()
        if is_valid_personal_id(pid) and probe.in_newcomer_range(pid):
            taken.add(pid)

    n_changed, n_removed, n_new = round(n * changed), round(n * removed), round(n * new)
    if n_changed + n_removed > n:
        raise ValueError("changed + removed exceed the persons in the snapshot")
    counts = {"changed": 0, "removed": 0, "new": 0, "unchanged": 0}
    out = _Out(path, encoding, newline == "\r\n")
    complete = False
    try:
        if out.delimiter != delimiter:
            raise ValueError(f"{src.name}: delimiter {delimiter!r} does not match its encoding")
        g = _Gen(province, date, seed, True, encoding, out, id_mode="newcomer",
                 id_start=date.toordinal() * 7919 + seed, taken=taken)
        first_day = (old_date - BASE_DATE).days
        maker = _Cutru(g, era=_recent(g, first_day))
        maker.households = 10**7 + zlib.crc32(f"{date}:{seq}".encode()) % 10**7   # fresh SO_HO numbers
        reorder = operator.itemgetter(*[CUTRU_COLUMNS.index(name) for name in norm])
        join = out.delimiter.join
        r = g.rng.random
        left_c, left_r, left_n = n_changed, n_removed, n_new
        with open(src, encoding=encoding, newline="") as fh:
            header_line = fh.readline().rstrip("\r\n").lstrip("\ufeff")
            lines = [header_line]
            append = lines.append
            i = 0
            for line in _data_lines(fh, header_line):
                remaining = n - i
                i += 1
                if left_n and r() * remaining < left_n:
                    left_n -= 1
                    counts["new"] += 1
                    append(join(reorder(maker(None))))
                k = r() * remaining
                if k < left_c:
                    left_c -= 1
                    counts["changed"] += 1
                    rec = next(csv.reader([line], delimiter=delimiter))
                    append(out.line(_change(g, maker, rec, col, first_day)))
                elif k < left_c + left_r:
                    left_r -= 1
                    counts["removed"] += 1
                else:
                    counts["unchanged"] += 1
                    append(line)
                if len(lines) >= 4096:
                    out.write_lines(lines)
                    lines.clear()
            if i != n:
                raise RuntimeError(f"{src.name} changed while it was read")
            while left_n:    # only when more newcomers than persons were asked for
                left_n -= 1
                counts["new"] += 1
                append(join(reorder(maker(None))))
            out.write_lines(lines)
        complete = True
    finally:
        out.close(complete)
    return {"path": str(path), "rows_read": n, **counts}


def _recent(g: _Gen, first_day: int) -> tuple[int, int]:
    """Days from the old snapshot's date to the day before the new one, on one side of the
    reorganisation (30/06 and 01/07/2025 excluded)."""
    lo, hi = first_day, g.today
    if lo <= g.w0 + 1 and hi >= g.w0:
        if hi >= g.w0 + 2:
            lo = g.w0 + 2
        else:
            hi = g.w0 - 1
    return lo, max(lo, hi)


def _current_ward(g: _Gen, code: str, day: int) -> str:
    """The current ward a sent code means on that day (as the pipeline conforms it)."""
    code = code.strip()
    if code in g.refs.successor and (day < g.w0 or code not in _national_current_wards()):
        return g.refs.successor[code]
    return code


@functools.lru_cache(maxsize=None)
def _national_current_wards() -> frozenset:
    from .refdata import admin_unit_rows

    return frozenset(r[0] for r in admin_unit_rows() if r[1] == "ward" and r[6] is None)


def _conformed_name(name: str) -> str:
    """A name as the pipeline stores it: NFC, spaces collapsed, ALL CAPS to title case."""
    text = " ".join(_nfc(name).split())
    return text.title() if text.isupper() else text


def _ts_day(g: _Gen, ts: str) -> int:
    """Day index of a dd/mm/yyyy timestamp."""
    d = ts.strip()[:10]
    return (dt.date(int(d[6:10]), int(d[3:5]), int(d[:2])) - BASE_DATE).days


def _change(g: _Gen, maker: _Cutru, rec: list[str], col: dict[str, int], first_day: int) -> list[str]:
    """A changed version of a person's row (raw values: the caller quotes the record)."""
    rec = list(rec)
    r = g.rng.random
    lo, hi = _recent(g, first_day)
    day = lo + int(r() * (hi - lo + 1))
    female = 1 if _fold(rec[col["GIOI_TINH"]]) == "nu" else 0
    k = r()
    if k < 0.5:      # moved to another ward of the province (another ward once conformed, too)
        old_code = rec[col["MA_XA_TT"]]
        old = _current_ward(g, old_code, _ts_day(g, rec[col["NGAY_CAP_NHAT"]]))
        while rec[col["MA_XA_TT"]] == old_code or _current_ward(g, rec[col["MA_XA_TT"]], day) == old:
            rec[col["MA_TINH_TT"]], rec[col["MA_XA_TT"]] = g.ward_for(day)
        rec[col["DIA_CHI_TT"]] = g.address()
    else:
        # a pre-2025 ward code written before the reform becomes its successor when the record
        # is edited after it (a code used in both eras would otherwise change meaning)
        ward = rec[col["MA_XA_TT"]].strip()
        if day > g.w0 and _ts_day(g, rec[col["NGAY_CAP_NHAT"]]) < g.w0 and ward in g.refs.successor:
            rec[col["MA_TINH_TT"]], rec[col["MA_XA_TT"]] = g.province, g.refs.successor[ward]
        if k < 0.7:      # name corrected (same family name)
            old = rec[col["HO_TEN"]]
            words = _nfc(old).split()
            family = words[0].title() if words else None
            while _conformed_name(rec[col["HO_TEN"]]) == _conformed_name(old):
                rec[col["HO_TEN"]] = g.name(female, family)
        elif k < 0.85:   # moved to a household of their own
            maker.households += 1
            rec[col["SO_HO"]] = f"{g.province}{(maker.households * 7919 + maker.hh_off) % 100000000:08d}"
            rec[col["QUAN_HE_CHU_HO"]] = g.pick(g.relv[HEAD])
        else:            # ethnicity corrected, old ID card dropped
            old = rec[col["DAN_TOC"]].strip()
            while rec[col["DAN_TOC"]].strip() == old:
                rec[col["DAN_TOC"]] = g.pick(ETHNIC)
            rec[col["SO_CMND"]] = ""
    rec[col["NGAY_CAP_NHAT"]] = g.timestamp(day, day)
    return rec


# ===================================================================== command line

def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m pipelines.generate",
                                description="Write a sample agency delivery with known defects.")
    p.add_argument("feed", choices=sorted(FEEDS))
    p.add_argument("rows", type=int)
    p.add_argument("province")
    p.add_argument("out_dir")
    p.add_argument("--defect-rate", type=float, default=0.01)
    p.add_argument("--date", type=dt.date.fromisoformat, default=None)
    p.add_argument("--seq", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoding", choices=ENCODINGS, default="utf-8")
    p.add_argument("--no-quirks", action="store_true")
    p.add_argument("--crlf", action="store_true")
    p.add_argument("--manifest", action="store_true")
    p.add_argument("--xlsx", action="store_true", help="write an Excel workbook instead of a CSV file")
    p.add_argument("--title-row", default=None, help="(--xlsx) a title on row 1, above the header")
    p.add_argument("--geojson", action="store_true", help="(TDDAT) write a GeoJSON FeatureCollection")
    a = p.parse_args(argv)
    t = time.perf_counter()
    res = generate(a.feed, a.rows, a.province, a.defect_rate, a.out_dir, date=a.date, seq=a.seq,
                   seed=a.seed, encoding=a.encoding, quirks=not a.no_quirks, crlf=a.crlf, manifest=a.manifest,
                   file_type="xlsx" if a.xlsx else "geojson" if a.geojson else "csv", title_row=a.title_row)
    secs = time.perf_counter() - t
    res.update(seconds=round(secs, 2), rows_per_second=round(a.rows / secs) if secs else None,
               bytes=Path(res["path"]).stat().st_size)
    print(json.dumps(res, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
