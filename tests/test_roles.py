"""Least privilege, proved by connecting as each role (sql/020_roles.sql, 022_open_data.sql, 023_api.sql)."""
from __future__ import annotations

import os

import psycopg
import pytest

from pipelines import cli, warehouse as wh
from pipelines.config import SQL_DIR, settings
from pipelines.roles import ROLES, role_url
from population_helpers import CUTRU_HEADER, HOTICH_HEADER, deliver, event, person

DENIED = psycopg.errors.InsufficientPrivilege


def connect_as(warehouse: str, role: str) -> psycopg.Connection:
    conn = psycopg.connect(role_url(warehouse, role), autocommit=True)
    assert conn.execute("select current_user").fetchone()[0] == role
    return conn


def allowed(conn: psycopg.Connection, sql: str, params=None) -> bool:
    """True when the statement runs; False when it is refused for lack of privilege."""
    try:
        conn.execute(sql, params)
        return True
    except DENIED:
        return False


# what each role tries; every statement must be either allowed or refused (no other error)
READS = {
    "core.person": "select * from core.person",
    "history.person": "select * from history.person",
    "core.changes": "select * from core.changes",
    "ref.admin_unit": "select * from ref.admin_unit limit 1",
    "person_as_of": "select * from history.person_as_of(now())",
    "open_data": "select * from open_data.population_by_ward",
    "store.person": "select * from store.person",
    "meta.delivery": "select * from meta.delivery",
    "quarantine.row": "select * from quarantine.row",
    "ops.delivery_log": "select * from ops.delivery_log",
    "audit.access_log": "select * from audit.access_log",
    "api.client_key": "select * from api.client_key",
    "verify_person": "select api.verify_person('001090000001', 'Nguyễn Văn An', '1990-03-12')",
    # the land core (sql/013, 030): holders are personal data, parcels are not
    "core.land_right": "select * from core.land_right",
    "history.land_right": "select * from history.land_right",
    "land_right_as_of": "select * from history.land_right_as_of(now())",
    "core.land_parcel": "select * from core.land_parcel",
    "open_data.land_parcel": "select * from open_data.land_parcel",
    "rights_of": "select * from api.rights_of('person', '001090000001')",
}
WRITES = {
    "insert core.person (an updatable view)": "insert into core.person (person_id) values ('x')",
    "update core.person": "update core.person set full_name = 'x'",
    "delete core.person": "delete from core.person",
    "delete store.person": "delete from store.person",
    "update store.person": "update store.person set full_name = 'x' where false",
    "insert meta.schema_migration": "insert into meta.schema_migration (name) values ('999_x.sql')",
    "create in core": "create view core.x as select 1 as one",
    "create in open_data": "create view open_data.x as select 1 as one",
    "create in public": "create table public.x (a int)",
    "drop core.person": "drop view core.person",
    "insert audit.access_log": "insert into audit.access_log (method, endpoint, status, result) values ('GET', '/x', 200, 'ok')",
    "insert api.client_key": "insert into api.client_key (key_id, client, scopes, salt, key_hash) values ('x', 'x', '{}', '', '')",
}
LAND_READER = {"core.land_right", "history.land_right", "land_right_as_of", "core.land_parcel"}
EXPECTED = {
    "core_reader": {"core.person", "history.person", "core.changes", "ref.admin_unit", "person_as_of", "open_data",
                    "open_data.land_parcel"} | LAND_READER,
    "core_public": {"open_data", "open_data.land_parcel"},
    "core_api": {"open_data", "verify_person", "api.client_key", "insert audit.access_log", "open_data.land_parcel",
                 "rights_of"},
    "core_writer": {"core.person", "history.person", "core.changes", "ref.admin_unit", "person_as_of",
                    "store.person", "meta.delivery", "quarantine.row", "ops.delivery_log", "update store.person"}
                   | LAND_READER,
}


@pytest.fixture
def loaded(warehouse, inbox):
    deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, [person()])
    return warehouse


