"""Publish: what runs after feeds changed the core (the publish DAG, scheduled on their Assets).

The core views are always consistent (each delivery merges in one transaction), so publishing is
bookkeeping: a vacuum with fresh planner statistics of the version tables, and one row per
published view in meta.publication with its row count, so a downstream service can see when the
data it reads last moved.
"""
from __future__ import annotations

import psycopg

from . import warehouse
from .contracts import all_contracts
from .migrations import ensure_ready


def publish(url: str | None = None) -> dict:
    """Vacuum and analyse the store tables (index-only scans for the next delivery's known-row
    lookup need a fresh visibility map) and record the current row count of every core view."""
    url = url or warehouse.url()
    ensure_ready(url)
    counts = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for entity in sorted({c.entity for c in all_contracts().values()}):
            conn.execute(f"vacuum (analyze) store.{entity}")
            n = conn.execute(f"select count(*) from core.{entity}").fetchone()[0]
            conn.execute("insert into meta.publication (view_name, row_count) values (%s, %s)",
                         (f"core.{entity}", n))
            counts[f"core.{entity}"] = n
    return counts
