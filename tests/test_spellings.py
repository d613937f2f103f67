"""Static dictionaries (pipelines/spellings.py): every well-formed spelling of the low-cardinality
columns, conformed once per warehouse, joined by the checked pass instead of dictionaries built
from a scan of the delivery's rows. A value they do not list is conformed in the row."""
from __future__ import annotations

import copy
import csv
import datetime as dt
import unicodedata

import pytest

from pipelines import checks, migrations, spellings
from pipelines.contracts import load
from pipelines.generate import generate

CUTRU_DICTIONARIES = {"d_birth_date", "d_sex", "d_nationality", "d_relation_to_head", "d_updated_at_date",
                      "d_updated_at_hm", "d_updated_at_ss"}


def stage(db, path, table: str = "s") -> set[str]:
    """The delivery's rows in a staged table as the ingest makes one (NFC text, _row from 1, the
    header's names trimmed in lower case); returns the header's names as the contract spells them."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = [[unicodedata.normalize("NFC", v) for v in row] for row in csv.reader(fh)]
    header = [name.strip().upper() for name in rows.pop(0)]
    db.execute(f"create unlogged table {table} (_row bigint generated always as identity, "
               + ", ".join(f"{h.lower()} text" for h in header) + ")")
    with db.cursor().copy(f"copy {table} ({', '.join(h.lower() for h in header)}) from stdin") as cp:
        for row in rows:
            cp.write_row([v if v != "" else None for v in row])
    return set(header)


def checked(db, contract, present: set[str], table: str, static_tables: dict[str, str]) -> list[tuple]:
    """Every column of every row the checked pass makes of staged table s."""
    constants = {name: "01" for name in contract.derived}
    for statement in checks.repeated_sql(contract, "s", f"{table}_repeated", present, constants):
        db.execute(statement)
    db.execute(checks.checked_sql(contract, "s", table, present, constants, f"{table}_repeated",
                                  static_tables=static_tables))
    return db.execute(f"select * from {table} order by _row").fetchall()


def test_ensure_ready_builds_every_contracts_static_dictionaries(db):
    assert set(spellings.available(db, load("CUTRU"))) == CUTRU_DICTIONARIES
    # the same spellings conformed the same way are one table, whichever feed uses them
    tables = {t for (t,) in db.execute("select relname from pg_class where relnamespace = 'spelling'::regnamespace "
                                       "and relkind = 'r'")}
    assert len(tables) == len({t for c in ("CUTRU", "DKKD", "HOTICH", "GCN")
                               for t, _ in checks.static_dictionaries(load(c)).values()})
    sex = spellings.available(db, load("CUTRU"))["d_sex"]
    assert db.execute(f"select k, v, val, bad from {sex} where k in (' Nữ', 'NU', 'nam ', 'NULL', '') "
                      "order by k").fetchall() == [
        ("", None, None, False), (" Nữ", "Nữ", "female", False), ("NU", "NU", "female", False),
        ("NULL", None, None, False), ("nam ", "nam", "male", False)]


def test_a_migration_drops_the_static_dictionaries_and_ensure_ready_builds_them_again(db, warehouse, tmp_path,
                                                                                      monkeypatch):
    """A migration may change a rule that conformed them."""
    extra = tmp_path / "999_a_rule_changes.sql"
    extra.write_text("select 1;")
    monkeypatch.setattr(migrations, "migration_files", lambda: [*migrations.SQL_DIR.glob("[0-9]*.sql"), extra])
    assert migrations.migrate(db) == ["999_a_rule_changes.sql"]
    assert spellings.available(db, load("CUTRU")) == {}
    migrations.ensure_ready(warehouse)
    assert set(spellings.available(db, load("CUTRU"))) == CUTRU_DICTIONARIES


def test_a_changed_code_list_is_another_static_dictionary(db):
    """Named by a hash of what builds it: a contract changed since ensure_ready ran has no static
    dictionary for that column (its values are then found by a scan, as without any)."""
    changed = copy.deepcopy(load("CUTRU"))
    changed.code_lists["sex"]["Khác"] = "other"
    assert set(spellings.available(db, changed)) == CUTRU_DICTIONARIES - {"d_sex"}


@pytest.mark.parametrize("feed", ["CUTRU", "DKKD", "HOTICH", "GCN"])
def test_a_clean_generated_delivery_finds_every_value_in_its_static_dictionaries(db, tmp_path, feed):
    """What makes them pay: no value of a clean delivery (every quirk the offices send) is left
    to conform in the row."""
    contract = load(feed)
    made = generate(feed, 3000, "01", 0.0, tmp_path, date=dt.date(2026, 11, 20), seed=5)
    present = stage(db, made["path"])
    tables = spellings.available(db, contract)
    assert tables
    missed = {}
    for name, c, key, _ in checks._dictionary_keys(contract, present):
        if name in tables:
            value = checks._staged_key(key, c)
            missed[name] = db.execute(f"select count(*) from s left join {tables[name]} d on d.k = {value} "
                                      f"where {value} is not null and d.k is null").fetchone()[0]
    assert missed == {name: 0 for name in missed}
    assert set(missed) == set(tables)


def test_static_dictionaries_and_in_row_conformance_check_exactly_as_scanned_dictionaries(db, tmp_path):
    """A delivery with defects and odd spellings (some listed, some conformed in the row) gives
    the same checked rows, value for value, as dictionaries built from its own rows."""
    contract = load("CUTRU")
    made = generate("CUTRU", 3000, "01", 0.08, tmp_path, date=dt.date(2026, 11, 20), seed=9)
    present = stage(db, made["path"])
    odd = [" 12/03/1990", "1990 ", "00/13/1990", "31/02/1990", "12-03-1990", "1899", "00/00/2036"]
    db.execute("update s set ngay_sinh = (%s::text[])[_row %% 7 + 1], quoc_tich = case when _row %% 3 = 0 "
               "then ' vn ' else 'V N' end, gioi_tinh = case when _row %% 5 = 0 then 'Nữ  ' else gioi_tinh end, "
               "ngay_cap_nhat = case when _row %% 4 = 0 then '01/08/2025 24:00:00' when _row %% 4 = 1 "
               "then '1/8/2025 10:00:00' when _row %% 4 = 2 then '01/08/2040 10:00:00' else ngay_cap_nhat end "
               "where _row %% 10 = 0", (odd,))
    db.execute("update s set ngay_cap_nhat = case _row % 4 when 0 then '01/08/1995 10:00:00' when 1 "
               "then '01/08/2025 10:60:00' when 2 then '01/08/2025 10:00:0x' else '01/08/2025 10:00:00 ' end "
               "where _row % 10 = 5")
    static = checked(db, contract, present, "static_checked", spellings.available(db, contract))
    scanned = checked(db, contract, present, "scanned_checked", {})
    assert static == scanned
    failed = [r for r in static if r[-1]]
    assert 300 < len(failed) < 3000  # both kinds of rows are there
