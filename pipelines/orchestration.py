"""Orchestration helpers: what the Airflow tasks call, and how to run the DAGs locally.

This module never imports Airflow at module level, so the CLI and the tests can import it in any
process. Airflow reads its configuration (AIRFLOW_HOME, the metadata database, the DAGs folder)
once, when `airflow` is first imported; so anything here that needs Airflow either runs it in a
subprocess with `airflow_env()` set, or must be called before this process imports airflow:

    os.environ.update(orchestration.airflow_env())   # 1. first, before any `import airflow...`
    orchestration.ensure_airflow_db()                # 2. migrates the metadata DB once (~20 s)
    from airflow.dag_processing.dagbag import DagBag # 3. only now

`run_dags()` does all of that in a child process (`python -m pipelines.orchestration run`), so the
calling process (the CLI, pytest) may or may not have imported Airflow with other settings.

Environment
  COREHUB_HOME            corehub's folder; Airflow's local home is $COREHUB_HOME/airflow
  COREHUB_AIRFLOW_HOME    use this folder as Airflow's local home instead (the tests use a cached one)
  COREHUB_AIRFLOW_RETRIES task retries in the DAGs (default 2; run_dags uses 0 to fail fast)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from .config import PROJECT_ROOT, settings
from .locks import file_lock

log = logging.getLogger(__name__)

DAGS_FOLDER = PROJECT_ROOT / "dags"
PUBLISH_DAG_ID = "publish"
INGEST_TASK_ID = "ingest"
#: receipt statuses after which the feed's core table may have changed
CHANGED_STATUSES = ("loaded", "loaded_with_rejections")
RESULT_MARKER = "COREHUB_RUN_RESULT "


def ingest_dag_id(feed: str) -> str:
    return f"ingest_{feed.lower()}"


# --------------------------------------------------------------------------- what the tasks call

def pending_files(feed: str, include_processed: bool = False) -> list[str]:
    """The feed's inbox files not yet processed, as absolute paths sorted by file name.

    A file belongs to the feed when its name starts with `<FEED>_` (any case). A file whose bytes
    were already processed (any outcome: the inbox is never emptied) is left out, as told by
    `pipelines.ingest.already_processed(paths) -> set[str]` when the ingest module provides it,
    unless include_processed (then ingest answers 'duplicate' for those).
    """
    inbox = settings().feed_inbox(feed)
    if not inbox.is_dir():
        return []
    prefix = f"{feed.upper()}_"
    paths = [str(p) for p in sorted(inbox.iterdir(), key=lambda p: p.name)
             if p.is_file() and p.name.upper().startswith(prefix)]
    if not paths or include_processed:
        return paths
    from . import ingest

    if hasattr(ingest, "already_processed"):
        done = {str(p) for p in ingest.already_processed(paths)}
        paths = [p for p in paths if p not in done]
    return paths


def receipt_summary(receipt: dict) -> str:
    """One line for the task log that says what happened to a delivery."""
    name = Path(str(receipt.get("file", "?"))).name
    status = receipt.get("status", "?")
    line = (f"{receipt.get('feed') or '?'} delivery {receipt.get('delivery_id', '?')} ({name}): {status}; "
            f"rows read {receipt.get('rows_read', 0)}, loaded {receipt.get('rows_loaded', 0)}, "
            f"quarantined {receipt.get('rows_quarantined', 0)}")
    if status == "rejected":
        line += f"; REJECTED: {receipt.get('reason') or 'see the report'}"
    rejections = receipt.get("rejections")
    if rejections:
        items = rejections.items() if isinstance(rejections, dict) else enumerate(rejections)
        line += "; quarantined for " + ", ".join(f"{code}: {n}" for code, n in items)
    if receipt.get("report"):
        line += f"; report {receipt['report']}"
    return line


def log_receipt(receipt: dict, logger: logging.Logger | None = None) -> None:
    """Log a receipt: a rejected or partly quarantined delivery is a warning, not a task failure."""
    logger = logger or log
    status = receipt.get("status")
    level = logging.WARNING if status in ("rejected", "loaded_with_rejections") else logging.INFO
    logger.log(level, "%s", receipt_summary(receipt))


def changed(receipts) -> list[dict]:
    """The receipts of deliveries that changed a core table (loaded, possibly with rejections)."""
    return [r for r in receipts or () if isinstance(r, dict) and r.get("status") in CHANGED_STATUSES]


def asset_event_extra(receipts: list[dict]) -> dict:
    """What the core table's asset event says about the deliveries behind it."""
    return {"deliveries": [{k: r.get(k) for k in ("delivery_id", "feed", "file", "status", "rows_loaded")}
                           for r in receipts],
            "rows_loaded": sum(int(r.get("rows_loaded") or 0) for r in receipts)}


