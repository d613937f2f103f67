"""A large UTF-8 file is copied in two parts at once (pipelines.ingest.Run._stage_in_two): the
receipt, the quarantine's row numbers, the core and COPY's complaints are exactly those of one
COPY. COREHUB_SPLIT_MIN_BYTES=0 makes every file here large enough."""
from __future__ import annotations

import datetime as dt

import pytest

import pipelines.ingest as ingest
from pipelines.decode import split_point
from pipelines.generate import generate, snapshot_changes
from pipelines.ingest import ingest_file
from population_helpers import CUTRU_HEADER, csv_text, person, to_cp1258

STAGE_LEFT = "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'stage'"
NOTHING_LOADED = "select (select count(*) from store.person), (select count(*) from quarantine.row)"


@pytest.fixture
def in_two(monkeypatch) -> list[int]:
    """Every file is copied in two parts and checked on two connections; the byte where each
    ingest cut its file."""
    monkeypatch.setenv("COREHUB_SPLIT_MIN_BYTES", "0")
    monkeypatch.setenv("COREHUB_PARALLEL", "2")
    monkeypatch.setattr(ingest, "PARALLEL_MIN_ROWS", 0)
    cuts, stage_in_two = [], ingest.Run._stage_in_two

    def spied(run, fmt, columns, all_cols, split):
        cuts.append(split)
        return stage_in_two(run, fmt, columns, all_cols, split)
    monkeypatch.setattr(ingest.Run, "_stage_in_two", spied)
    return cuts


@pytest.mark.parametrize("data, after, point", [
    (b'H\nab\ncd\nef\n', 4, 5),                # the first line end at or past byte 4
    (b'H\nab\ncd\nef\n', 5, 8),
    (b'H\n"a\nb",1\ncd\n', 3, 10),             # not inside the quoted field "a\nb"
    (b'H\n"a""\nb",1\ncd\n', 3, 12),           # an escaped quote is two quotes
    (b'H\n"a\nb\nc",1\n', 3, 12),
    (b'H\n"a\nb\nc,1\n', 3, None),             # a quote never closed: no line end outside it
    (b'H\nabc', 2, None),                      # no line end past byte 2
])
def test_the_cut_is_a_line_end_outside_quotes(tmp_path, data, after, point):
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    assert split_point(path, after) == point
    if point:
        assert data[point - 1:point] == b"\n"


def _core_and_quarantine(db):
    return (db.execute("select person_id, full_name, birth_date, residence_ward_code, raw_hash, valid_from "
                       "from store.person order by 1").fetchall(),
            db.execute("select row_no, reasons, detail, raw from quarantine.row order by 1").fetchall())


@pytest.mark.parametrize("options", [
    dict(encoding="utf-8", repeat_header_at=1500),
    dict(encoding="utf-8-sig", crlf=True, trailing_blank_lines=3),
], ids=["utf8-repeated-header", "utf8-bom-crlf"])
def test_a_file_copied_in_two_parts_gives_what_one_copy_gives(warehouse, db, inbox, in_two, monkeypatch, options):
    m = generate("CUTRU", 3000, "79", 0.05, inbox, date=dt.date(2026, 11, 20), seed=7, **options)
    r = ingest_file(m["path"])
    assert len(in_two) == 1
    assert (r["rows_read"], r["rows_quarantined"]) == (3000, m["defect_rows"])
    assert r["rejections"] == m["rejections"] and m["rejections"].get("duplicate_key")
    assert db.execute(STAGE_LEFT).fetchone() == (0,)
    in_parts = _core_and_quarantine(db)

    db.execute("truncate store.person, quarantine.row, store.change_log")
    db.execute("delete from meta.delivery")
    monkeypatch.setenv("COREHUB_SPLIT_MIN_BYTES", str(1 << 40))
    again = ingest_file(m["path"])
    assert len(in_two) == 1  # (one COPY)
    assert {k: again[k] for k in ("rows_read", "rows_quarantined", "rejections", "changes")} == \
        {k: r[k] for k in ("rows_read", "rows_quarantined", "rejections", "changes")}
    assert _core_and_quarantine(db) == in_parts


