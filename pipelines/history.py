"""Bitemporal merge of accepted rows into store.<entity>, set-based, inside one transaction.

Valid time (valid_from/valid_to) says when a version was true; recorded time
(recorded_from/recorded_to) when the warehouse knew it. Nothing is updated but recorded_to:
ending a version records a copy of it with its valid_to set. The current state is the version
with both ends open. Unchanged rows (same content, same scope) write nothing, so re-running a
delivery changes nothing.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import wait
from dataclasses import dataclass

import psycopg

BOOKKEEPING = {"version_id", "scope", "raw_hash", "delivery_id", "valid_from", "valid_to",
               "recorded_from", "recorded_to"}
CURRENT = "{a}.valid_to = 'infinity' and {a}.recorded_to = 'infinity'"
CHANGE_FEED_LOCK = 7_301_002
CHANGE_LOG = "store.change_log"
# storage options of every work table (stage.*): no autovacuum, which a DROP at the end of the
# delivery would otherwise wait a second for (deadlock_timeout) before cancelling it
WORK = "with (autovacuum_enabled = off)"


@dataclass(frozen=True)
class Target:
    entity: str
    key: tuple[str, ...]
    ignore_in_hash: tuple[str, ...] = ()   # e.g. the source's own last-changed timestamp

    @property
    def table(self) -> str:
        return f"store.{self.entity}"


def stored_columns(conn: psycopg.Connection, entity: str) -> list[str]:
    """Every column of store.<entity>, in table order."""
    rows = conn.execute(
        "select column_name from information_schema.columns where table_schema = 'store' and table_name = %s "
        "order by ordinal_position", (entity,)).fetchall()
    return [r[0] for r in rows]


def content_columns(conn: psycopg.Connection, target: Target) -> list[str]:
    return [c for c in stored_columns(conn, target.entity) if c not in BOOKKEEPING]


def content_sql(columns: list[str], target: Target, alias: str) -> str:
    """A version's content as text (its content columns as a row's text, the ignored ones left
    out): two versions with the same text are the same, whatever the bytes they came from."""
    compared = [c for c in columns if c not in target.ignore_in_hash]
    return "row(" + ", ".join(f"{alias}.{c}" for c in compared) + ")::text"


def merge(conn: psycopg.Connection, target: Target, incoming: str, delivery_id: int, *,
          snapshot_scope: str | None = None, snapshot_at=None, keep_keys: str | None = None,
          known_keys: str | None = None, known_count=None, aside=None, incoming_count: int | None = None
          ) -> dict[str, int]:
    """Merge the rows of table `incoming` (content columns + _valid_from + _scope) into the store.

    snapshot_scope: the incoming rows are the whole truth for that scope: current versions of the
    scope missing from them are ended at snapshot_at, except keys listed by the query keep_keys
    (rows of this delivery that were quarantined: present, but not yet readable).
    known_keys: a query of the keys (as keep_keys spells them) of the current versions this
    delivery sent again byte for byte (not in `incoming`): they are unchanged and present.
    known_count: a function giving how many distinct keys known_keys lists (else counted here).
    incoming_count: how many rows `incoming` has, when the caller counted them already.
    aside: a function that runs work(connection) on another connection and returns its Future;
    with it, a large first load's change feed is written there while the versions are inserted.
    Returns counts of new, changed, unchanged, removed keys.

    Written for weekly snapshots of millions of rows where few change: only the changed and
    removed keys are written to a work table; everything else is one anti-join.
    """
    cols = content_columns(conn, target)
    incoming_cols = {r[0] for r in conn.execute(
        "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0", (incoming,))}
    raw_hash = "a._raw_hash" if "_raw_hash" in incoming_cols else "null"
    chg = _changes_table_name(delivery_id, target)
    if conn.execute("select relkind from pg_class where oid = %s::regclass", (incoming,)).fetchone()[0] == "r":
        conn.execute(f"analyze {incoming}")
    conn.execute(f"drop table if exists {chg}")
    fresh_statistics(conn, target.table)
    # one merge at a time from here to its commit: what changes is decided on the store as the
    # merges before left it (two provinces sending the same person at once would otherwise both
    # end that person's version), change-feed numbers follow commit order (a reader polling
    # `seq > :last_seen` never skips a change committed late), and scope digests stay in step
    conn.execute("select pg_advisory_xact_lock(%s)", (CHANGE_FEED_LOCK,))
    total = incoming_count if incoming_count is not None else conn.execute(f"select count(*) from {incoming}").fetchone()[0]
    first_load = snapshot_scope is not None and _first_load(conn, target, incoming, snapshot_scope)
    if first_load:
        # every row a new key and nothing to remove: the changes are the incoming rows themselves,
        # read where they are rather than written to a work table first (1M rows: ~0.7 s)
        counts = {"new": total} if total else {}
        changes = (f"(select {', '.join('a.' + k for k in target.key)}, 'new'::text as op, a._scope as new_scope, "
                   f"{raw_hash}::text as new_raw_hash, null::text as old_scope, null::text as old_raw_hash "
                   f"from {incoming} a)")
    else:
        counts = _changes_table(conn, target, incoming, delivery_id, cols, raw_hash, snapshot_scope, snapshot_at,
                                keep_keys, known_keys)
        changes = chg
    # every incoming row a new key (a first load): nothing below joins the work table
    all_new = counts.get("new", 0) == total and not counts.get("changed")
    if not all_new:
        conn.execute(f"analyze {chg}")
    col_list = ", ".join(cols)
    # end the versions that changed or left: record the old version with its valid_to closed
    if counts.get("changed") or counts.get("removed"):
        conn.execute(f"""
            with ended as (
                update {target.table} h set recorded_to = now()
                from {chg} c
                where h.version_id = c.version_id and c.op <> 'new'
                returning h.*, c.new_valid_from
            )
            insert into {target.table} ({col_list}, scope, raw_hash, delivery_id, valid_from, valid_to, recorded_from)
            select {col_list}, scope, raw_hash, delivery_id, valid_from, new_valid_from, now()
            from ended
            where new_valid_from > valid_from""")
    # the new versions
    if all_new:
        # no old version to start after, so the rows are inserted as they come, without joining
        # the work table (1M rows: ~1 s)
        source, valid_from = f"{incoming} a", "a._valid_from"
    else:
        source = (f"{incoming} a join {chg} c on {' and '.join(f'c.{k} = a.{k}' for k in target.key)} "
                  "and c.op in ('new', 'changed')")
        valid_from = "greatest(a._valid_from, coalesce(c.old_valid_from, '-infinity'))"
    feed = None
    if first_load and aside and _feed_of_its_own(conn, total):
        feed = _feed_aside(conn, target, changes, total, delivery_id, aside)
    try:
        _insert_versions(conn, target, cols, source, raw_hash, valid_from, delivery_id,
                         counts.get("new", 0) + counts.get("changed", 0))
    finally:
        wait([feed] if feed else [])
    if feed:
        added = feed.result()
        _attach_feed(conn, target, delivery_id)
        keep_digests(conn, target, changes, snapshot_scope, added=added)
    else:
        log_changes(conn, target, changes, sum(counts.values()), delivery_id)
        keep_digests(conn, target, changes, snapshot_scope)
    if known_count is not None:  # (counted elsewhere meanwhile)
        total += known_count()
    elif known_keys:  # (a line sent twice byte for byte is one version)
        total += conn.execute(f"select count(distinct k) from ({known_keys}) kk (k)").fetchone()[0]
    conn.execute(f"drop table if exists {chg}")
    new, changed = counts.get("new", 0), counts.get("changed", 0)
    return {"new": new, "changed": changed, "unchanged": total - new - changed,
            "removed": counts.get("removed", 0)}


def _insert_versions(conn: psycopg.Connection, target: Target, cols: list[str], source: str, raw_hash: str,
                     valid_from: str, delivery_id: int, rows: int) -> None:
    """Insert the new versions: `source` (alias a) gives their content, `valid_from` their start."""
    with bulk_insert(conn, target.table, rows) as rebuilt:
        # in key order the key indexes grow page by page (a 1M insert, 22 s -> 14 s); when they
        # are built afterwards, the order does not matter
        order = "" if rebuilt else "order by " + ", ".join("a." + k for k in target.key)
        conn.execute(f"""
            insert into {target.table} ({', '.join(cols)}, scope, raw_hash, delivery_id, valid_from, recorded_from)
            select {', '.join('a.' + c for c in cols)}, a._scope, {raw_hash},
                   %(delivery)s, {valid_from}, now()
            from {source}
            {order}""",
                     {"delivery": delivery_id})


def _feed_name(delivery_id: int, target: Target) -> str:
    """A bulk change feed's own table (in schema store once it is part of the feed)."""
    return f"change_log_{int(delivery_id)}_{target.entity}"


