"""The shortcuts of large loads give exactly what the long way gives: a snapshot sent again is
recognised by its scope's digest, a first load builds the store's indexes after its insert, and
the change feed numbers a merge's rows in one block."""
from __future__ import annotations

import datetime as dt
import logging
import shutil

import pytest

from pipelines import history
from pipelines.generate import generate, snapshot_changes
from pipelines.ingest import Run, ingest_file
from population_helpers import CUTRU_HEADER, csv_text, deliver, person, write

RECOMPUTED = """
    select 'person', scope, count(*), count(raw_hash), coalesce(sum(hashtextextended(raw_hash, 0)), 0)
    from store.person where valid_to = 'infinity' and recorded_to = 'infinity'
    group by scope order by scope"""
KEPT = "select entity, scope, versions, hashed, hash_sum from store.scope_digest order by scope"


def sent_again(path, tmp_path, name):
    """The same content under another file name (other bytes: one trailing blank line)."""
    again = tmp_path / name
    shutil.copyfile(path, again)
    with open(again, "ab") as fh:
        fh.write(b"\n")
    return again


def test_a_snapshot_sent_again_is_recognised_by_its_digest(warehouse, db, inbox, tmp_path, caplog):
    week1 = generate("CUTRU", 2000, "01", 0.0, inbox, date=dt.date(2026, 11, 13), seed=11)
    ingest_file(week1["path"])
    assert db.execute(KEPT).fetchall() == db.execute(RECOMPUTED).fetchall()
    assert db.execute(KEPT).fetchone()[2:4] == (2000, 2000)

    caplog.set_level(logging.INFO, logger="pipelines.ingest")
    r = ingest_file(sent_again(week1["path"], tmp_path, "CUTRU_01_20261113_002.csv"))
    assert (r["status"], r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == ("loaded", 2000, 2000, 0)
    assert r["changes"] == {"new": 0, "changed": 0, "unchanged": 2000, "removed": 0}
    assert "2000 rows: the current versions of scope 01 sent again, all unchanged" in caplog.text
    assert db.execute("select count(*) from store.person").fetchone() == (2000,)

    # a snapshot with changes goes the long way, and the digest follows every merge
    caplog.clear()
    week2 = snapshot_changes(week1["path"], tmp_path, changed=0.02, removed=0.01, new=0.01, seed=2,
                             date=dt.date(2026, 11, 20))
    r = ingest_file(week2["path"])
    assert r["changes"] == {k: week2[k] for k in ("new", "changed", "unchanged", "removed")}
    assert "all unchanged" not in caplog.text
    assert db.execute(KEPT).fetchall() == db.execute(RECOMPUTED).fetchall()


def test_one_changed_row_is_not_taken_for_a_snapshot_sent_again(warehouse, db, inbox, tmp_path, caplog):
    rows = [person(pid=f"00109000000{i}", name=f"Nguyễn Văn {c}") for i, c in enumerate("ABCDE", start=1)]
    deliver(inbox, "CUTRU_01_20261113_001.csv", CUTRU_HEADER, rows)
    rows[2] = person(pid="001090000003", name="Nguyễn Văn Cường")
    caplog.set_level(logging.INFO, logger="pipelines.ingest")
    r = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, rows)
    assert r["changes"] == {"new": 0, "changed": 1, "unchanged": 4, "removed": 0}
    assert "all unchanged" not in caplog.text
    assert db.execute("select full_name from core.person where person_id = '001090000003'").fetchone() == \
        ("Nguyễn Văn Cường",)


def test_a_quarantined_row_sent_again_is_quarantined_again(warehouse, db, inbox):
    """The digest holds stored versions only: a snapshot whose rejected row comes again is checked
    the long way and its row quarantined again, with the same reason."""
    rows = [person(pid="001090000001"), person(pid="001090000002", born="31/02/1990")]
    first = deliver(inbox, "CUTRU_01_20261113_001.csv", CUTRU_HEADER, rows)
    again = ingest_file(write(inbox, "CUTRU_01_20261120_001.csv", csv_text(CUTRU_HEADER, rows) + "\n"))
    assert (first["rows_quarantined"], first["rejections"]) == (1, {"invalid_date": 1})
    assert (again["rows_read"], again["rows_loaded"], again["rows_quarantined"], again["rejections"]) == \
        (2, 1, 1, {"invalid_date": 1})
    assert again["changes"] == {"new": 0, "changed": 0, "unchanged": 1, "removed": 0}


