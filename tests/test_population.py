"""CUTRU and HOTICH end to end against a real warehouse: every quirk loads, every defect gets its code."""
from __future__ import annotations

import csv
import datetime as dt
import unicodedata

import pytest

from pipelines.config import SQL_DIR
from pipelines.ingest import ingest_file
from population_helpers import CUTRU_HEADER, HOTICH_HEADER, csv_text, deliver, event, person, to_cp1258, write

NO_CHANGES = {"new": 0, "changed": 0, "unchanged": 0, "removed": 0}


def core_people(db):
    return db.execute("select person_id, full_name, birth_date, birth_date_precision, sex, nationality, "
                      "residence_ward_code, residence_address, household_no, death_date "
                      "from core.person order by person_id").fetchall()


def test_clean_snapshot_loads_with_exact_receipt_and_rows(warehouse, db, inbox):
    r = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, [
        person(),
        person(pid="001191000002", name="Trần Thị Bình", born="00/05/1991", sex="Nữ", ward="00001",
               updated="01/02/2024 08:00:00", address="", household="HK1", relation="Vợ"),
    ])
    assert r == {
        "delivery_id": r["delivery_id"], "feed": "CUTRU", "file": "CUTRU_01_20261120_001.csv",
        "sha256": r["sha256"], "status": "loaded", "rows_read": 2, "rows_loaded": 2, "rows_quarantined": 0,
        "rejections": {}, "findings": {}, "changes": {"new": 2, "changed": 0, "unchanged": 0, "removed": 0},
        "report": r["report"], "rejected_rows": r["rejected_rows"],
    }
    assert len(r["sha256"]) == 64
    log = db.execute("select feed, province_code, status, rows_read, rows_loaded, rows_quarantined, "
                     "stage_seconds ? 'check', stage_seconds ? 'merge' from ops.delivery_log").fetchall()
    assert log == [("CUTRU", "01", "loaded", 2, 2, 0, True, True)]
    assert core_people(db) == [
        ("001090000001", "Nguyễn Văn An", dt.date(1990, 3, 12), "day", "male", "VN", "00004", "12 Phố Huế", "HK1", None),
        # a pre-2025 ward code on a record from 2024 is conformed to its current successor
        ("001191000002", "Trần Thị Bình", dt.date(1991, 5, 1), "month", "female", "VN", "00097", None, "HK1", None),
    ]


