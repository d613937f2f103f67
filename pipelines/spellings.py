"""Static dictionaries: every well-formed spelling of a contract's low-cardinality columns,
conformed once per warehouse (checks.static_dictionaries), so that a delivery's checked pass
joins them instead of first scanning its rows for their distinct values (a first load of 1M
rows: two scans of ~1 s on two connections). Built by ensure_ready for every contract; dropped
when a migration is applied, as it may change a rule that conformed them."""
from __future__ import annotations

import psycopg

from . import checks
from .contracts import Contract, all_contracts

SCHEMA = "spelling"


def _missing(conn: psycopg.Connection, tables: list[str]) -> set[str]:
    rows = conn.execute("select t from unnest(%s::text[]) t where to_regclass(t) is null", (tables,))
    return {t for (t,) in rows}


def ensure(conn: psycopg.Connection) -> list[str]:
    """Build the static dictionaries of every contract that the warehouse lacks; returns their
    tables. The caller holds the migrations' lock."""
    wanted = {table: select for contract in all_contracts().values()
              for table, select in checks.static_dictionaries(contract).values()}
    built = sorted(_missing(conn, list(wanted)))
    for table in built:
        conn.execute(f"create table {table} as {wanted[table]}")
        conn.execute(f"analyze {table}")
    return built


def forget(conn: psycopg.Connection) -> None:
    """Drop every static dictionary (after a migration: the rules may have changed)."""
    tables = conn.execute("select format('%%I.%%I', schemaname, tablename) from pg_tables where schemaname = %s",
                          (SCHEMA,)).fetchall()
    for (table,) in tables:
        conn.execute(f"drop table {table}")


def available(conn: psycopg.Connection, contract: Contract) -> dict[str, str]:
    """{dictionary name: table} of the contract's static dictionaries that the warehouse holds
    (a contract changed since ensure_ready ran has none: its dictionaries are found by a scan)."""
    tables = {name: table for name, (table, _) in checks.static_dictionaries(contract).items()}
    missing = _missing(conn, list(tables.values()))
    return {name: table for name, table in tables.items() if table not in missing}
