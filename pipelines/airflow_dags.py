"""corehub's Airflow DAGs, built from the feed contracts (loaded by dags/corehub_dags.py).

Per feed, `ingest_<feed>` polls the feed's inbox every 15 minutes:

    find_new_files -> ingest (mapped: one task per delivery file, at most 4 at once per run)
                   -> mark_core_updated (emits the asset core.<entity>, only when a delivery loaded)
                   -> surface_failures  (fails the run when a delivery task failed)

`publish` runs whenever any core.<entity> asset is updated (asset-aware scheduling, OR of them all)
and refreshes the published views and statistics.

The tasks are thin: the work is in pipelines.orchestration, pipelines.ingest and pipelines.publish,
imported inside the tasks so that parsing this file stays fast (no GX, no database at parse time).
A rejected delivery is a business outcome (the receipt says why), not a task failure.
"""
from __future__ import annotations

import functools
import logging
import operator
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG, Asset, Param, TriggerRule, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from . import notify, orchestration
from .contracts import Contract, all_contracts

log = logging.getLogger(__name__)

OWNER = "corehub-data-eng"
INGEST_SCHEDULE = "*/15 * * * *"   # agencies drop files at any time; a quarter of an hour is fresh enough
START_DATE = datetime(2025, 1, 1, tzinfo=timezone.utc)
PARALLEL_DELIVERIES = 4            # mapped ingest tasks at once per run (one province's file each)
WAREHOUSE_URI = "postgres://warehouse:5432/corehub"


def core_asset(entity: str) -> Asset:
    """The asset for a core table (a postgres URI names database, schema and table)."""
    return Asset(name=f"core.{entity}", uri=f"{WAREHOUSE_URI}/core/{entity}")


def _default_args() -> dict:
    return {
        "owner": OWNER,
        "retries": int(os.environ.get("COREHUB_AIRFLOW_RETRIES", "2")),
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        # a task that failed for good (retries spent) -> COREHUB_NOTIFY_WEBHOOK / COREHUB_NOTIFY_SMTP
        "on_failure_callback": notify.task_failure_callback,
    }


def _ingest_doc(c: Contract) -> str:
    return (f"### Ingest {c.feed}: {c.title}\n\n"
            f"From **{c.agency}**; mode `{c.mode}`; loads `core.{c.entity}`.\n\n"
            f"Every 15 minutes, picks up the files in `$COREHUB_HOME/inbox/{c.feed}/` named "
            f"`{c.feed}_<PROVINCE>_<YYYYMMDD>_<SEQ>.<ext>` that were not processed yet, and ingests each "
            f"one (archive, validate, load) in its own mapped task. A rejected delivery is not a task "
            f"failure: its receipt and report say why. When a delivery loaded, the asset "
            f"`core.{c.entity}` is updated, which triggers the `publish` DAG.")


def build_ingest_dag(c: Contract) -> DAG:
    asset = core_asset(c.entity)
    with DAG(
        dag_id=orchestration.ingest_dag_id(c.feed),
        description=f"Ingest {c.feed} deliveries ({c.title}, {c.agency}) into core.{c.entity}",
        doc_md=_ingest_doc(c),
        schedule=INGEST_SCHEDULE,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=6),
        default_args=_default_args(),
        tags=["corehub", f"feed:{c.feed}", f"entity:{c.entity}"],
        params={"reprocess": Param(False, type="boolean",
                                   description="Offer every inbox file again, also those processed before "
                                               "(their receipts say 'duplicate')")},
    ) as dag:

        @task
        def find_new_files(feed: str) -> list[str]:
            """The feed's inbox files not processed yet (or all of them, with the param reprocess)."""
            reprocess = bool(get_current_context()["params"].get("reprocess"))
            paths = orchestration.pending_files(feed, include_processed=reprocess)
            log.info("%d new %s file(s): %s", len(paths), feed, [Path(p).name for p in paths])
            return paths

        @task(task_id=orchestration.INGEST_TASK_ID, max_active_tis_per_dagrun=PARALLEL_DELIVERIES,
              map_index_template="{{ delivery_file }}", execution_timeout=timedelta(hours=3))
        def ingest(path: str) -> dict:
            """Ingest one delivery file; return its receipt (a rejected file is not a failure)."""
            from pipelines.ingest import ingest_file

            get_current_context()["delivery_file"] = Path(path).name  # shown as the map index
            receipt = ingest_file(path)
            orchestration.log_receipt(receipt, log)
            return receipt

        @task(outlets=[asset], trigger_rule=TriggerRule.ALL_DONE)
        def mark_core_updated(receipts) -> dict:
            """Emit the core table's asset event when at least one delivery loaded rows."""
            loaded = orchestration.changed(receipts[:] if receipts else [])  # one slice read
            if not loaded:
                raise AirflowSkipException(f"no delivery loaded: core.{c.entity} unchanged")
            extra = orchestration.asset_event_extra(loaded)
            get_current_context()["outlet_events"][asset].extra = extra
            return extra

        @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
        def surface_failures() -> None:
            """Runs only when a task above failed: fails the DAG run so that it is noticed."""
            raise AirflowFailException("a task of this run failed: find_new_files, or the ingest of a delivery "
                                       "(see the failed map indexes of `ingest`; the others were processed)")

        files = find_new_files(c.feed)
        receipts = ingest.expand(path=files)
        mark_core_updated(receipts)
        receipts >> surface_failures()
    return dag


def build_publish_dag(contracts: list[Contract]) -> DAG:
    assets = list({c.entity: core_asset(c.entity) for c in contracts}.values())
    with DAG(
        dag_id=orchestration.PUBLISH_DAG_ID,
        description="Refresh the published views and statistics after a core table changed",
        doc_md=("### Publish\n\nRefreshes the published views and statistics. Runs when any of "
                + ", ".join(f"`{a.name}`" for a in assets) + " is updated by an ingest DAG."),
        schedule=functools.reduce(operator.or_, assets),  # any one of them (AssetAny)
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=_default_args(),
        tags=["corehub", "publish"],
    ) as dag:

        @task(task_id="publish")
        def publish_task() -> dict:
            """Refresh the published views and statistics."""
            from pipelines.publish import publish

            return publish()

        publish_task()
    return dag


def build_dags() -> dict[str, DAG]:
    """Every corehub DAG by dag_id: one ingest DAG per feed contract, and `publish`."""
    contracts = list(all_contracts().values())
    dags = {dag.dag_id: dag for dag in map(build_ingest_dag, contracts)}
    if contracts:
        dags[orchestration.PUBLISH_DAG_ID] = build_publish_dag(contracts)
    return dags