def test_every_defect_gets_its_code(warehouse, db, inbox):
    rows = [
        person(pid="001090000001"),                                          # fine
        person(pid="001090000002", name=""),                                 # missing_required
        person(pid="001090000003", born="31/02/1990"),                       # invalid_date
        person(pid="001090000004", updated="2025-08-01"),                    # invalid_date (timestamp)
        person(pid="12345"),                                                 # invalid_personal_id
        person(pid="099090000006"),                                          # invalid_personal_id: no province 99
        person(pid="001190000007", sex="Nam"),                               # id_mismatch: digit 4 says female
        person(pid="001080000008", born="12/03/1990"),                       # id_mismatch: year digits 08
        person(pid="001090000009", ward="99999"),                            # unknown_admin_unit
        person(pid="001090000010", province="99"),                           # unknown_admin_unit (province)
        person(pid="001090000011", sex="X"),                                 # invalid_code
        person(pid="001090000012", relation="Hàng xóm"),                     # invalid_code
        person(pid="001090000013", address="A"), person(pid="001090000013", address="B"),  # duplicate_key
    ]
    r = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, rows)
    assert r["status"] == "loaded_with_rejections"
    assert (r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == (14, 1, 13)
    assert r["rejections"] == {"missing_required": 1, "invalid_date": 2, "invalid_personal_id": 2,
                               "id_mismatch": 2, "unknown_admin_unit": 2, "invalid_code": 2, "duplicate_key": 2}
    quarantined = db.execute("select row_no, reasons, detail from quarantine.row order by row_no").fetchall()
    assert quarantined == [
        (2, ["missing_required"], "missing_required: HO_TEN"),
        (3, ["invalid_date"], "invalid_date: NGAY_SINH=31/02/1990"),
        (4, ["invalid_date"], "invalid_date: NGAY_CAP_NHAT=2025-08-01"),
        (5, ["invalid_personal_id"], "invalid_personal_id: SO_DINH_DANH=12345"),
        (6, ["invalid_personal_id"], "invalid_personal_id: SO_DINH_DANH=099090000006"),
        (7, ["id_mismatch"], "id_mismatch: SO_DINH_DANH=001190000007 NGAY_SINH=12/03/1990 GIOI_TINH=Nam"),
        (8, ["id_mismatch"], "id_mismatch: SO_DINH_DANH=001080000008 NGAY_SINH=12/03/1990 GIOI_TINH=Nam"),
        (9, ["unknown_admin_unit"], "unknown_admin_unit: MA_XA_TT=99999"),
        (10, ["unknown_admin_unit"], "unknown_admin_unit: MA_TINH_TT=99"),
        (11, ["invalid_code"], "invalid_code: GIOI_TINH=X"),
        (12, ["invalid_code"], "invalid_code: QUAN_HE_CHU_HO=Hàng xóm"),
        (13, ["duplicate_key"], "duplicate_key: SO_DINH_DANH=001090000013"),
        (14, ["duplicate_key"], "duplicate_key: SO_DINH_DANH=001090000013"),
    ]
    assert [p[0] for p in core_people(db)] == ["001090000001"]
    # the raw values are kept exactly as sent
    raw = db.execute("select raw from quarantine.row where row_no = 3").fetchone()[0]
    assert raw["NGAY_SINH"] == "31/02/1990" and raw["HO_TEN"] == "Nguyễn Văn An"
    # the agency's CSV of rejected rows
    with open(r["rejected_rows"], encoding="utf-8") as fh:
        lines = list(csv.DictReader(fh))
    assert len(lines) == 13
    assert lines[0]["ROW"] == "2" and lines[0]["REASONS"] == "missing_required" and lines[0]["HO_TEN"] == ""


def test_exact_duplicate_rows_load_once(warehouse, db, inbox):
    r = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, [person(), person()])
    assert (r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == (2, 2, 0)
    assert r["changes"] == {"new": 1, "changed": 0, "unchanged": 0, "removed": 0}
    assert len(core_people(db)) == 1


@pytest.mark.parametrize("encoding,newline,delimiter", [
    ("utf-8-sig", "\n", ","),          # UTF-8 with BOM
    ("utf-8", "\r\n", ","),            # CRLF
    ("cp1258", "\r\n", ","),           # Windows-1258
    ("utf-16", "\r\n", "\t"),          # Excel "Unicode text": UTF-16 LE with BOM, tab-separated
])
def test_encodings_load_identically(warehouse, db, inbox, encoding, newline, delimiter):
    rows = [person(name="Nguyễn Thị Ngọc Ánh", pid="001190000001", sex="Nữ", address="Ngõ 5, Phố Huế")]
    text = csv_text(CUTRU_HEADER, rows, delimiter=delimiter)
    path = inbox / "CUTRU_01_20261120_001.csv"
    text = text.replace("\n", newline)
    path.write_bytes(to_cp1258(text) if encoding == "cp1258" else text.encode(encoding))
    r = ingest_file(path)
    assert (r["status"], r["rows_read"], r["rows_loaded"]) == ("loaded", 1, 1)
    assert db.execute("select full_name, residence_address from core.person").fetchall() == [
        ("Nguyễn Thị Ngọc Ánh", "Ngõ 5, Phố Huế")]


def test_text_quirks_are_conformed(warehouse, db, inbox):
    header = [" so_dinh_danh ", "Ho_Ten", "ngay_sinh", "GIOI_TINH ", "MA_XA_TT", "MA_TINH_TT", "NGAY_CAP_NHAT",
              "QUOC_TICH", "DIA_CHI_TT", "GHI_CHU"]  # any case, spaces, any order, an extra column
    rows = [
        ["001090000001", "NGUYỄN  VĂN   AN", "1990", "NAM", "00004", "01", "01/08/2025 10:00:00", "", "NULL", "x"],
        ["001191000002", unicodedata.normalize("NFD", "Trần Thị Bình"), "00/00/1991", "Nu", "00004", "01",
         "01/08/2025 10:00:00", "NULL", " 5  Hàng Bạc ", ""],
        ["001090000003 ", "Lê Văn Cường", "02/01/1990", "nam", " 00004", "01", "01/08/2025 10:00:00", "la", "", ""],
    ]  # (spaces at both ends, at the end only, at the start only)
    text = csv_text(header, rows[:2]) + ",".join(header) + "\n" + csv_text(header, rows[2:]).split("\n", 1)[1]
    r = ingest_file(write(inbox, "CUTRU_01_20261120_001.csv", text + "\n\n  \n"))
    assert (r["status"], r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == ("loaded", 3, 3, 0)
    assert db.execute("select person_id, full_name, birth_date, birth_date_precision, sex, nationality, "
                      "residence_address from core.person order by 1").fetchall() == [
        ("001090000001", "Nguyễn Văn An", dt.date(1990, 1, 1), "year", "male", "VN", None),
        ("001090000003", "Lê Văn Cường", dt.date(1990, 1, 2), "day", "male", "LA", None),
        ("001191000002", "Trần Thị Bình", dt.date(1991, 1, 1), "year", "female", "VN", "5  Hàng Bạc"),
    ]


@pytest.mark.parametrize("parallel,static", [(False, True), (True, True), (False, False), (True, False)],
                         ids=["one connection", "shared dictionaries", "scanned, one connection", "scanned, shared"])
def test_values_of_dictionary_columns_are_cleaned_before_they_are_conformed(warehouse, db, inbox, monkeypatch,
                                                                            parallel, static):
    """Dates and code lists are conformed once per distinct value as staged (checks.py's
    dictionaries), which cleans it there: spaces around, blanks and NULL give the verdicts and
    values of the same cleaned text, on one connection and in the ranges of a large delivery,
    with the static dictionaries (most values here are not listed: they are conformed in the row)
    and with dictionaries found by a scan of the rows."""
    if not static:
        from pipelines import spellings

        monkeypatch.setattr(spellings, "available", lambda conn, contract: {})
    if parallel:
        import pipelines.ingest as ingest

        monkeypatch.setattr(ingest, "PARALLEL_MIN_ROWS", 0)
        monkeypatch.setenv("COREHUB_PARALLEL", "2")
    rows = [
        person(pid="001190000001", sex=" Nữ ", born=" 12/03/1990", nationality=" vn ", relation="Chủ hộ  "),
        person(pid="001090000002", sex="Nam", born="12/03/1990 ", nationality="NULL", relation=" "),
        person(pid="001090000003", sex="NULL"),                     # missing_required
        person(pid="001090000004", born="   "),                     # missing_required
        person(pid="001090000005", sex=" X "),                      # invalid_code, shown trimmed
        person(pid="001090000006", born=" 31/02/1990 "),            # invalid_date, shown trimmed
    ]
    r = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, rows)
    assert (r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == (6, 2, 4)
    assert db.execute("select person_id, birth_date, sex, nationality, relation_to_head from store.person "
                      "order by 1").fetchall() == [
        ("001090000002", dt.date(1990, 3, 12), "male", "VN", None),
        ("001190000001", dt.date(1990, 3, 12), "female", "VN", "head"),
    ]
    assert db.execute("select row_no, detail from quarantine.row order by row_no").fetchall() == [
        (3, "missing_required: GIOI_TINH"),
        (4, "missing_required: NGAY_SINH"),
        (5, "invalid_code: GIOI_TINH=X"),
        (6, "invalid_date: NGAY_SINH=31/02/1990"),
    ]


def test_personal_id_agreement_gives_the_verdicts_of_its_first_definition(db):
    """sql/064 answers most IDs without a regular expression; its verdicts must be sql/062's, for
    IDs of every shape (a non-digit at each position, wrong lengths), centuries and sexes."""
    first = (SQL_DIR / "062_person_id_rules.sql").read_text()
    first = first[first.index("create or replace function rules.personal_id_agrees"):]
    db.execute(first.replace("rules.personal_id_agrees", "pg_temp.agrees_062"))
    verdicts = db.execute("""
        with ids as (
            select '0' || lpad(p::text, 2, '0') || c::text || lpad(y::text, 2, '0') || '123456' as id
            from generate_series(1, 96, 5) p, generate_series(0, 9) c, generate_series(0, 99, 7) y
        ), shapes as (
            select id from ids
            union all select overlay(id placing x from n for 1) from ids, generate_series(1, 12) n,
                             (values ('x'), ('٣'), (' ')) v (x) where n in (1, 4, 5, 6, 9, 12)
            union all select left(id, 11) from ids union all select id || '7' from ids
            union all select null
        ), births as (
            select make_date(y, 6, 15) as birth from unnest(array[1800, 1899, 1900, 1950, 1999, 2000, 2024,
                                                                  2099, 2100, 2199, 2200]) y
            union all select null
        )
        select rules.personal_id_agrees(id, birth, sex) as now, pg_temp.agrees_062(id, birth, sex) as first
        from shapes, births, (values ('male'), ('female'), (null)) s (sex)""").fetchall()
    assert len(verdicts) > 100_000
    assert [v for v in verdicts if v[0] is not v[1]] == []
    assert {v[0] for v in verdicts} == {True, False}


def test_snapshot_semantics_and_history(warehouse, db, inbox):
    a, b, c = (person(pid="001090000001"), person(pid="001190000002", name="Trần Thị Bình", sex="Nữ"),
               person(pid="001090000003", name="Lê Văn Cường"))
    first = deliver(inbox, "CUTRU_01_20261113_001.csv", CUTRU_HEADER, [a, b, c])
    assert first["changes"] == {"new": 3, "changed": 0, "unchanged": 0, "removed": 0}
    # same content, new file name: everything unchanged, nothing written
    again = deliver(inbox, "CUTRU_01_20261113_002.csv", CUTRU_HEADER, [c, b, a])
    assert again["changes"] == {"new": 0, "changed": 0, "unchanged": 3, "removed": 0}
    versions = db.execute("select count(*) from store.person").fetchone()[0]
    # the same bytes again: duplicate, nothing changes
    dup = ingest_file(inbox / "CUTRU_01_20261113_002.csv")
    assert (dup["status"], dup["delivery_id"], dup["changes"]) == ("duplicate", again["delivery_id"], NO_CHANGES)
    assert db.execute("select count(*) from store.person").fetchone()[0] == versions
    # next week: b moved ward, c left the province's register, d is new
    moved = person(pid="001190000002", name="Trần Thị Bình", sex="Nữ", ward="00008", updated="05/11/2026 09:00:00")
    d = person(pid="001090000004", name="Phạm Văn Dũng")
    week2 = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, [a, moved, d])
    assert week2["changes"] == {"new": 1, "changed": 1, "unchanged": 1, "removed": 1}
    assert [p[0] for p in core_people(db)] == ["001090000001", "001090000004", "001190000002"]
    hist = db.execute("select residence_ward_code, valid_from, valid_to, recorded_to is null "
                      "from history.person where person_id = '001190000002' order by recorded_from, valid_from").fetchall()
    utc = dt.timezone.utc
    assert hist == [
        ("00004", dt.datetime(2025, 8, 1, 3, tzinfo=utc), None, False),
        ("00004", dt.datetime(2025, 8, 1, 3, tzinfo=utc), dt.datetime(2026, 11, 5, 2, tzinfo=utc), True),
        ("00008", dt.datetime(2026, 11, 5, 2, tzinfo=utc), None, True),
    ]
    # c is no longer current but stays in history, its last version ended at the snapshot date
    assert db.execute("select valid_to from history.person where person_id = '001090000003' "
                      "and recorded_to is null").fetchall() == [(dt.datetime(2026, 11, 19, 17, tzinfo=utc),)]


def test_quarantined_person_is_not_removed_from_snapshot(warehouse, db, inbox):
    deliver(inbox, "CUTRU_01_20261113_001.csv", CUTRU_HEADER, [person(), person(pid="001090000002")])
    r = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER,
                [person(), person(pid="001090000002", born="31/02/1990")])
    assert r["changes"] == {"new": 0, "changed": 0, "unchanged": 1, "removed": 0}
    assert [p[0] for p in core_people(db)] == ["001090000001", "001090000002"]


