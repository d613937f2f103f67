"""Failure notifications: a rejected delivery, a failed Airflow task -> a webhook and/or an e-mail.

Configured by the environment (unset or empty = that channel is off):

  COREHUB_NOTIFY_WEBHOOK  http(s) URL; receives one JSON POST per event. The body has a `text` field
                          (a readable summary, so Slack/Mattermost/Teams-style incoming webhooks show
                          it as is) and the event's details (`event`, `feed`, `province`, ...).
  COREHUB_NOTIFY_SMTP     smtp://[user:password@]host[:port]?from=corehub@example.org&to=a@x,b@y
                          (smtps:// for TLS from the start, `&starttls=true` to upgrade; port 25 by
                          default, 465 for smtps). One plain-text mail per event.

Sending never raises and never changes a receipt or a task's outcome: a channel that fails is
logged and skipped. This module imports only the standard library (the DAG file imports it).
"""
from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

WEBHOOK_ENV = "COREHUB_NOTIFY_WEBHOOK"
SMTP_ENV = "COREHUB_NOTIFY_SMTP"
TIMEOUT = 10.0  # seconds per channel
#: tasks whose failure only repeats another task's failure (they are not notified)
QUIET_TASKS = ("surface_failures",)


# --------------------------------------------------------------------------- events

def delivery_rejected_event(receipt: dict, province: str | None = None) -> dict:
    """The notification for a rejected delivery (nothing of it was loaded)."""
    feed = receipt.get("feed") or "?"
    name = Path(str(receipt.get("file") or "?")).name
    reason = receipt.get("reason") or "see the report"
    return {
        "event": "delivery_rejected",
        "text": f"corehub: {feed} delivery {name} (province {province or '?'}) was REJECTED: {reason}",
        "feed": receipt.get("feed"), "province": province, "delivery_id": receipt.get("delivery_id"),
        "file": name, "status": receipt.get("status"), "reason": receipt.get("reason"),
        "report": receipt.get("report"), "sha256": receipt.get("sha256"),
    }


def task_failed_event(context) -> dict:
    """The notification for a failed Airflow task, from the task's context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    exception = context.get("exception")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None)
    task_id = getattr(ti, "task_id", None)
    map_index = getattr(ti, "map_index", -1)
    run_id = getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None)
    try:
        log_url = getattr(ti, "log_url", None)
    except Exception:  # noqa: BLE001 - a property that needs configuration
        log_url = None
    where = f"{dag_id}.{task_id}" + (f"[{map_index}]" if map_index not in (None, -1) else "")
    error = f"{type(exception).__name__}: {exception}" if exception is not None else None
    return {
        "event": "task_failed",
        "text": f"corehub: Airflow task {where} FAILED in run {run_id}" + (f": {error}" if error else ""),
        "dag_id": dag_id, "task_id": task_id, "map_index": map_index, "run_id": run_id,
        "try_number": getattr(ti, "try_number", None), "error": error, "log_url": log_url,
    }


# --------------------------------------------------------------------------- what calls this

def delivery_finished(receipt: dict, province: str | None = None) -> list[str]:
    """After a delivery: notify when it was rejected. Returns the channels that took the message."""
    if receipt.get("status") != "rejected":
        return []
    return notify(delivery_rejected_event(receipt, province))


def task_failure_callback(context) -> None:
    """Airflow `on_failure_callback` (the DAG factory sets it on every task): notify the failure."""
    event = task_failed_event(context)
    if event["task_id"] in QUIET_TASKS:
        return
    notify(event)


# --------------------------------------------------------------------------- channels

def configured() -> dict[str, str]:
    """The channels configured in the environment: {'webhook': url, 'smtp': url}."""
    channels = {"webhook": os.environ.get(WEBHOOK_ENV, "").strip(), "smtp": os.environ.get(SMTP_ENV, "").strip()}
    return {name: value for name, value in channels.items() if value}


def notify(event: dict) -> list[str]:
    """Send one event to every configured channel; returns the names of those that took it."""
    sent = []
    for name, target in configured().items():
        try:
            (send_webhook if name == "webhook" else send_email)(target, event)
            sent.append(name)
        except Exception as exc:  # noqa: BLE001 - a notification must never break the caller
            log.warning("could not send the %s notification (%s) to %s: %s", event.get("event"), name,
                        _redact(target), exc)
    return sent


def send_webhook(url: str, event: dict, timeout: float = TIMEOUT) -> None:
    body = json.dumps(event, ensure_ascii=False, default=str).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8",
                                              "User-Agent": "corehub-notify"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status >= 300:
            raise urllib.error.HTTPError(url, response.status, response.reason, response.headers, None)


def smtp_settings(url: str) -> dict:
    """Parse COREHUB_NOTIFY_SMTP: smtp[s]://[user:password@]host[:port]?from=..&to=a,b[&starttls=true]."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"{SMTP_ENV} must start with smtp:// or smtps://")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    to = [a.strip() for a in query.get("to", "").split(",") if a.strip()]
    if not parts.hostname or not to:
        raise ValueError(f"{SMTP_ENV} needs a host and at least one recipient (?to=...)")
    return {
        "host": parts.hostname, "port": parts.port or (465 if parts.scheme == "smtps" else 25),
        "ssl": parts.scheme == "smtps", "starttls": query.get("starttls", "").lower() in ("1", "true", "yes"),
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "from": query.get("from") or f"corehub@{socket.getfqdn()}", "to": to,
    }


def send_email(url: str, event: dict, timeout: float = TIMEOUT) -> None:
    s = smtp_settings(url)
    msg = EmailMessage()
    msg["Subject"] = event["text"][:200]
    msg["From"] = s["from"]
    msg["To"] = ", ".join(s["to"])
    details = "\n".join(f"{k}: {v}" for k, v in event.items() if k != "text" and v not in (None, ""))
    msg.set_content(f"{event['text']}\n\n{details}\n")
    cls = smtplib.SMTP_SSL if s["ssl"] else smtplib.SMTP
    with cls(s["host"], s["port"], timeout=timeout) as smtp:
        if s["starttls"]:
            smtp.starttls()
        if s["user"]:
            smtp.login(s["user"], s["password"] or "")
        smtp.send_message(msg)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url.split("?")[0]
