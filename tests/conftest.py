"""Fixtures: a real PostgreSQL for every test.

The session starts one warehouse (the embedded one under a temporary COREHUB_HOME, or the server
named by WAREHOUSE_URL when it is set), builds a template database with the migrations and the
reference data, and gives each test its own fresh copy of it.
"""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from pipelines import warehouse as wh
from pipelines.config import settings
from pipelines.migrations import ensure_ready

_counter = itertools.count()


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    query = ""
    if "?" in url.rpartition("/")[2]:
        query = "?" + url.rpartition("?")[2]
    return f"{base}/{name}{query}"


@pytest.fixture(scope="session")
def warehouse_server():
    """(admin URL, template database name) for the whole session."""
    external = os.environ.get("WAREHOUSE_URL")
    if external:
        admin = external
    else:
        # not under pytest's own temporary folder: a later pytest run on the same machine makes
        # that folder private again, and the server (another system user) would lose its data
        home = Path(tempfile.mkdtemp(prefix="corehub-test-warehouse-"))
        s = settings().__class__(home=home, warehouse_url=None)
        admin = wh.embedded_url(s)
    template = f"corehub_tpl_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{template}"')
        conn.execute(f'create database "{template}"')
    ensure_ready(_with_db(admin, template))
    yield admin, template
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{template}" with (force)')
    if not external:
        wh.stop(s)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def warehouse(warehouse_server, tmp_path, monkeypatch) -> str:
    """A fresh migrated warehouse database with reference data; WAREHOUSE_URL and COREHUB_HOME point at it."""
    admin, template = warehouse_server
    name = f"corehub_t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "{template}"')
    url = _with_db(admin, name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("WAREHOUSE_URL", url)
    monkeypatch.setenv("COREHUB_HOME", str(home))
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def db(warehouse):
    """A connection to the test's warehouse database (autocommit, UTC)."""
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute("set timezone = 'UTC'")
        yield conn


@pytest.fixture
def inbox(tmp_path) -> Path:
    path = tmp_path / "drop"
    path.mkdir()
    return path
