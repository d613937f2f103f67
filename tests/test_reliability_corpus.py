"""The corpus of malformed and odd deliveries (tests/corpus/manifest.yaml), each through the real
`corehub ingest PATH --json`: the exact receipt, the exit code, no traceback, the raw file archived,
and for a rejected file a warehouse without one stored, quarantined or changed row."""
from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).with_name("corpus")))
import build  # noqa: E402  (tests/corpus/build.py)

from pipelines.config import settings  # noqa: E402

CLI = str(Path(sys.executable).with_name("corehub"))
MANIFEST = build.load_manifest()
NO_CHANGES = {"new": 0, "changed": 0, "unchanged": 0, "removed": 0}


def ingest(path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([CLI, "ingest", str(path), "--json"], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=300)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.stdout.count("\n") == 1, proc.stdout
    return proc, json.loads(proc.stdout)


def rows_everywhere(db) -> dict[str, int]:
    """Rows in every table a delivery can write to, besides its own meta.delivery row."""
    tables = [f"store.{t}" for (t,) in db.execute(
        "select table_name from information_schema.tables where table_schema = 'store' and table_type = 'BASE TABLE'")]
    tables += ["quarantine.row", "ops.delivery_log"]
    return {t: db.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}


def test_the_corpus_is_big_enough_and_every_case_is_named_once():
    ids = [c["id"] for c in MANIFEST["rejected"] + MANIFEST["loaded"]]
    assert len(MANIFEST["rejected"]) >= 30
    assert len(ids) == len(set(ids))
    feeds = {c["file"].split("_")[0] for c in MANIFEST["rejected"]}
    assert {"CUTRU", "HOTICH", "DKKD"} <= feeds


@pytest.mark.parametrize("case", MANIFEST["rejected"], ids=[c["id"] for c in MANIFEST["rejected"]])
def test_malformed_delivery_is_rejected_with_its_exact_receipt(warehouse, db, inbox, case):
    path = build.write_case(case, inbox)
    data = path.read_bytes()
    proc, receipt = ingest(path)
    assert proc.returncode == 1, proc.stderr
    assert receipt["status"] == "rejected"
    if "reason_starts" in case:
        assert receipt["reason"].startswith(case["reason_starts"]), receipt["reason"]
    else:
        assert receipt["reason"] == case["reason"]
    assert (receipt["rows_read"], receipt["rows_loaded"], receipt["rows_quarantined"]) == (0, 0, 0)
    assert (receipt["rejections"], receipt["findings"], receipt["changes"]) == ({}, {}, NO_CHANGES)
    assert receipt["file"] == case["file"]
    # the receipt on disk is the one printed; the report says why, escaped
    report = Path(receipt["report"])
    assert json.loads(report.with_name("receipt.json").read_text(encoding="utf-8")) == receipt
    page = report.read_text(encoding="utf-8")
    assert "Why the whole file was rejected" in page and html.escape(receipt["reason"]) in page
    # the raw bytes are archived under their hash, and nothing else changed
    assert (settings().archive / receipt["sha256"]).read_bytes() == data
    assert db.execute("select status, receipt->>'reason' from meta.delivery").fetchall() == [
        ("rejected", receipt["reason"])]
    rows = rows_everywhere(db)
    assert rows.pop("ops.delivery_log") == 1  # the operations log counts the rejection
    assert rows == dict.fromkeys(rows, 0)
    assert db.execute("select count(*) from pg_tables where schemaname = 'stage'").fetchone() == (0,)


@pytest.mark.parametrize("case", MANIFEST["loaded"], ids=[c["id"] for c in MANIFEST["loaded"]])
def test_odd_but_valid_delivery_loads_and_keeps_values_literally(warehouse, db, inbox, case):
    proc, receipt = ingest(build.write_case(case, inbox))
    assert proc.returncode == 0, proc.stderr
    assert {k: receipt[k] for k in case["receipt"]} == case["receipt"]
    assert receipt["rows_read"] == receipt["rows_loaded"] + receipt["rows_quarantined"]
    for query in case.get("stored", []):
        got = [[list(v) if isinstance(v, list) else v for v in row] for row in db.execute(query["sql"]).fetchall()]
        assert got == query["rows"], query["sql"]
    if "rejected_csv" in case:  # the first rejected row, formulas neutralised
        lines = Path(receipt["rejected_rows"]).read_text(encoding="utf-8").splitlines(keepends=True)
        assert lines[1] == case["rejected_csv"]
    page = Path(receipt["report"]).read_text(encoding="utf-8")
    for text in case.get("report_contains", []):
        assert text in page
    assert "<script>" not in page and "<b>bold" not in page
