"""`corehub quarantine FEED [--open] [--province P] [--json] [--limit N]`: the rows of a feed kept out
of the core, with counts per reason code; --open: only those still waiting for the agency (not
resolved by a later delivery, see pipelines.resubmission).

Text by default (a summary line, reason counts, then the rows, oldest first, at most --limit);
--json prints one object: {"feed", "open_only", "province", "rows_total", "rows_open",
"reasons": {code: rows}, "rows": [{delivery_id, file, province, row_no, key, reasons, detail,
resolved_by}], "rows_listed"}. A row with two reasons counts under both.
"""
from __future__ import annotations

import json
import re

import psycopg

CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # never let a delivered value drive the terminal


def collect(conn: psycopg.Connection, feed: str, *, open_only: bool, province: str | None = None,
            limit: int = 100) -> dict:
    where = "q.feed = %(feed)s" + (" and q.resolved_by is null" if open_only else "")
    if province:
        where += " and d.province_code = %(province)s"
    params = {"feed": feed, "province": province, "limit": limit}
    base = f"from quarantine.row q join meta.delivery d on d.delivery_id = q.delivery_id where {where}"
    total, still_open = conn.execute(
        f"select count(*), count(*) filter (where q.resolved_by is null) {base}", params).fetchone()
    reasons = dict(conn.execute(
        f"select r, count(*) {base.replace('where', 'cross join unnest(q.reasons) r where', 1)} "
        "group by r order by count(*) desc, r", params).fetchall())
    rows = [dict(zip(("delivery_id", "file", "province", "row_no", "key", "reasons", "detail", "resolved_by"), r))
            for r in conn.execute(
                f"select q.delivery_id, d.file_name, d.province_code, q.row_no, q.record_key, q.reasons, q.detail, "
                f"q.resolved_by {base} order by q.delivery_id, q.row_no limit %(limit)s", params).fetchall()]
    return {"feed": feed, "open_only": open_only, "province": province, "rows_total": total,
            "rows_open": still_open, "reasons": reasons, "rows": rows, "rows_listed": len(rows)}


def render_text(q: dict) -> str:
    def clean(v) -> str:
        return CONTROL.sub("?", "" if v is None else str(v))

    scope = f" province {q['province']}" if q["province"] else ""
    if q["open_only"]:
        out = [f"{q['feed']}{scope}: {q['rows_open']} quarantined row(s) waiting for the agency"]
    else:
        out = [f"{q['feed']}{scope}: {q['rows_total']} quarantined row(s), {q['rows_open']} still open"]
    if q["reasons"]:
        width = max(len(k) for k in q["reasons"])
        out += ["", f"{'reason'.ljust(width)}  rows"] + [f"{k.ljust(width)}  {v}" for k, v in q["reasons"].items()]
    if q["rows"]:
        header = ["delivery", "file", "row", "key", "reasons", "detail"] + ([] if q["open_only"] else ["resolved by"])
        table = [[clean(r["delivery_id"]), clean(r["file"]), clean(r["row_no"]), clean(r["key"]),
                  ";".join(r["reasons"]), clean(r["detail"])] + ([] if q["open_only"] else [clean(r["resolved_by"])])
                 for r in q["rows"]]
        widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
        out.append("")
        out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *table]]
        shown = q["rows_open"] if q["open_only"] else q["rows_total"]
        if shown > q["rows_listed"]:
            out.append(f"... {shown - q['rows_listed']} more (--limit)")
    return "\n".join(out) + "\n"


def main(args) -> int:
    from . import contracts, warehouse
    from .ingest import connect
    from .migrations import ensure_ready

    feed = args.feed.upper()
    if feed not in contracts.all_contracts():
        import sys

        print(f"corehub quarantine: unknown feed {args.feed!r}; known feeds: {', '.join(contracts.all_contracts())}",
              file=sys.stderr)
        return 2
    url = warehouse.url()
    ensure_ready(url)
    with connect(url) as conn:
        q = collect(conn, feed, open_only=args.open, province=args.province, limit=args.limit)
    print(json.dumps(q, ensure_ascii=False) if args.json else render_text(q), end="\n" if args.json else "")
    return 0