def _stage_feed_name(delivery_id: int, target: Target) -> str:
    """The same while it is being written (a name recovery.stage_relations finds)."""
    return f"feed_{int(delivery_id)}_{target.entity}"


def _feed_aside(conn: psycopg.Connection, target: Target, changes: str, rows: int, delivery_id: int, aside):
    """Start writing a first load's change feed on another connection, into a stage table that
    _attach_feed makes part of the feed in this transaction (until then no reader sees it, and
    a delivery that fails leaves it to be dropped with its other stage tables). Its sequence
    numbers are taken here, under the change-feed lock. The Future gives the digest of the
    loaded rows (versions, hashed, hash_sum), counted there too."""
    first = _reserve_seq(conn, rows)
    at = conn.execute("select now()").fetchone()[0]  # the publication's time, as the feed's default gives it
    table = f"stage.{_stage_feed_name(delivery_id, target)}"

    def write(other: psycopg.Connection):
        with other.transaction():  # created and filled at once: no WAL on the embedded warehouse
            # (no autovacuum while it is a stage table: at 10M rows one started on it during the
            # publication, and attaching the table then waited a second to cancel it)
            other.execute(f"create table {table} (like {CHANGE_LOG} including defaults including constraints) {WORK}")
            other.execute(f"insert into {table} {_feed_rows(target, changes, '%(at)s')}",
                          {"first": first, "entity": target.entity, "delivery": delivery_id, "at": at})
            other.execute(f"alter table {table} add primary key (seq)")
        return other.execute(f"select count(*), count(c.new_raw_hash), "
                             f"coalesce(sum(rules.digest_hash(c.new_raw_hash)), 0) from {changes} c").fetchone()

    return aside(write)


