"""The one set-based pass over a staged delivery, generated from the feed's contract.

It cleans every value, conforms it to its type, and writes one `rule_<code>` column per reason
code: NULL when the row passes, otherwise which values broke the rule (what the agency reads).
GX validates those columns, the quarantine takes the rows with any of them set, and conform takes
the others: the contract is the only place a rule is written.
"""
from __future__ import annotations

import hashlib

from .contracts import Column, Contract
from .history import WORK
from .rules import SPELLINGS, TYPES, code_list_sql, code_spellings, sql_literal


def stage_column(col: Column) -> str:
    """The staging table's column for a contract column: its source name in lower case."""
    return col.source.lower()


def clean(expr: str) -> str:
    """Trimmed text; empty and the literal NULL that some offices send become SQL NULL
    (sql/064_checked_pass_costs.sql)."""
    return f"rules.clean_text({expr})"


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


def _dictionary_parts(col: Column) -> list[tuple[str, str | None, str, str]]:
    """(suffix, key SQL over the cleaned text {v}, value SQL over the key {k}, spellings) of a
    dictionary type. A key of None: the dictionary is keyed by the value as staged, and cleans it
    itself (once per distinct value rather than on every row: 1M rows, the keys' scan 0.9 s ->
    0.7 s). A timestamp's parts are cut from the cleaned text (a leading space would shift them).
    spellings: which of rules.SPELLINGS lists the key's well-formed spellings (a code list's come
    from the contract)."""
    if col.type == "timestamp":  # 'dd/mm/yyyy HH:MM:SS': a time is two small dictionaries, not one of 86,400
        return [("date", "substr({v}, 1, 10)", "rules.parse_date({k})", "recent_date"),
                ("hm", "substr({v}, 11, 6)", "rules.time_of_day({k} || ':00')", "hour_minute"),
                ("ss", "substr({v}, 17)", "rules.time_of_day(' 00:00' || {k})", "second")]
    return [("", None, "", col.type)]


def _dictionary_keys(contract: Contract, present: set[str], names: list[str] | None = None,
                     skip: set[str] | frozenset = frozenset()) -> list[tuple[str, Column, str | None, str]]:
    """(name, column, key SQL over the cleaned text {v} or None, value SQL over the key {k}) of
    every dictionary, or of those named, but those in skip."""
    return [(name, c, key, value) for name, c, key, value, _ in _dictionary_specs(contract, present)
            if (names is None or name in names) and name not in skip]


def _dictionary_specs(contract: Contract, present: set[str]) -> list[tuple[str, Column, str | None, str, str]]:
    """_dictionary_keys with each part's spellings (see _dictionary_parts)."""
    out = []
    for c in contract.columns:
        if not c.rule.dictionary or c.source not in present:
            continue
        for suffix, key, value, spellings in _dictionary_parts(c):
            out.append((f"d_{c.to}{'_' + suffix if suffix else ''}", c, key, value, spellings))
    return out


def _staged_key(key: str | None, c: Column) -> str:
    """A dictionary's key SQL over the staged row s."""
    staged = f"s.{stage_column(c)}"
    return staged if key is None else key.format(v=clean(staged))


def _dictionary_select(contract: Contract, c: Column, value: str, keys: str) -> str:
    """A dictionary over the distinct keys `keys` (a subquery of one column k): a timestamp part's
    key with its value `val`; any other key (a staged value) with its cleaned text `v`, its
    conformed value `val` and whether it is bad."""
    if c.type == "timestamp":
        return f"select k, {value.format(k='k')} as val from {keys} x"
    cleaned = f"(select k, {clean('k')} as v from {keys} x offset 0) x"
    extras = "".join(f", {expr.format(v='v')} as x{sfx}" for sfx, expr, _ in c.rule.extras)
    if c.default is None and c.rule.invalid == c.rule.value + " is null":
        # bad exactly when the value cannot be made: each key is conformed once, not twice
        return (f"select k, v, val, (v is not null and val is null) as bad"
                + "".join(f", x{sfx}" for sfx, _, _ in c.rule.extras)
                + f" from (select k, v, {_value_sql(c, contract, 'v', '', '')} as val{extras} from {cleaned} offset 0) y")
    return (f"select k, v, {_value_sql(c, contract, 'v', '', '')} as val, "
            f"{_invalid_sql(c, contract, 'v', '', '') or 'false'} as bad{extras} from {cleaned}")


