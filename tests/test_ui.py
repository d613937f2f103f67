"""Local Airflow as a data engineer uses it: `make up`, the UI in a real (headless) Chromium, `make down`.

`make up` runs here exactly as on a laptop, in a clean environment: a fresh COREHUB_HOME (so its
own embedded warehouse), no WAREHOUSE_URL, no Airflow settings from this test session; only the
ports differ (free ones, so a developer's own `make up` on 8080 is no obstacle). A CUTRU delivery
waits in the inbox before Airflow starts; the unpaused ingest DAG's first scheduled run must pick
it up. Chromium is driven over the DevTools protocol (websockets, no extra package): it opens the
DAG list, waits until every feed's DAG is shown, takes a screenshot, then opens ingest_cutru.

Screenshots: .pytest_cache/d/corehub-ui/{dags,ingest_cutru}.png (look at them).
Chromium: Debian's `chromium` (`make browser` installs it; `make test` runs that first), or the
executable named by COREHUB_CHROMIUM; without one this test is skipped.
"""
from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipelines import ops, orchestration
from pipelines.config import PROJECT_ROOT
from pipelines.contracts import all_contracts
from population_helpers import CUTRU_HEADER, csv_text, person

pytestmark = pytest.mark.embedded_only  # `make up` is about the embedded warehouse

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1400,900"]


def chromium() -> str | None:
    return os.environ.get("COREHUB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """Headless Chromium over the DevTools protocol: one page, navigate/evaluate/click/screenshot."""

    def __init__(self, executable: str):
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="corehub-chromium-")
        self.proc = subprocess.Popen([executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                                      "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                                      "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        active = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and len(active.read_text().split("\n")) >= 2 and active.read_text().split("\n")[1]):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.1)
        port, path = active.read_text().split("\n")[:2]
        self.ws = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=10)
        self._ids = itertools.count(1)
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable", session=True)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=True)

    def send(self, method: str, params: dict | None = None, session: bool = False, timeout: float = 30) -> dict:
        msg_id = next(self._ids)
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url}, session=True)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=True)
        return result["result"].get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, needles, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if all(n in text for n in needles):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never showed {needles}; it shows:\n{text[:2000]}")
            time.sleep(0.5)

    def settle(self, timeout: float = 5) -> None:
        """Wait (a little) for the page's loading spinners to go; the screenshot is taken anyway."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.evaluate(
                "document.querySelectorAll('.chakra-spinner, [role=progressbar]').length"):
            time.sleep(0.3)
        time.sleep(0.5)

    def click_link(self, label: str) -> None:
        clicked = self.evaluate(
            "(() => { const a = [...document.querySelectorAll('a')].find(e => e.innerText.trim() === %s);"
            " if (a) { a.click(); return true; } return false; })()" % json.dumps(label))
        assert clicked, f"no link {label!r} on the page"

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


