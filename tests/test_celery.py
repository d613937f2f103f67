"""The CeleryExecutor, for real: Airflow's scheduler queues a feed's DAG run's tasks on Redis and a
Celery worker runs them, as in docker-compose.yml, with processes on this machine instead of
containers.

Started here, each in its own process group, and stopped (then killed if need be) at the end:
  airflow api-server  (the Execution API the worker's tasks report to; a free port)
  airflow scheduler   (CeleryExecutor)
  airflow dag-processor
  airflow celery worker -q <a queue of this test only> (so no other worker can take its tasks)
Airflow's metadata DB is a throwaway database on the PostgreSQL server of the test warehouse
(the embedded one, or WAREHOUSE_URL's): the scheduler and Celery need a real server, not SQLite.
The broker is the Redis server on 127.0.0.1:6379; without one the test is skipped.

The DAG is unpaused, so the scheduler creates its scheduled run; the test checks that every task
that ran went through Celery: its external_executor_id is a Celery task id that the worker logged
as received and succeeded, on our queue; and the two deliveries in the inbox are in the warehouse.
"""
from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from pipelines import orchestration
from pipelines.config import PROJECT_ROOT, settings
from pipelines.generate import generate

REDIS = ("127.0.0.1", 6379)
DEADLINE = 240  # seconds for the whole test, start to stop


def _redis_answers() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


needs_redis = pytest.mark.skipif(not _redis_answers(), reason=(
    f"no Redis answers on {REDIS[0]}:{REDIS[1]}: the CeleryExecutor test needs one as its broker "
    "(e.g. `redis-server --port 6379 --save ''`)"))