def _attach_feed(conn: psycopg.Connection, target: Target, delivery_id: int) -> None:
    """Make the change feed written by _feed_aside part of store.change_log (seen at commit)."""
    staged, name = _stage_feed_name(delivery_id, target), _feed_name(delivery_id, target)
    conn.execute(f"alter table stage.{staged} set schema store")
    conn.execute(f"alter table store.{staged} rename to {name}")
    conn.execute(f"alter table store.{name} inherit {CHANGE_LOG}")
    conn.execute(f"alter table store.{name} reset (autovacuum_enabled)")  # part of the store: vacuumed as it


def _reserve_seq(conn: psycopg.Connection, rows: int) -> int:
    """The first of `rows` change-feed sequence numbers taken at once (under the change-feed lock)."""
    sequence = "store.change_log_seq_seq"
    first = conn.execute("select nextval(%s)", (sequence,)).fetchone()[0]
    conn.execute("select setval(%s, %s)", (sequence, first + rows - 1))
    return first


def _changes_table_name(delivery_id: int, target: Target) -> str:
    return f"stage.changes_{delivery_id}_{target.entity}"  # unlogged (temporary tables were slower here)


def _key_join(target: Target) -> str:
    return " and ".join(f"h.{k} = a.{k}" for k in target.key)


def _first_load(conn: psycopg.Connection, target: Target, incoming: str, scope: str) -> bool:
    """Whether a snapshot is its scope's first: the scope has no current version, and none of
    the incoming keys has one elsewhere (a person who moved from another province would)."""
    if conn.execute(f"select exists (select from {target.table} h where {CURRENT.format(a='h')} and h.scope = %s)",
                    (scope,)).fetchone()[0]:
        return False
    return not conn.execute(f"select count(*) from {incoming} a join {target.table} h "
                            f"on {_key_join(target)} and {CURRENT.format(a='h')}").fetchone()[0]


