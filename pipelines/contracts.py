"""Feed contracts: the YAML files under schemas/, loaded and checked.

A contract is the single definition of a feed's rules. Staging, the checked pass, the GX suite,
the quarantine, conform, history and the data dictionary are all derived from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from .config import SCHEMAS_DIR
from .rules import TYPES

MODES = ("snapshot", "delta")


class ContractError(ValueError):
    pass


@dataclass(frozen=True)
class Column:
    source: str            # header name on the wire
    to: str                # conformed column name
    type: str              # a key of rules.TYPES
    required: bool = False
    required_when: str | None = None  # SQL over conformed columns
    codes: str | None = None           # code list name, for type code
    default: str | None = None
    province: str | None = None        # for ward_code: the source column with the province code
    doc: str = ""

    @property
    def rule(self):
        return TYPES[self.type]


@dataclass(frozen=True)
class RowRule:
    code: str
    fails: str             # SQL over conformed columns; true when the row breaks the rule
    inputs: tuple[str, ...]
    doc: str = ""


@dataclass(frozen=True)
class Contract:
    feed: str
    title: str
    agency: str
    entity: str
    mode: str
    key: tuple[str, ...]
    record_date: str
    valid_from: str
    formats: tuple[str, ...]
    columns: tuple[Column, ...]
    rules: tuple[RowRule, ...]
    publish: tuple[str, ...]
    code_lists: dict = field(default_factory=dict)
    findings: tuple[dict, ...] = ()
    derived: dict = field(default_factory=dict)
    enrich: dict = field(default_factory=dict)     # join: SQL joined to the accepted row `a`; columns: stored column -> SQL
    effects: tuple[dict, ...] = ()                 # merges into other entities after this feed's
    ignore_in_hash: tuple[str, ...] = ()           # stored columns whose change alone is no new version
    after_merge: str | None = None                 # "module:function" run after the merge (land overlaps)
    after: tuple[str, ...] = ()                    # feeds whose deliveries are run first (GCN after TDDAT)
    path: Path | None = None

    @property
    def required_sources(self) -> list[str]:
        return [c.source for c in self.columns if c.required]

    @property
    def has_geometry(self) -> bool:
        """Whether its rows carry a geometry (land parcels: read by pipelines.land)."""
        return any(c.type == "geometry_error" for c in self.columns)

    def column(self, to: str) -> Column:
        return next(c for c in self.columns if c.to == to)

    @property
    def rejection_codes(self) -> list[str]:
        """Every reason code a row of this feed can be quarantined for, in a stable order."""
        codes = []
        if any(c.required or c.required_when for c in self.columns):
            codes.append("missing_required")
        for c in self.columns:
            if c.rule.code and c.rule.code not in codes:
                codes.append(c.rule.code)
        for r in self.rules:
            if r.code not in codes:
                codes.append(r.code)
        codes.append("duplicate_key")
        return codes


def _column(source: str, spec: dict) -> Column:
    unknown = set(spec) - {"to", "type", "required", "required_when", "codes", "default", "province", "doc"}
    if unknown:
        raise ContractError(f"column {source}: unknown settings {sorted(unknown)}")
    col = Column(source=source.upper(), **spec)
    if col.type not in TYPES:
        raise ContractError(f"column {source}: unknown type {col.type!r}; known: {sorted(TYPES)}")
    return col


def parse(data: dict, path: Path | None = None) -> Contract:
    try:
        columns = tuple(_column(name, spec) for name, spec in data["columns"].items())
        rules = tuple(RowRule(code=r["code"], fails=r["fails"], inputs=tuple(r.get("inputs", ())),
                              doc=r.get("doc", "")) for r in data.get("rules") or ())
        contract = Contract(
            feed=data["feed"].upper(), title=data["title"], agency=data["agency"], entity=data["entity"],
            mode=data["mode"], key=tuple(data["key"]), record_date=data["record_date"],
            valid_from=data["valid_from"], formats=tuple(data["formats"]), columns=columns, rules=rules,
            publish=tuple(data["publish"]), code_lists=data.get("code_lists") or {},
            findings=tuple(data.get("findings") or ()), derived=data.get("derived") or {},
            enrich=data.get("enrich") or {}, effects=tuple(data.get("effects") or ()),
            ignore_in_hash=tuple(data.get("ignore_in_hash") or ()), after_merge=data.get("after_merge"),
            after=tuple(f.upper() for f in data.get("after") or ()), path=path)
    except KeyError as exc:
        raise ContractError(f"{path}: missing {exc.args[0]}") from None
    if contract.mode not in MODES:
        raise ContractError(f"{path}: mode must be one of {MODES}")
    for col in columns:
        if col.type == "code" and col.codes not in contract.code_lists:
            raise ContractError(f"{path}: column {col.source} names unknown code list {col.codes!r}")
    return contract


def _read_yaml(path: Path) -> dict:
    """A contract file; with libyaml's parser where PyYAML has it (five contracts: 0.13 s -> 0.02 s,
    which every ingest process pays)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader


@lru_cache(maxsize=None)
def all_contracts() -> dict[str, Contract]:
    """Every feed's contract, keyed by feed name, in the order their deliveries are run: by file
    name, except that a feed comes after the feeds its contract names in `after`."""
    found = {}
    for path in sorted(SCHEMAS_DIR.glob("*.yaml")):
        contract = parse(_read_yaml(path), path)
        found[contract.feed] = contract
    out: dict[str, Contract] = {}
    while len(out) < len(found):
        ready = [f for f, c in found.items() if f not in out and all(a in out or a not in found for a in c.after)]
        if not ready:
            raise ContractError(f"the contracts' `after` lists form a cycle: {sorted(set(found) - set(out))}")
        out[ready[0]] = found[ready[0]]
    return out


def load(feed: str) -> Contract:
    try:
        return all_contracts()[feed.upper()]
    except KeyError:
        raise ContractError(f"unknown feed {feed!r}; known feeds: {', '.join(all_contracts())}") from None


def for_entity(entity: str) -> Contract:
    """The contract whose feed owns an entity (e.g. person -> CUTRU)."""
    return next(c for c in all_contracts().values() if c.entity == entity)
