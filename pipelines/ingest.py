"""One delivery end to end: archive -> decode -> stage (COPY) -> checked pass -> GX -> quarantine
-> conform -> bitemporal merge -> receipt. The CLI and the Airflow task both call ingest_file().

The core data changes in one transaction at the end, so a delivery is either published whole or
not at all. A bad file gets a `rejected` receipt whose reason a clerk can act on, never a traceback.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path

import psycopg
from psycopg import sql

from . import checks, contracts, decode, delivery, history, hooks, reports, warehouse
from .config import Settings, settings
from .contracts import Contract, ContractError
from .delivery import Rejection
from .migrations import ensure_ready

log = logging.getLogger(__name__)

CHANGES_NONE = {"new": 0, "changed": 0, "unchanged": 0, "removed": 0}


def connect(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("set timezone = 'UTC'")  # content hashes render timestamps as text
    return conn


def already_processed(paths: list[str | Path]) -> set[str]:
    """The paths among these whose exact bytes were delivered before (so a rerun skips them)."""
    import hashlib

    digests = {}
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        digests[h.hexdigest()] = str(p)
    url = warehouse.url()
    ensure_ready(url)
    with connect(url) as conn:
        done = conn.execute("select sha256 from meta.delivery where sha256 = any(%s) and status <> 'processing'",
                            (list(digests),)).fetchall()
    return {digests[d] for (d,) in done}


def _preload_gx() -> None:
    """Import Great Expectations (seconds of imports) in a thread while the file is staged and checked."""
    import threading

    def load():
        try:
            from . import gx_validation  # noqa: F401
        except Exception:  # the validate stage imports it again and reports properly
            pass
    threading.Thread(target=load, name="gx-import", daemon=True).start()


def ingest_file(path: str | Path, s: Settings | None = None) -> dict:
    """Process one delivery now; returns its receipt (also written next to its report)."""
    _preload_gx()
    s = s or settings()
    path = Path(path)
    url = warehouse.url(s)
    ensure_ready(url)
    started = time.monotonic()
    archived = delivery.archive(path, s.archive)
    with connect(url) as conn:
        previous = conn.execute(
            "select delivery_id, feed, receipt from meta.delivery where sha256 = %s and status <> 'processing'",
            (archived.sha256,)).fetchone()
        if previous:
            receipt = _duplicate_receipt(previous, path, archived)
            log.info("%s: same bytes as delivery %s: duplicate", path.name, previous[0])
            return receipt
        run = Run(conn, s, url, path, archived)
        try:
            receipt = run.execute()
        except Rejection as exc:
            receipt = run.reject(str(exc))
        finally:
            run.drop_stage()
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
        import contextlib

        @contextlib.contextmanager
        def timed():
            t = time.monotonic()
            yield
            self.stages[stage] = round(time.monotonic() - t, 3)
            log.info("stage %s: %.2f s", stage, self.stages[stage])
        return timed()


class Run:
    """The state of one delivery being processed."""

    def __init__(self, conn: psycopg.Connection, s: Settings, url: str, path: Path, archived):
        self.conn, self.s, self.url, self.path, self.archived = conn, s, url, path, archived
        self.timer = _Timer()
        self.contract: Contract | None = None
        self.name = None
        self.delivery_id = self._register()
        self.report_dir = s.reports / (self._feed_guess() or "UNKNOWN") / str(self.delivery_id)
        self.raw = f"stage.raw_{self.delivery_id}"
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
            "values (%s, %s, %s, %s, %s, %s) returning delivery_id",
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
        fmt, pieces = decode.open_delivery(self.archived.path, self.name.ext, self.contract)
        with self.timer("stage"):
            try:
                present = self._stage(fmt, pieces)
            except decode.NotUtf8:  # past its first 64 KiB the file was not UTF-8 after all
                self.conn.execute(f"drop table {self.raw}")
                fmt, pieces = decode.open_delivery(self.archived.path, self.name.ext, self.contract, "cp1258")
                present = self._stage(fmt, pieces)
        with self.timer("check"):
            self._check(present)
        with self.timer("validate"):
            gx = self._validate()
        with self.timer("count"):
            counts = self._count()
        if counts["rows_read"] == 0:
            raise Rejection("the file has a header but no data rows")
        return self._publish(counts, gx, fmt)

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
        col_defs = ", ".join(f"{c} text" for c in all_cols)
        self.conn.execute(f"create unlogged table {self.raw} (_row bigint generated always as identity, {col_defs})")
        copy = sql.SQL("copy {} ({}) from stdin (format csv, delimiter {})").format(
            sql.SQL(self.raw), sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Literal(fmt.delimiter))
        try:
            with self.conn.cursor().copy(copy) as cp:
                for piece in pieces:
                    cp.write(piece if isinstance(piece, bytes) else piece.encode("utf-8"))
        except psycopg.errors.CharacterNotInRepertoire:
            if fmt.encoding in ("utf-8", "utf-8-sig"):
                raise decode.NotUtf8() from None
            raise
        except psycopg.errors.DataError as exc:
            raise Rejection(_copy_problem(exc)) from None
        present = {c.source for c in self.contract.columns if checks.stage_column(c) in columns}
        return present

    def _check(self, present: set[str]) -> None:
        c = self.contract
        constants = {name: self.name.province for name in c.derived}
        rows = self.raw
        if "raw_hash" in history.stored_columns(self.conn, c.entity):
            # rows sent again byte for byte are known good: only the others are checked
            self.conn.execute(checks.known_sql(c, self.raw, self.known, present, constants, f"store.{c.entity}"),
                              {"scope": self.name.province})
            rows = self.unknown
            self.conn.execute(checks.unknown_sql(self.raw, rows, self.known))
            clashes = self.conn.execute(checks.unknown_clashes_sql(c, self.known, rows, present, constants)).rowcount
            if clashes:
                self.conn.execute(f"drop table {rows}")
                self.conn.execute(checks.unknown_sql(self.raw, rows, self.known))
            self.conn.execute(f"analyze {rows}")
        self.conn.execute(checks.repeated_sql(c, rows, self.repeated, present, constants))
        self.conn.execute(checks.checked_sql(c, rows, self.checked, present, constants, self.repeated))
        self.conn.execute(f"analyze {self.checked}")

    def _validate(self) -> dict:
        from . import gx_validation

        self.report_dir.mkdir(parents=True, exist_ok=True)
        return gx_validation.validate(self.url, f"checked_{self.delivery_id}", self.contract,
                                      self.report_dir / "validation.html", schema="stage",
                                      title=f"{self.path.name} (delivery {self.delivery_id})")

    def _count(self) -> dict:
        codes = self.contract.rejection_codes
        parts = ", ".join(f"count(rule_{c})" for c in codes)
        row = self.conn.execute(
            f"select count(*), count(*) filter (where _failed), {parts} from {self.checked}").fetchone()
        known = self.conn.execute(f"select count(*) from {self.known}").fetchone()[0] if self._exists(self.known) else 0
        if known:
            log.info("%s rows sent again byte for byte: known good, not checked again", known)
        return {"rows_read": row[0] + known, "rows_quarantined": row[1],
                "rejections": {c: n for c, n in zip(codes, row[2:]) if n}}

    def _exists(self, table: str) -> bool:
        return self.conn.execute("select to_regclass(%s) is not null", (table,)).fetchone()[0]

    def _publish(self, counts: dict, gx: dict, fmt) -> dict:
        c = self.contract
        target = history.Target(c.entity, c.key, c.ignore_in_hash)
        with self.conn.transaction():
            with self.timer("quarantine"):
                self._quarantine()
            with self.timer("conform"):
                self._accept(target)
            snapshot = c.mode == "snapshot"
            with self.timer("merge"):
                changes = history.merge(
                    self.conn, target, self.accepted, self.delivery_id,
                    snapshot_scope=self.name.province if snapshot else None,
                    snapshot_at=dt.datetime.combine(self.name.date, dt.time(), dt.timezone(dt.timedelta(hours=7))),
                    keep_keys=f"select _key from {self.checked} where _failed and _key <> ''" if snapshot else None,
                    known_versions=f"select version_id from {self.known}" if self._exists(self.known) else None)
                self._effects()
                self._after_merge()
            findings = self._findings()
            status = "loaded_with_rejections" if counts["rows_quarantined"] else "loaded"
            receipt = self._receipt(status, counts, findings, changes)
            reports.write_rejected_csv(self.conn, self.delivery_id, self.file_columns, self.report_dir / "rejected.csv")
            self._finish(status, receipt)
        reports.write_outputs(receipt, self.report_dir, gx=gx, encoding=fmt.encoding)
        return receipt

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
            self.conn.execute(f"create unlogged table {table} as "
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

    def drop_stage(self) -> None:
        self.conn.execute(f"drop view if exists {self.accepted}")
        for table in (self.raw, self.checked, self.repeated, self.known, self.unknown):
            self.conn.execute(f"drop table if exists {table}")


def _copy_problem(exc: psycopg.Error) -> str:
    """COPY's complaint about the file, in a clerk's words (data rows counted after the header)."""
    import re

    diag = exc.diag
    message = diag.message_primary if diag and diag.message_primary else str(exc)
    context = (diag.context or "") if diag else ""
    line = re.search(r"line (\d+)", context)
    where = f" (near data row {line.group(1)})" if line else ""
    if "extra data after last expected column" in message:
        return f"a row has more fields than the header{where}"
    if "missing data for column" in message:
        return f"a row has fewer fields than the header{where}"
    if "unterminated CSV quoted field" in message:
        return f"a quoted field is never closed (a missing \" character){where}"
    return f"the file cannot be read as CSV: {message}{where}"
