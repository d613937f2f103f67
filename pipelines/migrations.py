"""Schema changes: the numbered plain SQL files in sql/, applied once each, in order, and recorded."""
from __future__ import annotations

import logging

import psycopg

from .config import SQL_DIR

log = logging.getLogger(__name__)

LOCK_ID = 7_301_001  # advisory lock: two processes never migrate at once


def migration_files():
    return sorted(p for p in SQL_DIR.glob("[0-9][0-9][0-9]_*.sql"))


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply the migrations not yet recorded; returns the names applied now."""
    applied_now = []
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_ID,))
        conn.execute("create schema if not exists meta")
        conn.execute("""create table if not exists meta.schema_migration (
                            name text primary key, applied_at timestamptz not null default now())""")
        done = {r[0] for r in conn.execute("select name from meta.schema_migration")}
        for path in migration_files():
            if path.name in done:
                continue
            log.info("applying %s", path.name)
            conn.execute(path.read_text(encoding="utf-8"))
            conn.execute("insert into meta.schema_migration (name) values (%s)", (path.name,))
            applied_now.append(path.name)
        if applied_now:
            from . import spellings
            spellings.forget(conn)  # conformed by rules a migration may have changed
    return applied_now


def ensure_ready(url: str) -> None:
    """Migrations applied and reference data loaded: what every entry point calls first."""
    from . import refdata, spellings

    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_ID,))
            if conn.execute("select count(*) from ref.admin_unit").fetchone()[0] == 0:
                refdata.load(conn)
                conn.execute("analyze ref.admin_unit")
            spellings.ensure(conn)
