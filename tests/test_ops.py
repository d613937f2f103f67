"""Operations: the status (`corehub status`), failure notifications (webhook, SMTP, Airflow's
on_failure_callback) and OpenLineage events, each against real receivers on 127.0.0.1.

The receivers are tiny servers in threads of this process: an HTTP server that records every POST,
and an SMTP server that records every message. The Airflow failure is a real dag.test() run (in a
child process, as the demo does) whose first task cannot reach its warehouse.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socketserver
import subprocess
import sys
import threading
import time
from email import message_from_bytes
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest

from pipelines import lineage, notify, orchestration, status
from pipelines.config import settings
from population_helpers import CUTRU_HEADER, HOTICH_HEADER, deliver, event, person

CLI = [str(Path(sys.executable).with_name("corehub"))]
UTC = dt.timezone.utc


# ----------------------------------------------------------------------------- local receivers

class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that answers 200 to every POST and keeps (path, JSON body)."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((self.path, json.loads(body or b"null"), dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [body for _, body, _ in self.received]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """A minimal SMTP server (RFC 5321 subset: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT)."""

    def __init__(self):
        messages = self.messages = []

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str):
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self):
                self.reply("220 corehub-test ESMTP")
                sender, rcpts = None, []
                while line := self.rfile.readline():
                    cmd = line.decode().strip()
                    verb = cmd[:4].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250 corehub-test")
                    elif verb == "MAIL":
                        sender, rcpts = cmd.split(":", 1)[1].strip(" <>"), []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        rcpts.append(cmd.split(":", 1)[1].strip(" <>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        data = []
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                            data.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                        messages.append({"from": sender, "to": rcpts,
                                         "message": message_from_bytes(b"".join(data), policy=email_policy)})
                        self.reply("250 OK queued")
                    elif verb in ("RSET", "NOOP"):
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 not implemented")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, to: str = "ops@example.org,oncall@example.org") -> str:
        return f"smtp://127.0.0.1:{self.port}?from=corehub@example.org&to={to}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp():
    receiver = SmtpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def notify_env(monkeypatch, webhook, smtp):
    monkeypatch.setenv(notify.WEBHOOK_ENV, f"{webhook.url}/hooks/corehub")
    monkeypatch.setenv(notify.SMTP_ENV, smtp.url())
    return webhook, smtp


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- notifications

def test_a_rejected_delivery_is_notified_by_webhook_and_email(warehouse, inbox, notify_env):
    webhook, smtp = notify_env
    bad = deliver(inbox, "CUTRU_79_20261120_001.csv", ["SO_DINH_DANH", "HO_TEN"], [["001090000001", "An"]])
    assert bad["status"] == "rejected"

    (path, body, headers), = webhook.received
    assert path == "/hooks/corehub" and headers["Content-Type"].startswith("application/json")
    assert body["event"] == "delivery_rejected"
    assert (body["feed"], body["province"], body["file"], body["delivery_id"]) == (
        "CUTRU", "79", "CUTRU_79_20261120_001.csv", bad["delivery_id"])
    assert body["reason"] == bad["reason"] and "required column(s) missing" in body["reason"]
    assert "REJECTED" in body["text"] and "CUTRU_79_20261120_001.csv" in body["text"]

    (mail,) = smtp.messages
    assert mail["from"] == "corehub@example.org" and mail["to"] == ["ops@example.org", "oncall@example.org"]
    assert "REJECTED" in mail["message"]["Subject"] and "CUTRU_79_20261120_001.csv" in mail["message"]["Subject"]
    assert "required column(s) missing" in mail["message"].get_content()

    # a delivery that loaded (even with rejected rows) is no alert
    ok = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, [person(), person(pid="12")])
    assert ok["status"] == "loaded_with_rejections"
    assert len(webhook.received) == 1 and len(smtp.messages) == 1


def test_a_dead_notification_channel_never_breaks_a_delivery(warehouse, inbox, db, monkeypatch):
    monkeypatch.setenv(notify.WEBHOOK_ENV, f"http://127.0.0.1:{_closed_port()}/x")
    monkeypatch.setenv(notify.SMTP_ENV, f"smtp://127.0.0.1:{_closed_port()}?to=a@example.org")
    monkeypatch.setenv(lineage.LINEAGE_ENV, f"http://127.0.0.1:{_closed_port()}")
    receipt = deliver(inbox, "CUTRU_01_20261120_001.csv", ["SO_DINH_DANH"], [["001090000001"]])
    assert receipt["status"] == "rejected"
    assert db.execute("select status from ops.delivery_log where delivery_id = %s",
                      (receipt["delivery_id"],)).fetchone() == ("rejected",)


def test_smtp_settings_are_read_from_one_url():
    s = notify.smtp_settings("smtps://bot%40x.vn:p%40ss@mail.x.vn?from=corehub@x.vn&to=a@x.vn, b@x.vn")
    assert (s["host"], s["port"], s["ssl"], s["user"], s["password"]) == ("mail.x.vn", 465, True, "bot@x.vn", "p@ss")
    assert s["to"] == ["a@x.vn", "b@x.vn"] and s["from"] == "corehub@x.vn"
    assert notify.smtp_settings("smtp://h:2525?to=a@x&starttls=true")["starttls"] is True
    with pytest.raises(ValueError):
        notify.smtp_settings("smtp://h:25")  # no recipient


def test_task_failure_callback_sends_what_failed_and_skips_the_echo_task(notify_env):
    webhook, smtp = notify_env
    ti = SimpleNamespace(dag_id="ingest_cutru", task_id="ingest", map_index=3, run_id="scheduled__x",
                         try_number=3, log_url="http://airflow/log")
    notify.task_failure_callback({"ti": ti, "exception": RuntimeError("warehouse is down")})
    notify.task_failure_callback({"ti": SimpleNamespace(**{**vars(ti), "task_id": "surface_failures"}),
                                  "exception": RuntimeError("a task of this run failed")})
    (event,) = webhook.events()
    assert event["event"] == "task_failed"
    assert (event["dag_id"], event["task_id"], event["map_index"], event["try_number"]) == ("ingest_cutru", "ingest", 3, 3)
    assert event["error"] == "RuntimeError: warehouse is down" and event["log_url"] == "http://airflow/log"
    assert "ingest_cutru.ingest[3] FAILED" in event["text"]
    assert len(smtp.messages) == 1


@pytest.fixture
def airflow_home(request, tmp_path, monkeypatch) -> Path:
    """A local Airflow home for dag.test() runs: a copy of the metadata DB migrated once and cached
    in pytest's cache dir (the same cache tests/test_dags.py uses)."""
    cache = getattr(request.config, "cache", None)
    template = Path(cache.mkdir("corehub-airflow")) if cache is not None else tmp_path / "airflow-template"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COREHUB_AIRFLOW_HOME", str(template))
        orchestration.ensure_airflow_db()
    home = tmp_path / "airflow"
    home.mkdir()
    for name in ("airflow.db", ".migrated"):
        shutil.copy2(template / name, home / name)
    monkeypatch.setenv("COREHUB_AIRFLOW_HOME", str(home))
    return home