def test_hotich_death_resend_and_unresolved_person(warehouse, db, inbox):
    deliver(inbox, "CUTRU_01_20261113_001.csv", CUTRU_HEADER, [person(), person(pid="001090000002", name="Lê Văn Cường")])
    events = [
        event(no="HT-1", kind="KHAI_TU", date="10/11/2026", pid="001090000001"),
        event(no="HT-2", kind="KHAI_SINH", date="09/11/2026", pid="001226000009", name="Bé Na"),   # not yet in CUTRU
        event(no="HT-3", kind="KET_HON", date="08/11/2026", pid="001090000002", related="001190000005"),
        event(no="HT-4", kind="LY_HON", date="08/11/2026", pid="001090000002"),                 # missing spouse
        event(no="HT-5", kind="NHAN_NUOI", date="08/11/2026", pid="001090000002"),              # invalid_code
    ]
    r = deliver(inbox, "HOTICH_01_20261111_001.csv", HOTICH_HEADER, events)
    assert (r["status"], r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == ("loaded_with_rejections", 5, 3, 2)
    assert r["rejections"] == {"missing_required": 1, "invalid_code": 1}
    assert r["findings"] == {"unresolved_person": 1}
    assert r["changes"] == {"new": 3, "changed": 0, "unchanged": 0, "removed": 0}
    assert db.execute("select person_id, death_date from core.person order by 1").fetchall() == [
        ("001090000001", dt.date(2026, 11, 10)), ("001090000002", None)]
    death_version = db.execute("select valid_from from history.person where person_id = '001090000001' "
                               "and death_date is not null").fetchall()
    assert death_version == [(dt.datetime(2026, 11, 9, 17, tzinfo=dt.timezone.utc),)]
    # the same event re-sent the next day counts once
    again = deliver(inbox, "HOTICH_01_20261112_001.csv", HOTICH_HEADER, [events[0]])
    assert again["changes"] == {"new": 0, "changed": 0, "unchanged": 1, "removed": 0}
    assert db.execute("select count(*) from core.civil_event").fetchone()[0] == 3
    # next week's CUTRU snapshot, which knows nothing of deaths, keeps the death date
    week2 = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER,
                    [person(pid="001090000002", name="Lê Văn Cường"), person()])
    assert week2["changes"] == {"new": 0, "changed": 0, "unchanged": 2, "removed": 0}
    assert db.execute("select death_date from core.person where person_id = '001090000001'").fetchone() == (
        dt.date(2026, 11, 10),)