def _changes_table(conn: psycopg.Connection, target: Target, incoming: str, delivery_id: int, cols: list[str],
                   raw_hash: str, snapshot_scope: str | None, snapshot_at, keep_keys: str | None,
                   known_keys: str | None) -> dict[str, int]:
    """Write the merge's work table (_changes_table_name) of the keys that get a new version or
    leave; their counts by operation."""
    chg = _changes_table_name(delivery_id, target)
    key_join = _key_join(target)
    # the keys that get a new version: without a current one (new), or whose current version
    # differs in content or scope (changed). Listing the new keys here too means the insert below
    # never probes the table it writes to (with an estimate of "empty", that probe was a nested
    # loop over a growing heap: quadratic on a first load).
    conn.execute(f"""
        create unlogged table {chg} {WORK} as
        select {', '.join('a.' + k for k in target.key)},
               case when h.version_id is null then 'new' else 'changed' end::text as op,
               h.version_id, h.valid_from as old_valid_from, a._valid_from as new_valid_from,
               h.scope as old_scope, h.raw_hash as old_raw_hash, a._scope as new_scope, {raw_hash}::text as new_raw_hash
        from {incoming} a
        left join {target.table} h on {key_join} and {CURRENT.format(a='h')}
        where h.version_id is null or h.scope <> a._scope
           or {content_sql(cols, target, 'h')} <> {content_sql(cols, target, 'a')}""")
    if snapshot_scope is not None:
        keep = ""  # anti-joins, not NOT IN: these lists can hold millions
        # keys as the checked pass writes them: columns as text joined by |
        key_text = " || '|' || ".join(f"coalesce(h.{k}::text, '')" for k in target.key)
        if keep_keys:
            keep += f" and not exists (select 1 from ({keep_keys}) q (k) where q.k = {key_text})"
        if known_keys:
            keep += f" and not exists (select 1 from ({known_keys}) kk (k) where kk.k = {key_text})"
        # written to a table of its own first: an INSERT's query never runs in parallel, a CREATE
        # TABLE AS's may (a 10M-row snapshot's search, 11 s -> 6 s on 2 cores)
        removed = f"stage.removed_{delivery_id}_{target.entity}"
        conn.execute(f"drop table if exists {removed}")
        conn.execute(f"""
            create unlogged table {removed} {WORK} as
            select {', '.join('h.' + k for k in target.key)}, 'removed'::text as op, h.version_id,
                   h.valid_from as old_valid_from, %(at)s::timestamptz as new_valid_from, h.scope as old_scope,
                   h.raw_hash as old_raw_hash
            from {target.table} h
            where {CURRENT.format(a='h')} and h.scope = %(scope)s
              and not exists (select 1 from {incoming} a where {key_join}) {keep}""",
                     {"scope": snapshot_scope, "at": snapshot_at})
        conn.execute(f"""
            insert into {chg} ({', '.join(target.key)}, op, version_id, old_valid_from, new_valid_from, old_scope, old_raw_hash)
            select * from {removed}""")
        conn.execute(f"drop table {removed}")
    return dict(conn.execute(f"select op, count(*) from {chg} group by op").fetchall())


