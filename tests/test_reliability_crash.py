"""Crash safety: a real `corehub ingest` killed (SIGKILL) at each stage boundary, then run again,
ends in exactly the state of one clean run: the same versions, quarantine, change feed, final
statuses and receipt; no 'processing' row, stage table or lock left; the dead run `abandoned`."""
from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest

from population_helpers import CUTRU_HEADER, HOTICH_HEADER, csv_text, event, person, write
from pipelines.config import Settings
from pipelines.ingest import ingest_file
from reliability_helpers import Paused, ingest, receipt_shape, state

# week 1: three people (one quarantined); week 2: a move, a departure, a newcomer, a bad date
WEEK1 = csv_text(CUTRU_HEADER, [person(), person(pid="001190000002", name="Trần Thị Bình", sex="Nữ"),
                                person(pid="001090000003", name="Lê Văn Cường", born="31/02/1990")])
WEEK2 = csv_text(CUTRU_HEADER, [person(ward="00007", updated="01/09/2025 10:00:00"),
                                person(pid="001090000004", name="Phạm Văn Dũng"),
                                person(pid="001090000005", name="Hoàng Văn Em", born="32/01/1990")])
# ... and a death of someone current (a new version of the person: the merge's effect on another entity)
DEATHS = csv_text(HOTICH_HEADER, [event(no="HT-9", kind="KHAI_TU", pid="001090000001", name="Nguyễn Văn An"),
                                  event(no="HT-10", kind="KHAI_TU", date="31/13/2026")])


def _setup(folder: Path) -> list[Path]:
    return [write(folder, "CUTRU_01_20261120_001.csv", WEEK1), write(folder, "CUTRU_01_20261127_001.csv", WEEK2),
            write(folder, "HOTICH_01_20261128_001.csv", DEATHS)]


@pytest.fixture(scope="module")
def reference(warehouse_server, tmp_path_factory):
    """The state after one clean run of the three deliveries, in a database of its own."""
    admin, template = warehouse_server
    name = f"{template}_crash_reference"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "{template}"')
    url = f"{admin.rpartition('/')[0]}/{name}"
    home, drop = tmp_path_factory.mktemp("reference-home"), tmp_path_factory.mktemp("reference-drop")
    s = Settings(home=home, warehouse_url=url)
    receipts = [ingest_file(p, s) for p in _setup(drop)]
    reference_state = state(url)
    assert [r["status"] for r in receipts] == ["loaded_with_rejections"] * 3
    assert receipts[1]["changes"] == {"new": 1, "changed": 1, "unchanged": 0, "removed": 1}
    with psycopg.connect(url) as conn:  # the death reached the person
        assert conn.execute("select person_id, death_date::text from core.person where death_date is not null"
                            ).fetchall() == [("001090000001", "2026-10-10")]
    yield reference_state, receipts
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


STAGES = ["archived", "copy", "validated", "locked", "merge", "publish"]


@pytest.mark.parametrize("victim,stage", [(1, s) for s in STAGES] + [(2, "merge"), (2, "publish")],
                         ids=[f"cutru-week2-{s}" for s in STAGES] + ["hotich-deaths-merge", "hotich-deaths-publish"])
def test_killed_at_a_stage_boundary_then_rerun_equals_one_clean_run(warehouse, db, inbox, reference, stage,
                                                                      victim):
    """CUTRU week 2 is a snapshot with a change, a removal, a newcomer and a quarantined row; the
    HOTICH deaths also end a person's version (an effect on another entity) in the merge."""
    expected_state, expected_receipts = reference
    paths = _setup(inbox)
    home = Path(os.environ["COREHUB_HOME"])
    for i, path in enumerate(paths):
        if i != victim:  # the deliveries around the victim: in this process, like the reference
            assert receipt_shape(ingest_file(path)) == receipt_shape(expected_receipts[i])
            continue
        Paused(path, stage, home).wait().kill()
        killed = db.execute("select delivery_id, status from meta.delivery order by delivery_id desc limit 1"
                            ).fetchone()
        assert killed[1] == "processing"  # the dead run's row, until someone looks
        code, receipt = ingest(path)
        assert (code, receipt_shape(receipt)) == (0, receipt_shape(expected_receipts[i]))
        # the dead run was found, cleaned and marked; its receipt says so
        assert db.execute("select status from meta.delivery where delivery_id = %s", (killed[0],)
                          ).fetchone() == ("abandoned",)
        dead = json.loads((home / "reports" / receipt["feed"] / str(killed[0]) / "receipt.json").read_text())
        assert dead["status"] == "abandoned"
    assert state(warehouse) == expected_state
    assert expected_state["processing"] == expected_state["stage_relations"] == expected_state["advisory_locks"] == 0
