"""`make bench`: corehub's ingest against the physical floor, a bare COPY of the same file.

Cases, in one run on the same warehouse (a fresh `corehub_bench` database on it):
  floor       COPY of the snapshot into an unindexed UNLOGGED text table
  first_load  `corehub ingest` of the snapshot, end to end
  unchanged   the same content again under a new file name (every person `unchanged`)
  weekly      next week's snapshot: 1% of persons changed, 0.5% removed, 0.5% new
  dkkd_floor, dkkd_first_load
              the same for a DKKD (enterprise register) snapshot of as many rows
  land_floor  COPY of a TDDAT snapshot (CSV with WKT) of the same number of parcels
  land_first_load  `corehub ingest` of that TDDAT snapshot: geometry read, checked and measured
              with Shapely in batches, overlaps found through the box index (its own floor)
  land_geojson     the same parcels as a GeoJSON FeatureCollection (streamed with ijson)
Each prints one JSON line: seconds, ratio to the floor, rows per second, the client's peak RSS,
and whether the receipt's counts were right (a fast wrong answer fails).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from . import warehouse
from .config import settings
from .migrations import ensure_ready
from .publish import publish

TARGETS = {"first_load": 8.0, "unchanged": 3.0, "weekly": 8.0, "dkkd_first_load": 8.0}
PEAK_RSS_TARGET_MB = 1024
BENCH_DB = "corehub_bench"


def _bench_url() -> str:
    """A fresh database for the bench on the configured warehouse server."""
    base = settings().warehouse_url or warehouse.embedded_url()
    head, _, tail = base.rpartition("/")
    query = "?" + tail.split("?", 1)[1] if "?" in tail else ""
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"drop database if exists {BENCH_DB} with (force)")
        conn.execute(f"create database {BENCH_DB}")
    url = f"{head}/{BENCH_DB}{query}"
    ensure_ready(url)
    return url


def _floor(url: str, path: Path, columns: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop table if exists bench_floor")
        conn.execute("create unlogged table bench_floor (" + ", ".join(f"c{i} text" for i in range(columns)) + ")")
        started = time.monotonic()
        with conn.cursor().copy("copy bench_floor from stdin (format csv, header)") as cp, open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                cp.write(chunk)
        seconds = time.monotonic() - started
        conn.execute("drop table bench_floor")
    return seconds


def _ingest(path: Path, env: dict) -> tuple[dict, float, float]:
    """Run `corehub ingest PATH --json` in a child; (receipt, seconds, child's peak RSS in MB).
    Then, untimed, what the publish DAG runs after every delivery in production (a vacuum with
    fresh statistics of the store), so that each case starts from the state a delivery meets."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "ingest", str(path), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"corehub ingest {path.name} exited {proc.returncode}")
    publish(env["WAREHOUSE_URL"])
    return json.loads(out), seconds, usage.ru_maxrss / 1024


def _stages(url: str, receipt: dict) -> dict:
    """Seconds per stage of that delivery, from ops.delivery_log."""
    with psycopg.connect(url) as conn:
        row = conn.execute("select stage_seconds from ops.delivery_log where delivery_id = %s",
                           (receipt["delivery_id"],)).fetchone()
    return row[0] if row else {}


def _line(case: str, rows: int, seconds: float, floor: float, rss: float | None, ok: bool, **extra) -> dict:
    line = {"case": case, "rows": rows, "seconds": round(seconds, 2),
            "ratio_to_floor": round(seconds / floor, 2) if floor else None,
            "rows_per_second": round(rows / seconds) if seconds else None,
            "peak_rss_mb": round(rss, 1) if rss is not None else None, "counts_ok": ok, **extra}
    if case in TARGETS:
        line["target_ratio"] = TARGETS[case]
        line["pass"] = ok and line["ratio_to_floor"] <= TARGETS[case] and rss <= PEAK_RSS_TARGET_MB
    print(json.dumps(line), flush=True)
    return line


FEEDS = ("cutru", "dkkd", "land")


def run(rows: int, province: str = "01", keep: bool = False, feeds: tuple[str, ...] = FEEDS) -> list[dict]:
    url = _bench_url()
    env = {**os.environ, "WAREHOUSE_URL": url}
    work = Path(tempfile.mkdtemp(prefix="corehub-bench-"))
    results = []
    try:
        if "cutru" in feeds:
            results += run_cutru(url, env, rows, province, work)
        if "dkkd" in feeds:
            results += _first_load_of("DKKD", rows, province, work, url, env)
        if "land" in feeds:
            results += run_land(url, env, rows, province, work)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return results


def run_cutru(url: str, env: dict, rows: int, province: str, work: Path) -> list[dict]:
    """The CUTRU cases: first load, unchanged re-delivery, next week's snapshot."""
    from .generate import snapshot_changes

    results = []
    week1, floor = _snapshot("CUTRU", rows, province, work / "w1", "", url, results, seed=1, encoding="utf-8")
    week1_path = Path(week1["path"])

    receipt, seconds, rss = _ingest(week1_path, env)
    ok = (receipt["rows_read"], receipt["rows_loaded"], receipt["changes"]["new"]) == (rows, rows, rows)
    results.append(_line("first_load", rows, seconds, floor, rss, ok, stages=_stages(url, receipt)))

    again = work / "w1" / week1_path.name.replace("_001.", "_002.")
    shutil.copyfile(week1_path, again)
    with open(again, "ab") as fh:  # one trailing blank line: other bytes, the same content
        fh.write(b"\n")
    receipt, seconds, rss = _ingest(again, env)
    ok = receipt["changes"] == {"new": 0, "changed": 0, "unchanged": rows, "removed": 0}
    results.append(_line("unchanged", rows, seconds, floor, rss, ok, stages=_stages(url, receipt)))

    week2 = snapshot_changes(week1_path, work / "w2", changed=0.01, removed=0.005, new=0.005, seed=2,
                             date=dt.date(2026, 11, 20))
    receipt, seconds, rss = _ingest(Path(week2["path"]), env)
    ok = receipt["changes"] == {k: week2[k] for k in ("new", "changed", "unchanged", "removed")}
    results.append(_line("weekly", week2["rows_read"], seconds, floor, rss, ok, changes=receipt["changes"],
                         stages=_stages(url, receipt)))
    return results


def _snapshot(feed: str, rows: int, province: str, folder: Path, case: str, url: str, results: list,
              **options) -> tuple[dict, float]:
    """Generate a feed's snapshot (printing how long that took) and measure its floor, a bare COPY
    of the same file (appended to results as `<case>floor`); returns the manifest and the floor."""
    from .generate import generate

    started = time.monotonic()
    made = generate(feed, rows, province, 0.0, folder, date=dt.date(2026, 11, 13), **options)
    path = Path(made["path"])
    print(json.dumps({"case": f"{case}generate", "rows": rows, "seconds": round(time.monotonic() - started, 2),
                      "bytes": path.stat().st_size}), flush=True)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        columns = len(next(csv.reader(fh)))
    floor = min(_floor(url, path, columns) for _ in range(2))
    results.append(_line(f"{case}floor", rows, floor, floor, None, True))
    return made, floor


def _first_load_of(feed: str, rows: int, province: str, work: Path, url: str, env: dict) -> list[dict]:
    """Another feed's snapshot: its own floor and its first load."""
    case = feed.lower() + "_"
    lines = []
    made, floor = _snapshot(feed, rows, province, work / feed.lower(), case, url, lines, seed=1)
    receipt, seconds, rss = _ingest(Path(made["path"]), env)
    ok = (receipt["rows_read"], receipt["rows_loaded"], receipt["changes"]["new"]) == (rows, rows, rows)
    lines.append(_line(f"{case}first_load", rows, seconds, floor, rss, ok, findings=receipt["findings"],
                       stages=_stages(url, receipt)))
    return lines


def run_land(url: str, env: dict, rows: int, province: str, work: Path) -> list[dict]:
    """The TDDAT cases: a province's parcels as CSV with WKT, then the same parcels as GeoJSON
    (another province code, so that both are a first load); each against the CSV's bare COPY."""
    from .generate import generate

    results = []
    csv_m, floor = _snapshot("TDDAT", rows, province, work / "land", "land_", url, results, seed=3)
    path = Path(csv_m["path"])
    receipt, seconds, rss = _ingest(path, env)
    ok = ((receipt["rows_read"], receipt["rows_loaded"], receipt["changes"]["new"], receipt["findings"])
          == (rows, rows, rows, csv_m["findings"]))
    results.append(_line("land_first_load", rows, seconds, floor, rss, ok, stages=_stages(url, receipt)))
    other = "79" if province != "79" else "01"
    geo_m = generate("TDDAT", rows, other, 0.0, work / "land", date=dt.date(2026, 11, 13), seed=3,
                     file_type="geojson")
    receipt, seconds, rss = _ingest(Path(geo_m["path"]), env)
    ok = (receipt["rows_read"], receipt["rows_loaded"], receipt["findings"]) == (rows, rows, geo_m["findings"])
    results.append(_line("land_geojson", rows, seconds, floor, rss, ok, stages=_stages(url, receipt),
                         bytes=Path(geo_m["path"]).stat().st_size))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--province", default="01")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--feeds", default=",".join(FEEDS),
                        help=f"which cases to run, comma-separated (default: {','.join(FEEDS)})")
    args = parser.parse_args(argv)
    feeds = tuple(f.strip().lower() for f in args.feeds.split(",") if f.strip())
    unknown = set(feeds) - set(FEEDS)
    if unknown:
        parser.error(f"unknown feed(s) {', '.join(sorted(unknown))}; known: {', '.join(FEEDS)}")
    results = run(args.rows, args.province, args.keep, feeds)
    verdicts = [r["pass"] for r in results if "pass" in r]
    print(json.dumps({"bench": "corehub", "rows": args.rows, "all_targets_met": all(verdicts)}), flush=True)
    return 0 if all(r["counts_ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
