"""The `corehub` command as other parts use it: one JSON receipt on stdout, exit codes 0/1/2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from population_helpers import CUTRU_HEADER, csv_text, person, write

CLI = [str(Path(sys.executable).with_name("corehub"))]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=300)


def test_ingest_prints_one_json_receipt_and_exits_0(warehouse, inbox):
    path = write(inbox, "CUTRU_01_20261120_001.csv", csv_text(CUTRU_HEADER, [person(), person(pid="12")]))
    proc = run("ingest", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    receipt = json.loads(proc.stdout)
    assert proc.stdout.count("\n") == 1
    assert receipt["status"] == "loaded_with_rejections"
    assert (receipt["rows_read"], receipt["rows_loaded"], receipt["rows_quarantined"]) == (2, 1, 1)
    assert receipt["rejections"] == {"invalid_personal_id": 1}
    assert set(receipt) >= {"delivery_id", "feed", "file", "sha256", "status", "rows_read", "rows_loaded",
                            "rows_quarantined", "rejections", "findings", "changes", "report"}
    assert Path(receipt["report"]).is_file() and Path(receipt["rejected_rows"]).is_file()
    assert "Traceback" not in proc.stderr


def test_rejected_delivery_exits_1_with_reason(warehouse, inbox):
    path = write(inbox, "CUTRU_01_20261120_001.csv", "SO_DINH_DANH,HO_TEN\n001090000001,An\n")
    proc = run("ingest", str(path), "--json")
    assert proc.returncode == 1
    receipt = json.loads(proc.stdout)
    assert receipt["status"] == "rejected"
    assert receipt["reason"] == ("required column(s) missing from the header: NGAY_SINH, GIOI_TINH, MA_TINH_TT, "
                                 "MA_XA_TT, NGAY_CAP_NHAT (the header has: SO_DINH_DANH, HO_TEN)")
    assert "Traceback" not in proc.stderr


def test_usage_errors_exit_2(warehouse, tmp_path):
    assert run("ingest", str(tmp_path / "nope.csv"), "--json").returncode == 2
    assert run("frobnicate").returncode == 2
    assert run("ingest").returncode == 2


def test_url_prints_only_the_url(warehouse):
    proc = run("url")
    assert proc.returncode == 0
    assert proc.stdout.strip() == warehouse
    with psycopg.connect(proc.stdout.strip()) as conn:
        assert conn.execute("select count(*) from ref.admin_unit where level = 'ward' and valid_to is null"
                            ).fetchone() == (3321,)


def test_generate_writes_a_delivery_and_prints_its_manifest(tmp_path):
    proc = run("generate", "HOTICH", "--rows", "50", "--province", "79", "--defect-rate", "0.1",
               "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert Path(manifest["path"]).name == "HOTICH_79_20261120_001.csv"
    assert (manifest["rows_read"], manifest["defect_rows"]) == (50, 5)
    assert sum(manifest["rejections"].values()) == 5