# --------------------------------------------------------------------------- local Airflow

def airflow_home() -> Path:
    """Airflow's home for local runs: $COREHUB_AIRFLOW_HOME, else $COREHUB_HOME/airflow."""
    override = os.environ.get("COREHUB_AIRFLOW_HOME")
    return Path(override).resolve() if override else settings().home / "airflow"


def airflow_env() -> dict[str, str]:
    """The environment for running corehub's Airflow locally (dag.test, standalone, CLI).

    Merge it into os.environ (or a subprocess's env) BEFORE airflow is imported.
    """
    home = airflow_home()
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # quiet and fast: no plugins until needed, room for a slow first DAG import, the
        # configuration not shown in the UI. (Airflow 3.3 has no default connections to skip
        # and no usage-data setting: `airflow db migrate` creates none and sends nothing.)
        "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "True",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__API__EXPOSE_CONFIG": "False",
        # local only: `airflow standalone` / api-server without a login
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    }


def _airflow_version() -> str:
    return metadata.version("apache-airflow-core")



def ensure_airflow_db() -> bool:
    """Migrate Airflow's local metadata DB unless done already for this Airflow version.

    Runs `airflow db migrate` in a subprocess with `airflow_env()`, so it works whatever this
    process has imported. A marker file (`airflow_home()/.migrated`) holds the Airflow version; the
    work is skipped while it matches and the database file exists (so a copied home, marker and
    airflow.db together, counts as migrated). Safe against concurrent callers (file lock).
    Returns True when it migrated.
    """
    env_vars = airflow_env()
    home = Path(env_vars["AIRFLOW_HOME"])
    marker = home / ".migrated"
    stamp = f"apache-airflow-core {_airflow_version()}\n"
    db_file = home / "airflow.db"

    def done() -> bool:
        return db_file.exists() and marker.exists() and marker.read_text() == stamp

    if done():
        return False
    with file_lock(home / ".migrate.lock"):
        if done():
            return False
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"],
                              env={**os.environ, **env_vars}, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"`airflow db migrate` failed (exit {proc.returncode}):\n"
                               f"{_tail(proc.stdout)}\n{_tail(proc.stderr)}")
        marker.write_text(stamp)
        log.info("migrated Airflow's metadata DB at %s in %.1f s", db_file, time.monotonic() - started)
        return True


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join((text or "").splitlines()[-lines:])


class DagRunFailed(RuntimeError):
    """A DAG run did not succeed. `.runs` holds every run's details, `.receipts` the receipts."""

    def __init__(self, message: str, runs: list[dict]):
        super().__init__(message)
        self.runs = runs
        self.receipts = [r for run in runs for r in run.get("receipts", [])]


def run_dags_detailed(feeds: list[str] | None = None, *, publish: bool = True, reprocess: bool = False,
                      retries: int = 0, timeout: float | None = None) -> list[dict]:
    """Run every feed's ingest DAG once with `dag.test()`, then the publish DAG, in a subprocess.

    reprocess: run the ingest DAGs with the param reprocess=true, so that files processed before
    are offered again (their receipts say 'duplicate'); by default only new files are ingested.

    Returns one dict per DAG run: dag_id, run_id, state, seconds, tasks (task_id, map_index,
    state), receipts (the ingest task's return values in map-index order) and asset_events
    (asset name, uri, task_id, extra) emitted by the run. The child process
    inherits os.environ (COREHUB_HOME, WAREHOUSE_URL) plus `airflow_env()`.
    """
    ensure_airflow_db()
    from .contracts import all_contracts

    feeds = [f.upper() for f in (feeds or list(all_contracts()))]
    env = {**os.environ, **airflow_env(), "COREHUB_HOME": str(settings().home),
           "COREHUB_AIRFLOW_RETRIES": str(retries),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "pipelines.orchestration", "run", *feeds]
    if not publish:
        cmd.append("--no-publish")
    if reprocess:
        cmd.append("--reprocess")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    result = next((line[len(RESULT_MARKER):] for line in reversed(proc.stdout.splitlines())
                   if line.startswith(RESULT_MARKER)), None)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"running the DAGs failed (exit {proc.returncode}):\n"
                           f"{_tail(proc.stdout)}\n{_tail(proc.stderr)}")
    return json.loads(result)


