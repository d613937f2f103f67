"""Running corehub's Airflow on this machine: `make up` / `make down`.

    python -m pipelines.ops up [--port 8080] [--host 127.0.0.1]   # what `make up` runs
    python -m pipelines.ops down                                  # what `make down` runs
    python -m pipelines.ops status                                # is it running, where
    python -m pipelines.ops inboxes                               # create every feed's inbox folder

`up` starts `airflow standalone` (api-server with the UI, scheduler, dag-processor, triggerer;
LocalExecutor, SQLite metadata under $COREHUB_HOME/airflow: orchestration.airflow_env()) in the
background, against the warehouse everything else uses (the embedded one under $COREHUB_HOME,
started if needed, or WAREHOUSE_URL). Every feed's inbox folder is created and the DAGs are
unpaused, so each ingest DAG picks up new files in its inbox on its schedule (every 15 minutes;
the UI's trigger button runs one now). `up` returns once the UI answers and lists every DAG.

`down` stops that Airflow (its whole process group) and leaves the embedded warehouse running for
other clients, like `corehub demo` does (`corehub stop` stops it).

Any AIRFLOW__* setting in the environment that orchestration.airflow_env() does not fix passes on
to Airflow (e.g. AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT when 8793 is taken).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import orchestration
from .config import PROJECT_ROOT, settings

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
START_TIMEOUT = 300.0
STOP_TIMEOUT = 60.0


def ensure_inboxes() -> list[Path]:
    """Every feed's inbox folder ($COREHUB_HOME/inbox/<FEED>), created when missing."""
    from .contracts import all_contracts

    folders = []
    for feed in all_contracts():
        folder = settings().feed_inbox(feed)
        folder.mkdir(parents=True, exist_ok=True)
        folders.append(folder)
    return folders


def _state_file() -> Path:
    return orchestration.airflow_home() / "standalone.json"


def _log_file() -> Path:
    return orchestration.airflow_home() / "standalone.log"