def test_the_celery_executor_imports_with_the_pinned_celery(tmp_path):
    """The pins must keep Celery and Airflow's Celery provider compatible: celery 5.7.0 removed
    `celery.backends.database.retry`, which apache-airflow-providers-celery 3.26.0 imports, and
    then no scheduler or worker starts ("Please check 'executor' key in 'core' section")."""
    code = "import airflow.providers.celery.executors.celery_executor as m; print(m.CeleryExecutor.__name__)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    from importlib.metadata import version

    assert proc.returncode == 0 and "CeleryExecutor" in proc.stdout, (
        f"celery {version('celery')} with apache-airflow-providers-celery {version('apache-airflow-providers-celery')}: "
        + orchestration._tail(proc.stderr, 5))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_db(url: str, name: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(url)
    user = params.get("user", "postgres")
    password = f":{params['password']}" if params.get("password") else ""
    return f"{user}{password}@{params.get('host', '127.0.0.1')}:{params.get('port', 5432)}/{name}"


@pytest.fixture
def metadata_db(warehouse_server):
    """A throwaway database for Airflow's metadata on the warehouse's server: (user@host:port/db)."""
    admin, _ = warehouse_server
    name = f"corehub_airflow_celery_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    yield _with_db(admin, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


class Processes:
    """Background processes in their own process groups, logs in files; stop() ends them all."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict) -> None:
        out = open(self.folder / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.folder, start_new_session=True)
        out.close()

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"airflow {name} exited ({proc.returncode}):\n"
                                     + orchestration._tail(self.log(name), 40))

    def stop(self, timeout: float = 40) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():  # the whole group: task processes the parts started
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if proc.poll() is None:
                proc.wait(10)


@needs_redis
def test_the_scheduler_runs_a_feeds_dag_on_a_celery_worker(warehouse, metadata_db, tmp_path, monkeypatch):
    started = time.monotonic()
    timings = {}
    inbox = settings().feed_inbox("CUTRU")
    inbox.mkdir(parents=True)
    made = [generate("CUTRU", 40, province, 0.05, inbox, seq=1, seed=seed)
            for seed, province in enumerate(("01", "79"))]
    names = sorted(Path(m["path"]).name for m in made)

    home = tmp_path / "airflow"
    home.mkdir()
    monkeypatch.setenv("COREHUB_AIRFLOW_HOME", str(home))
    api_port = _free_port()
    queue = f"corehub-test-{os.getpid()}-{secrets.token_hex(3)}"
    sql = f"postgresql+psycopg2://{metadata_db}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env = {
        **base,
        **orchestration.airflow_env(),  # the local settings (home, DAGs folder, quiet), then Celery's
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{sql}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        # one secret for every part: the scheduler signs the tasks' tokens, the api-server checks them
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "COREHUB_AIRFLOW_RETRIES": "0",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    }
    airflow = [sys.executable, "-m", "airflow"]
    proc = subprocess.run([*airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    timings["db migrate"] = time.monotonic() - started

    procs = Processes(tmp_path)
    worker_name = f"corehub-test-{os.getpid()}@%h"
    try:
        procs.start("api-server", [*airflow, "api-server"], env)
        procs.start("scheduler", [*airflow, "scheduler"],
                    {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port())})
        procs.start("dag-processor", [*airflow, "dag-processor"], env)
        procs.start("worker", [*airflow, "celery", "worker", "--queues", queue, "--concurrency", "2",
                               "--celery-hostname", worker_name],
                    {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port())})

        def wait(what: str, ready, timeout: float):
            deadline = min(time.monotonic() + timeout, started + DEADLINE)
            while not (value := ready()):
                procs.check_alive()
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out waiting for {what}")
                time.sleep(1)
            timings[what] = time.monotonic() - started
            return value

        def meta(query: str, *params):
            with psycopg.connect(f"postgresql://{metadata_db}") as conn:
                return conn.execute(query, params).fetchall()

        wait("the worker", lambda: " ready." in procs.log("worker"), 120)
        wait("the DAG parsed", lambda: meta("select 1 from dag where dag_id = 'ingest_cutru'"), 120)
        proc = subprocess.run([*airflow, "dags", "unpause", "ingest_cutru"], env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        run_id, run_type, state = wait(
            "the DAG run", lambda: next(iter(meta("select run_id, run_type, state from dag_run "
                                                  "where dag_id = 'ingest_cutru' and state in ('success', 'failed') "
                                                  "order by id limit 1")), None), 150)
        tis = meta("select task_id, map_index, state, queue, external_executor_id from task_instance "
                   "where dag_id = 'ingest_cutru' and run_id = %s order by task_id, map_index", run_id)
    finally:
        stop_started = time.monotonic()
        procs.stop()
        timings["stop"] = time.monotonic() - stop_started
        try:
            import redis

            client = redis.Redis(*REDIS, socket_connect_timeout=2)
            client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        except Exception:  # noqa: BLE001 - hygiene only
            pass
        print("\n" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))

    worker_log = procs.log("worker")
    assert (run_type, state) == ("scheduled", "success"), (run_id, state, tis, orchestration._tail(worker_log))
    states = {(t, m): s for t, m, s, _, _ in tis}
    assert states == {("find_new_files", -1): "success", ("ingest", 0): "success", ("ingest", 1): "success",
                      ("mark_core_updated", -1): "success", ("surface_failures", -1): "skipped"}
    ran = [(t, m, q, celery_id) for t, m, s, q, celery_id in tis if s == "success"]
    for task_id, map_index, task_queue, celery_id in ran:
        assert task_queue == queue, (task_id, task_queue)
        assert celery_id, f"{task_id}[{map_index}] has no Celery task id"
        assert re.search(rf"Task execute_workload\[{celery_id}\] received", worker_log), (task_id, celery_id)
        assert re.search(rf"Task execute_workload\[{celery_id}\] succeeded", worker_log), (task_id, celery_id)
    assert len({c for *_, c in ran}) == len(ran) == 4
    assert f"corehub-test-{os.getpid()}@" in worker_log  # the worker we started, by its name

    with psycopg.connect(warehouse) as conn:
        loaded = conn.execute("select file_name, status from meta.delivery order by file_name").fetchall()
    assert [name for name, _ in loaded] == names
    assert {status for _, status in loaded} <= set(orchestration.CHANGED_STATUSES), loaded
    for proc in procs.procs.values():
        assert proc.poll() is not None