def test_birth_registered_before_residence_applies_when_the_person_arrives(warehouse, db, inbox):
    r = deliver(inbox, "HOTICH_01_20261111_001.csv", HOTICH_HEADER,
                [event(no="HT-9", kind="KHAI_TU", date="01/11/2026", pid="001090000001")])
    assert r["findings"] == {"unresolved_person": 1}
    deliver(inbox, "CUTRU_01_20261113_001.csv", CUTRU_HEADER, [person()])
    assert db.execute("select death_date from core.person").fetchall() == [(dt.date(2026, 11, 1),)]


def test_change_feed_lists_every_change_in_order(warehouse, db, inbox):
    first = deliver(inbox, "CUTRU_01_20261113_001.csv", CUTRU_HEADER, [person(), person(pid="001090000002")])
    second = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER,
                     [person(ward="00008", updated="05/11/2026 09:00:00"), person(pid="001090000003")])
    rows = db.execute("select seq, entity, entity_key, operation, delivery_id from core.changes order by seq").fetchall()
    changes = [r[1:] for r in rows]
    assert sorted(changes[:2]) == [("person", "001090000001", "insert", first["delivery_id"]),
                                   ("person", "001090000002", "insert", first["delivery_id"])]
    assert sorted(changes[2:4]) == [("person", "001090000001", "update", second["delivery_id"]),
                                    ("person", "001090000003", "insert", second["delivery_id"])]
    assert changes[4:] == [("person", "001090000002", "delete", second["delivery_id"])]
    # a rerun of the same content adds nothing to the feed
    deliver(inbox, "CUTRU_01_20261120_002.csv", CUTRU_HEADER,
            [person(pid="001090000003"), person(ward="00008", updated="05/11/2026 09:00:00")])
    assert db.execute("select count(*) from core.changes").fetchone() == (5,)


