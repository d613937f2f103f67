"""The one set-based pass over a staged delivery, generated from the feed's contract.

It cleans every value, conforms it to its type, and writes one `rule_<code>` column per reason
code: NULL when the row passes, otherwise which values broke the rule (what the agency reads).
GX validates those columns, the quarantine takes the rows with any of them set, and conform takes
the others: the contract is the only place a rule is written.
"""
from __future__ import annotations

from .contracts import Column, Contract
from .rules import TYPES, code_list_sql, sql_literal


def stage_column(col: Column) -> str:
    """The staging table's column for a contract column: its source name in lower case."""
    return col.source.lower()


def clean(expr: str) -> str:
    """Trimmed text; empty and the literal NULL that some offices send become SQL NULL."""
    return f"nullif(nullif(btrim({expr}), ''), 'NULL')"


def _value_sql(col: Column, contract: Contract, v: str, j: str, d: str) -> str:
    rule = col.rule
    template = rule.value
    if col.type == "code":
        template = template.replace("{conform}", code_list_sql("{v}", contract.code_lists[col.codes]))
    value = template.format(v=v, j=j, d=d)
    if col.default is not None:
        value = f"coalesce({value}, {sql_literal(col.default)})"
    return value


def _invalid_sql(col: Column, contract: Contract, v: str, j: str, d: str) -> str | None:
    rule = col.rule
    if not rule.invalid:
        return None
    template = rule.invalid
    if col.type == "code":
        template = template.replace("{conform}", code_list_sql("{v}", contract.code_lists[col.codes]))
    return f"({v} is not null and {template.format(v=v, j=j, d=d)})"


def _record_date(contract: Contract) -> str:
    col = contract.column(contract.record_date)
    if col.type == "timestamp":
        return f"(({col.to}) at time zone interval '+07:00')::date"
    return col.to


def checked_sql(contract: Contract, raw_table: str, checked_table: str, present: set[str],
                constants: dict[str, str]) -> str:
    """CREATE TABLE checked AS ...: typed values, rule columns, _failed, _content, _extra_copy.

    present: source names found in the file's header (missing optional ones are NULL).
    constants: conformed columns that come from the delivery (e.g. province_code from the file name).
    """
    cols = contract.columns

    def src(col: Column) -> str:
        return clean(f"s.{stage_column(col)}") if col.source in present else "null::text"

    # level 1: cleaned text, and whether the row is a header line repeated mid-file
    level1 = [f"{src(c)} as c_{c.to}" for c in cols]
    header_repeat = " and ".join(
        f"upper(btrim(s.{stage_column(c)})) = {sql_literal(c.source)}" for c in cols if c.source in present)

    # level 2: typed values that need no lookup
    level2 = []
    for c in cols:
        if c.rule.lookup:
            continue
        level2.append(f"{_value_sql(c, contract, 'c_' + c.to, '', '')} as {c.to}")
        for suffix, expr, _ in c.rule.extras:
            level2.append(f"{expr.format(v='c_' + c.to)} as {c.to}{suffix}")
        inv = _invalid_sql(c, contract, "c_" + c.to, "", "")
        level2.append(f"{inv or 'false'} as bad_{c.to}")
    for name, value in constants.items():
        level2.append(f"{sql_literal(value)}::text as {name}")

    # level 3: lookups (administrative units), read on the record's date
    d = _record_date(contract)
    joins, level3 = [], []
    for c in cols:
        if not c.rule.lookup:
            continue
        j = f"j_{c.to}"
        joins.append(f"left join {c.rule.lookup} {j} on {j}.code = t.c_{c.to}")
        level3.append(f"{_value_sql(c, contract, 't.c_' + c.to, j, d)} as {c.to}")
        level3.append(f"{_invalid_sql(c, contract, 't.c_' + c.to, j, d)} as bad_{c.to}")

    # rule columns, one per reason code
    by_code: dict[str, list[str]] = {}
    for c in cols:
        if c.required:
            by_code.setdefault("missing_required", []).append(f"case when c_{c.to} is null then {sql_literal(c.source)} end")
        elif c.required_when:
            by_code.setdefault("missing_required", []).append(
                f"case when c_{c.to} is null and ({c.required_when}) then {sql_literal(c.source)} end")
    for c in cols:
        if c.rule.code:
            by_code.setdefault(c.rule.code, []).append(
                f"case when bad_{c.to} then {sql_literal(c.source + '=')} || c_{c.to} end")
    for r in contract.rules:
        inputs_ok = " and ".join(f"not bad_{contract_col(contract, i).to}" for i in r.inputs) or "true"
        shown = " || ' ' || ".join(f"{sql_literal(i + '=')} || coalesce(c_{contract_col(contract, i).to}, '')"
                                   for i in r.inputs) or sql_literal(r.code)
        by_code.setdefault(r.code, []).append(f"case when {inputs_ok} and ({r.fails}) then {shown} end")
    rule_cols = [f"nullif(concat_ws('; ', {', '.join(parts)}), '') as rule_{code}"
                 for code, parts in by_code.items()]

    key_cols = [k for k in contract.key if k not in constants]
    key_expr = " || '|' || ".join(f"coalesce({k}::text, '')" for k in key_cols)
    key_shown = " || ' ' || ".join(f"{sql_literal(contract.column(k).source + '=')} || {k}::text" for k in key_cols)
    key_present = " and ".join(f"{k} is not null" for k in key_cols)
    content = "md5(row(" + ", ".join(f"c_{c.to}" for c in cols) + ")::text)"
    rule_names = [f"rule_{code}" for code in by_code] + ["rule_duplicate_key"]
    failed = " or ".join(f"{name} is not null" for name in rule_names)

    return f"""
create unlogged table {checked_table} as
with cleaned as (
    select s._row, {header_repeat or 'false'} as _header_repeat,
           {', '.join(level1)}
    from {raw_table} s
), typed as (
    select cleaned.*, {', '.join(level2)}
    from cleaned
    where not _header_repeat
), resolved as (
    select t.*{''.join(', ' + x for x in level3)}
    from typed t
    {' '.join(joins)}
), ruled as (
    select resolved.*, {', '.join(rule_cols)}, {content} as _content, {key_expr} as _key
    from resolved
), keys as (
    select _key, min(_content) <> max(_content) as conflict, min(_row) as first_row
    from ruled
    where {key_present}
    group by _key
    having count(*) > 1
), final as (
    select ruled.*,
           case when keys.conflict then {key_shown} end as rule_duplicate_key,
           coalesce(not keys.conflict and ruled._row <> keys.first_row, false) as _extra_copy
    from ruled left join keys on keys._key = ruled._key
)
select final.*, ({failed}) as _failed
from final
"""


def contract_col(contract: Contract, source: str) -> Column:
    return next(c for c in contract.columns if c.source == source)


def output_columns(contract: Contract) -> list[tuple[str, str]]:
    """(name, sql type) of every conformed value the checked table carries, in contract order."""
    out = []
    for c in contract.columns:
        out.append((c.to, TYPES[c.type].sql_type))
        for suffix, _, sql_type in c.rule.extras:
            out.append((c.to + suffix, sql_type))
    return out


def reasons_sql(contract: Contract) -> str:
    """SQL array of the reason codes a checked row carries."""
    parts = ", ".join(f"case when rule_{code} is not null then {sql_literal(code)} end"
                      for code in contract.rejection_codes)
    return f"array_remove(array[{parts}]::text[], null)"


def detail_sql(contract: Contract) -> str:
    parts = ", ".join(f"{sql_literal(code + ': ')} || rule_{code}" for code in contract.rejection_codes)
    return f"concat_ws(' | ', {parts})"