def test_a_failed_dag_task_is_notified_through_on_failure_callback(airflow_home, tmp_path, monkeypatch, webhook):
    """A real dag.test() run of ingest_cutru whose find_new_files cannot reach the warehouse."""
    monkeypatch.setenv("COREHUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WAREHOUSE_URL", f"postgresql://nobody@127.0.0.1:{_closed_port()}/nowhere?connect_timeout=3")
    monkeypatch.setenv(notify.WEBHOOK_ENV, webhook.url)
    monkeypatch.delenv(notify.SMTP_ENV, raising=False)
    inbox = settings().feed_inbox("CUTRU")
    inbox.mkdir(parents=True)
    (inbox / "CUTRU_01_20261120_001.csv").write_text(",".join(CUTRU_HEADER) + "\n")

    started = time.monotonic()
    (run,) = orchestration.run_dags_detailed(["CUTRU"], publish=False, timeout=600)
    print(f"\nfailing dag.test(): {time.monotonic() - started:.1f} s")
    assert run["state"] == "failed"
    states = {t["task_id"]: t["state"] for t in run["tasks"]}
    assert states["find_new_files"] == "failed" and states["surface_failures"] == "failed"
    events = webhook.events()
    assert [(e["event"], e["dag_id"], e["task_id"]) for e in events] == [("task_failed", "ingest_cutru", "find_new_files")]
    assert events[0]["run_id"] == run["run_id"]
    assert "OperationalError" in events[0]["error"]


# ----------------------------------------------------------------------------- lineage