def test_windows_1258_found_past_the_first_64_kib_is_read_again(warehouse, db, inbox):
    ascii_rows = [person(pid=f"0010900{i:05d}", name="Le Van A", address="Pho Hue") for i in range(1, 1200)]
    late = person(pid="001090099999", name="Nguyễn Văn Bình", address="Phố Huế")
    path = inbox / "CUTRU_01_20261120_001.csv"
    path.write_bytes(to_cp1258(csv_text(CUTRU_HEADER, ascii_rows + [late])))
    assert path.stat().st_size > 65536
    r = ingest_file(path)
    assert (r["status"], r["rows_read"], r["rows_loaded"]) == ("loaded", 1200, 1200)
    assert db.execute("select full_name, residence_address from core.person where person_id = '001090099999'"
                      ).fetchone() == ("Nguyễn Văn Bình", "Phố Huế")


def test_rows_sent_again_are_known_but_repeats_are_still_caught(warehouse, db, inbox):
    a, b = person(), person(pid="001090000002", name="Lê Văn Cường")
    deliver(inbox, "CUTRU_01_20261113_001.csv", CUTRU_HEADER, [a, b])
    # a sent twice byte for byte (one person, unchanged); b sent as before and again with another address
    r = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER,
                [a, b, a, person(pid="001090000002", name="Lê Văn Cường", address="Ngõ 9")])
    assert (r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == (4, 2, 2)
    assert r["rejections"] == {"duplicate_key": 2}
    assert r["changes"] == {"new": 0, "changed": 0, "unchanged": 1, "removed": 0}
    assert [p[0] for p in core_people(db)] == ["001090000001", "001090000002"]  # b quarantined, not removed
    assert db.execute("select row_no from quarantine.row order by 1").fetchall() == [(2,), (4,)]