def test_roles_exist_can_log_in_and_hold_no_special_power(db):
    rows = db.execute("select rolname, rolcanlogin, rolsuper or rolcreatedb or rolcreaterole or rolbypassrls "
                      "or rolreplication from pg_roles where rolname = any(%s) order by 1", (list(ROLES),)).fetchall()
    assert rows == sorted((r, True, False) for r in ROLES)


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_role_can_do_exactly_what_it_needs(loaded, role):
    with connect_as(loaded, role) as conn:
        done = set()
        for name, sql in {**READS, **WRITES}.items():
            with conn.transaction(force_rollback=True):
                if allowed(conn, sql):
                    done.add(name)
        assert done == EXPECTED[role]


def test_core_reader_sees_the_data_and_public_only_counts(loaded, db, inbox):
    # five more people in the same ward, sex and age band: a group big enough to publish
    deliver(inbox, "CUTRU_01_20261127_001.csv", CUTRU_HEADER,
            [person()] + [person(pid=f"00109000000{i}", name=f"Người {i}") for i in range(2, 7)])
    with connect_as(loaded, "core_reader") as reader:
        assert reader.execute("select count(*) from core.person").fetchone()[0] == 6
        assert reader.execute("select full_name from core.person where person_id = '001090000001'").fetchone() == (
            "Nguyễn Văn An",)
    with connect_as(loaded, "core_public") as public:
        rows = public.execute("select ward_code, sex, age_band, persons from open_data.population_by_ward").fetchall()
        assert rows == [("00004", "male", "35-39", 6)]
        columns = {d.name for d in public.execute("select * from open_data.population_by_ward limit 0").description}
        assert not columns & {"person_id", "full_name", "birth_date", "residence_address", "household_no"}


def test_writer_runs_a_whole_delivery(warehouse, db, inbox, monkeypatch):
    """The pipeline loads as core_writer once the owner has migrated (the migrations stay the owner's)."""
    import pipelines.ingest as ingest

    monkeypatch.setattr(ingest, "ensure_ready", lambda url: None)
    monkeypatch.setenv("WAREHOUSE_URL", role_url(warehouse, "core_writer"))
    r = deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, [person(), person(pid="12")])
    assert (r["status"], r["rows_loaded"], r["rows_quarantined"]) == ("loaded_with_rejections", 1, 1)
    r = deliver(inbox, "HOTICH_01_20261121_001.csv", HOTICH_HEADER, [event()])
    assert r["status"] == "loaded"
    assert db.execute("select death_date is not null from core.person").fetchall() == [(True,)]
    assert db.execute("select operation from core.changes order by seq").fetchall() == [
        ("insert",), ("insert",), ("update",)]


def test_roles_migration_runs_again_where_the_roles_exist(db):
    """Roles are cluster-wide: every database (and every test run) runs the same DO block again."""
    db.execute((SQL_DIR / "020_roles.sql").read_text(encoding="utf-8"))
    assert db.execute("select count(*) from pg_roles where rolname = any(%s)", (list(ROLES),)).fetchone()[0] == 4


def test_url_role_on_an_external_server_says_what_to_create(warehouse, capsys):
    assert cli.main(["url", "--role", "core_reader"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == role_url(warehouse, "core_reader")
    assert out.strip().split("@")[0].endswith("//core_reader")
    assert "create role <service> login password" in err and "in role core_reader" in err
    with psycopg.connect(out.strip()) as conn:  # the test servers trust 127.0.0.1
        assert conn.execute("select current_user").fetchone()[0] == "core_reader"


@pytest.mark.embedded_only
def test_url_role_on_the_embedded_warehouse(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("COREHUB_HOME", str(tmp_path / "home"))
    try:
        assert cli.main(["url", "--role", "core_public"]) == 0
        out, err = capsys.readouterr()
        url = out.strip()
        assert url.startswith("postgresql://core_public@127.0.0.1:") and url.endswith("/corehub")
        assert "create role" not in err
        with psycopg.connect(url) as conn:
            assert conn.execute("select current_user").fetchone()[0] == "core_public"
            with pytest.raises(DENIED):
                conn.execute("select * from core.person")
    finally:
        wh.stop(settings())
    assert os.environ.get("WAREHOUSE_URL") is None