def test_the_digest_follows_a_person_who_moves_to_another_province(warehouse, db, inbox):
    deliver(inbox, "CUTRU_01_20261113_001.csv", CUTRU_HEADER,
            [person(pid="001090000001"), person(pid="001090000002")])
    r = deliver(inbox, "CUTRU_79_20261114_001.csv", CUTRU_HEADER,
                [person(pid="001090000002", province="79", ward="25747"), person(pid="079090000003", province="79",
                                                                               ward="25747")])
    # province 79's first snapshot, but not all new keys: the person who moved has a current
    # version in province 01, which this merge ends
    assert r["changes"] == {"new": 1, "changed": 1, "unchanged": 0, "removed": 0}
    assert db.execute("select entity_key, operation from core.changes where delivery_id = %s order by 1",
                      (r["delivery_id"],)).fetchall() == [("001090000002", "update"), ("079090000003", "insert")]
    assert db.execute("select scope, count(*) from core.person join store.person using (person_id) "
                      "where store.person.valid_to = 'infinity' and store.person.recorded_to = 'infinity' "
                      "group by 1 order by 1").fetchall() == [("01", 1), ("79", 2)]
    assert db.execute(KEPT).fetchall() == db.execute(RECOMPUTED).fetchall()
    assert [r[2] for r in db.execute(KEPT)] == [1, 2]


def test_a_first_load_builds_the_indexes_after_its_insert(warehouse, db, inbox, monkeypatch):
    monkeypatch.setattr(history, "BULK_MIN_ROWS", 1)
    indexes = "select indexname, indexdef from pg_indexes where schemaname = 'store' and tablename = 'person' order by 1"
    before = db.execute(indexes).fetchall()
    files_before = db.execute("select pg_relation_filenode('store.person')").fetchone()[0]
    m = generate("CUTRU", 500, "01", 0.0, inbox, date=dt.date(2026, 11, 13), seed=5)
    r = ingest_file(m["path"])
    assert r["changes"] == {"new": 500, "changed": 0, "unchanged": 0, "removed": 0}
    assert db.execute(indexes).fetchall() == before  # every index back, as it was defined
    assert db.execute("select pg_relation_filenode('store.person')").fetchone()[0] != files_before  # truncated first
    assert db.execute("select count(*) from core.person").fetchone() == (500,)
    # the unique current-key index holds: a second current version of a key cannot be written
    assert db.execute("select count(distinct person_id) from core.person").fetchone() == (500,)

    # a load into a store that holds more than it brings maintains the indexes as it goes
    week2 = snapshot_changes(m["path"], inbox, changed=0.02, removed=0.0, new=0.0, seed=2, date=dt.date(2026, 11, 20))
    ingest_file(week2["path"])
    assert db.execute(indexes).fetchall() == before


def test_the_change_feed_numbers_a_merge_in_one_unbroken_block(warehouse, db, inbox, tmp_path):
    week1 = generate("CUTRU", 300, "01", 0.0, inbox, date=dt.date(2026, 11, 13), seed=11)
    ingest_file(week1["path"])
    week2 = snapshot_changes(week1["path"], tmp_path, changed=0.02, removed=0.01, new=0.01, seed=2,
                             date=dt.date(2026, 11, 20))
    ingest_file(week2["path"])
    blocks = db.execute("""
        select delivery_id, min(seq), max(seq), count(*), count(distinct seq),
               array_agg(distinct operation order by operation)
        from store.change_log group by 1 order by 1""").fetchall()
    (d1, lo1, hi1, n1, u1, ops1), (d2, lo2, hi2, n2, u2, ops2) = blocks
    assert (n1, u1, hi1 - lo1 + 1, ops1) == (300, 300, 300, ["insert"])
    assert (n2, u2, hi2 - lo2 + 1) == (week2["new"] + week2["changed"] + week2["removed"],) * 3
    assert lo2 > hi1 and ops2 == ["delete", "insert", "update"]
    # the removals come after the new and changed keys of the same delivery
    assert db.execute("select bool_and(seq > (select max(seq) from store.change_log where delivery_id = %s "
                      "and operation <> 'delete')) from store.change_log where delivery_id = %s "
                      "and operation = 'delete'", (d2, d2)).fetchone() == (True,)


