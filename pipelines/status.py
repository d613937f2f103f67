"""`corehub status`: the operations view, from ops.delivery_log (one row per processed delivery).

- last delivery per feed and province: file, outcome, when, rows read/loaded/quarantined;
- overdue: a province whose regular delivery is late. The cadence comes from the contract's mode:
  a `snapshot` feed (CUTRU) is the whole truth for a province and is delivered weekly, so a
  province is overdue when its last *accepted* snapshot (loaded, possibly with rejections) is older
  than 7 days plus a grace (default 1 day) - a rejected file does not count as delivered. A
  province that has never had a snapshot accepted is measured from its first attempt. `delta`
  feeds (HOTICH) send events as they happen: no cadence, never overdue;
- reject rates per feed and ISO week (Monday): deliveries, rejected deliveries, rows read, rows
  quarantined and the share of rows quarantined;
- timings: average seconds per delivery and per stage per feed over the same weeks.

Text by default; `--json` for machines; `--html FILE` writes a small status page.
"""
from __future__ import annotations

import datetime as dt
import html
import json
from decimal import Decimal

import psycopg

from .orchestration import CHANGED_STATUSES as ACCEPTED  # the statuses that loaded rows

#: how often each contract mode is expected to deliver, per province
CADENCE = {"snapshot": dt.timedelta(days=7)}
DEFAULT_WEEKS = 8
DEFAULT_GRACE_DAYS = 1


def _plain(value):
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def _rows(cur) -> list[dict]:
    names = [c.name for c in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def collect(conn: psycopg.Connection, as_of: dt.datetime | None = None, weeks: int = DEFAULT_WEEKS,
            grace_days: float = DEFAULT_GRACE_DAYS) -> dict:
    """Everything the status shows, as plain data (datetimes are timezone-aware, UTC)."""
    from .contracts import all_contracts

    as_of = as_of or dt.datetime.now(dt.timezone.utc)
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=dt.timezone.utc)
    since = as_of - dt.timedelta(weeks=weeks)
    params = {"as_of": as_of, "since": since, "accepted": list(ACCEPTED)}

    last = _rows(conn.execute("""
        select distinct on (coalesce(l.feed, m.feed), l.province_code)
               coalesce(l.feed, m.feed) as feed, l.province_code as province, l.delivery_id, l.file_name,
               l.status, m.delivery_date, l.finished_at, l.rows_read, l.rows_loaded, l.rows_quarantined,
               l.seconds
        from ops.delivery_log l left join meta.delivery m on m.delivery_id = l.delivery_id
        where l.finished_at <= %(as_of)s
        order by coalesce(l.feed, m.feed), l.province_code, l.finished_at desc, l.delivery_id desc""", params))

    # a resubmission (partial delivery: corrected rows only) is no snapshot: it does not reset the due date
    seen = _rows(conn.execute("""
        select l.feed, l.province_code as province, count(*) as deliveries, min(l.finished_at) as first_seen,
               max(l.finished_at) filter (where l.status = any(%(accepted)s) and not coalesce(m.partial, false))
                   as last_accepted
        from ops.delivery_log l left join meta.delivery m on m.delivery_id = l.delivery_id
        where l.finished_at <= %(as_of)s and l.feed is not null and l.province_code is not null
        group by l.feed, l.province_code order by l.feed, l.province_code""", params))

    contracts = all_contracts()
    overdue = []
    for row in seen:
        contract = contracts.get(row["feed"])
        cadence = CADENCE.get(contract.mode) if contract else None
        row["cadence_days"] = cadence.days if cadence else None
        if cadence is None:
            row["due"] = None
            continue
        base = row["last_accepted"] or row["first_seen"]
        row["due"] = base + cadence
        late = as_of - row["due"]
        if late > dt.timedelta(days=grace_days):
            overdue.append({"feed": row["feed"], "province": row["province"], "mode": contract.mode,
                            "last_accepted": row["last_accepted"], "due": row["due"],
                            "days_late": round(late.total_seconds() / 86400, 1)})
    overdue.sort(key=lambda r: (-r["days_late"], r["feed"], r["province"]))
    due = {(r["feed"], r["province"]): r for r in seen}
    for row in last:
        info = due.get((row["feed"], row["province"]))
        row["last_accepted"] = info["last_accepted"] if info else None
        row["due"] = info["due"] if info else None
        row["overdue"] = any(o["feed"] == row["feed"] and o["province"] == row["province"] for o in overdue)

    rates = _rows(conn.execute("""
        select coalesce(feed, '?') as feed, (date_trunc('week', finished_at at time zone 'UTC'))::date as week,
               count(*) as deliveries, count(*) filter (where status = 'rejected') as rejected,
               sum(rows_read) as rows_read, sum(rows_quarantined) as rows_quarantined
        from ops.delivery_log
        where finished_at > %(since)s and finished_at <= %(as_of)s
        group by 1, 2 order by 1, 2""", params))
    for r in rates:
        r["delivery_reject_rate"] = round(r["rejected"] / r["deliveries"], 4) if r["deliveries"] else None
        r["row_reject_rate"] = round(float(r["rows_quarantined"]) / float(r["rows_read"]), 4) if r["rows_read"] else None

    timings = _rows(conn.execute("""
        select coalesce(feed, '?') as feed, count(*) as deliveries, avg(seconds)::numeric(12, 2) as avg_seconds,
               max(seconds)::numeric(12, 2) as max_seconds
        from ops.delivery_log
        where finished_at > %(since)s and finished_at <= %(as_of)s
        group by 1 order by 1""", params))
    stages = conn.execute("""
        select coalesce(feed, '?'), s.key, avg(s.value::numeric)::numeric(12, 2)
        from ops.delivery_log, jsonb_each_text(stage_seconds) s
        where finished_at > %(since)s and finished_at <= %(as_of)s
        group by 1, 2 order by 1, 3 desc""", params).fetchall()
    for t in timings:
        t["stages"] = {key: float(avg) for feed, key, avg in stages if feed == t["feed"]}

    return {"as_of": as_of, "weeks": weeks, "grace_days": grace_days, "last": last, "overdue": overdue,
            "reject_rates": rates, "timings": timings}