def standalone_env(port: int, host: str = DEFAULT_HOST) -> dict[str, str]:
    """The environment of `airflow standalone`: airflow_env() plus where the UI and the
    execution API listen (the tasks call the latter), and unpaused DAGs."""
    venv_bin = str(Path(sys.executable).parent)  # standalone starts its parts as `airflow ...`
    return {
        **os.environ,
        **orchestration.airflow_env(),
        "COREHUB_HOME": str(settings().home),
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{host}:{port}/execution/",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    }


def _group_alive(pgid: int) -> bool:
    """True while a process of this process group runs (zombies waiting for a parent do not count)."""
    proc = Path("/proc")
    if proc.is_dir():
        for stat in proc.glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
        return False
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _read_state() -> dict | None:
    """The running standalone's state ({pid, url, log, ...}), or None (a stale file is removed)."""
    path = _state_file()
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{state['pid']}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        ours = "standalone" in cmdline
    except OSError:
        ours = _group_alive(state["pid"])
    if ours or _group_alive(state["pid"]):
        return state
    path.unlink(missing_ok=True)
    return None


def _get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _ready(url: str, dag_ids: set[str]) -> bool:
    """The UI answers, the scheduler and dag-processor are healthy, and every DAG is listed."""
    try:
        health = _get_json(f"{url}/api/v2/monitor/health")
        if any((health.get(part) or {}).get("status") != "healthy" for part in ("metadatabase", "scheduler",
                                                                                 "dag_processor")):
            return False
        listed = {d["dag_id"] for d in _get_json(f"{url}/api/v2/dags?limit=1000").get("dags", [])}
        return dag_ids <= listed
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _unpause(url: str, dag_id: str, attempts: int = 6) -> bool:
    """Unpause a DAG through the REST API (local Airflow: every user is an admin) unless it runs
    already. SQLite takes one writer at a time, so a busy moment (tasks running) answers 500: retry."""
    for attempt in range(1, attempts + 1):
        try:
            if not _get_json(f"{url}/api/v2/dags/{dag_id}").get("is_paused"):
                return True
            request = urllib.request.Request(f"{url}/api/v2/dags/{dag_id}", method="PATCH",
                                             data=json.dumps({"is_paused": False}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                if not json.loads(response.read()).get("is_paused"):
                    return True
        except (OSError, ValueError, urllib.error.URLError) as exc:
            log.info("unpausing %s (attempt %d): %s", dag_id, attempt, exc)
        time.sleep(attempt)
    log.warning("could not unpause %s: switch it on in the UI", dag_id)
    return False


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def expected_dag_ids() -> set[str]:
    from .contracts import all_contracts

    return {orchestration.ingest_dag_id(f) for f in all_contracts()} | {orchestration.PUBLISH_DAG_ID}


def up(port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, timeout: float = START_TIMEOUT) -> dict:
    """Start Airflow standalone in the background (unless running); returns its state."""
    from . import warehouse
    from .migrations import ensure_ready

    state = _read_state()
    if state:
        print(f"Airflow is already running at {state['url']} (pid {state['pid']}); `make down` stops it")
        return state
    if not _port_free(host, port):
        raise SystemExit(f"port {port} on {host} is taken: `make up AIRFLOW_PORT=<another>`")
    started = time.monotonic()
    url = warehouse.url()  # the embedded warehouse starts here, unless WAREHOUSE_URL names one
    ensure_ready(url)
    inboxes = ensure_inboxes()
    orchestration.ensure_airflow_db()
    home = orchestration.airflow_home()
    logfile = _log_file()
    with open(logfile, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "airflow", "standalone"], env=standalone_env(port, host),
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=home,
                                start_new_session=True)  # its own process group: `down` stops all its parts
    ui = f"http://{host}:{port}"
    state = {"pid": proc.pid, "url": ui, "log": str(logfile), "home": str(settings().home),
             "started_at": time.time()}
    _state_file().write_text(json.dumps(state))
    dag_ids = expected_dag_ids()
    while not _ready(ui, dag_ids):
        if proc.poll() is not None:
            _state_file().unlink(missing_ok=True)
            raise SystemExit(f"airflow standalone exited ({proc.returncode}); see {logfile}:\n"
                             + orchestration._tail(logfile.read_text(errors="replace"), 30))
        if time.monotonic() - started > timeout:
            down()
            raise SystemExit(f"Airflow did not come up within {timeout:.0f} s; see {logfile}")
        time.sleep(1)
    # DAGs that exist already (a `make demo` or an earlier `up` registered them) keep their paused
    # flag whatever DAGS_ARE_PAUSED_AT_CREATION says: unpause corehub's, so every inbox is watched
    for dag_id in sorted(dag_ids):
        _unpause(ui, dag_id)
    print(f"Airflow is up in {time.monotonic() - started:.0f} s: {ui}  (no login; local only)\n"
          f"  DAGs: {', '.join(sorted(dag_ids))} (unpaused)\n"
          f"  warehouse: {warehouse.url() if not settings().warehouse_url else 'WAREHOUSE_URL'}\n"
          f"  inboxes (each ingest DAG polls its own every 15 minutes; the UI's trigger button runs it now):\n"
          + "".join(f"    {p}\n" for p in inboxes)
          + f"  reports: {settings().reports}\n  log: {logfile}\n  `make down` stops Airflow")
    return state


def down(timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the Airflow that `up` started (SIGTERM to its process group, SIGKILL after timeout)."""
    state = _read_state()
    if not state:
        print("Airflow is not running")
        return False
    pgid = state["pid"]
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _group_alive(pgid):
        log.warning("Airflow did not stop within %.0f s: killing it", timeout)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while _group_alive(pgid) and time.monotonic() < deadline + 10:
            time.sleep(0.2)
    _state_file().unlink(missing_ok=True)
    print(f"Airflow stopped ({state['url']}); the embedded warehouse keeps running (`corehub stop`)")
    return True


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m pipelines.ops", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="start Airflow standalone in the background (UI, scheduler, DAGs)")
    p.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT") or DEFAULT_PORT))
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--timeout", type=float, default=START_TIMEOUT)
    sub.add_parser("down", help="stop it")
    sub.add_parser("status", help="is it running, and where")
    sub.add_parser("inboxes", help="create every feed's inbox folder under $COREHUB_HOME/inbox")
    args = parser.parse_args(argv)
    if args.command == "up":
        up(args.port, args.host, args.timeout)
    elif args.command == "down":
        down()
    elif args.command == "status":
        state = _read_state()
        print(f"running at {state['url']} (pid {state['pid']}, log {state['log']})" if state else "not running")
        return 0 if state else 3
    elif args.command == "inboxes":
        for folder in ensure_inboxes():
            print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