def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_ingest_emits_openlineage_events_to_a_file(warehouse, inbox, tmp_path, monkeypatch):
    events_file = tmp_path / "lineage" / "events.jsonl"
    monkeypatch.setenv(lineage.LINEAGE_ENV, f"file:{events_file}")
    url = psycopg.conninfo.conninfo_to_dict(warehouse)

    ok = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, [person(), person(pid="12")])
    assert ok["status"] == "loaded_with_rejections"
    start, complete = _events(events_file)
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"]
    assert start["eventTime"] <= complete["eventTime"]
    for e in (start, complete):
        assert e["job"] == {**e["job"], "namespace": "corehub", "name": "ingest_cutru.ingest"}
        assert e["producer"] == lineage.PRODUCER and e["schemaURL"].startswith("https://openlineage.io/spec/")
    (source,) = complete["inputs"]
    assert source["namespace"] == "file"
    assert source["name"] == str(settings().archive / ok["sha256"]) and Path(source["name"]).is_file()
    assert source["facets"]["symlinks"]["identifiers"] == [
        {"namespace": "corehub-delivery", "name": "CUTRU/CUTRU_01_20261120_001.csv", "type": "file"}]
    assert source["inputFacets"]["dataQualityMetrics"]["rowCount"] == 2
    db_ns = f"postgres://{url.get('host', 'localhost')}:{url.get('port', 5432)}"
    outputs = {o["name"]: o for o in complete["outputs"]}
    database = url["dbname"]
    assert set(outputs) == {f"{database}.core.person", f"{database}.history.person", f"{database}.quarantine.row"}
    assert {o["namespace"] for o in outputs.values()} == {db_ns}
    assert outputs[f"{database}.core.person"]["outputFacets"]["outputStatistics"]["rowCount"] == 1
    assert outputs[f"{database}.quarantine.row"]["outputFacets"]["outputStatistics"]["rowCount"] == 1
    facet = complete["run"]["facets"]["corehub_delivery"]
    assert (facet["deliveryId"], facet["status"], facet["province"], facet["rowsRead"]) == (
        ok["delivery_id"], "loaded_with_rejections", "01", 2)
    assert facet["rejections"] == {"invalid_personal_id": 1}
    assert facet["stageSeconds"] and all(isinstance(v, (int, float)) for v in facet["stageSeconds"].values())

    # a civil-status delta writes its own table and, through its effects, core.person
    events_file.unlink()
    deliver(inbox, "HOTICH_01_20261121_001.csv", HOTICH_HEADER, [event()])
    _, complete = _events(events_file)
    assert complete["job"]["name"] == "ingest_hotich.ingest"
    assert {o["name"] for o in complete["outputs"]} >= {f"{database}.core.civil_event", f"{database}.core.person"}

    # a rejected delivery: FAIL with the reason; a duplicate: nothing
    events_file.unlink()
    bad = deliver(inbox, "CUTRU_02_20261120_001.csv", ["SO_DINH_DANH"], [["001090000001"]])
    start, fail = _events(events_file)
    assert fail["eventType"] == "FAIL" and fail["outputs"] == []
    assert fail["run"]["facets"]["errorMessage"]["message"] == bad["reason"]
    events_file.unlink()
    assert deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, [person(), person(pid="12")])["status"] == "duplicate"
    assert not events_file.exists()

    # an older snapshot than the one applied: COMPLETE, but it wrote nothing
    late = deliver(inbox, "CUTRU_01_20261119_001.csv", CUTRU_HEADER, [person()])
    assert late["status"] == "superseded"
    start, complete = _events(events_file)
    assert complete["eventType"] == "COMPLETE" and complete["outputs"] == []
    assert complete["run"]["facets"]["corehub_delivery"]["status"] == "superseded"


def test_lineage_goes_to_an_http_endpoint(warehouse, inbox, monkeypatch, webhook):
    monkeypatch.setenv(lineage.LINEAGE_ENV, webhook.url)  # e.g. Marquez: the default endpoint path
    deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, [person()])
    assert [(path, body["eventType"]) for path, body, _ in webhook.received] == [
        ("/api/v1/lineage", "START"), ("/api/v1/lineage", "COMPLETE")]


# ----------------------------------------------------------------------------- status

def _log(db, delivery_id, feed, province, status_, finished, read=100, quarantined=0, stages=None):
    db.execute("insert into ops.delivery_log (delivery_id, feed, province_code, file_name, status, rows_read, "
               "rows_loaded, rows_quarantined, stage_seconds, seconds, finished_at) "
               "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
               (delivery_id, feed, province, f"{feed}_{province}_{finished:%Y%m%d}_{delivery_id:03d}.csv", status_,
                read, read - quarantined, quarantined, json.dumps(stages or {"stage": 0.5, "check": 1.5}), 2.0,
                finished))