def log_changes(conn: psycopg.Connection, target: Target, changes: str, rows: int, delivery_id: int) -> None:
    """Each new version lands in the change feed as an insert (new key) or an update, each ended
    one as a delete (the work table lists the removals last). Called under the change-feed lock:
    the merge takes a block of sequence numbers at once and numbers the rows itself (one sequence
    call per row cost more than the insert: 1M rows, 3.7 s). `changes` is the merge's work table,
    or a parenthesised query with its columns."""
    if not rows:
        return
    first = _reserve_seq(conn, rows)
    table = CHANGE_LOG
    bulk = _feed_of_its_own(conn, rows)
    if bulk:
        # a first load's million changes go into a table of their own that inherits the change
        # feed (readers of store.change_log and core.changes read it too): created in this
        # transaction, it is written without the WAL on the embedded warehouse, and its key is
        # built once afterwards (1M rows: 1.3 s -> 0.7 s)
        table = f"store.{_feed_name(delivery_id, target)}"
        conn.execute(f"create table {table} () inherits ({CHANGE_LOG})")
    conn.execute(f"insert into {table} {_feed_rows(target, changes, 'now()')}",
                 {"first": first, "delivery": delivery_id, "entity": target.entity})
    if bulk:
        conn.execute(f"alter table {table} add primary key (seq)")


def _feed_of_its_own(conn: psycopg.Connection, rows: int) -> bool:
    """Whether a merge of `rows` changes writes them into a table of its own that inherits the
    change feed (log_changes, _feed_aside): a large one, by the owner of the feed."""
    return rows >= BULK_MIN_ROWS and _owns(conn, CHANGE_LOG)


def _feed_rows(target: Target, changes: str, changed_at: str) -> str:
    """The change-feed rows of `changes` (columns and query, for an INSERT), numbered from the
    parameter %(first)s on: a new key is an insert, a changed one an update, a removed one a delete.
    (The numbers override the feed's identity column; a table made like it has none to override.)"""
    key_text = " || '|' || ".join(f"c.{k}::text" for k in target.key)
    return f"""(seq, entity, entity_key, operation, delivery_id, changed_at)
        overriding system value
        select %(first)s - 1 + row_number() over (), %(entity)s, {key_text},
               case c.op when 'new' then 'insert' when 'changed' then 'update' else 'delete' end,
               %(delivery)s, {changed_at}
        from {changes} c"""


def keep_digests(conn: psycopg.Connection, target: Target, changes: str, snapshot_scope: str | None,
                 added: tuple | None = None) -> None:
    """Keep store.scope_digest in step with this merge (sql/060_scope_digest.sql): the scopes that
    have a digest get this merge's versions added and its ended versions taken away; a snapshot's
    scope without one gets it computed from the store (once: every merge keeps it from then on).
    added: the (versions, hashed, hash_sum) of a first load's rows, counted already: the whole
    change, all in snapshot_scope."""
    entity = target.entity
    if added is not None:
        conn.execute("""
            insert into store.scope_digest as d (entity, scope, versions, hashed, hash_sum)
            values (%s, %s, %s, %s, %s)
            on conflict (entity, scope) do update
            set versions = d.versions + excluded.versions, hashed = d.hashed + excluded.hashed,
                hash_sum = d.hash_sum + excluded.hash_sum""", (entity, snapshot_scope, *added))
        return
    kept = {scope for (scope,) in conn.execute("select scope from store.scope_digest where entity = %s", (entity,))}
    if kept:
        conn.execute(f"""
            update store.scope_digest d
            set versions = d.versions + x.versions, hashed = d.hashed + x.hashed,
                hash_sum = d.hash_sum + x.hash_sum
            from (
                select scope, sum(sign) as versions, coalesce(sum(sign) filter (where raw_hash is not null), 0) as hashed,
                       coalesce(sum(sign * rules.digest_hash(raw_hash)::numeric), 0) as hash_sum
                from (select c.new_scope, c.new_raw_hash, 1 from {changes} c where c.op in ('new', 'changed')
                      union all
                      select c.old_scope, c.old_raw_hash, -1 from {changes} c where c.op in ('changed', 'removed')
                     ) v (scope, raw_hash, sign)
                group by scope
            ) x
            where d.entity = %s and d.scope = x.scope""", (entity,))
    if snapshot_scope is not None and snapshot_scope not in kept:
        conn.execute(f"""
            insert into store.scope_digest (entity, scope, versions, hashed, hash_sum)
            select %(entity)s, %(scope)s, count(*), count(raw_hash), coalesce(sum(rules.digest_hash(raw_hash)), 0)
            from {target.table} h
            where {CURRENT.format(a='h')} and h.scope = %(scope)s""", {"entity": entity, "scope": snapshot_scope})