def test_a_first_load_writes_its_changes_into_a_table_that_inherits_the_change_feed(warehouse, db, inbox, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setattr(history, "BULK_MIN_ROWS", 100)
    staged_options, attach = [], history._attach_feed

    def watched(conn, target, delivery_id):  # the stage table as it is about to be attached
        staged_options.append(conn.execute("select reloptions from pg_class where oid = %s::regclass", (
            f"stage.{history._stage_feed_name(delivery_id, target)}",)).fetchone()[0])
        attach(conn, target, delivery_id)
    monkeypatch.setattr(history, "_attach_feed", watched)
    week1 = generate("CUTRU", 300, "01", 0.0, inbox, date=dt.date(2026, 11, 13), seed=11)
    first = ingest_file(week1["path"])["delivery_id"]
    child = f"store.change_log_{first}_person"
    # no autovacuum while it was written aside (it would compete with the publication, which then
    # waits to cancel it); vacuumed as any store table once it is part of the feed
    assert staged_options == [["autovacuum_enabled=off"]]
    assert db.execute("select reloptions from pg_class where oid = %s::regclass", (child,)).fetchone() == (None,)
    assert db.execute("select count(*) from only store.change_log").fetchone() == (0,)
    assert db.execute(f"select count(*), max(seq) - min(seq) + 1 from {child}").fetchone() == (300, 300)
    assert db.execute("select pg_get_constraintdef(oid) from pg_constraint where conrelid = %s::regclass "
                      "and contype = 'p'", (child,)).fetchone() == ("PRIMARY KEY (seq)",)
    # (it was written on another connection while the versions were inserted) stamped with the
    # publication's time, and the digest of the scope counted there equals a recount
    assert db.execute(f"select distinct c.changed_at = p.recorded_from from {child} c "
                      "join store.person p on p.person_id = c.entity_key").fetchall() == [(True,)]
    assert db.execute(KEPT).fetchall() == db.execute(RECOMPUTED).fetchall()
    # a small merge afterwards writes into the change feed itself; readers see both, in order
    week2 = snapshot_changes(week1["path"], tmp_path, changed=0.02, removed=0.0, new=0.0, seed=2,
                             date=dt.date(2026, 11, 20))
    second = ingest_file(week2["path"])["delivery_id"]
    assert db.execute("select count(*) from only store.change_log").fetchone() == (6,)
    feed = db.execute("select delivery_id, operation, count(*), min(seq), max(seq) from core.changes "
                      "group by 1, 2 order by 4").fetchall()
    assert [row[:3] for row in feed] == [(first, "insert", 300), (second, "update", 6)]
    assert feed[0][4] < feed[1][3]
    assert db.execute("select count(*) from core.changes where seq > %s", (feed[0][4],)).fetchone() == (6,)


def test_a_first_load_that_fails_after_its_change_feed_was_written_aside_leaves_nothing(warehouse, db, inbox,
                                                                                        monkeypatch):
    """The feed of a large first load is written on another connection before the publication
    commits; when the publication then fails, none of it is published or left behind."""
    monkeypatch.setattr(history, "BULK_MIN_ROWS", 100)
    week1 = generate("CUTRU", 300, "01", 0.0, inbox, date=dt.date(2026, 11, 13), seed=11)
    effects = Run._effects

    def fail(run):
        raise RuntimeError("the publication failed after the merge")
    monkeypatch.setattr(Run, "_effects", fail)
    with pytest.raises(RuntimeError, match="failed after the merge"):
        ingest_file(week1["path"])
    failed = db.execute("select max(delivery_id) from meta.delivery").fetchone()[0]
    assert db.execute("select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                      "where n.nspname in ('stage', 'store') and c.relname ~ %s",
                      (f"_{failed}(_|$)",)).fetchall() == []
    assert db.execute("select (select count(*) from core.changes), (select count(*) from store.person), "
                      "(select count(*) from store.scope_digest)").fetchone() == (0, 0, 0)

    monkeypatch.setattr(Run, "_effects", effects)
    r = ingest_file(week1["path"])
    assert (r["status"], r["changes"]) == ("loaded", {"new": 300, "changed": 0, "unchanged": 0, "removed": 0})
    assert db.execute("select delivery_id, count(*), max(seq) - min(seq) + 1 from core.changes group by 1"
                      ).fetchall() == [(r["delivery_id"], 300, 300)]
    assert db.execute(KEPT).fetchall() == db.execute(RECOMPUTED).fetchall()


ASSUMED_UNIQUE = "a large first load: its keys are assumed unique, and its merge proves them so"
CHECKED_AGAIN = "a key is sent more than once: the rows are checked again with their repeated keys"
PEOPLE = [person(pid=f"0010900000{i:02d}", household=f"HK{i}") for i in range(1, 7)]


def checked_in_ranges(monkeypatch, caplog):
    """Large-delivery mode for a small file: checked on two connections, its first load's keys
    assumed unique rather than grouped."""
    import pipelines.ingest as ingest

    monkeypatch.setattr(ingest, "PARALLEL_MIN_ROWS", 0)
    monkeypatch.setenv("COREHUB_PARALLEL", "2")
    caplog.set_level(logging.INFO, logger="pipelines.ingest")


def test_a_large_first_load_assumes_its_keys_unique_and_the_store_agrees(warehouse, db, inbox, monkeypatch,
                                                                          caplog):
    checked_in_ranges(monkeypatch, caplog)
    r = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, PEOPLE)
    assert (r["status"], r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == ("loaded", 6, 6, 0)
    assert r["changes"] == {"new": 6, "changed": 0, "unchanged": 0, "removed": 0}
    assert ASSUMED_UNIQUE in caplog.messages and CHECKED_AGAIN not in caplog.messages
    assert db.execute("select count(*) from core.person").fetchone() == (6,)


def test_a_large_first_loads_empty_repeated_keys_are_analyzed_before_the_checked_pass_joins_them(
        warehouse, db, inbox, monkeypatch, caplog):
    """Never analyzed, the empty table of repeated keys is planned as a thousand keys, and the
    checked pass sorted every row to merge-join it (1M rows: 0.9 s of CPU)."""
    checked_in_ranges(monkeypatch, caplog)
    on_connections, seen = Run._on_connections, []

    def checking(run, batches):
        if any("insert into stage.checked_" in statement for batch in batches for statement in batch):
            seen.append(db.execute("select reltuples from pg_class where oid = %s::regclass",
                                   (run.repeated,)).fetchone()[0])
        return on_connections(run, batches)
    monkeypatch.setattr(Run, "_on_connections", checking)
    r = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, PEOPLE)
    assert (r["status"], r["rows_loaded"]) == ("loaded", 6)
    assert ASSUMED_UNIQUE in caplog.messages
    assert seen == [0]  # analyzed: no rows (never analyzed: -1)


