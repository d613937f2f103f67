"""`corehub demo`: sample deliveries through every DAG on the embedded warehouse, then a summary.

Deterministic: a second run generates the same bytes, so every delivery comes back `duplicate`
and the core does not move (which is the point of the archive-by-hash design).
"""
from __future__ import annotations

import csv
import datetime as dt
import sys

from . import warehouse
from .config import redact_url, settings
from .migrations import ensure_ready

# (feed, province, rows, defect rate, options): every quirk of the spec appears somewhere
SAMPLES = [
    ("CUTRU", "01", 3000, 0.02, dict(encoding="utf-8-sig", crlf=True, repeat_header_at=1500, trailing_blank_lines=2)),
    ("CUTRU", "79", 1500, 0.02, dict(encoding="cp1258", crlf=True)),
    ("CUTRU", "48", 800, 0.01, dict(encoding="utf-16")),
    ("HOTICH", "01", 400, 0.03, dict(encoding="utf-8", people_from=("CUTRU", "01"))),
    # the enterprise register: a CSV file, and a workbook with a title row above its header
    ("DKKD", "01", 1200, 0.02, dict(people_from=("CUTRU", "01"))),
    ("DKKD", "79", 600, 0.02, dict(file_type="xlsx", people_from=("CUTRU", "79"),
                                   title_row="DANH SÁCH DOANH NGHIỆP VÀ ĐƠN VỊ PHỤ THUỘC - TP. HỒ CHÍ MINH")),
    # the land register: parcels as CSV with WKT and as GeoJSON, then certificates on the CSV's parcels
    # (GCN's k-th certificate is on the k-th parcel of the province's generated register)
    ("TDDAT", "01", 2500, 0.02, dict(crlf=True)),
    ("TDDAT", "79", 1000, 0.02, dict(file_type="geojson")),
    ("GCN", "01", 1500, 0.02, dict(people_from=("CUTRU", "01"))),
]
DELIVERY_DATE = dt.date(2026, 11, 20)


def generate_samples() -> list:
    from .generate import generate

    s = settings()
    made = []
    for seed, (feed, province, rows, rate, options) in enumerate(SAMPLES):
        options = dict(options)
        people_from = options.pop("people_from", None)
        if people_from:
            options["person_ids"] = _people(s.feed_inbox(people_from[0]), people_from[1])
        made.append(generate(feed, rows, province, rate, s.feed_inbox(feed), date=DELIVERY_DATE, seq=1,
                             seed=seed, **options))
    return made


def _people(inbox, province: str, limit: int = 500) -> list[str]:
    """Person IDs from a generated CUTRU delivery, so the demo's deaths apply to known people."""
    from .decode import open_text

    path = next(inbox.glob(f"CUTRU_{province}_*"))
    fmt, pieces = open_text(path)
    index = [h.upper() for h in fmt.header].index("SO_DINH_DANH")
    ids = []
    for piece in pieces:
        text = piece.decode("utf-8") if isinstance(piece, bytes) else piece   # decode yields UTF-8 bytes
        for row in csv.reader(text.splitlines(), delimiter=fmt.delimiter):
            if len(row) > index and len(row[index]) == 12 and row[index].isdigit():
                ids.append(row[index])
        if len(ids) >= limit:
            break
    return ids[:limit]


def summary_table(receipts: list[dict]) -> str:
    header = ("feed", "file", "status", "read", "loaded", "quarantined", "new", "changed", "removed", "findings")
    rows = [(r["feed"] or "-", r["file"], r["status"], r["rows_read"], r["rows_loaded"], r["rows_quarantined"],
             r["changes"]["new"], r["changes"]["changed"], r["changes"]["removed"],
             ", ".join(f"{k} {v}" for k, v in r["findings"].items()) or "-") for r in receipts]
    totals = {}
    for r in receipts:
        t = totals.setdefault(r["feed"], [0, 0, 0])
        t[0] += r["rows_read"]
        t[1] += r["rows_loaded"]
        t[2] += r["rows_quarantined"]
    rows += [(feed, "(all deliveries)", "", *t, "", "", "", "") for feed, t in totals.items()]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line("-" * w for w in widths), *(line(r) for r in rows)])


def run_demo() -> int:
    from .orchestration import run_dags

    s = settings()
    url = warehouse.url(s)
    ensure_ready(url)
    print(f"warehouse: {redact_url(url)}", file=sys.stderr)
    made = generate_samples()
    print(f"generated {len(made)} sample deliveries into {s.inbox}", file=sys.stderr)
    receipts = run_dags(reprocess=True)  # a second demo shows every delivery as a duplicate
    print()
    print(summary_table(receipts))
    print()
    print(f"reports (HTML report, GX validation page, rejected rows CSV, receipt) per delivery under: {s.reports}")
    for r in receipts:
        if r.get("report"):
            print(f"  {r['file']}: {r['report']}")
    print(f"warehouse: {redact_url(url)}   (psql it, or `corehub url`; stop it with `corehub stop`)")
    return 0
