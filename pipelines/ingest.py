"""One delivery end to end: archive -> decode -> stage (COPY) -> checked pass -> GX -> quarantine
-> conform -> bitemporal merge -> receipt. The CLI and the Airflow task both call ingest_file().

The core data changes in one transaction at the end, so a delivery is either published whole or
not at all. A bad file gets a `rejected` receipt whose reason a clerk can act on, never a traceback.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import cached_property
from pathlib import Path

import psycopg
from psycopg import sql

from . import (checks, contracts, decode, delivery, gx_process, history, hooks, locks, recovery, reports, resubmission,
               spellings, supersede, warehouse)
from .config import Settings, settings
from .contracts import Contract, ContractError
from .delivery import Rejection
from .digests import sha256_of
from .history import WORK
from .migrations import ensure_ready
from .pause import pause_at

log = logging.getLogger(__name__)

CHANGES_NONE = {"new": 0, "changed": 0, "unchanged": 0, "removed": 0}
PARALLEL_MIN_ROWS = 200_000  # below this, one connection checks the rows faster than several


def parallel_workers() -> int:
    """Connections that check one large delivery at once: COREHUB_PARALLEL, else the cores here
    (the embedded warehouse runs on this machine), at most 4."""
    configured = os.environ.get("COREHUB_PARALLEL")
    if configured:
        return max(1, int(configured))
    return max(1, min(4, os.cpu_count() or 1))


def connect(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("set timezone = 'UTC'")  # the merge compares versions' content as text
    # a delivery's statements scan millions of rows: let the planner use parallel workers sooner
    # (measured: the known-row lookup of 1M rows, 4.6 s -> 3.0 s on 2 cores)
    conn.execute("set parallel_setup_cost = 100")
    conn.execute("set parallel_tuple_cost = 0.01")
    # the store is read through its indexes from cache or SSD, not a spinning disk: at the default
    # (4) ending 150,000 of 10M versions scanned the whole table instead of probing its key (16 s -> 7 s)
    conn.execute("set random_page_cost = 1.1")
    # hashes of millions of keys (known rows, removals): in memory rather than in batches on disk
    conn.execute("select set_config('work_mem', %s, false)", (os.environ.get("COREHUB_WORK_MEM", "256MB"),))
    return conn


def already_processed(paths: list[str | Path]) -> set[str]:
    """The paths among these whose exact bytes were delivered before (so a rerun skips them)."""
    digests = {digest: path for path, digest in sha256_of(paths).items()}
    url = warehouse.url()
    ensure_ready(url)
    with connect(url) as conn:
        done = conn.execute("select sha256 from meta.delivery where sha256 = any(%s) "
                            "and status not in ('processing', 'abandoned')",
                            (list(digests),)).fetchall()
    return {digests[d] for (d,) in done}


def split_min_bytes() -> int:
    """A UTF-8 CSV file at least this large is copied in two parts at once (Run._stage_in_two):
    COREHUB_SPLIT_MIN_BYTES, else 256 MiB (about 2M population rows)."""
    return int(os.environ.get("COREHUB_SPLIT_MIN_BYTES", 256 << 20))


PRELOAD_MAX_BYTES = 32 << 20  # a file this small waits for GX rather than for the database


def _preload_gx() -> None:
    """Import Great Expectations (seconds of imports) in a thread while a small file is staged
    and checked, which takes less time than the import. (A large file's GX runs in a process of
    its own, pipelines.gx_process: a thread here would hold the GIL that feeding COPY needs, and
    compete with the database server for the cores whatever its nice value, the two being in
    different scheduling groups.)"""
    def load():
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # this thread only (Linux)
        except (AttributeError, OSError):
            pass
        try:
            from . import gx_validation  # noqa: F401
        except Exception:  # the validate stage imports it again and reports properly
            pass
    _in_background(load, "gx-import")


def _ranges(first: int, last: int, count: int) -> list[tuple[int | None, int | None]]:
    """`count` ranges of row numbers from first to last, the first and last open-ended: however
    the rows are numbered, each is in one range."""
    step = (last - first) // count + 1
    ranges = [(first + i * step, first + (i + 1) * step - 1) for i in range(count)]
    ranges[0], ranges[-1] = (None, ranges[0][1]), (ranges[-1][0], None)
    return ranges


def _in_background(function, name: str) -> Future:
    """Run function() in a daemon thread (the process never waits for it at exit); its future."""
    future: Future = Future()

    def run():
        try:
            future.set_result(function())
        except BaseException as exc:  # handed to whoever waits for the result
            future.set_exception(exc)
    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def ingest_file(path: str | Path, s: Settings | None = None) -> dict:
    """Process one delivery now; returns its receipt (also written next to its report)."""
    s = s or settings()
    path = Path(path)
    gx = None
    if path.is_file() and path.stat().st_size >= PRELOAD_MAX_BYTES:
        # GX imported by a process of its own while the file is archived, staged and checked
        try:
            gx = gx_process.GxProcess()
        except OSError as exc:  # (no process can be started here: GX runs in this one)
            log.warning("GX's own process could not be started (%s): GX runs in the ingest process", exc)
    if not gx:
        _preload_gx()
    try:
        return _ingest(path, s, gx)
    finally:
        if gx:
            gx.close()


def _ingest(path: Path, s: Settings, gx: gx_process.GxProcess | None) -> dict:
    url = warehouse.url(s)
    ensure_ready(url)
    started = time.monotonic()
    archived = delivery.archive(path, s.archive)
    with connect(url) as conn:
        recovery.reclaim_abandoned(conn, s.reports)  # deliveries whose process died: cleaned, to be processed again
        previous = conn.execute(
            "select delivery_id, feed, receipt from meta.delivery where sha256 = %s "
            "and status not in ('processing', 'abandoned')",
            (archived.sha256,)).fetchone()
        if previous:
            receipt = _duplicate_receipt(previous, path, archived)
            log.info("%s: same bytes as delivery %s: duplicate", path.name, previous[0])
            return receipt
        run = Run(conn, s, url, path, archived, gx)
        pause_at("archived")
        try:
            receipt = run.execute()
        except Rejection as exc:
            receipt = run.reject(str(exc))
        except supersede.Superseded as exc:
            receipt = run.record_superseded(exc)
        finally:
            run.drop_stage()
            conn.execute("select pg_advisory_unlock_all()")  # its scope locks and its claim: done
        seconds = time.monotonic() - started
        hooks.after_delivery(conn, receipt, run.name.province if run.name else None, run.timer.stages, seconds)
    log.info("%s: %s in %.1f s", path.name, receipt["status"], seconds)
    return receipt


def _duplicate_receipt(previous, path: Path, archived) -> dict:
    delivery_id, feed, old = previous
    old = old or {}
    return {
        "delivery_id": delivery_id, "feed": feed, "file": path.name, "sha256": archived.sha256,
        "status": "duplicate", "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0,
        "rejections": {}, "findings": {}, "changes": dict(CHANGES_NONE), "report": old.get("report"),
        "rejected_rows": old.get("rejected_rows"), "duplicate_of": delivery_id,
    }


class _Timer:
    """Seconds per stage of a run, logged as they finish (the bench and the ops log read them)."""

    def __init__(self):
        self.stages: dict[str, float] = {}

    def __call__(self, stage: str):
        @contextlib.contextmanager
        def timed():
            t = time.monotonic()
            yield
            self.stages[stage] = round(time.monotonic() - t, 3)
            log.info("stage %s: %.2f s", stage, self.stages[stage])
        return timed()


class Run:
    """The state of one delivery being processed."""

    def __init__(self, conn: psycopg.Connection, s: Settings, url: str, path: Path, archived,
                 gx: gx_process.GxProcess | None = None):
        self.conn, self.s, self.url, self.path, self.archived = conn, s, url, path, archived
        self.gx = gx  # GX's own process (a large delivery), else GX runs in this one
        self.timer = _Timer()
        self.contract: Contract | None = None
        self.name = None
        self.partial = False
        self.sent_again = 0  # rows of a snapshot that is its scope's current versions sent again
        self.validation: Future | None = None  # GX's run over the checked rows (in the background)
        self.known_count: Future | None = None  # distinct keys of the rows sent again (likewise)
        self.keys_assumed_unique = False  # a large first load: its keys are not grouped first (_checked_pass)
        self.accepted_rows: int | None = None  # checked rows the merge reads (_count)
        self.staged_rows = 0  # rows COPY wrote into the raw table (_stage)
        self.delivery_id = self._register()
        self.report_dir = s.reports / (self._feed_guess() or "UNKNOWN") / str(self.delivery_id)
        self.raw = f"stage.raw_{self.delivery_id}"
        self.raw_tables = (self.raw,)  # the tables of the staged rows: self.raw, or the two parts it shows
        self.raw_parts: list[tuple[str, int, int]] = []  # (rows, first, last) of each part (_stage_in_two)
        self.checked = f"stage.checked_{self.delivery_id}"
        self.repeated = f"stage.repeated_{self.delivery_id}"
        self.known = f"stage.known_{self.delivery_id}"
        self.unknown = f"stage.unknown_{self.delivery_id}"
        self.accepted = f"stage.accepted_{self.delivery_id}"

    def _feed_guess(self) -> str | None:
        try:
            return delivery.parse_name(self.path.name).feed
        except Rejection:
            return None

    def _register(self) -> int:
        try:
            n = delivery.parse_name(self.path.name)
            fields = (n.feed, n.province, n.date, n.seq)
        except Rejection:
            fields = (None, None, None, None)
        return self.conn.execute(
            "insert into meta.delivery (feed, province_code, delivery_date, seq, file_name, sha256) "
            f"values (%s, %s, %s, %s, %s, %s) returning delivery_id, {locks.claim_sql()}",
            (*fields, self.path.name, self.archived.sha256)).fetchone()[0]

    # -- the steps ---------------------------------------------------------------------------
    def execute(self) -> dict:
        self.name = delivery.parse_name(self.path.name)
        try:
            self.contract = contracts.load(self.name.feed)
        except ContractError:
            raise Rejection(f"unknown feed {self.name.feed!r} in the file name; known feeds: "
                            f"{', '.join(contracts.all_contracts())}") from None
        if self.name.ext not in self.contract.formats:
            raise Rejection(f"a {self.contract.feed} delivery must be one of {', '.join(self.contract.formats)}, "
                            f"not .{self.name.ext}")
        if not self.conn.execute("select 1 from ref.province_lookup where code = %s",
                                 (self.name.province,)).fetchone():
            raise Rejection(f"province code {self.name.province!r} in the file name is not a GSO province code")
        self._take_turn()
        fmt, pieces = decode.open_delivery(self.archived.path, self.name.ext, self.contract)
        with self.timer("stage"):
            try:
                present = self._stage(fmt, pieces)
            except decode.NotUtf8:  # past its first 64 KiB the file was not UTF-8 after all (nothing staged)
                fmt, pieces = decode.open_delivery(self.archived.path, self.name.ext, self.contract, "cp1258")
                present = self._stage(fmt, pieces)
        with self.timer("check"):
            self._check(present)
        # GX reads the checked rows while they are published (the merge leaves a core idle); the
        # receipt waits for it, and its failure rolls the publication back
        self.validation = _in_background(self._validate, "gx-validate")
        pause_at("validated")
        with self.timer("count"):
            counts = self._count()
        if counts["rows_read"] == 0:
            raise Rejection("the file has a header but no data rows")
        try:
            return self._publish(counts, fmt)
        except psycopg.errors.UniqueViolation:
            if not self.keys_assumed_unique:
                raise
        # the store's unique index of current keys found a key that two accepted rows share: the
        # publication was rolled back, and the rows are checked again with their repeated keys
        with self.timer("check_again"):
            self._check_again_with_repeated_keys(present)
        self.validation = _in_background(self._validate, "gx-validate")
        return self._publish(self._count(), fmt)

    def _take_turn(self) -> None:
        """Wait for the deliveries of this feed and province before this one (pipelines.locks), then
        refuse to roll the core back with a snapshot older than one applied (pipelines.supersede)."""
        self.partial = resubmission.is_resubmission(self.name)
        if self.partial:
            self.conn.execute("update meta.delivery set partial = true where delivery_id = %s", (self.delivery_id,))
        locks.hold_scope(self.conn, self.contract.entity, self.name.province)
        pause_at("locked")
        if self.contract.mode == "snapshot":
            supersede.check(self.conn, self.contract.feed, self.name, self.delivery_id, partial=self.partial)

    def _map_header(self, header: list[str]) -> tuple[list[str], dict[str, str]]:
        """Staging column for each file column (in file order), and the extras' original names."""
        known = {c.source: checks.stage_column(c) for c in self.contract.columns}
        seen, columns, extras = set(), [], {}
        for i, name in enumerate(header, start=1):
            key = name.strip().upper()
            if key in seen and key in known:
                raise Rejection(f"the header names column {key} twice")
            seen.add(key)
            if key in known:
                columns.append(known[key])
            else:
                columns.append(f"extra_{i}")
                extras[f"extra_{i}"] = name
        missing = [c for c in self.contract.required_sources if c not in seen]
        if missing:
            raise Rejection(f"required column(s) missing from the header: {', '.join(missing)} "
                            f"(the header has: {', '.join(header)})")
        return columns, extras

    def _stage(self, fmt: decode.TextFormat, pieces) -> set[str]:
        columns, self.extras = self._map_header(fmt.header)
        self.file_columns = list(zip(columns, fmt.header))
        all_cols = list(dict.fromkeys([checks.stage_column(c) for c in self.contract.columns] + columns))
        split = self._split_point(fmt)
        if split:
            pieces.close()
            self._stage_in_two(fmt, columns, all_cols, split)
        else:
            try:
                self.staged_rows = self._copy(self.conn, self.raw, fmt, columns, all_cols, pieces, pause=True)
            except psycopg.Error as exc:
                raise _copy_failure(exc, fmt) from None
        present = {c.source for c in self.contract.columns if checks.stage_column(c) in columns}
        return present

    @staticmethod
    def _copy(conn: psycopg.Connection, table: str, fmt: decode.TextFormat, columns: list[str], all_cols: list[str],
              pieces, pause: bool = False) -> int:
        """Create `table` and COPY the pieces into it, in one transaction; the rows copied."""
        col_defs = ", ".join(f"{c} text" for c in all_cols)
        copy = sql.SQL("copy {} ({}) from stdin (format csv, delimiter {}, freeze)").format(
            sql.SQL(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Literal(fmt.delimiter))
        # created and filled in one transaction, the rows are written frozen: the passes that
        # read them next do not each have to set their hint bits (1M rows: 0.4 s)
        with conn.transaction():
            conn.execute(f"create unlogged table {table} "
                         f"(_row bigint generated always as identity (cache 100000), {col_defs}) {WORK}")
            cursor = conn.cursor()
            with cursor.copy(copy) as cp:
                for n, piece in enumerate(pieces):
                    cp.write(piece if isinstance(piece, bytes) else piece.encode("utf-8"))
                    if n == 0 and pause:
                        pause_at("copy")
        return cursor.rowcount

    def _split_point(self, fmt: decode.TextFormat) -> int | None:
        """Where a large UTF-8 CSV file is cut in two for two COPYs at once (_stage_in_two), or None."""
        size = self.archived.size
        if (size < split_min_bytes() or parallel_workers() < 2 or self.name.ext != "csv"
                or fmt.encoding not in decode.UTF8 or self.contract.has_geometry):
            return None
        return decode.split_point(self.archived.path, size // 2)

    def _stage_in_two(self, fmt: decode.TextFormat, columns: list[str], all_cols: list[str], split: int) -> None:
        """COPY the file's two parts (cut at byte `split`, a line end) into two tables at once, on
        two connections: one COPY keeps one core of the server busy, and a province's 10M rows took
        it ~10 s. The staged rows are then the view self.raw over both, numbered as in the file: the
        second part's after the first's, whose count is known only once its COPY is done."""
        first, second = f"{self.raw}_first", f"{self.raw}_second"
        _, first_pieces = decode.open_text(self.archived.path, fmt.encoding, stop=split)
        second_pieces = decode.text_pieces(self.archived.path, fmt.encoding, start=split)
        connections = [connect(self.url), connect(self.url)]
        try:
            copying = _in_background(lambda: self._copy(connections[0], first, fmt, columns, all_cols, first_pieces,
                                                        pause=True), "copy-first")
            later = _in_background(lambda: self._copy(connections[1], second, fmt, columns, all_cols, second_pieces),
                                   "copy-second")
            try:
                rows = copying.result()
            except BaseException as exc:  # the file's first problem: the second part's does not matter
                with contextlib.suppress(psycopg.Error):  # (a COPY that cannot be cancelled ends by itself)
                    connections[1].cancel_safe()
                wait([later])
                raise _copy_failure(exc, fmt) from None
            try:
                rows_after = later.result()
            except BaseException as exc:  # (its rows counted from the first part's end)
                raise _copy_failure(exc, fmt, first_row=rows + 1) from None
        except decode.NotUtf8:
            recovery.drop_stage(self.conn, self.delivery_id)  # (one part copied already: all read again)
            raise
        finally:
            for conn in connections:
                conn.close()
        cols = ", ".join(all_cols)
        self.conn.execute(f"create view {self.raw} as select _row, {cols} from {first} "
                          f"union all select _row + {rows}, {cols} from {second}")
        self.raw_parts = [(first, 1, rows),
                          (f"(select _row + {rows} as _row, {cols} from {second})", rows + 1, rows + rows_after)]
        self.raw_tables = (first, second)
        self.staged_rows = rows + rows_after
        log.info("staged in two parts at once: rows 1-%s and %s-%s", rows, rows + 1, self.staged_rows)

    def _check(self, present: set[str]) -> None:
        c = self.contract
        constants = self._constants()
        rows = self.raw
        first_load = not self._scope_has_versions()
        if "raw_hash" in history.stored_columns(self.conn, c.entity) and not first_load:
            # the plans below compare with the store: on a stale estimate (an "empty" store after a
            # first load of millions) they probe it row by row without its index
            history.fresh_statistics(self.conn, f"store.{c.entity}")
            if self._scope_sent_again(present, constants):
                # every row is a current version sent again byte for byte: nothing to check
                for statement in checks.repeated_sql(c, rows, self.repeated, present, constants, empty=True):
                    self.conn.execute(statement)
                self.conn.execute(self._checked_sql(rows, present, constants, empty=True))
                return
            # rows sent again byte for byte are known good: only the others are checked
            rows = self.unknown
            self.conn.execute(checks.unknown_sql(c, self.raw, rows, present, constants, f"store.{c.entity}"),
                              {"scope": self.name.province})
            self.conn.execute(checks.known_sql(c, self.raw, self.known, rows, present, constants))
            clashes = self.conn.execute(checks.unknown_clashes_sql(c, self.known, rows, present, constants)).rowcount
            if clashes:
                self.conn.execute(f"drop table {rows}")
                self.conn.execute(checks.rest_sql(self.raw, rows, self.known))
            # how many keys were sent again (the merge's `unchanged`): a sort of them all, done on
            # another connection while the other rows are checked and merged (10M rows: 6 s)
            self.known_count = self._aside(self._count_known)
        # statistics of the columns the next plans join on (all of them: twice the time)
        key = [k for k in c.key if k not in constants]
        staged_key = [checks.stage_column(c.column(k)) for k in key if c.column(k).source in present]
        for table in (self.raw_tables if rows == self.raw else (rows,)):
            history.analyze_work_table(self.conn, table, ["_row", *staged_key])
        self.keys_assumed_unique = self._checked_pass(rows, present, constants, first_load=first_load)
        self._analyze_checked()
        if self.keys_assumed_unique and self.conn.execute(checks.rejected_keys_repeat_sql(self.checked)).fetchone()[0]:
            self._check_again_with_repeated_keys(present)

    def _constants(self) -> dict[str, str]:
        """Conformed columns that come from the delivery, not its rows (the province of its file name)."""
        return {name: self.name.province for name in self.contract.derived}

    def _analyze_checked(self) -> None:
        key = [k for k in self.contract.key if k not in self.contract.derived]
        history.analyze_work_table(self.conn, self.checked, ["_row", "_key", "_failed", "_extra_copy", *key])

    def _check_again_with_repeated_keys(self, present: set[str]) -> None:
        """A first load that assumed its keys unique sent a key more than once: everything made
        from its staged rows is dropped, and they are checked again as any delivery is, with
        their repeated keys (a slower path, for the rare snapshot that needs it)."""
        log.info("a key is sent more than once: the rows are checked again with their repeated keys")
        if self.validation:  # (GX may still be reading the checked rows)
            wait([self.validation])
        recovery.drop_stage(self.conn, self.delivery_id, keep=(self.raw, *self.raw_tables))
        self.keys_assumed_unique = False
        self._checked_pass(self.raw, present, self._constants())
        self._analyze_checked()

    def _scope_sent_again(self, present: set[str], constants: dict[str, str]) -> bool:
        """Whether this snapshot's rows are exactly the current versions of its scope, each sent
        again byte for byte: its count and raw-hash sums equal the scope's digest (one pass over
        the staged rows; sql/060_scope_digest.sql), after a sample of its rows was found in the
        store (so a snapshot with changes rarely pays that pass). Sets self.sent_again."""
        if self.contract.mode != "snapshot" or self.partial:
            return False
        digest = history.scope_digest(self.conn, self.contract.entity, self.name.province)
        if not digest or digest[0] != digest[1]:  # not kept, or a version without a raw hash
            return False
        if self.conn.execute(checks.sample_unknown_sql(self.contract, self.raw_tables[0], present, constants,
                                                       f"store.{self.contract.entity}"),
                             {"scope": self.name.province}).fetchone()[0]:
            return False  # e.g. a weekly snapshot: a few hundredths of its rows are new or changed
        staged = self.conn.execute(checks.digest_sql(self.contract, self.raw, present)).fetchone()
        if tuple(staged) != tuple(digest):
            return False
        self.sent_again = staged[0]
        log.info("%s rows: the current versions of scope %s sent again, all unchanged", staged[0], self.name.province)
        return True

    def _checked_pass(self, rows: str, present: set[str], constants: dict[str, str], first_load: bool = False) -> bool:
        """The keys sent more than once, then the checked pass. A large delivery is checked in row
        ranges on several connections at once, so every core of the server works on it (each level
        of the pass is fenced to run once per row, which keeps PostgreSQL from parallelising one
        statement by itself); its repeated keys and its dictionaries are found at once before.

        A large first load of its scope does not group its keys (1M rows: a core for 0.9 s; 10M:
        15 s): they are assumed unique, which the merge proves (every accepted row of a first load
        becomes a current version, and the store's unique index of current keys refuses a key
        twice), and rejected_keys_repeat_sql for the rows that do not reach the store. Where that
        fails, the rows are checked again with their repeated keys (_check_again_with_repeated_keys).
        The dictionaries with every spelling listed are static (pipelines/spellings.py): the
        others' keys are found in one or two scans at once. Returns whether keys were assumed unique."""
        c = self.contract
        if rows == self.raw:  # COPY counted them, and a new table's identity numbers them from 1
            count, first, last = self.staged_rows, 1, self.staged_rows  # (10M rows: a 0.6 s scan)
        else:
            count, first, last = self.conn.execute(f"select count(*), min(_row), max(_row) from {rows}").fetchone()
        workers = parallel_workers()
        if workers < 2 or count < max(PARALLEL_MIN_ROWS, 1):  # (a weekly's few unknown rows span the file)
            for statement in checks.repeated_sql(c, rows, self.repeated, present, constants):
                self.conn.execute(statement)
            self.conn.execute(self._checked_sql(rows, present, constants))
            return False
        if first_load:
            log.info("a large first load: its keys are assumed unique, and its merge proves them so")
        repeated = checks.repeated_sql(c, rows, self.repeated, present, constants, empty=first_load)
        # the dictionaries once for all the connections, each group from one scan of the rows
        # (stage names as recovery.stage_relations finds them)
        groups = checks.dictionary_groups(c, present, skip=set(self.static_tables))
        if groups and not first_load:  # beside the repeated keys: all in one scan
            groups = [[name for group in groups for name in group]]
        tables, batches = {}, []
        for i, names in enumerate(groups):
            keys = f"stage.dictkeys_{self.delivery_id}" + ("_more" if i else "")
            keys_sql = checks.dictionary_keys_sql(c, rows, keys, present, names)
            batch = [keys_sql] if keys_sql else []
            for name, select in checks.dictionaries(c, rows, present, keys_tables={keys: names}).items():
                tables[name] = f"stage.dict_{self.delivery_id}_{name[2:]}"
                batch += [f"create unlogged table {tables[name]} {WORK} as {select}", f"analyze {tables[name]}"]
            batches.append(batch)
        # two scans at once (1M rows: 0.8 s + 1.2 s -> 1.1 s): the repeated keys beside the
        # dictionaries, or two groups of dictionaries when the keys are not grouped
        batches = batches or [[]]
        batches = [repeated + batches[0], *batches[1:]] if first_load else [repeated, *batches]
        self._on_connections([batch for batch in batches if batch])
        self.conn.execute(self._checked_sql(rows, present, constants, empty=True))
        # the staged rows' parts, if copied in two (each read where it is), else the rows as one
        parts = self.raw_parts if rows == self.raw and self.raw_parts else [(rows, first, last)]
        shares = [max(1, workers // len(parts) + (i < workers % len(parts))) for i in range(len(parts))]
        self._on_connections([[self._checked_sql(table, present, constants, rows=part, create=False,
                                                 dictionary_tables=tables)]
                              for (table, lo, hi), share in zip(parts, shares) for part in _ranges(lo, hi, share)])
        return first_load

    def _checked_sql(self, table: str, present: set[str], constants: dict[str, str], **options) -> str:
        """checks.checked_sql of the staged rows in `table` into this delivery's checked table."""
        return checks.checked_sql(self.contract, table, self.checked, present, constants, self.repeated,
                                  static_tables=self.static_tables, **options)

    @cached_property
    def static_tables(self) -> dict[str, str]:
        """{name: table} of the contract's static dictionaries (pipelines/spellings.py)."""
        return spellings.available(self.conn, self.contract)

    def _on_connections(self, batches: list[list[str]]) -> None:
        """Run each batch of statements in order on a connection of its own, the batches at once."""
        def run(statements: list[str]) -> None:
            with connect(self.url) as conn:
                for statement in statements:
                    conn.execute(statement)

        with ThreadPoolExecutor(len(batches)) as pool:
            list(pool.map(run, batches))  # re-raises the first error

    def _aside(self, work) -> Future:
        """work(connection) on a connection of its own, in the background; its Future."""
        def run():
            with connect(self.url) as conn:
                return work(conn)
        return _in_background(run, "aside")

    def _count_known(self, conn: psycopg.Connection) -> int:
        return conn.execute(f"select count(distinct _key) from {self.known}").fetchone()[0]

    def _scope_has_versions(self) -> bool:
        """Whether the store holds current versions of this delivery's scope (else, a first load,
        no row can be known and the lookup is skipped)."""
        return self.conn.execute(
            f"select exists (select from store.{self.contract.entity} where scope = %s "
            "and valid_to = 'infinity' and recorded_to = 'infinity')", (self.name.province,)).fetchone()[0]

    def _validate(self) -> dict:
        if not self.conn.execute(f"select exists (select from {self.checked})").fetchone()[0]:
            # every row was sent before byte for byte and was validated then: nothing to validate
            return {"success": True, "row_count": 0, "report": None,
                    "unexpected": {code: 0 for code in self.contract.rejection_codes}}
        self.report_dir.mkdir(parents=True, exist_ok=True)
        table, report = f"checked_{self.delivery_id}", self.report_dir / "validation.html"
        title = f"{self.path.name} (delivery {self.delivery_id})"
        if self.gx:
            return self.gx.validate(self.url, table, self.contract.feed, report, title=title)
        from . import gx_validation

        return gx_validation.validate(self.url, table, self.contract, report, schema="stage", title=title)

    def _count(self) -> dict:
        codes = self.contract.rejection_codes
        parts = ", ".join(f"count(rule_{c})" for c in codes)
        # (and the rows the merge will read, which it would count again: 10M rows, 3 s)
        *row, self.accepted_rows = self.conn.execute(
            f"select count(*), count(*) filter (where _failed), {parts}, "
            f"count(*) filter (where not _failed and not _extra_copy) from {self.checked}").fetchone()
        known = self.sent_again or (
            self.conn.execute(f"select count(*) from {self.known}").fetchone()[0] if self._exists(self.known) else 0)
        if known:
            log.info("%s rows sent again byte for byte: known good, not checked again", known)
        return {"rows_read": row[0] + known, "rows_quarantined": row[1],
                "rejections": {c: n for c, n in zip(codes, row[2:]) if n}}

    def _exists(self, table: str) -> bool:
        return self.conn.execute("select to_regclass(%s) is not null", (table,)).fetchone()[0]

    def _publish(self, counts: dict, fmt) -> dict:
        c = self.contract
        target = history.Target(c.entity, c.key, c.ignore_in_hash)
        with self.timer("conform"):  # (a view of the checked rows, which other connections may read)
            self._accept(target)
        with self.conn.transaction():
            for effect in self.contract.effects:
                # no delivery of that entity is comparing against it; taken before the merge's
                # change-feed lock, as such a delivery, holding this one shared, takes that lock
                # too (the other order deadlocked)
                locks.entity_exclusive(self.conn, effect["entity"])
            with self.timer("quarantine"):
                if counts["rows_quarantined"]:  # (else its join would still read every staged row)
                    self._quarantine()
            snapshot = c.mode == "snapshot" and not self.partial  # a resubmission removes nothing
            with self.timer("merge"):
                if self.sent_again:  # nothing new, nothing changed, nothing left out: nothing to write
                    changes = {**CHANGES_NONE, "unchanged": self.sent_again}
                else:
                    changes = history.merge(
                        self.conn, target, self.accepted, self.delivery_id,
                        snapshot_scope=self.name.province if snapshot else None,
                        snapshot_at=dt.datetime.combine(self.name.date, dt.time(), dt.timezone(dt.timedelta(hours=7))),
                        keep_keys=f"select _key from {self.checked} where _failed and _key <> ''" if snapshot else None,
                        known_keys=f"select _key from {self.known}" if self._exists(self.known) else None,
                        known_count=self.known_count.result if self.known_count else None,
                        incoming_count=self.accepted_rows,
                        aside=self._aside)
                self._effects()
                self._after_merge()
                resolved = self._resolve(snapshot)
            pause_at("merge")
            findings = self._findings()
            status = "loaded_with_rejections" if counts["rows_quarantined"] else "loaded"
            receipt = self._receipt(status, counts, findings, changes)
            if self.partial:
                receipt["partial"] = True
            if resolved:  # quarantined rows of earlier deliveries that this one replaces
                receipt["resolved"] = resolved
            reports.write_rejected_csv(self.conn, self.delivery_id, self.file_columns, self.report_dir / "rejected.csv")
            with self.timer("validate"):  # (its wait: it ran in the background since the check)
                gx = self.validation.result()
            self._finish(status, receipt)
            # written before the commit: a process killed after it leaves no published delivery without its receipt
            reports.write_outputs(receipt, self.report_dir, gx=gx, encoding=fmt.encoding)
            pause_at("publish")
        return receipt

    def _resolve(self, snapshot: bool) -> int:
        """Open quarantined rows of this feed and province that this delivery replaces (pipelines.resubmission)."""
        keys = f"select _key from {self.checked} where not _failed"
        if self._exists(self.known):
            keys += f" union all select _key from {self.known}"
        return resubmission.resolve(self.conn, self.contract.feed, self.name.province, self.delivery_id, keys,
                                    whole_scope=snapshot)

    def _quarantine(self) -> None:
        raw_json = ", ".join(f"'{name.replace(chr(39), chr(39) * 2)}', r.{col}" for col, name in self.file_columns)
        self.conn.execute(f"""
            insert into quarantine.row (delivery_id, feed, row_no, reasons, detail, record_key, raw)
            select %s, %s, c._row, {checks.reasons_sql(self.contract)}, {checks.detail_sql(self.contract)},
                   nullif(c._key, ''), jsonb_build_object({raw_json})
            from {self.checked} c join {self.raw} r on r._row = c._row
            where c._failed""", (self.delivery_id, self.contract.feed))

    def _accept(self, target: history.Target) -> None:
        c = self.contract
        stored = history.content_columns(self.conn, target)
        produced = {name for name, _ in checks.output_columns(c)} | set(c.derived)
        select = []
        enriched = c.enrich.get("columns", {})
        for col in stored:
            if col in enriched:
                select.append(f"{enriched[col]} as {col}")
            elif col in produced:
                select.append(f"a.{col}")
            else:
                raise ContractError(f"store.{c.entity}.{col} has no source in the {c.feed} contract")
        if c.valid_from == "delivery_date":  # no change date in the feed: valid from the file name's date
            valid_from = f"'{self.name.date.isoformat()} 00:00+07'::timestamptz"
        else:
            vf = c.column(c.valid_from)
            valid_from = (f"a.{vf.to}" if vf.rule.sql_type == "timestamptz"
                          else f"(a.{vf.to}::timestamp at time zone interval '+07:00')")
        # a view, not a copy: the merge reads it twice, which costs less than writing it once
        self.conn.execute(f"""
            create view {self.accepted} as
            select {', '.join(select)}, {valid_from} as _valid_from, {sql.Literal(self.name.province).as_string(self.conn)}::text as _scope,
                   a._raw_hash
            from {self.checked} a {c.enrich.get("join", "")}
            where not a._failed and not a._extra_copy""")

    def _effects(self) -> None:
        for effect in self.contract.effects:
            owner = contracts.for_entity(effect["entity"])
            table = f"stage.effect_{self.delivery_id}"
            self.conn.execute(f"drop table if exists {table}")
            self.conn.execute(f"create unlogged table {table} {WORK} as "
                              + effect["rows"].format(accepted=self.accepted))
            history.merge(self.conn, history.Target(effect["entity"], tuple(effect["key"]), owner.ignore_in_hash),
                          table, self.delivery_id)
            self.conn.execute(f"drop table {table}")

    def _after_merge(self) -> None:
        """The contract's own step after its merge, before findings are counted (e.g. land overlaps)."""
        if self.contract.after_merge:
            import importlib

            module, _, function = self.contract.after_merge.partition(":")
            getattr(importlib.import_module(module), function)(self.conn, self.contract, self.name.province,
                                                               self.delivery_id)

    def _findings(self) -> dict:
        out = {}
        for f in self.contract.findings:
            n = self.conn.execute(f"select count(*) from {self.accepted} a where {f['when']}").fetchone()[0]
            if n:
                out[f["code"]] = n
        return out

    def _receipt(self, status, counts, findings, changes) -> dict:
        return {
            "delivery_id": self.delivery_id, "feed": self.contract.feed, "file": self.path.name,
            "sha256": self.archived.sha256, "status": status,
            "rows_read": counts["rows_read"],
            "rows_loaded": counts["rows_read"] - counts["rows_quarantined"],
            "rows_quarantined": counts["rows_quarantined"],
            "rejections": counts["rejections"], "findings": findings, "changes": changes,
            "report": str(self.report_dir / "report.html"),
            "rejected_rows": str(self.report_dir / "rejected.csv"),
        }

    def _finish(self, status: str, receipt: dict) -> None:
        self.conn.execute("update meta.delivery set status = %s, finished_at = clock_timestamp(), receipt = %s "
                          "where delivery_id = %s", (status, json.dumps(receipt), self.delivery_id))

    def reject(self, reason: str) -> dict:
        feed = self.contract.feed if self.contract else (self.name.feed if self.name else self._feed_guess())
        receipt = {
            "delivery_id": self.delivery_id, "feed": feed, "file": self.path.name,
            "sha256": self.archived.sha256, "status": "rejected", "rows_read": 0, "rows_loaded": 0,
            "rows_quarantined": 0, "rejections": {}, "findings": {}, "changes": dict(CHANGES_NONE),
            "report": str(self.report_dir / "report.html"), "rejected_rows": None, "reason": reason,
        }
        self._finish("rejected", receipt)
        reports.write_outputs(receipt, self.report_dir, gx=None, encoding=None)
        log.warning("%s rejected: %s", self.path.name, reason)
        return receipt

    def record_superseded(self, exc: supersede.Superseded) -> dict:
        """A snapshot older than one applied: recorded, reported, nothing loaded (exit code 0)."""
        receipt = {
            "delivery_id": self.delivery_id, "feed": self.contract.feed, "file": self.path.name,
            "sha256": self.archived.sha256, "status": "superseded", "rows_read": 0, "rows_loaded": 0,
            "rows_quarantined": 0, "rejections": {}, "findings": {}, "changes": dict(CHANGES_NONE),
            "report": str(self.report_dir / "report.html"), "rejected_rows": None,
            "reason": supersede.reason(exc.newer_file), "superseded_by": exc.newer_id,
        }
        self._finish("superseded", receipt)
        self.conn.execute("update meta.delivery set superseded_by = %s where delivery_id = %s",
                          (exc.newer_id, self.delivery_id))
        reports.write_outputs(receipt, self.report_dir, gx=None, encoding=None)
        log.warning("%s superseded by %s", self.path.name, exc.newer_file)
        return receipt

    def drop_stage(self) -> None:
        # a run that stopped early: GX may still read the checked rows, a count the known ones
        wait([f for f in (self.validation, self.known_count) if f is not None])
        recovery.drop_stage(self.conn, self.delivery_id)


def _copy_failure(exc: BaseException, fmt: decode.TextFormat, first_row: int = 1) -> BaseException:
    """What a failed COPY raises: a Rejection in a clerk's words for a file COPY cannot read, NotUtf8
    for a file that turned out not to be UTF-8, else the error itself. first_row: the data row
    number of the first row that COPY was given."""
    if isinstance(exc, psycopg.errors.CharacterNotInRepertoire) and fmt.encoding in decode.UTF8:
        return decode.NotUtf8()
    if isinstance(exc, psycopg.errors.DataError):
        return Rejection(_copy_problem(exc, first_row))
    return exc


def _copy_problem(exc: psycopg.Error, first_row: int = 1) -> str:
    """COPY's complaint about the file, in a clerk's words (data rows counted after the header)."""
    import re

    diag = exc.diag
    message = diag.message_primary if diag and diag.message_primary else str(exc)
    context = (diag.context or "") if diag else ""
    line = re.search(r"line (\d+)", context)
    where = f" (near data row {int(line.group(1)) + first_row - 1})" if line else ""
    if "extra data after last expected column" in message:
        return f"a row has more fields than the header{where}"
    if "missing data for column" in message:
        return f"a row has fewer fields than the header{where}"
    if "unterminated CSV quoted field" in message:
        return f"a quoted field is never closed (a missing \" character){where}"
    return f"the file cannot be read as CSV: {message}{where}"
