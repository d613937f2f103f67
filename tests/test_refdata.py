"""ref.admin_unit built from the data shipped in vietnamadminunits 1.0.4 and vietnam-provinces 2025.10.1."""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

try:
    from pipelines import refdata
except ModuleNotFoundError:  # plain `pytest` without the project installed or a rootdir conftest
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipelines import refdata

PG_URL = "postgresql://root@127.0.0.1:5432/test"
REFORM = dt.date(2025, 7, 1)

DDL = """
create table ref.admin_unit (
    code text not null, level text not null check (level in ('province','district','ward')),
    name text not null, province_code text not null, district_code text,
    valid_from date, valid_to date, successor_code text, partial_merge boolean not null default false);
create unique index admin_unit_key on ref.admin_unit (level, code, coalesce(valid_from, '0001-01-01'));
"""


@pytest.fixture(scope="module")
def rows():
    return refdata.admin_unit_rows()


def _pick(rows, *, legacy: bool, level: str):
    return [r for r in rows if (r[5] is None) == legacy and r[1] == level]


def _by_code(rows, *, legacy: bool, level: str):
    return {r[0]: r for r in _pick(rows, legacy=legacy, level=level)}


def test_counts_per_level_and_era(rows):
    counts = Counter(("legacy" if r[5] is None else "current", r[1]) for r in rows)
    assert counts == {
        ("legacy", "province"): 63,
        ("legacy", "district"): 696,
        # admin_units_legacy has 10,040 rows, five of which are island districts without wards
        ("legacy", "ward"): 10_035,
        ("current", "province"): 34,
        ("current", "ward"): 3_321,
    }
    assert len(rows) == 14_149


def test_row_shape_and_validity(rows):
    for r in rows:
        assert len(r) == len(refdata.COLUMNS) == 9
        code, level, name, pcode, dcode, vfrom, vto, succ, partial = r
        assert name and name == name.strip() and "  " not in name
        assert len(code) == {"province": 2, "district": 3, "ward": 5}[level] and code.isdigit()
        assert isinstance(partial, bool)
        if vfrom is None:
            assert vto == REFORM
        else:
            assert (vfrom, vto, succ, partial, dcode) == (REFORM, None, None, False, None)
        if level == "province":
            assert pcode == code and dcode is None
        if level == "district":
            assert succ is None and dcode is None and not partial
        if level == "ward" and vfrom is None:
            assert len(dcode) == 3


def test_codes_unique_within_level_and_era(rows):
    keys = [(r[1], r[0], r[5]) for r in rows]
    assert len(keys) == len(set(keys))
    for legacy in (True, False):
        wards = [r[0] for r in _pick(rows, legacy=legacy, level="ward")]
        assert len(wards) == len(set(wards))


def test_names_carry_their_type(rows):
    assert _by_code(rows, legacy=True, level="ward")["00001"][2] == "Phường Phúc Xá"
    assert _by_code(rows, legacy=True, level="district")["001"][2] == "Quận Ba Đình"
    assert _by_code(rows, legacy=True, level="province")["01"][2] == "Thành phố Hà Nội"
    assert _by_code(rows, legacy=False, level="province")["04"][2] == "Tỉnh Cao Bằng"
    prefixes = ("Tỉnh ", "Thành phố ", "Quận ", "Huyện ", "Thị xã ", "Phường ", "Xã ", "Thị trấn ",
                "Đặc khu ")
    assert all(r[2].startswith(prefixes) for r in rows)


def test_legacy_province_successors(rows):
    legacy = _by_code(rows, legacy=True, level="province")
    current = _by_code(rows, legacy=False, level="province")
    assert legacy["74"][2] == "Tỉnh Bình Dương" and legacy["74"][7] == "79"
    assert legacy["77"][7] == "79"  # Bà Rịa - Vũng Tàu
    assert legacy["01"][7] == "01"
    assert all(r[7] in current for r in legacy.values())
    assert set(r[7] for r in legacy.values()) == set(current)  # every current province has a predecessor


def test_legacy_ward_successors(rows):
    legacy = _by_code(rows, legacy=True, level="ward")
    current = _by_code(rows, legacy=False, level="ward")
    phuc_xa = legacy["00001"]
    assert (phuc_xa[2], phuc_xa[3], phuc_xa[4]) == ("Phường Phúc Xá", "01", "001")
    assert current[phuc_xa[7]][3] == "01"
    succs = [r[7] for r in legacy.values() if r[7] is not None]
    assert all(s in current for s in succs)
    assert sum(r[7] is None for r in legacy.values()) == 0   # none without a successor
    assert sum(r[8] for r in legacy.values()) == 471          # split between several new wards
    assert not any(r[8] for r in rows if r[5] is not None or r[1] != "ward")