def _clean_env(home: Path, port: int) -> dict[str, str]:
    """A newcomer's shell: nothing of this session's Airflow or warehouse settings, a fresh home."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "COREHUB_", "_AIRFLOW")) and k != "WAREHOUSE_URL"}
    env.update({"COREHUB_HOME": str(home), "AIRFLOW_PORT": str(port),
                # the parts' own log servers: free ports too (8793/8794 may be a developer's)
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port())})
    return env


def _make(target: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    # -o: never rebuild the venv from inside a test (it is the one running this test)
    return subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", target], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.skipif(chromium() is None, reason="no Chromium: `make browser` installs Debian's chromium "
                                               "(`make test` does it first), or set COREHUB_CHROMIUM")
@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_up_serves_the_ui_with_every_feeds_dag_and_make_down_stops_it(request, tmp_path):
    home = tmp_path / "home"
    port = _free_port()
    env = _clean_env(home, port)
    inbox = home / "inbox" / "CUTRU"
    inbox.mkdir(parents=True)
    (inbox / "CUTRU_01_20261120_001.csv").write_text(csv_text(CUTRU_HEADER, [person(), person(pid="12")]))
    shots = Path(request.config.cache.mkdir("corehub-ui")) if request.config.cache else home
    dag_ids = sorted({orchestration.ingest_dag_id(f) for f in all_contracts()} | {orchestration.PUBLISH_DAG_ID})
    ui = f"http://127.0.0.1:{port}"
    timings = {}
    browser = None
    started = time.monotonic()
    try:
        proc = _make("up", env, timeout=360)
        timings["make up"] = time.monotonic() - started
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "Airflow is up" in proc.stdout and ui in proc.stdout
        assert str(home / "inbox" / "HOTICH") in proc.stdout  # every feed's inbox is created and named
        assert (home / "inbox" / "HOTICH").is_dir()
        again = _make("up", env, timeout=120)  # idempotent: says where it runs
        assert again.returncode == 0 and "already running" in again.stdout

        # the inbox is watched: the first scheduled run of the unpaused ingest DAG takes the file
        deadline = time.monotonic() + 150
        receipts = []
        while not receipts and time.monotonic() < deadline:
            receipts = list((home / "reports" / "CUTRU").glob("*/receipt.json"))
            time.sleep(1)
        assert receipts, "the ingest DAG did not process the inbox file; see " + str(home / "airflow" / "standalone.log")
        receipt = json.loads(receipts[0].read_text())
        assert receipt["status"] == "loaded_with_rejections" and receipt["rows_loaded"] == 1
        timings["first delivery processed"] = time.monotonic() - started
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = _get(f"{ui}/api/v2/dags/ingest_cutru/dagRuns")["dag_runs"]
            if runs and all(r["state"] in ("success", "failed") for r in runs):
                break
            time.sleep(1)
        assert runs and {(r["run_type"], r["state"]) for r in runs} == {("scheduled", "success")}, runs

        # a DAG found paused (e.g. registered by `make demo` before) is switched on by `up`
        pause = urllib.request.Request(f"{ui}/api/v2/dags/ingest_hotich", method="PATCH",
                                       data=json.dumps({"is_paused": True}).encode(),
                                       headers={"Content-Type": "application/json"})
        for attempt in range(5):  # the standalone's SQLite metadata DB can be busy for a moment (HTTP 500)
            try:
                with urllib.request.urlopen(pause, timeout=30) as response:
                    assert json.loads(response.read())["is_paused"] is True
                break
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or attempt == 4:
                    raise
                time.sleep(2)
        assert ops._unpause(ui, "ingest_hotich")
        assert _get(f"{ui}/api/v2/dags/ingest_hotich")["is_paused"] is False
        timings["paused DAG switched on"] = time.monotonic() - started

        browser = Browser(chromium())
        browser.goto(f"{ui}/dags")
        text = browser.wait_for_text(dag_ids + ["corehub"], timeout=90)
        for feed in all_contracts():
            assert f"feed:{feed}" in text
        browser.settle()
        timings["DAG list shown"] = time.monotonic() - started
        dags_png = browser.screenshot(shots / "dags.png")
        browser.click_link("ingest_cutru")
        browser.wait_for_text(["ingest_cutru", "find_new_files"], timeout=60)
        browser.settle()
        detail_png = browser.screenshot(shots / "ingest_cutru.png")
        for png in (dags_png, detail_png):
            data = png.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, png
        timings["ui checked"] = time.monotonic() - started
        print(f"\nscreenshots: {dags_png}, {detail_png}")
    finally:
        if browser is not None:
            browser.close()
        stop_started = time.monotonic()
        down = _make("down", env, timeout=120)
        timings["make down"] = time.monotonic() - stop_started
        subprocess.run([str(Path(sys.executable).with_name("corehub")), "stop"], env=env, capture_output=True,
                       timeout=120)
        print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    assert down.returncode == 0 and "Airflow stopped" in down.stdout, down.stdout + down.stderr
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the UI still answers after make down"
    assert not (home / "airflow" / "standalone.json").exists()
    assert "not running" in _make("down", env, timeout=60).stdout
