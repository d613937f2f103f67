"""Outputs are safe to open: with a password in WAREHOUSE_URL, no log line, receipt, report, CLI
output, operations row or lineage event ever shows it (external PostgreSQL at 127.0.0.1:5432,
trust authentication, so any password connects)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from population_helpers import CUTRU_HEADER, csv_text, person, write

EXTERNAL = "postgresql://root@127.0.0.1:5432/postgres"
PASSWORD = "s3cret-Pa55"
CLI = str(Path(sys.executable).with_name("corehub"))


@pytest.fixture
def secret_url(tmp_path):
    try:
        admin = psycopg.connect(EXTERNAL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no external PostgreSQL at 127.0.0.1:5432 ({exc})")
    name = f"corehub_secret_{os.getpid()}"
    with admin:
        admin.execute(f'drop database if exists "{name}" with (force)')
        admin.execute(f'create database "{name}"')
    yield f"postgresql://root:{PASSWORD}@127.0.0.1:5432/{name}"
    with psycopg.connect(EXTERNAL, autocommit=True) as admin:
        admin.execute(f'drop database if exists "{name}" with (force)')


def test_no_output_shows_the_warehouse_password(secret_url, tmp_path):
    home, drop = tmp_path / "home", tmp_path / "drop"
    drop.mkdir()
    env = os.environ.copy() | {"WAREHOUSE_URL": secret_url, "COREHUB_HOME": str(home),
                               "COREHUB_LINEAGE": f"file:{tmp_path / 'lineage.jsonl'}"}
    good = write(drop, "CUTRU_01_20261120_001.csv", csv_text(CUTRU_HEADER, [person(), person(born="31/02/1990",
                                                                                             pid="001090000002")]))
    bad = write(drop, "CUTRU_01_20261121_001.csv", "SO_DINH_DANH\n1\n")
    late = write(drop, "CUTRU_01_20261119_001.csv", csv_text(CUTRU_HEADER, [person()]))
    outputs = []
    for args in (["ingest", str(good), "--json"], ["ingest", str(good)], ["ingest", str(bad), "--json"],
                 ["ingest", str(late)], ["ingest", str(drop / "missing.csv")], ["quarantine", "CUTRU"],
                 ["quarantine", "CUTRU", "--json"], ["status"], ["status", "--json"]):
        proc = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=300)
        assert "Traceback" not in proc.stderr, proc.stderr
        outputs += [proc.stdout, proc.stderr]
    # the runs happened (a test that cannot fail is a defect): every kind of outcome is in the logs
    text = "\n".join(outputs)
    assert all(s in text for s in ("loaded_with_rejections", "duplicate", "rejected", "superseded")), text
    assert PASSWORD not in text
    files = [p for p in [*home.rglob("*"), tmp_path / "lineage.jsonl"] if p.is_file()]
    assert {p.name for p in files} >= {"receipt.json", "report.html", "rejected.csv", "validation.html",
                                       "lineage.jsonl"}
    for path in files:
        assert PASSWORD.encode() not in path.read_bytes(), path
    with psycopg.connect(secret_url) as conn:
        for table in ("meta.delivery", "ops.delivery_log", "quarantine.row"):
            assert PASSWORD not in str(conn.execute(f"select * from {table}").fetchall()), table


def test_an_unreachable_warehouse_is_named_without_its_password(tmp_path):
    env = os.environ.copy() | {"WAREHOUSE_URL": f"postgresql://root:{PASSWORD}@127.0.0.1:1/nowhere",
                               "COREHUB_HOME": str(tmp_path / "home")}
    path = write(tmp_path, "CUTRU_01_20261120_001.csv", csv_text(CUTRU_HEADER, [person()]))
    for args in (["ingest", str(path), "--json"], ["status"], ["quarantine", "CUTRU"]):
        proc = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 3
        assert proc.stdout == ""
        assert proc.stderr.splitlines()[-1].startswith(
            f"corehub {args[0]}: cannot use the warehouse (postgresql://root:***@127.0.0.1:1/nowhere): "
            "connection failed: connection to server at \"127.0.0.1\", port 1 failed: Connection refused")
        assert "Traceback" not in proc.stderr and PASSWORD not in proc.stderr