def test_split_ward_takes_the_default_new_ward(rows):
    data = resources.files("vietnamadminunits") / "data"
    conv = json.loads((data / "converter_2025.json").read_text(encoding="utf-8"))
    key = "thanhphocantho_huyenthoilai_xatanthanh"
    parts = conv["DICT_PROVINCE_WARD_DIVIDED"]["thanhphocantho"][key]
    default = next(p["newWardKey"] for p in parts if p["isDefaultNewWard"])
    assert default == "xatruongthanh" and len(parts) == 2

    legacy = [r for r in _pick(rows, legacy=True, level="ward")
              if r[2] == "Xã Tân Thạnh" and r[3] == "92"]
    current = {r[2]: r[0] for r in _pick(rows, legacy=False, level="ward") if r[3] == "92"}
    # Xã Tân Thạnh of huyện Thới Lai (the only Tân Thạnh with a split entry in Cần Thơ)
    split = [r for r in legacy if r[8]]
    assert len(split) == 1
    assert split[0][7] == current["Xã Trường Thành"]


def test_provinces_of():
    codes = refdata.legacy_province_codes()
    assert len(codes) == 63 and codes == sorted(codes) and "74" in codes and "79" in codes
    total_current = total_legacy = 0
    hcm = refdata.provinces_of("79")
    for pcode in {r[3] for r in refdata.admin_unit_rows() if r[5] is not None and r[1] == "province"}:
        got = refdata.provinces_of(pcode)
        total_current += len(got["current_wards"])
        total_legacy += len(got["legacy_wards"])
    assert total_current == 3_321 and total_legacy == 10_035
    assert {lp for _, lp, _ in hcm["legacy_wards"]} == {"74", "77", "79"}
    assert all(s in hcm["current_wards"] for _, _, s in hcm["legacy_wards"])
    hcm["current_wards"].clear()  # callers get copies
    assert refdata.provinces_of("79")["current_wards"]
    with pytest.raises(KeyError):
        refdata.provinces_of("74")  # a legacy code only


def test_rows_are_cached_and_deterministic():
    a, b = refdata.admin_unit_rows(), refdata.admin_unit_rows()
    assert a == b and a is not b
    assert a[0][:2] == ("01", "province")
    assert a == sorted(a, key=lambda r: (r[5] is not None, {"province": 0, "district": 1, "ward": 2}[r[1]], r[0]))


def test_current_wards_agree_between_packages(rows):
    path = resources.files("vietnam_provinces") / "data" / "nested-divisions.json"
    vp = json.loads(path.read_text(encoding="utf-8"))
    vp_provinces = {f"{p['code']:02d}" for p in vp}
    vp_wards = {f"{w['code']:05d}" for p in vp for w in p["wards"]}
    ours = _by_code(rows, legacy=False, level="ward")
    assert vp_provinces == set(_by_code(rows, legacy=False, level="province"))
    assert len(vp_wards) == len(ours) == 3_321
    # Same wards (by province and name), but the packages disagree on 123 of their codes.
    check = refdata.crosscheck_current()
    assert (check["provinces"], check["wards"], check["matched"]) == (34, 3_321, 3_321)
    assert check["unmatched"] == []
    assert check["same_code"] == 3_198 and len(check["code_mismatches"]) == 123
    assert len(set(ours) & vp_wards) == 3_207  # some differing codes are swapped, not new
    assert ("01", "Phường Văn Miếu - Quốc Tử Giám", "00226", "00196") in check["code_mismatches"]


def test_name_key_folds_spelling_variants():
    k = refdata._name_key
    assert k("Xã Hoà An") == k("Xã Hòa An")
    assert k("Phường  Tân Lập") == k("Phường Tân Lập")
    assert k("Xã Ea H’leo") == k("Xã Ea H'Leo")
    assert k("Xã Chân Mây – Lăng Cô") == k("Xã Chân Mây - Lăng Cô")
    assert k("Xã Hòa An") != k("Xã Hóa An")


# ---------------------------------------------------------------- database

@pytest.fixture()
def scratch_db():
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"local PostgreSQL at {PG_URL} does not answer: {exc}")
    name = f"refdata_test_{os.getpid()}"
    with admin:
        admin.execute(f"drop database if exists {name}")
        admin.execute(f"create database {name}")
        try:
            yield PG_URL.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(f"drop database if exists {name} with (force)")


def test_load_is_idempotent(scratch_db, rows):
    import psycopg

    with psycopg.connect(scratch_db) as conn:
        conn.execute("create schema ref")
        conn.execute(DDL)
        first = refdata.load(conn)
        second = refdata.load(conn)
        assert first == second == len(rows)
        assert conn.execute("select count(*) from ref.admin_unit").fetchone()[0] == len(rows)
        got = conn.execute(
            "select code, level, name, province_code, district_code, valid_from, valid_to,"
            " successor_code, partial_merge from ref.admin_unit"
            " where level = 'ward' and code in ('00001', '00340') order by code, valid_from nulls first"
        ).fetchall()
        want = [r for r in rows if r[1] == "ward" and r[0] in ("00001", "00340")]
        assert got == sorted(want, key=lambda r: (r[0], r[5] is not None))
        assert conn.execute("select count(*) from ref.admin_unit where partial_merge").fetchone()[0] == 471
        conn.rollback()
