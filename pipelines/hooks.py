"""What happens after every delivery, whatever its outcome: the operations log, then the
configured notifications and lineage (see the ops modules). Failures here never change a receipt."""
from __future__ import annotations

import json
import logging

import psycopg

from . import lineage, notify

log = logging.getLogger(__name__)


def after_delivery(conn: psycopg.Connection, receipt: dict, province: str | None, stages: dict[str, float],
                   seconds: float) -> None:
    """Record the delivery in ops.delivery_log (a duplicate is not a new delivery), then notify a
    rejection (pipelines.notify) and emit the delivery's OpenLineage events (pipelines.lineage)."""
    if receipt["status"] == "duplicate":
        return
    try:
        conn.execute(
            "insert into ops.delivery_log (delivery_id, feed, province_code, file_name, status, rows_read, "
            "rows_loaded, rows_quarantined, stage_seconds, seconds) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "on conflict (delivery_id) do nothing",
            (receipt["delivery_id"], receipt["feed"], province, receipt["file"], receipt["status"],
             receipt["rows_read"], receipt["rows_loaded"], receipt["rows_quarantined"], json.dumps(stages),
             round(seconds, 3)))
    except psycopg.Error as exc:  # the delivery is done; the log is not worth failing it for
        log.warning("could not write ops.delivery_log for delivery %s: %s", receipt["delivery_id"], exc)
    try:
        notify.delivery_finished(receipt, province)
    except Exception as exc:  # noqa: BLE001 - notify already swallows channel errors; belt and braces
        log.warning("could not notify about delivery %s: %s", receipt["delivery_id"], exc)
    try:
        lineage.delivery_finished(conn, receipt, province, stages, seconds)
    except Exception as exc:  # noqa: BLE001 - lineage is an observer, never a reason to fail a delivery
        log.warning("could not emit the lineage of delivery %s: %s", receipt["delivery_id"], exc)