def test_the_checking_ranges_leave_no_staged_row_out_however_the_rows_are_numbered(warehouse, db, inbox,
                                                                                    monkeypatch, caplog):
    """The ranges come from COPY's row count and the raw table's numbering from 1; the first and
    last are open-ended, so a count or a numbering other than expected only unbalances them."""
    checked_in_ranges(monkeypatch, caplog)
    stage = Run._stage

    def miscounted(run, *args):
        present = stage(run, *args)
        assert run.staged_rows == 6  # what COPY wrote
        run.staged_rows = 2
        return present
    monkeypatch.setattr(Run, "_stage", miscounted)
    r = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, PEOPLE)
    assert (r["status"], r["rows_read"], r["rows_loaded"]) == ("loaded", 6, 6)
    assert db.execute("select count(*) from core.person").fetchone() == (6,)


# (rows added to PEOPLE, receipt: rows_loaded, rows_quarantined, rejections; quarantined rows; persons stored)
KEY_SENT_TWICE = {
    "two accepted rows": ([person(pid="001090000003", household="HK9")],
                          (5, 2, {"duplicate_key": 2}),
                          [(3, ["duplicate_key"]), (7, ["duplicate_key"])], 5),
    "a line sent twice byte for byte": ([PEOPLE[2]], (7, 0, {}), [], 6),
    "a rejected row and an accepted one": ([person(pid="001090000003", born="31/02/1990")],
                                           (5, 2, {"duplicate_key": 2, "invalid_date": 1}),
                                           [(3, ["duplicate_key"]), (7, ["invalid_date", "duplicate_key"])], 5),
    "two rejected rows": ([person(pid="001090000007", sex="X"), person(pid="001090000007", born="31/02/1990")],
                          (6, 2, {"duplicate_key": 2, "invalid_code": 1, "invalid_date": 1}),
                          [(7, ["invalid_code", "duplicate_key"]), (8, ["invalid_date", "duplicate_key"])], 6),
}


@pytest.mark.parametrize("bulk", [False, True], ids=["indexes kept", "indexes built after the insert"])
@pytest.mark.parametrize("case", KEY_SENT_TWICE)
def test_a_large_first_load_that_sends_a_key_twice_is_checked_again_with_its_repeated_keys(
        warehouse, db, inbox, monkeypatch, caplog, case, bulk):
    """The store's unique index of current keys refuses a key that two accepted rows share (the
    publication rolls back); a rejected row's key is looked for among the others. Either way the
    rows are checked again as a small delivery is, with the same receipt, quarantine and core."""
    checked_in_ranges(monkeypatch, caplog)
    if bulk:
        monkeypatch.setattr(history, "BULK_MIN_ROWS", 1)
    more, (loaded, quarantined, rejections), rows, stored = KEY_SENT_TWICE[case]
    r = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, PEOPLE + more)
    assert (r["rows_read"], r["rows_loaded"], r["rows_quarantined"], r["rejections"]) == \
        (len(PEOPLE + more), loaded, quarantined, rejections)
    assert (caplog.messages.count(ASSUMED_UNIQUE), caplog.messages.count(CHECKED_AGAIN)) == (1, 1)
    assert db.execute("select row_no, reasons from quarantine.row order by 1").fetchall() == rows
    assert db.execute("select count(*), count(distinct person_id) from core.person").fetchone() == (stored, stored)
    assert db.execute("select count(*) from store.change_log").fetchone() == (stored,)
    assert db.execute("select relname from pg_class where relnamespace = 'stage'::regnamespace").fetchall() == []
    assert db.execute(KEPT).fetchall() == db.execute(RECOMPUTED).fetchall()