def scope_digest(conn: psycopg.Connection, entity: str, scope: str) -> tuple | None:
    """(versions, hashed, hash_sum) of a scope's current versions, if kept."""
    return conn.execute("select versions, hashed, hash_sum from store.scope_digest "
                        "where entity = %s and scope = %s", (entity, scope)).fetchone()


BULK_MIN_ROWS = 100_000


@contextlib.contextmanager
def bulk_insert(conn: psycopg.Connection, table: str, rows: int):
    """Around an insert of `rows` versions: when they are at least as many as the table holds (a
    first load), its indexes are dropped and built again afterwards, which costs a fraction of
    maintaining them row by row (measured: 1M versions, 8.2 s with four indexes against 4.2 s +
    1.9 s of builds). The primary key stays (its values come in order) unless the table was
    empty. Only the table's owner may do this, and readers of the table wait until the delivery
    commits. Yields whether it did."""
    if rows < BULK_MIN_ROWS or not _owns(conn, table):
        yield False
        return
    held = conn.execute("select greatest(reltuples, 0) from pg_class where oid = %s::regclass", (table,)).fetchone()[0]
    if rows < held:
        yield False
        return
    keys = []
    if not held and not conn.execute(f"select exists (select from {table})").fetchone()[0]:
        # an empty table truncated in this transaction gets new files: on a server with
        # wal_level = minimal (the embedded warehouse) what is written into them skips the WAL
        conn.execute(f"truncate {table}")
        # an empty table's primary key is built afterwards too (1M rows: 0.4 s of inserts into
        # it against 0.15 s to build it), unless another table's foreign key depends on it
        keys = conn.execute("""
            select conname, pg_get_constraintdef(oid) from pg_constraint
            where conrelid = %(t)s::regclass and contype in ('p', 'u')
              and not exists (select from pg_constraint f where f.confrelid = %(t)s::regclass)""",
                            {"t": table}).fetchall()
    indexes = conn.execute("""
        select i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) from pg_index i
        where i.indrelid = %s::regclass
          and not exists (select from pg_constraint c where c.conindid = i.indexrelid)
        order by i.indisunique desc  -- a key sent twice is refused before the other builds""", (table,)).fetchall()
    for name, _ in keys:
        conn.execute(f"alter table {table} drop constraint {name}")
    for name, _ in indexes:
        conn.execute(f"drop index {name}")
    yield True
    for name, definition in keys:
        conn.execute(f"alter table {table} add constraint {name} {definition}")
    for _, definition in indexes:
        conn.execute(definition)


def _owns(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("select pg_has_role(current_user, relowner, 'usage') from pg_class where oid = %s::regclass",
                        (table,)).fetchone()[0]


def analyze_work_table(conn: psycopg.Connection, table: str, columns: list[str]) -> None:
    """ANALYZE a delivery's large work table (its staged or its checked rows) from a sample of
    3,000 rows instead of 30,000: the plans that read it need only how many rows, how many
    distinct keys and how many rejected ones, and the default sample's random reads cost a
    first load of 1M rows ~0.4 s on its path."""
    with conn.transaction():
        conn.execute("set local default_statistics_target = 10")
        conn.execute(f"analyze {table} ({', '.join(columns)})")


def fresh_statistics(conn: psycopg.Connection, table: str) -> None:
    """ANALYZE the table when a tenth of it changed since its statistics were taken: the plans
    above go wrong on a stale estimate (an "empty" store after a first load of millions picks
    nested loops), and autovacuum may not have caught up with the previous delivery."""
    stale = conn.execute("""
        select s.n_mod_since_analyze > 1000 + 0.1 * greatest(c.reltuples, 0)
        from pg_stat_user_tables s join pg_class c on c.oid = s.relid
        where s.relid = %s::regclass""", (table,)).fetchone()
    if stale and stale[0]:
        conn.execute(f"analyze {table}")