@pytest.fixture
def history(db):
    """Deliveries over four weeks up to as_of = Wednesday 2026-11-25 12:00 UTC."""
    as_of = dt.datetime(2026, 11, 25, 12, tzinfo=UTC)
    day = lambda n: as_of - dt.timedelta(days=n)  # noqa: E731
    _log(db, 901, "CUTRU", "01", "loaded", day(24))
    _log(db, 902, "CUTRU", "01", "loaded_with_rejections", day(17), read=200, quarantined=20)
    _log(db, 903, "CUTRU", "01", "loaded", day(3))                       # on time
    _log(db, 904, "CUTRU", "79", "loaded", day(12))                      # 12 days ago: 4 days late
    _log(db, 905, "CUTRU", "79", "rejected", day(2), read=0)             # a rejection is no delivery
    _log(db, 906, "CUTRU", "48", "rejected", day(9), read=0)             # never accepted, first seen 9 days ago
    _log(db, 907, "CUTRU", "31", "loaded", day(7.5))                     # due 0.5 days ago: within the grace
    _log(db, 908, "HOTICH", "01", "loaded", day(40))                     # a delta feed is never overdue
    _log(db, 909, "HOTICH", "01", "loaded_with_rejections", day(20), read=50, quarantined=5)
    _log(db, 910, "CUTRU", "01", "loaded", as_of + dt.timedelta(days=1))  # after as_of: not seen
    return as_of


def test_status_lists_last_deliveries_overdue_snapshots_and_reject_rates(db, history):
    s = status.collect(db, as_of=history, weeks=4)
    last = {(r["feed"], r["province"]): r for r in s["last"]}
    assert set(last) == {("CUTRU", "01"), ("CUTRU", "31"), ("CUTRU", "48"), ("CUTRU", "79"), ("HOTICH", "01")}
    assert (last["CUTRU", "01"]["delivery_id"], last["CUTRU", "79"]["status"]) == (903, "rejected")
    assert last["CUTRU", "79"]["last_accepted"] == history - dt.timedelta(days=12)

    assert [(o["feed"], o["province"], o["days_late"]) for o in s["overdue"]] == [
        ("CUTRU", "79", 5.0), ("CUTRU", "48", 2.0)]
    assert {k for k, r in last.items() if r["overdue"]} == {("CUTRU", "79"), ("CUTRU", "48")}
    assert last["HOTICH", "01"]["due"] is None

    rates = {(r["feed"], r["week"]): r for r in s["reject_rates"]}
    week = lambda n: (history - dt.timedelta(days=n)).date() - dt.timedelta(days=(history - dt.timedelta(days=n)).weekday())  # noqa: E731
    assert set(rates) == {("CUTRU", week(24)), ("CUTRU", week(17)), ("CUTRU", week(12)), ("CUTRU", week(9)),
                          ("CUTRU", week(2)), ("HOTICH", week(20))}
    r17 = rates["CUTRU", week(17)]
    assert (r17["deliveries"], r17["rejected"], r17["rows_read"], r17["rows_quarantined"], r17["row_reject_rate"]) == (
        1, 0, 200, 20, 0.1)
    r16 = rates["CUTRU", week(9)]  # the week of Monday 16 Nov: 906 (rejected), 907 and 903 (loaded)
    assert (r16["deliveries"], r16["rejected"], r16["delivery_reject_rate"]) == (3, 1, 0.3333)
    r23 = rates["CUTRU", week(2)]  # the week of Monday 23 Nov: 905 (rejected)
    assert (r23["deliveries"], r23["rejected"], r23["delivery_reject_rate"], r23["row_reject_rate"]) == (1, 1, 1.0, None)
    (cutru_timing,) = [t for t in s["timings"] if t["feed"] == "CUTRU"]
    assert cutru_timing["stages"] == {"check": 1.5, "stage": 0.5}

    text = status.render_text(s)
    assert "== Overdue" in text and "OVERDUE" in text and "CUTRU_01_" in text
    page = status.render_html(s)
    assert page.startswith("<!doctype html>") and page.count("<table>") == 4 and "class='bad'>OVERDUE" in page


def test_status_command_after_real_deliveries(warehouse, inbox, tmp_path):
    deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, [person(), person(pid="12")])
    deliver(inbox, "CUTRU_79_20261120_001.csv", ["SO_DINH_DANH"], [["001090000001"]])
    env = os.environ.copy()
    proc = subprocess.run([*CLI, "status", "--json", "--html", str(tmp_path / "status.html")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {(r["feed"], r["province"], r["status"]) for r in data["last"]} == {
        ("CUTRU", "01", "loaded_with_rejections"), ("CUTRU", "79", "rejected")}
    assert data["overdue"] == []  # both just arrived
    (week,) = data["reject_rates"]
    assert (week["deliveries"], week["rejected"], week["rows_read"], week["rows_quarantined"]) == (2, 1, 2, 1)
    assert "corehub status" in (tmp_path / "status.html").read_text()

    text = subprocess.run([*CLI, "status", "--as-of", "2099-01-01"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert text.returncode == 0, text.stderr
    assert "== Last delivery per feed and province" in text.stdout
    assert "OVERDUE" in text.stdout  # in 2099 both provinces are long overdue
