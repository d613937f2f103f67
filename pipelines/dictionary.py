"""The data dictionary, docs/data-dictionary.md, generated from the feed contracts and the views.

    python -m pipelines.dictionary            # rewrite docs/data-dictionary.md (migrated warehouse needed)
    python -m pipelines.dictionary --check    # exit 1 when the committed file is out of date

Every feed (schemas/*.yaml, picked up as they are added) gets its wire columns, types, rules and
code lists; every published table and view (schemas core, history, open_data, ref) gets each
column's meaning, SQL type, source column and rules, and which roles may read it. A column of a
feed's entity is described by its contract; any other column by its comment in the database
(sql/024_published_comments.sql and the migrations that create the views).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

from .config import PROJECT_ROOT
from .contracts import Contract, all_contracts
from .rules import TYPES

DICTIONARY = PROJECT_ROOT / "docs" / "data-dictionary.md"
SCHEMAS = ("core", "history", "open_data", "ref")
READERS = ("core_reader", "core_public", "core_api", "core_writer")
BOOKKEEPING = {
    "valid_from": "Valid time: when this version became true in the world",
    "valid_to": "Valid time: when it stopped being true (NULL: still true)",
    "recorded_from": "Recorded time: when the warehouse learnt this version (the load transaction)",
    "recorded_to": "Recorded time: when the warehouse replaced it (NULL: still what the warehouse holds)",
}


def _cell(text) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ").strip() or "-"


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def _code_list(contract: Contract, name: str) -> str:
    return ", ".join(f"{k} = {v}" for k, v in contract.code_lists[name].items())


def _column_rules(contract: Contract, col) -> str:
    rule = col.rule
    parts = []
    if col.required:
        parts.append("required (missing_required)")
    if col.required_when:
        parts.append(f"required when {col.required_when} (missing_required)")
    if col.type == "code":
        parts.append(f"one of: {_code_list(contract, col.codes)}; matched ignoring case, diacritics and spaces "
                     f"({rule.code})")
    elif rule.code:
        parts.append(f"{rule.doc} ({rule.code})")
    else:
        parts.append(rule.doc)
    if col.default:
        parts.append(f"default {col.default}")
    return "; ".join(parts)


def _feed_section(contract: Contract) -> list[str]:
    mode = {"snapshot": "full snapshot per delivering province (a key missing from the file is no longer current)",
            "delta": "delta (only the rows sent are touched)"}[contract.mode]
    out = [f"### {contract.feed}: {contract.title}", "",
           f"- Agency: {contract.agency}",
           f"- Entity: `{contract.entity}` (published as `core.{contract.entity}`, `history.{contract.entity}`)",
           f"- Mode: {mode}",
           f"- Key: {', '.join(f'`{k}`' for k in contract.key)}",
           f"- Record date (which administrative units a row is read against): `{contract.record_date}`",
           f"- Valid from (when a new version becomes true): `{contract.valid_from}`",
           f"- Formats: {', '.join(contract.formats)}"]
    if contract.ignore_in_hash:
        out.append(f"- A change of {', '.join(f'`{c}`' for c in contract.ignore_in_hash)} alone is not a new version")
    out += ["", "Columns as delivered:", ""]
    out += _table(["source column", "column", "type", "rules", "meaning"],
                  [[f"`{c.source}`", f"`{c.to}`", c.type, _column_rules(contract, c), c.doc]
                   for c in contract.columns])
    for name, how in contract.derived.items():
        out += ["", f"Derived: `{name}` from the {how}."]
    if contract.rules:
        out += ["", "Row rules (a failing row is quarantined with the code):", ""]
        out += _table(["code", "rule", "columns", "fails when (SQL)"],
                      [[r.code, r.doc, ", ".join(r.inputs), f"`{r.fails}`"] for r in contract.rules])
    if contract.findings:
        out += ["", "Findings (the row is loaded and the finding reported):", ""]
        out += _table(["code", "meaning"], [[f["code"], f.get("doc", "")] for f in contract.findings])
    if contract.effects:
        out += ["", "Effects on other entities:", ""]
        out += _table(["entity", "effect"], [[f"`{e['entity']}`", e.get("doc", "")] for e in contract.effects])
    out += ["", f"Reason codes a row of this feed can get: {', '.join(contract.rejection_codes)}.", ""]
    return out


def _describe(schema: str, view: str, column: str, comment: str | None, by_entity: dict[str, Contract],
              contracts: dict[str, Contract]) -> tuple[str, str, str]:
    """(meaning, source, rules) of one published column."""
    contract = by_entity.get(view) if schema in ("core", "history", "open_data") else None
    if contract is not None:
        for col in contract.columns:
            if col.to == column:
                return col.doc, f"{contract.feed}.{col.source}", _column_rules(contract, col)
            for suffix, _, _ in col.rule.extras:
                if col.to + suffix == column:
                    return (f"Which part of `{col.to}` is known: day, month or year",
                            f"{contract.feed}.{col.source}", "derived from the value's form")
        if column in contract.derived:
            return (comment or f"Derived from the {contract.derived[column]}",
                    f"{contract.feed} (file name)", "-")
        if column in (contract.enrich.get("columns") or {}):
            effects = [(c, e) for c in contracts.values() for e in c.effects if e["entity"] == contract.entity]
            if effects:
                c, e = effects[0]
                return comment or e.get("doc", ""), f"{c.feed} (effect on {contract.entity})", "-"
            return (comment or f"Computed when loaded: `{contract.enrich['columns'][column]}`",
                    f"{contract.feed} (derived)", "-")
        if column in BOOKKEEPING:
            return BOOKKEEPING[column], "load", "-"
    return comment or "(undocumented)", "-", "-"


def generate(conn: psycopg.Connection) -> str:
    """The dictionary's Markdown, from the contracts and the warehouse `conn` points at."""
    contracts = all_contracts()
    by_entity = {c.entity: c for c in contracts.values()}
    roles = [r[0] for r in conn.execute("select rolname from pg_roles where rolname = any(%s)", (list(READERS),))]
    out = ["# Data dictionary", "",
           "Generated by `python -m pipelines.dictionary` from the feed contracts (`schemas/*.yaml`) and the "
           "published views of a migrated warehouse. Do not edit by hand: `tests/test_serving.py` fails when "
           "this file is out of date.", "",
           "- [Column types](#column-types)", "- [Feeds](#feeds)", "- [Published tables and views](#published-tables-and-views)",
           "- [History functions](#history-functions)", "",
           "## Column types", "",
           "Each contract column has one of these types; a present value that breaks it gets the reason code.", ""]
    out += _table(["type", "SQL type", "reason code", "rule"],
                  [[f"`{name}`", t.sql_type, t.code or "-", t.doc] for name, t in TYPES.items()])
    out += ["", "## Feeds", ""]
    for contract in contracts.values():
        out += _feed_section(contract)

    out += ["## Published tables and views", "",
            "Readers: `core_reader` (core, history, ref: personal data), `core_public` (open_data only), "
            "`core_api` (the lookup API), `core_writer` (the pipeline). Source `FEED.COLUMN` is the column as "
            "delivered; `load` is set by the pipeline when a version is stored.", ""]
    objects = conn.execute("""
        select n.nspname, c.relname, c.oid, c.relkind, obj_description(c.oid, 'pg_class')
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = any(%s) and c.relkind in ('r', 'v', 'm', 'p')
        order by array_position(%s, n.nspname::text), c.relname""", (list(SCHEMAS), list(SCHEMAS))).fetchall()
    for schema, name, oid, kind, comment in objects:
        readable = [r for r in roles if conn.execute("select has_table_privilege(%s, %s, 'select')",
                                                        (r, oid)).fetchone()[0]]
        what = {"r": "table", "p": "table", "v": "view", "m": "materialized view"}[kind]
        contract = by_entity.get(name) if schema in ("core", "history", "open_data") else None
        summary = comment or (f"{contract.title}: "
                              + {"core": "current state", "history": "every version, bitemporal (open ends NULL)",
                                 "open_data": "public columns only"}[schema] if contract else "")
        out += [f"### {schema}.{name}", "", f"{what.capitalize()}. {summary}".rstrip(), "",
                f"Readable by: {', '.join(f'`{r}`' for r in readable) or 'the owner only'}.", ""]
        columns = conn.execute("""
            select a.attname, format_type(a.atttypid, a.atttypmod), col_description(a.attrelid, a.attnum)
            from pg_attribute a where a.attrelid = %s and a.attnum > 0 and not a.attisdropped
            order by a.attnum""", (oid,)).fetchall()
        rows = []
        for column, sql_type, col_comment in columns:
            meaning, source, rules = _describe(schema, name, column, col_comment, by_entity, contracts)
            rows.append([f"`{column}`", sql_type, meaning, source, rules])
        out += _table(["column", "type", "meaning", "source", "rules"], rows) + [""]

    out += ["## History functions", "",
            "`history.<entity>_as_of(valid_at, known_at default now())`: the rows valid at `valid_at` as the "
            "warehouse knew them at `known_at`, with the columns of `core.<entity>`.", ""]
    functions = conn.execute("""
        select p.proname, pg_get_function_arguments(p.oid), obj_description(p.oid, 'pg_proc')
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'history' order by p.proname""").fetchall()
    out += _table(["function", "arguments", "meaning"],
                  [[f"`history.{f}`", f"`{args}`", doc] for f, args, doc in functions])
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    from . import warehouse
    from .migrations import ensure_ready

    parser = argparse.ArgumentParser(prog="python -m pipelines.dictionary", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed file is out of date")
    parser.add_argument("--out", type=Path, default=DICTIONARY)
    args = parser.parse_args(argv)
    url = warehouse.url()
    ensure_ready(url)
    with psycopg.connect(url) as conn:
        text = generate(conn)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python -m pipelines.dictionary", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