def static_dictionaries(contract: Contract) -> dict[str, tuple[str, str]]:
    """{name: (table, SELECT)} of the dictionaries whose well-formed spellings are all listed
    (rules.SPELLINGS, a contract's code lists): built once per warehouse from every spelling
    (pipelines/spellings.py), so that a delivery needs no scan of its rows for their distinct
    values; checked_sql conforms in the row the rare value that is not in one. A table is named
    by a hash of its SELECT: a changed contract or type builds another."""
    out = {}
    for name, c, key, value, kind in _dictionary_specs(contract, {c.source for c in contract.columns}):
        if kind == "code":
            spellings = "select * from (values " + ", ".join(
                f"({sql_literal(text)})" for text in code_spellings(contract.code_lists[c.codes])) + ") v"
        elif kind in SPELLINGS:
            spellings = SPELLINGS[kind]
        else:
            continue
        if key is None:  # keyed by the value as staged: also what cleans to NULL
            spellings += " union all select '' union all select 'NULL'"
        select = _dictionary_select(contract, c, value, f"(select distinct k from ({spellings}) s(k))")
        digest = hashlib.md5(select.encode()).hexdigest()[:12]
        out[name] = (f"spelling.{kind}_{digest}", select)  # the same SELECT, the same table
    return out


def _listed_or(name: str, field: str, staged: str, in_row: str, if_null: str = "null") -> str:
    """A field of static dictionary `name` joined by the staged value, or, for a value it does not
    list, the same field computed in the row (rare: every well-formed spelling is listed)."""
    return (f"case when {name}.k is not null then {name}.{field} "
            f"when {staged} is not null then {in_row} else {if_null} end")


def dictionary_groups(contract: Contract, present: set[str], skip: set[str] | frozenset = frozenset()
                      ) -> list[list[str]]:
    """The dictionaries' names (but those in skip) in two groups of about equal cost, for two
    scans at once when no other scan runs beside them: those keyed by the value as staged, and
    those keyed by parts of a cleaned text (which cleans it on every row). One group when either
    is empty, none when there is no dictionary to scan for."""
    keys = _dictionary_keys(contract, present, skip=skip)
    staged = [name for name, _, key, _ in keys if key is None]
    parts = [name for name, _, key, _ in keys if key is not None]
    return [group for group in (staged, parts) if group]


def _in_range(rows: tuple[int | None, int | None] | None) -> str:
    """The WHERE clause of the staged rows whose _row is in the closed range rows = (first, last),
    either end None for no bound; none without a range."""
    if not rows:
        return ""
    bounds = [f"s._row {op} {int(end)}" for op, end in zip((">=", "<="), rows) if end is not None]
    return " where " + " and ".join(bounds) if bounds else ""


def dictionaries(contract: Contract, raw_table: str, present: set[str],
                 rows: tuple[int | None, int | None] | None = None, keys_tables: dict[str, list[str]] | None = None,
                 skip: set[str] | frozenset = frozenset()) -> dict[str, str]:
    """{name: SELECT} of the checked pass's dictionaries: one small table per low-cardinality
    column (and per part of a timestamp), each distinct staged value (a timestamp's: each distinct
    part of its cleaned text) with what _dictionary_select gives it. The distinct values come
    from the staged rows (one scan each), or from keys_tables: {table: the names of the
    dictionaries whose keys dictionary_keys_sql(names=...) filled it with, in one scan}; but
    those in skip."""
    in_range = _in_range(rows)
    out = {}
    for table, names in (keys_tables or {None: None}).items():
        parts = _dictionary_keys(contract, present, names, skip)
        for i, (name, c, key, value) in enumerate(parts):
            if table:  # the rows of this column's grouping set (its bit of grouping() clear)
                mask = (1 << len(parts)) - 1 - (1 << (len(parts) - 1 - i))
                keys = f"(select k{i} as k from {table} where g = {mask})"
            else:
                keys = f"(select distinct {_staged_key(key, c)} as k from {raw_table} s{in_range})"
            out[name] = _dictionary_select(contract, c, value, keys)
    return out


