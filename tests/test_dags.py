"""The Airflow DAGs: integrity (DagBag), and a real dag.test() run of the CUTRU ingest DAG.

Airflow reads its configuration when `airflow` is first imported, so the session fixture below
sets the local Airflow environment (orchestration.airflow_env()) before any test here imports it.
Each session gets its own Airflow home (a tmp dir); its SQLite metadata DB is a copy of one
migrated once and cached in pytest's cache dir (.pytest_cache/d/corehub-airflow), so
`airflow db migrate` runs only when that cache is new (`pytest --cache-clear` resets it).
The dag.test() run happens in a child process (orchestration.run_dags_detailed), against the
test's own warehouse; nothing is mocked.
"""
from __future__ import annotations

import ast
import inspect
import shutil
import textwrap
import time
from pathlib import Path

import pytest

from pipelines import orchestration
from pipelines.config import settings
from pipelines.contracts import all_contracts

OWNER = "corehub-data-eng"


def _ingest_not_implemented() -> bool:
    """True while pipelines.ingest.ingest_file is still the stub that raises NotImplementedError."""
    from pipelines import ingest

    try:
        fn = ast.parse(textwrap.dedent(inspect.getsource(ingest.ingest_file))).body[0]
    except (OSError, TypeError, IndexError):
        return False
    body = [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return len(body) == 1 and isinstance(body[0], ast.Raise) and "NotImplementedError" in ast.unparse(body[0])


@pytest.fixture(scope="session", autouse=True)
def airflow_environment(tmp_path_factory):
    """Airflow's local environment for this session (its own home), set before airflow is imported."""
    home = tmp_path_factory.mktemp("airflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COREHUB_AIRFLOW_HOME", str(home))
        for key, value in orchestration.airflow_env().items():
            mp.setenv(key, value)
        yield Path(home)


@pytest.fixture(scope="session")
def airflow_db(request, airflow_environment):
    """The session's metadata DB: a copy of one migrated once and cached in pytest's cache dir.

    `airflow db migrate` runs only when the cache is new (or for a new Airflow version); each
    session works on its own copy, so concurrent test sessions do not share a SQLite file.
    """
    cache = getattr(request.config, "cache", None)
    template = Path(cache.mkdir("corehub-airflow")) if cache is not None else airflow_environment / "template"
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COREHUB_AIRFLOW_HOME", str(template))
        if orchestration.ensure_airflow_db():
            print(f"\n`airflow db migrate` took {time.monotonic() - started:.1f} s")
    for name in ("airflow.db", ".migrated"):  # the template is never written again once migrated
        shutil.copy2(template / name, airflow_environment / name)
    assert orchestration.ensure_airflow_db() is False
    return airflow_environment / "airflow.db"


@pytest.fixture(scope="session")
def dagbag(airflow_environment):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(orchestration.DAGS_FOLDER))


# ----------------------------------------------------------------------------- integrity

def test_dags_import_without_errors(dagbag):
    assert not dagbag.import_errors, dagbag.import_errors


def test_one_ingest_dag_per_contract_and_the_publish_dag(dagbag):
    expected = {orchestration.ingest_dag_id(feed) for feed in all_contracts()} | {orchestration.PUBLISH_DAG_ID}
    assert set(dagbag.dag_ids) == expected


def test_every_dag_is_owned_tagged_documented_and_retried(dagbag):
    problems = []
    for dag_id, dag in sorted(dagbag.dags.items()):
        if "corehub" not in dag.tags:
            problems.append(f"{dag_id}: no 'corehub' tag")
        if not (dag.doc_md or "").strip():
            problems.append(f"{dag_id}: no doc_md")
        if dag.default_args.get("retries", 0) < 1:
            problems.append(f"{dag_id}: default_args sets no retries")
        if dag.catchup:
            problems.append(f"{dag_id}: catchup is on")
        if dag.max_active_runs != 1:
            problems.append(f"{dag_id}: max_active_runs {dag.max_active_runs}")
        for t in dag.tasks:
            if t.owner != OWNER:  # not the default "airflow"
                problems.append(f"{dag_id}.{t.task_id}: owner {t.owner!r}")
            if t.retries is None:
                problems.append(f"{dag_id}.{t.task_id}: retries not set")
    assert not problems, "\n".join(problems)


