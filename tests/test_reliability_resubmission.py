"""Resubmissions: corrected rows for the rejected subset of a delivery, named with an R sequence
(`<FEED>_<PROVINCE>_<YYYYMMDD>_R<NN>.<ext>`): loaded without snapshot semantics, the quarantined
rows they replace resolved; `corehub quarantine FEED [--open]` lists what still waits."""
from __future__ import annotations

import json

from pipelines.ingest import ingest_file
from population_helpers import CUTRU_HEADER, HOTICH_HEADER, csv_text, event, person, write
from reliability_helpers import run

A = person()
B_BAD = person(pid="001190000002", name="Trần Thị Bình", sex="Nữ", born="31/02/1990")
B = person(pid="001190000002", name="Trần Thị Bình", sex="Nữ", born="28/02/1990")
C_BAD = person(pid="001090000003", name="Lê Văn Cường", born="01/01/2001")  # digits say born 1900s
C = person(pid="001090000003", name="Lê Văn Cường", born="01/01/1990")


def quarantine(*args: str) -> dict:
    proc = run("quarantine", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def open_rows(db) -> list[tuple]:
    return db.execute("select d.file_name, q.record_key, q.reasons from quarantine.row q join meta.delivery d "
                      "using (delivery_id) where q.resolved_by is null order by 1, 2").fetchall()


def test_a_resubmission_loads_its_rows_removes_nothing_and_resolves_what_it_replaces(warehouse, db, inbox):
    week = ingest_file(write(inbox, "CUTRU_01_20261120_001.csv", csv_text(CUTRU_HEADER, [A, B_BAD, C_BAD])))
    assert (week["status"], week["rejections"]) == ("loaded_with_rejections", {"invalid_date": 1, "id_mismatch": 1})
    q = quarantine("CUTRU", "--open")
    assert (q["rows_open"], q["reasons"]) == (2, {"id_mismatch": 1, "invalid_date": 1})
    assert [(r["file"], r["row_no"], r["key"], r["reasons"]) for r in q["rows"]] == [
        ("CUTRU_01_20261120_001.csv", 2, "001190000002", ["invalid_date"]),
        ("CUTRU_01_20261120_001.csv", 3, "001090000003", ["id_mismatch"])]

    fix = ingest_file(write(inbox, "CUTRU_01_20261121_R01.csv", csv_text(CUTRU_HEADER, [B])))
    assert {k: fix[k] for k in ("status", "rows_read", "rows_loaded", "rows_quarantined", "changes", "partial",
                                "resolved")} == {
        "status": "loaded", "rows_read": 1, "rows_loaded": 1, "rows_quarantined": 0,
        "changes": {"new": 1, "changed": 0, "unchanged": 0, "removed": 0}, "partial": True, "resolved": 1}
    # not a snapshot: A, absent from the resubmission, is still current
    assert db.execute("select person_id from core.person order by 1").fetchall() == [("001090000001",),
                                                                                      ("001190000002",)]
    assert db.execute("select row_no, resolved_by from quarantine.row order by row_no").fetchall() == [
        (2, fix["delivery_id"]), (3, None)]
    assert db.execute("select partial from meta.delivery where delivery_id = %s", (fix["delivery_id"],)
                      ).fetchone() == (True,)
    q = quarantine("CUTRU", "--open")
    assert (q["rows_total"], q["rows_open"], q["reasons"]) == (1, 1, {"id_mismatch": 1})

    # still wrong: quarantined again, and the first report of it stays open too until it is fixed
    again = ingest_file(write(inbox, "CUTRU_01_20261122_R01.csv", csv_text(CUTRU_HEADER, [C_BAD])))
    assert (again["status"], again["rejections"], again.get("resolved")) == (
        "loaded_with_rejections", {"id_mismatch": 1}, None)
    assert open_rows(db) == [("CUTRU_01_20261120_001.csv", "001090000003", ["id_mismatch"]),
                             ("CUTRU_01_20261122_R01.csv", "001090000003", ["id_mismatch"])]
    fixed = ingest_file(write(inbox, "CUTRU_01_20261122_R02.csv", csv_text(CUTRU_HEADER, [C])))
    assert (fixed["status"], fixed["resolved"]) == ("loaded", 2)
    assert open_rows(db) == []
    q = quarantine("CUTRU")
    assert (q["rows_total"], q["rows_open"], q["reasons"]) == (3, 0, {"id_mismatch": 2, "invalid_date": 1})
    assert [r["resolved_by"] for r in q["rows"]] == [fix["delivery_id"], fixed["delivery_id"], fixed["delivery_id"]]
    assert db.execute("select count(*) from core.person").fetchone() == (3,)


def test_the_next_full_snapshot_closes_what_the_last_one_left_open(warehouse, db, inbox):
    ingest_file(write(inbox, "CUTRU_01_20261120_001.csv", csv_text(CUTRU_HEADER, [A, B_BAD, C_BAD])))
    week2 = ingest_file(write(inbox, "CUTRU_01_20261127_001.csv", csv_text(CUTRU_HEADER, [A, B, C_BAD])))
    # B fixed, C reported again by the new snapshot (a new open row), the old rows closed by it
    assert week2["resolved"] == 2
    assert open_rows(db) == [("CUTRU_01_20261127_001.csv", "001090000003", ["id_mismatch"])]
    # another province's snapshot closes nothing of province 01
    hcm = ingest_file(write(inbox, "CUTRU_79_20261127_001.csv", csv_text(
        CUTRU_HEADER, [person(pid="079090000001", province="79", ward="26734")])))
    assert (hcm["status"], hcm.get("resolved")) == ("loaded", None)
    assert len(open_rows(db)) == 1


def test_a_delta_feed_resubmission_resolves_by_the_feeds_key(warehouse, db, inbox):
    day = ingest_file(write(inbox, "HOTICH_01_20261120_001.csv", csv_text(
        HOTICH_HEADER, [event(no="HT-1", kind="KHAI_SINH"), event(no="HT-2", kind="KHAI_SINH", date="31/11/2026")])))
    assert day["rejections"] == {"invalid_date": 1}
    # the same event number in another province is another event: it resolves nothing here
    other = ingest_file(write(inbox, "HOTICH_79_20261121_R01.csv", csv_text(
        HOTICH_HEADER, [event(no="HT-2", kind="KHAI_SINH", ward="26734")])))
    assert (other["status"], other.get("resolved")) == ("loaded", None)
    fix = ingest_file(write(inbox, "HOTICH_01_20261121_R01.csv", csv_text(
        HOTICH_HEADER, [event(no="HT-2", kind="KHAI_SINH", date="30/11/2026")])))
    assert (fix["status"], fix["partial"], fix["resolved"], fix["changes"]["new"]) == ("loaded", True, 1, 1)
    assert open_rows(db) == []
    text = run("quarantine", "HOTICH").stdout
    assert text == (
        "HOTICH: 1 quarantined row(s), 0 still open\n"
        "\n"
        "reason        rows\n"
        "invalid_date  1\n"
        "\n"
        f"delivery  file                        row  key   reasons       {'detail'.ljust(37)}  resolved by\n"
        f"{day['delivery_id']}         HOTICH_01_20261120_001.csv  2    HT-2  invalid_date  "
        f"invalid_date: NGAY_SU_KIEN=31/11/2026  {fix['delivery_id']}\n")


def test_quarantine_listing_text_and_usage(warehouse, db, inbox):
    assert run("quarantine", "DANCU").returncode == 2
    assert run("quarantine", "DKKD", "--open").stdout == "DKKD: 0 quarantined row(s) waiting for the agency\n"
    rows = [person(pid=f"0010900000{i:02d}", born="31/02/1990", address="=HYPERLINK(\"x\")\x1b[31m")
            for i in range(1, 4)]
    ingest_file(write(inbox, "CUTRU_01_20261120_001.csv", csv_text(CUTRU_HEADER, rows)))
    proc = run("quarantine", "CUTRU", "--open", "--limit", "2", "--province", "01")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == "CUTRU province 01: 3 quarantined row(s) waiting for the agency"
    assert lines[2:4] == ["reason        rows", "invalid_date  3"]
    assert lines[-1] == "... 1 more (--limit)"
    assert "\x1b" not in proc.stdout
    assert quarantine("CUTRU", "--province", "79")["rows_total"] == 0


def test_a_resubmission_does_not_count_as_the_weekly_snapshot(warehouse, db, inbox):
    from pipelines.status import collect

    week = ingest_file(write(inbox, "CUTRU_01_20261120_001.csv", csv_text(CUTRU_HEADER, [A, B_BAD])))
    ingest_file(write(inbox, "CUTRU_01_20261121_R01.csv", csv_text(CUTRU_HEADER, [B])))
    snapshot_done = db.execute("select finished_at from ops.delivery_log where delivery_id = %s",
                               (week["delivery_id"],)).fetchone()[0]
    status = collect(db)
    row = next(r for r in status["last"] if (r["feed"], r["province"]) == ("CUTRU", "01"))
    assert (row["file_name"], row["last_accepted"]) == ("CUTRU_01_20261121_R01.csv", snapshot_done)
