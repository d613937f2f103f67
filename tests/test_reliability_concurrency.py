"""Concurrent deliveries, with real `corehub ingest` processes: two of the same feed and province
never run their merge at the same time (the second waits for the first: an advisory lock per
feed's entity and province), other provinces and feeds run in parallel up to their merges, which
take turns (the change-feed lock) without deadlocking, and a snapshot older than one applied is
`superseded` (exit 0, recorded, reported, the core unchanged)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.ingest import ingest_file
from population_helpers import CUTRU_HEADER, HOTICH_HEADER, csv_text, event, person, write
from reliability_helpers import Paused, finished, ingest, started, state, wait_for, waiting_on_advisory_lock
from test_bulk_loading import KEPT, RECOMPUTED

WEEK1 = csv_text(CUTRU_HEADER, [person(), person(pid="001190000002", name="Trần Thị Bình", sex="Nữ")])
WEEK2 = csv_text(CUTRU_HEADER, [person(ward="00007", updated="01/09/2025 10:00:00")])
HCM = csv_text(CUTRU_HEADER, [person(pid="079090000001", province="79", ward="26734")])
DKKD = ("MA_SO_DN,TEN_DN,LOAI_HINH,NGAY_THANH_LAP,TINH_TRANG,MA_TINH_TRU_SO,MA_XA_TRU_SO\n"
        "0100109106,Công ty cổ phần Sữa Hà Nội,Công ty cổ phần,12/03/2010,Đang hoạt động,01,00004\n")


def home() -> Path:
    return Path(os.environ["COREHUB_HOME"])


def change_log(db) -> list[tuple]:
    return db.execute("select d.file_name, c.entity_key, c.operation from store.change_log c "
                      "join meta.delivery d using (delivery_id) order by c.seq").fetchall()


def test_same_feed_and_province_wait_for_each_other(warehouse, db, inbox):
    first = Paused(write(inbox, "CUTRU_01_20261120_001.csv", WEEK1), "locked", home()).wait()
    second = started(write(inbox, "CUTRU_01_20261127_001.csv", WEEK2))
    # the second waits for the first's lock, having published nothing
    wait_for(lambda: waiting_on_advisory_lock(warehouse) == 1, "the second delivery waits for the lock")
    assert db.execute("select file_name, status from meta.delivery order by delivery_id").fetchall() == [
        ("CUTRU_01_20261120_001.csv", "processing"), ("CUTRU_01_20261127_001.csv", "processing")]
    assert db.execute("select count(*) from store.person").fetchone() == (0,)
    code1, r1 = first.go()
    code2, r2 = finished(second)
    assert (code1, r1["status"], r1["changes"]) == (0, "loaded", {"new": 2, "changed": 0, "unchanged": 0, "removed": 0})
    assert (code2, r2["status"], r2["changes"]) == (0, "loaded", {"new": 0, "changed": 1, "unchanged": 0, "removed": 1})
    # one after the other: every change of the first comes before every change of the second
    log = change_log(db)
    assert [f for f, _, _ in log] == ["CUTRU_01_20261120_001.csv"] * 2 + ["CUTRU_01_20261127_001.csv"] * 2
    assert sorted(log) == [
        ("CUTRU_01_20261120_001.csv", "001090000001", "insert"), ("CUTRU_01_20261120_001.csv", "001190000002", "insert"),
        ("CUTRU_01_20261127_001.csv", "001090000001", "update"), ("CUTRU_01_20261127_001.csv", "001190000002", "delete")]
    assert db.execute("select person_id, residence_ward_code from core.person").fetchall() == [("001090000001", "00008")]  # 00007 conformed to its successor


def test_other_provinces_and_feeds_do_not_wait(warehouse, db, inbox):
    first = Paused(write(inbox, "CUTRU_01_20261120_001.csv", WEEK1), "locked", home()).wait()
    # while the first holds CUTRU province 01, province 79 and the enterprise feed of 01 run to the end
    assert ingest(write(inbox, "CUTRU_79_20261120_001.csv", HCM))[1]["status"] == "loaded"
    assert ingest(write(inbox, "DKKD_01_20261120_001.csv", DKKD))[1]["status"] == "loaded"
    assert db.execute("select file_name, status from meta.delivery order by delivery_id").fetchall() == [
        ("CUTRU_01_20261120_001.csv", "processing"), ("CUTRU_79_20261120_001.csv", "loaded"),
        ("DKKD_01_20261120_001.csv", "loaded")]
    assert first.go()[1]["status"] == "loaded"
    assert db.execute("select person_id from core.person order by 1").fetchall() == [
        ("001090000001",), ("001190000002",), ("079090000001",)]


SUPERSEDED_REASON = ("a newer snapshot of this feed and province was already applied (CUTRU_01_20261127_001.csv): "
                     "this older one would roll the core data back, so nothing of it was loaded")


def test_an_older_snapshot_is_superseded_and_changes_nothing(warehouse, db, inbox):
    newer = ingest_file(write(inbox, "CUTRU_01_20261127_001.csv", WEEK2))
    before = state(warehouse)
    code, r = ingest(write(inbox, "CUTRU_01_20261120_001.csv", WEEK1))
    assert code == 0  # not an error of the file: it is late; nothing to fix
    assert r == {
        "delivery_id": newer["delivery_id"] + 1, "feed": "CUTRU", "file": "CUTRU_01_20261120_001.csv",
        "sha256": r["sha256"], "status": "superseded", "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0,
        "rejections": {}, "findings": {}, "changes": {"new": 0, "changed": 0, "unchanged": 0, "removed": 0},
        "report": r["report"], "rejected_rows": None, "reason": SUPERSEDED_REASON,
        "superseded_by": newer["delivery_id"]}
    after = state(warehouse)
    assert after["deliveries"][-1][:2] == ("CUTRU_01_20261120_001.csv", "superseded")
    after["deliveries"].pop()
    assert after == before
    assert db.execute("select status, superseded_by from meta.delivery where delivery_id = %s",
                      (r["delivery_id"],)).fetchone() == ("superseded", newer["delivery_id"])
    page = Path(r["report"]).read_text(encoding="utf-8")
    assert "Why nothing was loaded" in page and "Nothing needs to be sent again" in page
    # the same bytes again: a duplicate of the superseded delivery
    assert ingest_file(inbox / "CUTRU_01_20261120_001.csv")["status"] == "duplicate"


@pytest.mark.parametrize("older,newer,superseded", [
    ("CUTRU_01_20261127_001.csv", "CUTRU_01_20261127_002.csv", True),    # same day, lower sequence
    ("CUTRU_01_20261127_9.csv", "CUTRU_01_20261127_10.csv", True),       # sequences compared as numbers
    ("CUTRU_01_20261127_R01.csv", "CUTRU_01_20261127_001.csv", False),   # a resubmission corrects its day
    ("CUTRU_01_20261126_R01.csv", "CUTRU_01_20261127_001.csv", True),    # ... not an older day
    ("CUTRU_79_20261120_001.csv", "CUTRU_01_20261127_001.csv", False),   # another province
    ("DKKD_01_20261120_001.csv", "CUTRU_01_20261127_001.csv", False),    # another feed
])
def test_which_deliveries_a_snapshot_supersedes(warehouse, inbox, older, newer, superseded):
    ingest_file(write(inbox, newer, WEEK2))
    text = {"79": HCM, "DK": DKKD}.get(older[:2] if older.startswith("DK") else older[6:8], WEEK1)
    assert (ingest_file(write(inbox, older, text))["status"] == "superseded") is superseded


def test_an_older_snapshot_that_waited_for_a_newer_one_is_superseded(warehouse, db, inbox):
    newer = Paused(write(inbox, "CUTRU_01_20261127_001.csv", WEEK2), "locked", home()).wait()
    older = started(write(inbox, "CUTRU_01_20261120_001.csv", WEEK1))
    wait_for(lambda: waiting_on_advisory_lock(warehouse) == 1, "the older delivery waits for the lock")
    assert newer.go()[1]["status"] == "loaded"
    code, r = finished(older)
    assert (code, r["status"], r["reason"]) == (0, "superseded", SUPERSEDED_REASON)
    assert db.execute("select person_id, residence_ward_code from core.person").fetchall() == [("001090000001", "00008")]  # 00007 conformed to its successor


def test_a_killed_holder_of_the_lock_lets_the_waiting_delivery_go_on(warehouse, db, inbox):
    first = Paused(write(inbox, "CUTRU_01_20261120_001.csv", WEEK1), "locked", home()).wait()
    second = started(write(inbox, "CUTRU_01_20261127_001.csv", WEEK2))
    wait_for(lambda: waiting_on_advisory_lock(warehouse) == 1, "the second delivery waits for the lock")
    first.kill()  # its session ends, and its locks with it: nobody has to clear anything
    code, r = finished(second)
    assert (code, r["status"], r["changes"]) == (0, "loaded", {"new": 1, "changed": 0, "unchanged": 0, "removed": 0})
    # the first file, retried, is now older than the applied snapshot
    code, r = ingest(inbox / "CUTRU_01_20261120_001.csv")
    assert (code, r["status"]) == (0, "superseded")
    assert db.execute("select file_name, status from meta.delivery order by delivery_id").fetchall() == [
        ("CUTRU_01_20261120_001.csv", "abandoned"), ("CUTRU_01_20261127_001.csv", "loaded"),
        ("CUTRU_01_20261120_001.csv", "superseded")]


def test_two_provinces_sending_one_person_at_once_end_that_persons_version_once(warehouse, db, inbox):
    """A person moved from province 01 to 79, and both provinces' next snapshots arrive together:
    01's no longer lists her, 79's does. The second merge decides what changed only once the first
    has committed (both take the change-feed lock first), so her version in 01 is ended once."""
    assert ingest(write(inbox, "CUTRU_01_20261120_001.csv", WEEK1))[1]["status"] == "loaded"
    first = Paused(write(inbox, "CUTRU_01_20261127_001.csv", csv_text(CUTRU_HEADER, [person()])), "merge",
                   home()).wait()
    moved = person(pid="001190000002", name="Trần Thị Bình", sex="Nữ", province="79", ward="26734")
    second = started(write(inbox, "CUTRU_79_20261127_001.csv", csv_text(CUTRU_HEADER, [moved])))
    wait_for(lambda: waiting_on_advisory_lock(warehouse) == 1, "79's merge waits for 01's")
    assert first.go()[1]["changes"] == {"new": 0, "changed": 0, "unchanged": 1, "removed": 1}
    code, r = finished(second)
    # 01 had ended her version when 79 looked: to 79 she is new
    assert (code, r["changes"]) == (0, {"new": 1, "changed": 0, "unchanged": 0, "removed": 0})
    assert db.execute("""
        select scope, valid_to = 'infinity', recorded_to = 'infinity' from store.person
        where person_id = '001190000002' order by recorded_from, valid_to""").fetchall() == [
        ("01", True, False), ("01", False, True), ("79", True, True)]
    assert db.execute(KEPT).fetchall() == db.execute(RECOMPUTED).fetchall()


def test_a_delivery_with_effects_and_one_of_the_entity_it_affects_do_not_deadlock(warehouse, db, inbox):
    """A population delivery holds its entity shared from its start and takes the change-feed lock
    to merge; deaths (HOTICH), whose merge also ends persons' versions, take the population entity
    exclusively before their own change-feed lock, not after it."""
    population = Paused(write(inbox, "CUTRU_01_20261120_001.csv", WEEK1), "validated", home()).wait()
    deaths = started(write(inbox, "HOTICH_01_20261121_001.csv",
                           csv_text(HOTICH_HEADER, [event(no="HT-9", pid="001190000002", name="Trần Thị Bình")])))
    wait_for(lambda: waiting_on_advisory_lock(warehouse) == 1, "the deaths wait for the population delivery")
    assert population.go()[1]["status"] == "loaded"
    code, r = finished(deaths)
    assert (code, r["status"]) == (0, "loaded")
    assert db.execute("select person_id, death_date::text from core.person where death_date is not null"
                      ).fetchall() == [("001190000002", "2026-10-10")]
