"""Deliveries whose process died: found, cleaned and marked `abandoned`, without a human.

A running delivery holds its claim (an advisory lock, pipelines.locks) from the statement that
registers it until its process ends. A 'processing' row whose claim anyone can take belongs to a
process that is gone (killed, or failed inside): its stage tables are dropped and its status
becomes 'abandoned'. Nothing of it was published (the core changes in one transaction at the end)
and an abandoned row never counts as done, so delivering or retrying the same file processes it
again from the start.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import psycopg

from . import locks, reports

log = logging.getLogger(__name__)

REASON = ("processing stopped before it finished (the process ended); nothing of it was published, "
          "and the same file is processed again when it is retried")


def stage_relations(conn: psycopg.Connection, delivery_id: int) -> list[tuple[str, str]]:
    """(name, relkind) of the stage tables and views of one delivery (raw_<id>, changes_<id>_<entity>, ...)."""
    return conn.execute(
        "select c.relname, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'stage' and c.relkind in ('r', 'v') and c.relname ~ %s order by c.relkind desc",
        (rf"^[a-z]+_{int(delivery_id)}(_[a-z_]+)?$",)).fetchall()


def drop_stage(conn: psycopg.Connection, delivery_id: int, keep: tuple[str, ...] = ()) -> None:
    """Drop the delivery's stage tables and views, except those named in keep (schema-qualified)."""
    for name, kind in stage_relations(conn, delivery_id):
        if f"stage.{name}" not in keep:
            conn.execute(f'drop {"view" if kind == "v" else "table"} if exists stage."{name}" cascade')


def reclaim_abandoned(conn: psycopg.Connection, reports_dir: Path | None = None) -> list[int]:
    """Mark every delivery whose process is gone 'abandoned' and drop its stage tables; returns their
    ids. With reports_dir, its receipt and report say so (a run killed just before its commit may
    have written a receipt of what it was about to publish)."""
    reclaimed = []
    for delivery_id, feed, file_name, sha256 in conn.execute(
            "select delivery_id, feed, file_name, sha256 from meta.delivery where status = 'processing' "
            "order by delivery_id").fetchall():
        if not locks.try_claim(conn, delivery_id):
            continue  # its process is alive and working on it
        try:
            drop_stage(conn, delivery_id)
            folder = (reports_dir / (feed or "UNKNOWN") / str(delivery_id)) if reports_dir else None
            receipt = {"delivery_id": delivery_id, "feed": feed, "file": file_name, "sha256": sha256,
                       "status": "abandoned", "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0,
                       "rejections": {}, "findings": {}, "changes": {"new": 0, "changed": 0, "unchanged": 0,
                                                                     "removed": 0},
                       "report": str(folder / "report.html") if folder else None, "rejected_rows": None,
                       "reason": REASON}
            done = conn.execute(
                "update meta.delivery set status = 'abandoned', finished_at = clock_timestamp(), receipt = %s "
                "where delivery_id = %s and status = 'processing'", (json.dumps(receipt), delivery_id)).rowcount
            if done and folder:
                for stale in ("rejected.csv", "validation.html"):
                    (folder / stale).unlink(missing_ok=True)
                reports.write_outputs(receipt, folder, gx=None, encoding=None)
        finally:
            locks.unclaim(conn, delivery_id)
        if done:
            log.warning("delivery %s (%s) was abandoned by a process that ended before it finished: cleaned up",
                        delivery_id, file_name)
            reclaimed.append(delivery_id)
    return reclaimed
