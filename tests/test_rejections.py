"""Whole-file rejections: a clear reason, the raw file archived, the core unchanged."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pipelines.ingest import ingest_file
from population_helpers import CUTRU_HEADER, csv_text, person, write

GOOD = csv_text(CUTRU_HEADER, [person()])


def _bytes(name: str, data: bytes, inbox: Path) -> Path:
    path = inbox / name
    path.write_bytes(data)
    return path


CASES = [
    ("CUTRU_01_20261120_001.csv", b"", "the file is empty: no header line and no rows"),
    ("CUTRU_01_20261120_001.csv", ",".join(CUTRU_HEADER).encode() + b"\r\n\r\n",
     "the file has a header but no data rows"),
    ("CUTRU_01_20261120_001.csv", GOOD.replace(",", ";").encode(),
     "the columns are separated by ';'; the agreed format separates them by commas (or tabs in Excel's Unicode text)"),
    ("CUTRU_01_20261120_001.csv", GOOD.encode().replace(b"Nguy", b"Ng\x00uy"),
     "the file contains NUL bytes, which a text extract never has: it is damaged or not a CSV file"),
    ("CUTRU_01_20261120_001.csv", (GOOD + '001090000002,"unterminated\n').encode(),
     'a quoted field is never closed (a missing " character) (near data row 3)'),
    ("CUTRU_01_20261120_001.csv", (GOOD + "001090000002,x\n").encode(),
     "a row has fewer fields than the header (near data row 2)"),
    ("CUTRU-01-20261120.csv", GOOD.encode(),
     "the file name 'CUTRU-01-20261120.csv' does not follow <FEED>_<PROVINCE>_<YYYYMMDD>_<SEQ>.<ext>, "
     "e.g. CUTRU_01_20261120_001.csv"),
    ("DANCU_01_20261120_001.csv", GOOD.encode(), "unknown feed 'DANCU' in the file name; known feeds: CUTRU, DKKD, HOTICH, TDDAT, GCN"),
    ("CUTRU_99_20261120_001.csv", GOOD.encode(), "province code '99' in the file name is not a GSO province code"),
    ("CUTRU_01_20261320_001.csv", GOOD.encode(), "the date '20261320' in the file name is not a real date (YYYYMMDD)"),
    ("CUTRU_01_20261120_001.xlsx", GOOD.encode(), "a CUTRU delivery must be one of csv, not .xlsx"),
]


@pytest.mark.parametrize("name,data,reason", CASES, ids=[c[2][:40] for c in CASES])
def test_bad_file_is_rejected_with_a_clear_reason(warehouse, db, inbox, name, data, reason):
    r = ingest_file(_bytes(name, data, inbox))
    assert (r["status"], r["reason"]) == ("rejected", reason)
    assert (r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == (0, 0, 0)
    assert r["changes"] == {"new": 0, "changed": 0, "unchanged": 0, "removed": 0}
    # archived by hash, core untouched, no stage tables left behind
    from pipelines.config import settings
    assert (settings().archive / r["sha256"]).read_bytes() == data
    assert db.execute("select count(*) from store.person").fetchone() == (0,)
    assert db.execute("select count(*) from pg_tables where schemaname = 'stage'").fetchone() == (0,)
    assert db.execute("select status, receipt->>'reason' from meta.delivery where delivery_id = %s",
                      (r["delivery_id"],)).fetchone()[0] == "rejected"
    html = Path(r["report"]).read_text(encoding="utf-8")
    assert "Why the whole file was rejected" in html
    # the same bytes again are a duplicate of the rejected delivery
    assert ingest_file(_bytes(name, data, inbox))["status"] == "duplicate"


def test_gzip_named_csv_is_rejected(warehouse, inbox):
    r = ingest_file(_bytes("CUTRU_01_20261120_001.csv", gzip.compress(GOOD.encode()), inbox))
    assert r["status"] == "rejected"
    assert r["reason"] == "the file is compressed (gzip): deliver the CSV itself, not an archive"
