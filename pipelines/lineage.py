"""OpenLineage events for every ingest: the delivered file -> the core tables it changed.

Configured by the environment (unset or empty = off):

  COREHUB_LINEAGE   file:/path/to/events.jsonl    append one JSON event per line to that file
                    http(s)://host[:port][/path]  POST each event to an OpenLineage endpoint
                                                  (Marquez: http://marquez:5000; the path defaults to
                                                  /api/v1/lineage)
  COREHUB_LINEAGE_NAMESPACE   the jobs' namespace (default `corehub`)

Each processed delivery gives two events of one run: START (when the delivery began) and COMPLETE
(loaded, possibly with rejections; or superseded, with no outputs: nothing was loaded) or FAIL
(rejected: nothing loaded; the reason is the run's errorMessage facet). A duplicate gives none.
The job is `ingest_<feed>.ingest`, like the Airflow task that runs it. Datasets follow
OpenLineage's naming:

  input   namespace `file`, name = the archived bytes ($COREHUB_HOME/archive/<sha256>); the delivered
          file name is its symlink (namespace `corehub-delivery`, name `<FEED>/<file name>`)
  outputs namespace `postgres://host:port`, name `<database>.core.<entity>` and
          `<database>.history.<entity>` (the feed's entity and those its effects change), plus
          `<database>.quarantine.row` when rows were quarantined; rowCount = rows loaded / quarantined

Emitting never raises into the ingest (hooks.after_delivery guards it).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

LINEAGE_ENV = "COREHUB_LINEAGE"
NAMESPACE_ENV = "COREHUB_LINEAGE_NAMESPACE"
DEFAULT_NAMESPACE = "corehub"
PRODUCER = "urn:corehub:pipelines"
DEFAULT_HTTP_ENDPOINT = "api/v1/lineage"


def target() -> str | None:
    return os.environ.get(LINEAGE_ENV, "").strip() or None


def transport(spec: str):
    """The OpenLineage transport for a COREHUB_LINEAGE value."""
    parts = urlsplit(spec)
    if parts.scheme == "file" or (not parts.scheme and spec.startswith("/")):
        from openlineage.client.transport.file import FileConfig, FileTransport

        path = parts.path if parts.scheme == "file" else spec
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return FileTransport(FileConfig(log_file_path=path, append=True))
    if parts.scheme in ("http", "https"):
        from openlineage.client.transport.http import HttpConfig, HttpTransport

        endpoint = parts.path.strip("/") or DEFAULT_HTTP_ENDPOINT
        # a few quick retries only: an ingest waits for its lineage (an unreachable endpoint costs ~2 s)
        retry = {"total": 2, "read": 2, "connect": 2, "backoff_factor": 0.5,
                 "status_forcelist": [500, 502, 503, 504], "allowed_methods": ["HEAD", "POST"]}
        return HttpTransport(HttpConfig(url=f"{parts.scheme}://{parts.netloc}", endpoint=endpoint, timeout=5.0,
                                        retry=retry))
    raise ValueError(f"{LINEAGE_ENV} must be file:/path or http(s)://host[:port][/path], not {spec!r}")


def _facets():
    """Our custom run facet, defined lazily (openlineage is imported only when lineage is on)."""
    import attr
    from openlineage.client.generated.base import RunFacet

    @attr.define
    class CorehubDeliveryRunFacet(RunFacet):
        deliveryId: int | None = attr.field(default=None)  # noqa: N815
        feed: str | None = attr.field(default=None)
        province: str | None = attr.field(default=None)
        fileName: str | None = attr.field(default=None)  # noqa: N815
        status: str | None = attr.field(default=None)
        rowsRead: int | None = attr.field(default=None)  # noqa: N815
        rowsLoaded: int | None = attr.field(default=None)  # noqa: N815
        rowsQuarantined: int | None = attr.field(default=None)  # noqa: N815
        rejections: dict | None = attr.field(factory=dict)
        stageSeconds: dict | None = attr.field(factory=dict)  # noqa: N815
        report: str | None = attr.field(default=None)
        airflow: dict | None = attr.field(factory=dict)

        @staticmethod
        def _get_schema() -> str:
            return "urn:corehub:openlineage:facets:CorehubDeliveryRunFacet:1-0-0"

    return CorehubDeliveryRunFacet


def _airflow_context() -> dict:
    """The Airflow task running this ingest, when there is one (Airflow sets AIRFLOW_CTX_* for tasks)."""
    keys = {"dag_id": "AIRFLOW_CTX_DAG_ID", "run_id": "AIRFLOW_CTX_DAG_RUN_ID", "task_id": "AIRFLOW_CTX_TASK_ID",
            "try_number": "AIRFLOW_CTX_TRY_NUMBER"}
    return {k: os.environ[v] for k, v in keys.items() if os.environ.get(v)}


def delivery_events(receipt: dict, province: str | None, stages: dict[str, float], seconds: float, *,
                    warehouse: dict, archive_path: str, entities: list[str], namespace: str | None = None,
                    now: dt.datetime | None = None) -> list:
    """START and COMPLETE/FAIL RunEvents for one processed delivery.

    warehouse: {'host', 'port', 'database'}; entities: the core entities the feed writes (its own
    first, then those of its effects).
    """
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import (data_quality_metrics_input_dataset, error_message_run,
                                             job_type_job, output_statistics_output_dataset, symlinks_dataset)
    from openlineage.client.uuid import generate_new_uuid

    from .orchestration import CHANGED_STATUSES, INGEST_TASK_ID, ingest_dag_id

    namespace = namespace or os.environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE
    now = now or dt.datetime.now(dt.timezone.utc)
    started = now - dt.timedelta(seconds=float(seconds or 0))
    feed = receipt.get("feed")
    status = receipt.get("status")
    file_name = receipt.get("file")
    job = Job(namespace=namespace, name=f"{ingest_dag_id(feed or 'unknown')}.{INGEST_TASK_ID}",
              facets={"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="COREHUB",
                                                                jobType="INGEST", producer=PRODUCER)})
    size = None
    try:
        size = os.path.getsize(archive_path)
    except OSError:
        pass
    inputs = [InputDataset(
        namespace="file", name=archive_path,
        facets={"symlinks": symlinks_dataset.SymlinksDatasetFacet(identifiers=[symlinks_dataset.Identifier(
            namespace="corehub-delivery", name=f"{feed or 'UNKNOWN'}/{file_name}", type="file")],
            producer=PRODUCER)},
        inputFacets={"dataQualityMetrics": data_quality_metrics_input_dataset.DataQualityMetricsInputDatasetFacet(
            columnMetrics={}, rowCount=receipt.get("rows_read"), bytes=size, fileCount=1, producer=PRODUCER)})]

    db_namespace = f"postgres://{warehouse['host']}:{warehouse['port']}"
    outputs = []
    if status in CHANGED_STATUSES:
        for i, entity in enumerate(dict.fromkeys(entities)):
            stats = {}
            if i == 0:
                stats = {"outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=receipt.get("rows_loaded"), producer=PRODUCER)}
            for schema in ("core", "history"):
                outputs.append(OutputDataset(namespace=db_namespace, name=f"{warehouse['database']}.{schema}.{entity}",
                                             outputFacets=dict(stats)))
        if receipt.get("rows_quarantined"):
            outputs.append(OutputDataset(
                namespace=db_namespace, name=f"{warehouse['database']}.quarantine.row",
                outputFacets={"outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=receipt.get("rows_quarantined"), producer=PRODUCER)}))

    run_id = str(generate_new_uuid())
    delivery_facet = _facets()(
        deliveryId=receipt.get("delivery_id"), feed=feed, province=province, fileName=file_name, status=status,
        rowsRead=receipt.get("rows_read"), rowsLoaded=receipt.get("rows_loaded"),
        rowsQuarantined=receipt.get("rows_quarantined"), rejections=dict(receipt.get("rejections") or {}),
        stageSeconds=dict(stages or {}), report=receipt.get("report"), airflow=_airflow_context(), producer=PRODUCER)
    end_facets = {"corehub_delivery": delivery_facet}
    if status == "rejected":
        end_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=receipt.get("reason") or "delivery rejected", programmingLanguage="python", producer=PRODUCER)
    return [
        RunEvent(eventType=RunState.START, eventTime=started.isoformat(), run=Run(runId=run_id), job=job,
                 producer=PRODUCER, inputs=inputs, outputs=[]),
        RunEvent(eventType=RunState.FAIL if status == "rejected" else RunState.COMPLETE, eventTime=now.isoformat(),
                 run=Run(runId=run_id, facets=end_facets), job=job, producer=PRODUCER, inputs=inputs,
                 outputs=outputs),
    ]


def emit(events: list, spec: str | None = None) -> int:
    """Send the events through the configured transport; returns how many were sent."""
    spec = spec or target()
    if not spec or not events:
        return 0
    from openlineage.client import OpenLineageClient

    client = OpenLineageClient(transport=transport(spec))
    try:
        for event in events:
            client.emit(event)
    finally:
        client.close(timeout=5.0)
    return len(events)


def delivery_finished(conn, receipt: dict, province: str | None, stages: dict[str, float], seconds: float) -> int:
    """After a delivery (hooks.after_delivery): emit its lineage when COREHUB_LINEAGE is set."""
    spec = target()
    if not spec or receipt.get("status") == "duplicate":
        return 0
    from .config import settings
    from .contracts import all_contracts

    contract = all_contracts().get((receipt.get("feed") or "").upper())
    entities = []
    if contract is not None:
        entities = [contract.entity] + [e["entity"] for e in contract.effects if e.get("entity")]
    info = conn.info
    warehouse = {"host": info.host or "localhost", "port": info.port or 5432, "database": info.dbname}
    archive_path = str(settings().archive / receipt["sha256"]) if receipt.get("sha256") else receipt.get("file")
    events = delivery_events(receipt, province, stages, seconds, warehouse=warehouse, archive_path=archive_path,
                             entities=entities)
    return emit(events, spec)