def _people(count: int) -> list[list[str]]:
    return [person(pid=f"0010900{i:05d}", name="Le Van A", address="Pho Hue", relation="Chu ho")
            for i in range(1, count + 1)]


def test_a_row_copy_cannot_read_in_the_second_part_is_named_by_its_row_in_the_file(warehouse, db, inbox, in_two):
    rows = _people(400)
    rows[349] = rows[349] + ["one field too many"]
    path = inbox / "CUTRU_01_20261120_001.csv"
    path.write_text(csv_text(CUTRU_HEADER, rows), encoding="utf-8")
    r = ingest_file(path)
    assert in_two and path.read_bytes()[:in_two[0]].count(b"\n") < 351  # (that row is in the second part)
    assert (r["status"], r["reason"]) == ("rejected", "a row has more fields than the header (near data row 350)")
    assert db.execute(STAGE_LEFT).fetchone() == (0,)
    assert db.execute(NOTHING_LOADED).fetchone() == (0, 0)


def test_the_first_part_s_problem_is_the_one_reported(warehouse, db, inbox, in_two):
    rows = _people(400)
    rows[9] = rows[9][:5]
    rows[349] = rows[349] + ["one field too many"]
    path = inbox / "CUTRU_01_20261120_001.csv"
    path.write_text(csv_text(CUTRU_HEADER, rows), encoding="utf-8")
    r = ingest_file(path)
    assert in_two
    assert (r["status"], r["reason"]) == ("rejected", "a row has fewer fields than the header (near data row 10)")
    assert db.execute(STAGE_LEFT).fetchone() == (0,)
    assert db.execute(NOTHING_LOADED).fetchone() == (0, 0)


def test_a_file_not_utf8_in_its_second_part_is_read_again_whole(warehouse, db, inbox, in_two):
    late = person(pid="001090099999", name="Nguyễn Văn Bình", address="Phố Huế")
    path = inbox / "CUTRU_01_20261120_001.csv"
    # (past the first MiB, which is read before anything is copied)
    path.write_bytes(to_cp1258(csv_text(CUTRU_HEADER, _people(11999) + [late])))
    r = ingest_file(path)
    assert in_two and in_two[0] < path.stat().st_size - 200  # (the last row is in the second part)
    assert (r["status"], r["rows_read"], r["rows_loaded"]) == ("loaded", 12000, 12000)
    assert db.execute("select full_name, residence_address from core.person where person_id = '001090099999'"
                      ).fetchone() == ("Nguyễn Văn Bình", "Phố Huế")
    assert db.execute(STAGE_LEFT).fetchone() == (0,)


def test_a_weekly_snapshot_and_one_sent_again_in_two_parts(warehouse, db, inbox, tmp_path, in_two):
    week1 = generate("CUTRU", 2000, "01", 0.0, inbox, date=dt.date(2026, 11, 13), seed=11)
    assert ingest_file(week1["path"])["changes"] == {"new": 2000, "changed": 0, "unchanged": 0, "removed": 0}
    week2 = snapshot_changes(week1["path"], tmp_path, changed=0.02, removed=0.01, new=0.01, seed=2,
                             date=dt.date(2026, 11, 20))
    r = ingest_file(week2["path"])
    assert r["changes"] == {k: week2[k] for k in ("new", "changed", "unchanged", "removed")}
    again = tmp_path / "CUTRU_01_20261120_002.csv"
    again.write_bytes(open(week2["path"], "rb").read() + b"\n")
    r = ingest_file(again)
    assert r["changes"] == {"new": 0, "changed": 0, "unchanged": week2["rows_read"], "removed": 0}
    assert len(in_two) == 3
    assert db.execute(STAGE_LEFT).fetchone() == (0,)