def dictionary_keys_sql(contract: Contract, raw_table: str, table: str, present: set[str],
                        names: list[str] | None = None) -> str | None:
    """CREATE TABLE of the distinct keys of every dictionary (or of those named), from one scan of
    the staged rows (hashed grouping sets: 0.7-1 s for six dictionaries of 1M rows, against 1.2 s
    for six scans). Materialised and then read by dictionaries(keys_tables=...): planned inside
    the checked pass, the same grouping sets were estimated six orders of magnitude wrong (9 s ->
    37 s)."""
    parts = _dictionary_keys(contract, present, names)
    if not parts:
        return None
    cols = [f"k{i}" for i in range(len(parts))]
    return f"""
create unlogged table {table} {WORK} as
select grouping({', '.join(cols)}) as g, {', '.join(cols)}
from (select {', '.join(f'{_staged_key(key, c)} as k{i}' for i, (_, c, key, _) in enumerate(parts))} from {raw_table} s offset 0) s
group by grouping sets ({', '.join(f'({col})' for col in cols)})"""


def checked_sql(contract: Contract, raw_table: str, checked_table: str, present: set[str],
                constants: dict[str, str], repeated_table: str, rows: tuple[int | None, int | None] | None = None,
                create: bool = True, empty: bool = False, dictionary_tables: dict[str, str] | None = None,
                static_tables: dict[str, str] | None = None) -> str:
    """CREATE TABLE checked AS ...: typed values, rule columns, _failed, _key, _extra_copy.

    rows: only the staged rows whose _row is in this closed range, either end None for no bound
    (several connections check a large delivery range by range); create=False: INSERT INTO the existing checked table instead;
    empty: create the table without checking any row.

    present: source names found in the file's header (missing optional ones are NULL).
    constants: conformed columns that come from the delivery (e.g. province_code from the file name).
    raw_table: the staged rows to check (all, or those not known: see unknown_sql).
    repeated_table: the keys sent more than once among them (repeated_sql).
    dictionary_tables: {name: table} of dictionaries already built (see dictionaries()); without
    them, the statement builds its own over its rows.
    static_tables: {name: table} of static dictionaries (static_dictionaries()), used instead of
    those: a value they do not list is conformed in the row.

    Cost is what matters here (10 million rows): types with few distinct values are conformed once
    per distinct value in a dictionary and joined back; each level is its own subquery (offset 0)
    so no expression is evaluated twice; duplicate keys are found on the raw table.
    """
    cols = contract.columns
    in_range = _in_range(rows)

    def src(col: Column, alias: str = "s") -> str:
        return clean(f"{alias}.{stage_column(col)}") if col.source in present else "null::text"

    # dictionaries: built by this statement, or already (shared by the connections of a large
    # delivery). One keyed by the staged value is joined to the staged row and gives the column's
    # cleaned text, value and verdict at once; a timestamp's parts are joined to its cleaned text.
    # A static dictionary may not list a value: what it does not is conformed in the row.
    static_tables = static_tables or {}
    withs, staged_joins, dict_joins, from_dictionary, part_values = [], [], [], {}, {}
    for name, c, key, value in _dictionary_keys(contract, present):
        table = (f"{static_tables[name]} {name}" if name in static_tables
                 else f"{dictionary_tables[name]} {name}" if dictionary_tables else name)
        if key is None:
            staged = f"s.{stage_column(c)}"
            staged_joins.append(f"left join {table} on {name}.k = {staged}")
            if name in static_tables:
                v = clean(staged)
                cleaned = _listed_or(name, "v", staged, v)
                val = _listed_or(name, "val", staged, _value_sql(c, contract, v, "", ""))
                bad = _listed_or(name, "bad", staged, _invalid_sql(c, contract, v, "", "") or "false", "false")
                extras = [_listed_or(name, f"x{sfx}", staged, expr.format(v=v)) for sfx, expr, _ in c.rule.extras]
            else:
                cleaned, val, bad = f"{name}.v", f"{name}.val", f"coalesce({name}.bad, false)"
                extras = [f"{name}.x{sfx}" for sfx, _, _ in c.rule.extras]
            if c.default is not None:
                val = f"coalesce({val}, {sql_literal(c.default)})"
            from_dictionary[c.to] = [f"{cleaned} as c_{c.to}", f"{val} as {c.to}", f"{bad} as bad_{c.to}"]
            from_dictionary[c.to] += [f"{x} as {c.to}{sfx}" for x, (sfx, _, _) in zip(extras, c.rule.extras)]
        else:
            part = key.format(v="cleaned.c_" + c.to)
            dict_joins.append(f"left join {table} on {name}.k = {part}")
            part_values[name] = (f"(case when {name}.k is not null then {name}.val when cleaned.c_{c.to} is not null "
                                 f"then {value.format(k=part)} end)" if name in static_tables else f"{name}.val")
    if not dictionary_tables:
        withs = [f"{name} as ({select})"
                 for name, select in dictionaries(contract, raw_table, present, rows, skip=set(static_tables)).items()]

    # level 1: cleaned text (and what the dictionaries keyed by the staged value give), and
    # whether the row is a header line repeated mid-file
    level1 = [x for c in cols for x in from_dictionary.get(c.to, [f"{src(c)} as c_{c.to}"])]
    header_repeat = " and ".join(
        f"upper(rules.trim_spaces(s.{stage_column(c)})) = {sql_literal(c.source)}" for c in cols if c.source in present)

    # level 2: typed values that need no lookup (from a dictionary when the type has one)
    level2 = []
    for c in cols:
        if c.rule.lookup or c.to in from_dictionary:
            continue
        v = "c_" + c.to
        if c.rule.dictionary and c.source in present:  # a timestamp (its parts' dictionaries)
            d = f"d_{c.to}"  # its date, and its time as the sum of hours-minutes and seconds
            date, time = part_values[f"{d}_date"], f"{part_values[f'{d}_hm']} + {part_values[f'{d}_ss']}"
            level2.append(f"rules.local_timestamp({date}, {time}) as {c.to}")
            level2.append(f"({v} is not null and (length({v}) <> 19 or {date} is null "
                          f"or {time} is null)) as bad_{c.to}")
            continue
        level2.append(f"{_value_sql(c, contract, v, '', '')} as {c.to}")
        for suffix, expr, _ in c.rule.extras:
            level2.append(f"{expr.format(v=v)} as {c.to}{suffix}")
        inv = _invalid_sql(c, contract, v, "", "")
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
        extra = " and " + c.rule.lookup_extra.format(j=j, d=d) if c.rule.lookup_extra else ""
        joins.append(f"left join {c.rule.lookup} {j} on {j}.code = {c.rule.lookup_key.format(v='t.c_' + c.to)}{extra}")
        level3.append(f"{_value_sql(c, contract, 't.c_' + c.to, j, d)} as {c.to}")
        level3.append(f"{_invalid_sql(c, contract, 't.c_' + c.to, j, d)} as bad_{c.to}")
        for suffix, expr, _ in c.rule.extras:   # e.g. a survey-time ward's current ward, from the same join
            level3.append(f"{expr.format(v='t.c_' + c.to, j=j, d=d)} as {c.to}{suffix}")

    # rule columns, one per reason code: (condition, what the agency reads) of each part
    by_code: dict[str, list[tuple[str, str]]] = {}
    for c in cols:
        if c.required:
            by_code.setdefault("missing_required", []).append((f"c_{c.to} is null", sql_literal(c.source)))
        elif c.required_when:
            by_code.setdefault("missing_required", []).append(
                (f"c_{c.to} is null and ({c.required_when})", sql_literal(c.source)))
    for c in cols:
        if c.rule.code:
            by_code.setdefault(c.rule.code, []).append((f"bad_{c.to}", f"{sql_literal(c.source + '=')} || c_{c.to}"))
    for r in contract.rules:
        inputs_ok = " and ".join(f"not bad_{contract_col(contract, i).to}" for i in r.inputs) or "true"
        shown = " || ' ' || ".join(f"{sql_literal(i + '=')} || coalesce(c_{contract_col(contract, i).to}, '')"
                                   for i in r.inputs) or sql_literal(r.code)
        by_code.setdefault(r.code, []).append((f"{inputs_ok} and ({r.fails})", shown))
    rule_cols = [f"{_joined(parts)} as rule_{code}" for code, parts in by_code.items()]

    key_cols = _key_columns(contract, constants)
    key_shown = " || ' ' || ".join(f"{sql_literal(c.source + '=')} || coalesce(c_{c.to}, '')" for c in key_cols)
    rule_names = [f"rule_{code}" for code in by_code] + ["rule_duplicate_key"]
    failed = " or ".join(f"{name} is not null" for name in rule_names)

    withs += [
        f"""cleaned as (
    select s._row, {header_repeat or 'false'} as _header_repeat, {raw_hash_sql(contract, present)} as _raw_hash,
           {', '.join(level1)}
    from {raw_table} s
    {' '.join(staged_joins)}{in_range}
    offset 0  -- each level is evaluated once per row, not re-expanded into the next one
)""",
        f"""typed as (
    select cleaned.*, {', '.join(level2)}
    from cleaned
    {' '.join(dict_joins)}
    where not _header_repeat
    offset 0
)""",
        f"""resolved as (
    select t.*{''.join(', ' + x for x in level3)}
    from typed t
    {' '.join(joins)}
    offset 0
)""",
        f"""ruled as (
    select resolved.*, {', '.join(rule_cols)}, {_key_expr(key_cols)} as _key
    from resolved
    offset 0
)""",
    ]
    head = f"create unlogged table {checked_table} {WORK} as" if create else f"insert into {checked_table}"
    return f"""
{head}
with {(',' + chr(10)).join(withs)}
select {', '.join(['ruled._row', 'ruled._key', 'ruled._raw_hash']
                  + ['ruled.' + name for name, _ in output_columns(contract)]
                  + ['ruled.' + name for name in constants] + ['ruled.rule_' + code for code in by_code])},
       case when repeated.conflict then {key_shown} end as rule_duplicate_key,
       coalesce(not repeated.conflict and ruled._row <> repeated.first_row, false) as _extra_copy,
       ({failed.replace('rule_duplicate_key is not null', 'coalesce(repeated.conflict, false)')}) as _failed
from ruled left join {repeated_table} repeated on repeated._key = ruled._key
{"with no data" if empty else ""}"""