def run_dags(feeds: list[str] | None = None, *, publish: bool = True, reprocess: bool = False) -> list[dict]:
    """Run the ingest DAGs (then publish) locally; return the receipts of the deliveries processed.

    For `corehub demo`. Only files not processed before are ingested, as on the schedule; with
    reprocess=True every inbox file is offered again and comes back 'duplicate'. Raises
    DagRunFailed when a DAG run did not succeed (its `.receipts` still holds what was processed).
    """
    runs = run_dags_detailed(feeds, publish=publish, reprocess=reprocess)
    failed = [r for r in runs if r["state"] != "success"]
    if failed:
        lines = [f"{r['dag_id']} {r['run_id']}: {r['state']}; failed tasks: "
                 + (", ".join(f"{t['task_id']}[{t['map_index']}]" for t in r["tasks"]
                              if t["state"] in ("failed", "upstream_failed")) or "none")
                 for r in failed]
        raise DagRunFailed("DAG runs did not succeed:\n" + "\n".join(lines), runs)
    return [receipt for run in runs for receipt in run["receipts"]]


# --------------------------------------------------------------------------- the child process

def _run_in_this_process(feeds: list[str], publish: bool, reprocess: bool = False) -> list[dict]:
    """dag.test() each DAG here. Only call with airflow_env() set before airflow was imported."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent
    from airflow.models.xcom import XComModel
    from sqlalchemy import select
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag_ids = [ingest_dag_id(f) for f in feeds] + ([PUBLISH_DAG_ID] if publish else [])
    runs = []
    for dag_id in dag_ids:
        if dag_id not in bag.dags:
            raise RuntimeError(f"no DAG {dag_id!r} in {DAGS_FOLDER}; known: {sorted(bag.dags)}")
        started = time.monotonic()
        conf = {"reprocess": True} if reprocess and dag_id != PUBLISH_DAG_ID else None
        dr = bag.dags[dag_id].test(run_conf=conf)
        seconds = round(time.monotonic() - started, 2)
        with create_session() as session:
            tis = sorted(dr.get_task_instances(session=session), key=lambda t: (t.task_id, t.map_index))
            rows = session.scalars(XComModel.get_many(run_id=dr.run_id, dag_ids=dag_id,
                                                      task_ids=INGEST_TASK_ID, key="return_value")).all()
            receipts = [XComModel.deserialize_value(x) for x in sorted(rows, key=lambda x: x.map_index)]
            events = session.scalars(select(AssetEvent).where(AssetEvent.source_dag_id == dag_id,
                                                              AssetEvent.source_run_id == dr.run_id)).all()
            runs.append({
                "dag_id": dag_id, "run_id": dr.run_id, "state": str(getattr(dr.state, "value", dr.state)),
                "seconds": seconds,
                "tasks": [{"task_id": t.task_id, "map_index": t.map_index,
                           "state": str(getattr(t.state, "value", t.state))} for t in tis],
                "receipts": receipts,
                "asset_events": [{"asset": e.asset.name, "uri": e.asset.uri, "task_id": e.source_task_id,
                                  "extra": e.extra} for e in events],
            })
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.orchestration")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="dag.test() the ingest DAGs (then publish); print the runs as JSON")
    run.add_argument("feeds", nargs="*", help="feeds to run (default: every contract)")
    run.add_argument("--no-publish", action="store_true")
    run.add_argument("--reprocess", action="store_true", help="offer processed files again (duplicates)")
    sub.add_parser("migrate", help="migrate the local Airflow metadata DB (once)")
    sub.add_parser("env", help="print the local Airflow environment as shell exports")
    args = parser.parse_args(argv)

    if args.command == "env":
        for key, value in airflow_env().items():
            print(f"export {key}={value!r}")
        return 0
    if args.command == "migrate":
        print("migrated" if ensure_airflow_db() else "already migrated")
        return 0
    if "airflow" in sys.modules:
        raise RuntimeError("airflow was imported before its environment was set")
    os.environ.update(airflow_env())  # before the first airflow import
    os.environ.setdefault("COREHUB_AIRFLOW_RETRIES", "0")  # dag.test() waits out retry delays: fail fast
    ensure_airflow_db()
    from .contracts import all_contracts

    feeds = [f.upper() for f in args.feeds] or list(all_contracts())
    runs = _run_in_this_process(feeds, publish=not args.no_publish, reprocess=args.reprocess)
    sys.stdout.flush()
    print(RESULT_MARKER + json.dumps(runs, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