def to_json(status: dict) -> str:
    def convert(obj):
        if isinstance(obj, dict):
            return {k: convert(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [convert(v) for v in obj]
        return _plain(obj)

    return json.dumps(convert(status), ensure_ascii=False)


# --------------------------------------------------------------------------- rendering

def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(_plain(value))


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _sections(status: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each table, shared by the text and HTML renderings."""
    last = [[r["feed"] or "?", r["province"] or "?", r["file_name"], r["status"], _fmt(r["finished_at"]),
             _fmt(r["rows_read"]), _fmt(r["rows_loaded"]), _fmt(r["rows_quarantined"]), _fmt(r["last_accepted"]),
             ("OVERDUE" if r["overdue"] else _fmt(r["due"]))]
            for r in status["last"]]
    overdue = [[r["feed"], r["province"], r["mode"], _fmt(r["last_accepted"]), _fmt(r["due"]), f"{r['days_late']:.1f}"]
               for r in status["overdue"]]
    rates = [[r["feed"], _fmt(r["week"]), _fmt(r["deliveries"]), _fmt(r["rejected"]), _pct(r["delivery_reject_rate"]),
              _fmt(r["rows_read"]), _fmt(r["rows_quarantined"]), _pct(r["row_reject_rate"])]
             for r in status["reject_rates"]]
    timings = [[t["feed"], _fmt(t["deliveries"]), _fmt(t["avg_seconds"]), _fmt(t["max_seconds"]),
                ", ".join(f"{k} {v:.2f}" for k, v in t["stages"].items())] for t in status["timings"]]
    return [
        ("Last delivery per feed and province",
         ["feed", "province", "file", "status", "finished (UTC)", "read", "loaded", "quarantined", "last accepted",
          "next due"], last),
        (f"Overdue (snapshot feeds: weekly, {status['grace_days']:g} day(s) grace)",
         ["feed", "province", "mode", "last accepted", "due", "days late"], overdue),
        (f"Reject rates per week (last {status['weeks']} weeks)",
         ["feed", "week of", "deliveries", "rejected", "rejected %", "rows read", "quarantined", "quarantined %"],
         rates),
        (f"Timings (seconds, last {status['weeks']} weeks)",
         ["feed", "deliveries", "avg", "max", "avg per stage"], timings),
    ]


def render_text(status: dict) -> str:
    out = [f"corehub status as of {_fmt(status['as_of'])} UTC"]
    for title, header, rows in _sections(status):
        out += ["", f"== {title}"]
        if not rows:
            out.append("(none)")
            continue
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        for line in [header, *rows]:
            out.append("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    return "\n".join(out) + "\n"


def render_html(status: dict) -> str:
    esc = html.escape
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'><title>corehub status</title>",
             "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
             "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f3f3f3}"
             ".bad{color:#b00;font-weight:bold}</style></head><body>",
             f"<h1>corehub status</h1><p>As of {esc(_fmt(status['as_of']))} UTC.</p>"]
    for title, header, rows in _sections(status):
        parts.append(f"<h2>{esc(title)}</h2>")
        if not rows:
            parts.append("<p>None.</p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            cells = "".join(f"<td class='bad'>{esc(str(c))}</td>" if c in ("OVERDUE", "rejected") else
                            f"<td>{esc(str(c))}</td>" for c in row)
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def parse_as_of(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def main(args) -> int:
    """`corehub status [--json] [--html FILE] [--as-of ISO] [--weeks N]`."""
    from pathlib import Path

    from . import warehouse
    from .migrations import ensure_ready

    url = warehouse.url()
    ensure_ready(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set timezone = 'UTC'")
        status = collect(conn, as_of=parse_as_of(getattr(args, "as_of", None)),
                         weeks=getattr(args, "weeks", None) or DEFAULT_WEEKS)
    if getattr(args, "html", None):
        Path(args.html).write_text(render_html(status), encoding="utf-8")
    if getattr(args, "json", False):
        print(to_json(status))
    else:
        print(render_text(status), end="")
    return 0
