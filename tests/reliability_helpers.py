"""Real `corehub ingest` processes for the reliability tests: started, paused at a stage boundary
(COREHUB_PAUSE_AT, pipelines/pause.py), killed or let go; and the warehouse's state as plain data
without the ids and clock times that differ between two runs of the same thing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

CLI = str(Path(sys.executable).with_name("corehub"))
WAIT = 240  # seconds a process may take to reach a pause point (a limit, never an assertion on time)


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, env=env or os.environ.copy(), timeout=300)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def ingest(path: Path, env: dict | None = None) -> tuple[int, dict]:
    proc = run("ingest", str(path), "--json", env=env)
    return proc.returncode, json.loads(proc.stdout)


class Paused:
    """A `corehub ingest` started to stop at `stage`; wait() until it is there, then kill() or go()."""

    def __init__(self, path: Path, stage: str, home: Path):
        self.marker = home / f"paused-{stage}"
        env = os.environ.copy() | {"COREHUB_PAUSE_AT": stage, "COREHUB_PAUSE_DIR": str(home)}
        self.proc = subprocess.Popen([CLI, "ingest", str(path), "--json"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)

    def wait(self) -> "Paused":
        deadline = time.monotonic() + WAIT
        while not self.marker.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"ended before its pause point: {self.proc.communicate()}")
            assert time.monotonic() < deadline, "never reached its pause point"
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.marker.unlink(missing_ok=True)

    def go(self) -> tuple[int, dict]:
        self.marker.unlink()
        out, err = self.proc.communicate(timeout=300)
        assert "Traceback" not in out + err, err
        return self.proc.returncode, json.loads(out)


def started(path: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([CLI, "ingest", str(path), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env or os.environ.copy())


def finished(proc: subprocess.Popen) -> tuple[int, dict]:
    out, err = proc.communicate(timeout=300)
    assert "Traceback" not in out + err, err
    return proc.returncode, json.loads(out)


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def waiting_on_advisory_lock(url: str) -> int:
    """Sessions of this database waiting for an advisory lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("select count(*) from pg_stat_activity where datname = current_database() "
                            "and wait_event_type = 'Lock' and wait_event = 'advisory'").fetchone()[0]


VOLATILE = {"delivery_id", "report", "rejected_rows", "duplicate_of", "superseded_by"}


def receipt_shape(receipt: dict) -> dict:
    return {k: v for k, v in receipt.items() if k not in VOLATILE}


def state(url: str) -> dict:
    """Everything a delivery publishes, without delivery ids, version ids and clock times."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set timezone = 'UTC'")
        out = {}
        for (table,) in conn.execute("select table_name from information_schema.tables where table_schema = 'store' "
                                     "and table_type = 'BASE TABLE' and table_name <> 'change_log' order by 1"):
            every = [c for (c,) in conn.execute(
                "select column_name from information_schema.columns where table_schema = 'store' and table_name = %s "
                "order by ordinal_position", (table,))]
            cols = [c for c in every if c not in ('version_id', 'delivery_id', 'recorded_from', 'recorded_to')]
            current = "t.recorded_to = 'infinity'" if "recorded_to" in every else "null"  # not versioned
            by = "join meta.delivery d using (delivery_id)" if "delivery_id" in every else \
                "left join (select null::text as file_name) d on false"  # kept per scope, e.g. the digests
            out[table] = sorted(map(repr, conn.execute(
                f"select {', '.join(f't.{c}::text' for c in cols)}, {current}, d.file_name "
                f"from store.{table} t {by}").fetchall()))
        out["change_log"] = sorted(map(repr, conn.execute(
            "select entity, entity_key, operation, d.file_name from store.change_log join meta.delivery d "
            "using (delivery_id)").fetchall()))
        out["quarantine"] = sorted(map(repr, conn.execute(
            "select d.file_name, row_no, reasons, detail, record_key, raw, r.file_name from quarantine.row q "
            "join meta.delivery d using (delivery_id) left join meta.delivery r on r.delivery_id = q.resolved_by"
        ).fetchall()))
        out["deliveries"] = [(f, s, receipt_shape(r or {})) for f, s, r in conn.execute(
            "select file_name, status, receipt from meta.delivery where status <> 'abandoned' order by delivery_id")]
        out["processing"] = conn.execute("select count(*) from meta.delivery where status = 'processing'").fetchone()[0]
        out["stage_relations"] = conn.execute(
            "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'stage' and c.relkind in ('r', 'v')").fetchone()[0]
        out["advisory_locks"] = conn.execute(
            "select count(*) from pg_locks where locktype = 'advisory' and database = "
            "(select oid from pg_database where datname = current_database())").fetchone()[0]
    return out