def _joined(parts: list[tuple[str, str]]) -> str:
    """The texts of the parts whose condition holds, joined by '; ', NULL when none. Most rows
    break no rule: they only test the conditions, and the texts are built for the others."""
    if len(parts) == 1:
        return f"case when {parts[0][0]} then {parts[0][1]} end"
    each = ", ".join(f"case when {cond} then {text} end" for cond, text in parts)
    return f"case when {' or '.join(f'({cond})' for cond, _ in parts)} then nullif(concat_ws('; ', {each}), '') end"


def _key_columns(contract: Contract, constants: dict[str, str]) -> list[Column]:
    return [contract.column(k) for k in contract.key if k not in constants]


def _raw_key(contract: Contract, constants: dict[str, str], present: set[str], alias: str = "s") -> str:
    """The row's key as text from the raw staged columns (cleaned as the checked pass cleans them)."""
    parts = []
    for c in _key_columns(contract, constants):
        value = clean(f"{alias}.{stage_column(c)}") if c.source in present else "null::text"
        parts.append(f"coalesce({value}, '')")
    return " || '|' || ".join(parts)


def raw_hash_sql(contract: Contract, present: set[str], alias: str = "s") -> str:
    """md5 of a row's values exactly as staged, in contract order (so column order in the file
    does not matter): equal raw hashes mean the same row was delivered."""
    values = [f"coalesce({alias}.{stage_column(c)}, '')" if c.source in present else "''" for c in contract.columns]
    return "md5(concat_ws(chr(31), " + ", ".join(values) + "))"  # cheaper than row()::text