def test_ingest_dags_map_one_task_per_file_and_announce_their_core_table(dagbag):
    from airflow.sdk import TriggerRule

    for feed, contract in all_contracts().items():
        dag = dagbag.dags[orchestration.ingest_dag_id(feed)]
        assert {f"feed:{feed}", f"entity:{contract.entity}"} <= set(dag.tags)
        assert contract.title in dag.doc_md and contract.agency in dag.doc_md
        assert dag.timetable.expression == "*/15 * * * *" and not dag.catchup
        assert dag.params["reprocess"] is False
        tasks = dag.task_dict
        assert set(tasks) == {"find_new_files", "ingest", "mark_core_updated", "surface_failures"}
        ingest = tasks["ingest"]
        assert ingest.is_mapped
        assert ingest.max_active_tis_per_dagrun == 4
        assert ingest.retries >= 1
        assert ingest.upstream_task_ids == {"find_new_files"}
        announce = tasks["mark_core_updated"]
        assert [(o.name, o.uri) for o in announce.outlets] == [
            (f"core.{contract.entity}", f"postgres://warehouse:5432/corehub/core/{contract.entity}")]
        assert announce.trigger_rule == TriggerRule.ALL_DONE
        assert announce.upstream_task_ids == {"ingest"}
        assert tasks["surface_failures"].trigger_rule == TriggerRule.ONE_FAILED
        assert not any(t.outlets for t in dag.tasks if t.task_id != "mark_core_updated")


def test_publish_runs_when_any_core_table_changes(dagbag):
    from airflow.sdk import Asset, AssetAny

    produced = {o.uri for dag_id, dag in dagbag.dags.items() if dag_id != orchestration.PUBLISH_DAG_ID
                for t in dag.tasks for o in t.outlets}
    publish = dagbag.dags[orchestration.PUBLISH_DAG_ID]
    condition = publish.timetable.asset_condition
    if isinstance(condition, Asset):  # a single feed
        scheduled = {condition.uri}
    else:
        assert isinstance(condition, AssetAny), f"publish must run on ANY core table change, not {condition!r}"
        assert all(isinstance(o, Asset) for o in condition.objects)
        scheduled = {o.uri for o in condition.objects}
    assert scheduled == produced
    assert list(publish.task_dict) == ["publish"]
    assert {"corehub", "publish"} <= set(publish.tags)


def test_dag_file_is_thin():
    text = (orchestration.DAGS_FOLDER / "corehub_dags.py").read_text()
    assert len(text.splitlines()) < 10
    assert "build_dags()" in text


# ----------------------------------------------------------------------------- orchestration helpers

def test_airflow_env_is_local_and_self_contained(airflow_environment):
    env = orchestration.airflow_env()
    assert Path(env["AIRFLOW_HOME"]) == airflow_environment == orchestration.airflow_home()
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(orchestration.DAGS_FOLDER)
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{airflow_environment / 'airflow.db'}"


def test_ensure_airflow_db_migrates_once(airflow_db):
    started = time.monotonic()
    assert orchestration.ensure_airflow_db() is False  # the session fixture did it
    assert time.monotonic() - started < 2
    assert airflow_db.exists()


def test_pending_files_are_the_feeds_unprocessed_files_by_name(request, tmp_path, monkeypatch):
    from pipelines import ingest

    if hasattr(ingest, "already_processed"):
        request.getfixturevalue("warehouse")  # already_processed() asks the warehouse
    else:
        monkeypatch.setenv("COREHUB_HOME", str(tmp_path))
    assert orchestration.pending_files("CUTRU") == []  # no inbox yet
    inbox = settings().feed_inbox("CUTRU")
    inbox.mkdir(parents=True)
    for name in ("CUTRU_79_20261120_001.csv", "cutru_01_20261120_001.csv", "HOTICH_01_20261120_001.csv",
                 "notes.txt", ".CUTRU_02_20261120_001.csv.part"):
        (inbox / name).write_text(name)
    (inbox / "CUTRU_dir").mkdir()
    assert [Path(p).name for p in orchestration.pending_files("cutru")] == [
        "CUTRU_79_20261120_001.csv", "cutru_01_20261120_001.csv"]
    assert all(Path(p).is_absolute() for p in orchestration.pending_files("CUTRU"))


