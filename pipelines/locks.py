"""Locks: a file lock shared by processes on this machine (the warehouse start, Airflow's DB
migration), and the warehouse's advisory locks that keep concurrent deliveries apart.

Advisory locks live in PostgreSQL sessions: a process that dies (SIGKILL included) loses its
connection and with it every lock it held, so no lock ever needs a human to clear it.
"""
from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

import psycopg

# two-key advisory lock classes (the one-key space holds migrations' and the change feed's locks)
ENTITY = 7301     # (ENTITY, hashtext(entity)): shared by every delivery of the entity, exclusive for effects
SCOPE = 7302      # (SCOPE, hashtext(entity|scope)): one delivery of an entity and province at a time
DELIVERY = 7303   # (DELIVERY, delivery_id): held by the process working on a delivery


@contextmanager
def file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def hold_scope(conn: psycopg.Connection, entity: str, scope: str) -> None:
    """Wait until no other delivery of this entity and province (scope) is being processed, then
    hold that lock for this session, with a shared lock on the entity: deliveries of the same feed
    and province run one after the other; other provinces and feeds run in parallel."""
    conn.execute("select pg_advisory_lock_shared(%s, hashtext(%s))", (ENTITY, entity))
    conn.execute("select pg_advisory_lock(%s, hashtext(%s))", (SCOPE, f"{entity}|{scope}"))


def release_scope(conn: psycopg.Connection, entity: str, scope: str) -> None:
    conn.execute("select pg_advisory_unlock(%s, hashtext(%s))", (SCOPE, f"{entity}|{scope}"))
    conn.execute("select pg_advisory_unlock_shared(%s, hashtext(%s))", (ENTITY, entity))


def entity_exclusive(conn: psycopg.Connection, entity: str) -> None:
    """For the rest of this transaction, no other delivery of the entity runs (in any province):
    what a feed's effects on another entity take (a death registered by HOTICH ends a version of
    a person that a running CUTRU snapshot may be comparing against)."""
    conn.execute("select pg_advisory_xact_lock(%s, hashtext(%s))", (ENTITY, entity))


def claim_sql() -> str:
    """SQL fragment for the RETURNING of the delivery's registration: the claim is taken by the
    same statement that makes the row visible, so no one ever sees an unclaimed 'processing' row."""
    return f"pg_advisory_lock({DELIVERY}, delivery_id::int)"


def try_claim(conn: psycopg.Connection, delivery_id: int) -> bool:
    return conn.execute("select pg_try_advisory_lock(%s, %s::int)", (DELIVERY, delivery_id)).fetchone()[0]


def unclaim(conn: psycopg.Connection, delivery_id: int) -> None:
    conn.execute("select pg_advisory_unlock(%s, %s::int)", (DELIVERY, delivery_id))