def repeated_sql(contract: Contract, raw_table: str, table: str, present: set[str],
                 constants: dict[str, str], empty: bool = False) -> list[str]:
    """Keys sent more than once: whether their rows differ (every row rejected) or are copies
    (the first one counts). Found on the raw rows, before anything else looks at them: the keys
    first (one grouping), then, on the rows of those few keys only, whether they differ (as one
    statement the planner expected a third of the keys to repeat and sorted every row).
    empty: the table only (no staged row is to be checked, or a first load that assumes its keys
    unique). Analyzed even so: the checked pass joins it to every row, and a table never analyzed
    is planned as a thousand keys, which sorted every checked row to merge them (1M rows: 0.9 s of
    CPU on a slow day; at 10M rows the planner chose a hash join anyway)."""
    key = _raw_key(contract, constants, present)
    # a key column with a default (GCN's holder ids: '' when absent) is part of the key even when empty
    key_present = " and ".join(f"{clean('s.' + stage_column(c)) if c.source in present else 'null'} is not null"
                               for c in _key_columns(contract, constants) if c.default is None) or "true"
    row_hash = raw_hash_sql(contract, present)
    keys = f"""
create unlogged table {table} {WORK} as
select {key} as _key, null::boolean as conflict, min(s._row) as first_row
from {raw_table} s
where {key_present}
group by 1 having count(*) > 1
{"with no data" if empty else ""}"""
    differ = f"""
update {table} r set conflict = x.conflict
from (select {key} as _key, min({row_hash}) <> max({row_hash}) as conflict
      from {raw_table} s
      where {key_present} and {key} in (select _key from {table})
      group by 1) x
where r._key = x._key"""
    made = [keys, f"analyze {table}"]
    return made if empty else [*made, differ]