def test_receipt_summary_says_why_a_delivery_was_rejected():
    line = orchestration.receipt_summary({"feed": "CUTRU", "delivery_id": 7, "file": "/x/CUTRU_01_20261120_001.csv",
                                          "status": "rejected", "rows_read": 0, "rows_loaded": 0,
                                          "rows_quarantined": 0, "rejections": {}, "reason": "no header"})
    assert "CUTRU_01_20261120_001.csv" in line and "REJECTED: no header" in line
    assert orchestration.changed([{"status": "rejected"}, {"status": "duplicate"}, {"status": "loaded"},
                                  {"status": "loaded_with_rejections"}]) == [
        {"status": "loaded"}, {"status": "loaded_with_rejections"}]


# ----------------------------------------------------------------------------- dag.test()

@pytest.mark.skipif(_ingest_not_implemented(), reason="ingest not implemented yet")
def test_cutru_ingest_dag_runs_one_mapped_ingest_per_file(warehouse, airflow_db):
    from pipelines.generate import generate

    inbox = settings().feed_inbox("CUTRU")
    made = [generate("CUTRU", 60, province, 0.05, inbox, seq=1, seed=seed)
            for seed, province in enumerate(("01", "79"))]
    names = sorted(Path(m["path"]).name for m in made)
    assert [Path(p).name for p in orchestration.pending_files("CUTRU")] == names

    started = time.monotonic()
    ingest_run, publish_run = orchestration.run_dags_detailed(["CUTRU"], timeout=900)
    print(f"\ndag.test(): ingest_cutru {ingest_run['seconds']} s, publish {publish_run['seconds']} s, "
          f"{time.monotonic() - started:.1f} s with the child process")

    assert ingest_run["dag_id"] == "ingest_cutru" and ingest_run["state"] == "success", ingest_run
    mapped = [t for t in ingest_run["tasks"] if t["task_id"] == "ingest"]
    assert sorted(t["map_index"] for t in mapped) == [0, 1]
    assert {t["state"] for t in mapped} == {"success"}
    receipts = ingest_run["receipts"]
    assert [Path(r["file"]).name for r in receipts] == names
    for r in receipts:
        assert r["feed"] == "CUTRU" and r["sha256"] and r["rows_read"] == 60, r
        assert r["status"] in orchestration.CHANGED_STATUSES, r
    states = {t["task_id"]: t["state"] for t in ingest_run["tasks"] if t["task_id"] != "ingest"}
    assert states == {"find_new_files": "success", "mark_core_updated": "success", "surface_failures": "skipped"}
    assert [(e["asset"], e["task_id"]) for e in ingest_run["asset_events"]] == [("core.person", "mark_core_updated")]
    assert ingest_run["asset_events"][0]["extra"]["rows_loaded"] == sum(r["rows_loaded"] for r in receipts)
    assert publish_run["dag_id"] == "publish" and publish_run["state"] == "success", publish_run

    # the same bytes again: nothing pending, nothing mapped, no asset event
    (rerun,) = orchestration.run_dags_detailed(["CUTRU"], publish=False, timeout=900)
    assert rerun["state"] == "success", rerun
    assert {t["task_id"]: t["state"] for t in rerun["tasks"]} == {
        "find_new_files": "success", "ingest": "skipped", "mark_core_updated": "skipped",
        "surface_failures": "skipped"}
    assert rerun["receipts"] == [] and rerun["asset_events"] == []

    # with the param reprocess, every file is offered again and comes back a duplicate
    (again,) = orchestration.run_dags_detailed(["CUTRU"], publish=False, reprocess=True, timeout=900)
    assert again["state"] == "success", again
    assert [(Path(r["file"]).name, r["status"]) for r in again["receipts"]] == [(n, "duplicate") for n in names]
    assert {t["task_id"]: t["state"] for t in again["tasks"] if t["task_id"] != "ingest"} == {
        "find_new_files": "success", "mark_core_updated": "skipped", "surface_failures": "skipped"}
    assert again["asset_events"] == []