def rejected_keys_repeat_sql(checked_table: str) -> str:
    """Whether a rejected row's key is also another row's key: the duplicates that the store's
    unique index of current keys cannot see, when a first load assumed its keys unique (only
    accepted rows reach the store). Hashes the few rejected rows, probes the others."""
    return f"""
select exists (
    select from {checked_table} f join {checked_table} a on a._key = f._key and a._row <> f._row
    where f._failed and f._key <> '')"""


def _known_match(contract: Contract, present: set[str], constants: dict[str, str]) -> str:
    """Join condition of a staged row s to the current version h of the store it was sent as."""
    key_cols = _key_columns(contract, constants)
    # matched on the key as well: the key index finds the version (no index on the hash needed),
    # and a key sent in another spelling than stored is simply checked again
    same_key = "".join(f" and h.{c.to}::text = {clean('s.' + stage_column(c))}" for c in key_cols
                       if c.source in present)
    return (f"h.raw_hash = {raw_hash_sql(contract, present)}{same_key}"
            " and h.valid_to = 'infinity' and h.recorded_to = 'infinity' and h.scope = %(scope)s")


def unknown_sql(contract: Contract, raw_table: str, table: str, present: set[str], constants: dict[str, str],
                store_table: str) -> str:
    """The staged rows still to check: all but those identical to the current version they would
    merge into (same raw hash, same key, same scope), which passed every rule when that version
    was loaded. `%(scope)s` is the delivery's scope. An anti-join: it writes only the few rows that
    are new or changed, not the million sent again (a weekly snapshot: 2.9 s -> 1.4 s)."""
    return f"""
create unlogged table {table} {WORK} as
select s.* from {raw_table} s
where not exists (select from {store_table} h where {_known_match(contract, present, constants)})
"""


def known_sql(contract: Contract, raw_table: str, table: str, unknown_table: str, present: set[str],
              constants: dict[str, str]) -> str:
    """The rows sent again byte for byte (the staged rows not still to check), with their key as
    the checked pass spells it, which is also the key of the version they match."""
    return f"""
create unlogged table {table} {WORK} as
select s._row, {_raw_key(contract, constants, present)} as _key
from {raw_table} s
where not exists (select from {unknown_table} u where u._row = s._row)
"""


def sample_unknown_sql(contract: Contract, raw_table: str, present: set[str], constants: dict[str, str],
                       store_table: str) -> str:
    """Whether a sample of about one page in a thousand of the staged rows holds a row that is not
    a current version sent again (then the whole delivery cannot be: no need to digest it all)."""
    return f"""
select exists (
    select from {raw_table} s tablesample system (0.1) repeatable (0)
    where not exists (select from {store_table} h where {_known_match(contract, present, constants)}))
"""


def digest_sql(contract: Contract, raw_table: str, present: set[str]) -> str:
    """The staged rows' digest, as store.scope_digest keeps a scope's (versions, hashed, hash_sum):
    every staged row counts as a version with a raw hash."""
    return f"""
select count(*), count(*), coalesce(sum(rules.digest_hash({raw_hash_sql(contract, present)})), 0)
from {raw_table} s
"""


def rest_sql(raw_table: str, table: str, known_table: str) -> str:
    """The staged rows still to check: those not known."""
    return f"""
create unlogged table {table} {WORK} as
select s.* from {raw_table} s where not exists (select 1 from {known_table} k where k._row = s._row)
"""


def unknown_clashes_sql(contract: Contract, known_table: str, unknown_table: str, present: set[str],
                        constants: dict[str, str]) -> str:
    """A key sent both by a known row and by another row is a repeat: the known row goes back to be
    checked with the other (deleted from the known rows; returns how many)."""
    # a semi-join: the few unknown keys are hashed and the known rows probe them (as a join with
    # no statistics on _key, the planner sorted a million known keys instead)
    return f"""
delete from {known_table} k
where k._key in (select {_raw_key(contract, constants, present)} from {unknown_table} s)
"""


def _key_expr(key_cols: list[Column]) -> str:
    """The row's key as text, from the cleaned key columns (the same text the repeated CTE uses)."""
    return " || '|' || ".join(f"coalesce(c_{c.to}, '')" for c in key_cols)


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
