"""The GX suite of each feed and its validation of a checked table inside PostgreSQL."""
from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from pipelines import gx_validation
from pipelines.config import EXPECTATIONS_DIR, PROJECT_ROOT
from pipelines.contracts import all_contracts, load

CUTRU = load("CUTRU")
CODES = CUTRU.rejection_codes


def make_checked(url: str, table: str, codes: list[str], rows: list[dict]) -> None:
    """stage.<table> shaped like the checked pass's output: _row, rule_<code>..., a data column."""
    rule_cols = ", ".join(f"rule_{c} text" for c in codes)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema if not exists stage")
        conn.execute(f"create table stage.{table} (_row bigint, {rule_cols}, person_id text)")
        with conn.cursor() as cur:
            for n, row in enumerate(rows, 1):
                cols = ["_row", "person_id", *(f"rule_{c}" for c in row)]
                values = [n, f"{n:012d}", *row.values()]
                cur.execute(f"insert into stage.{table} ({', '.join(cols)}) "
                            f"values ({', '.join(['%s'] * len(values))})", values)


FAILING_ROWS = [
    {},
    {"invalid_date": "NGAY_SINH=31/02/1990"},
    {"invalid_date": "NGAY_CAP_NHAT=99/99/2024 10:00:00", "invalid_code": "GIOI_TINH=X"},
    {"missing_required": "HO_TEN"},
    {"invalid_code": "GIOI_TINH=<script>alert(1)</script>"},
    {"invalid_date": "NGAY_SINH=00/13/1990"},
    {"duplicate_key": "SO_DINH_DANH=001090000001"},
    {},
]
EXPECTED_FAILURES = {"missing_required": 1, "invalid_personal_id": 0, "invalid_date": 3, "invalid_code": 2,
                     "unknown_admin_unit": 0, "id_mismatch": 0, "duplicate_key": 1}


@pytest.fixture
def sql_log():
    """Every statement GX sends, with its parameters."""
    sent: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append((" ".join(statement.split()), parameters))

    event.listen(Engine, "before_cursor_execute", record)
    yield sent
    event.remove(Engine, "before_cursor_execute", record)


def _sample_limits(sent) -> dict[str, int]:
    """column -> LIMIT of GX's query for a sample of its offending values (max over the runs)."""
    limits: dict[str, int] = {}
    for statement, params in sent:
        m = re.match(r"SELECT (rule_\w+) AS unexpected_values .* LIMIT %\((\w+)\)s", statement)
        if m:
            limits[m[1]] = max(limits.get(m[1], 0), params[m[2]])
    return limits


def test_known_failures_give_exact_counts_and_an_escaped_report(warehouse, tmp_path, monkeypatch, capfd,
                                                                sql_log):
    make_checked(warehouse, "checked_1", CODES, FAILING_ROWS)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # nothing may be written where it runs
    report = tmp_path / "out" / "validation.html"

    result = gx_validation.validate(warehouse, "checked_1", CUTRU, report, schema="stage",
                                    title="CUTRU_01_20250101.csv <b>(delivery 1)</b>")

    assert result == {"success": False, "row_count": len(FAILING_ROWS), "unexpected": EXPECTED_FAILURES,
                      "report": str(report)}
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # the CLI prints JSON on stdout; no GX progress bars either
    assert list(work.iterdir()) == []
    assert not (PROJECT_ROOT / "gx").exists()

    page = report.read_text(encoding="utf-8")
    for code in CODES:
        assert f"rule_{code}" in page and f"{code}: " in page
    assert "NGAY_SINH=31/02/1990" in page
    assert "GIOI_TINH=&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert" not in page
    assert "&lt;b&gt;(delivery 1)&lt;/b&gt;" in page and "<b>(delivery 1)" not in page
    assert "127.0.0.1" not in page and "postgresql" not in page  # no connection details for the agency

    # Samples of offending values are fetched for the failed rules only: a sample query over a
    # clean rule column reads the whole table to find nothing.
    limits = _sample_limits(sql_log)
    assert {col for col, n in limits.items() if n} == {f"rule_{c}" for c, n in EXPECTED_FAILURES.items() if n}


@pytest.mark.parametrize("feed", sorted(all_contracts()))
def test_clean_table_passes_with_zero_counts(warehouse, tmp_path, feed, sql_log):
    contract = load(feed)
    make_checked(warehouse, "checked_2", contract.rejection_codes, [{}, {}, {}])

    result = gx_validation.validate(warehouse, "checked_2", contract, tmp_path / "v.html", title=feed)

    assert result["success"] is True
    assert result["row_count"] == 3
    assert result["unexpected"] == {code: 0 for code in contract.rejection_codes}
    assert list(result["unexpected"]) == contract.rejection_codes
    assert not any(_sample_limits(sql_log).values())  # one validation run, no sample queries
    assert (tmp_path / "v.html").exists()


def test_empty_table_fails_the_row_count(warehouse, tmp_path):
    make_checked(warehouse, "checked_3", CODES, [])

    result = gx_validation.validate(warehouse, "checked_3", CUTRU, tmp_path / "v.html", title="empty")

    assert result["success"] is False
    assert result["row_count"] == 0
    assert result["unexpected"] == {code: 0 for code in CODES}
    assert "row_count: the delivery must contain at least one row" in (tmp_path / "v.html").read_text()


def test_a_missing_rule_column_is_an_error_not_a_pass(warehouse, tmp_path):
    make_checked(warehouse, "checked_4", [c for c in CODES if c != "id_mismatch"], [{}])

    with pytest.raises(gx_validation.ValidationError, match="id_mismatch"):
        gx_validation.validate(warehouse, "checked_4", CUTRU, tmp_path / "v.html", title="x")


def test_suite_has_one_null_expectation_per_reason_code():
    suite = gx_validation.build_suite(CUTRU)
    assert suite.name == "cutru"
    *rules, table = suite.expectations
    assert [e.column for e in rules] == [f"rule_{c}" for c in CODES]
    assert all(type(e).__name__ == "ExpectColumnValuesToBeNull" for e in rules)
    assert [e.meta["code"] for e in rules] == CODES
    assert all(e.meta["description"].startswith(f"{e.meta['code']}: ") for e in rules)
    date_rule = rules[CODES.index("invalid_date")]
    assert date_rule.meta["description"] == "invalid_date: NGAY_SINH, NGAY_CAP_NHAT must be valid dates"
    assert type(table).__name__ == "ExpectTableRowCountToBeBetween" and table.min_value == 1


@pytest.mark.parametrize("feed", sorted(all_contracts()))
def test_suite_files_are_up_to_date(feed):
    path = EXPECTATIONS_DIR / f"{feed.lower()}.json"
    assert path.exists(), f"{path} missing: run `python -m pipelines.gx_validation`"
    assert json.loads(path.read_text(encoding="utf-8")) == gx_validation.suite_dict(load(feed)), (
        f"{path} is out of date with schemas/{feed.lower()}.yaml: run `python -m pipelines.gx_validation`")


def test_write_suites_is_stable(tmp_path):
    first = {p.name: p.read_bytes() for p in gx_validation.write_suites(tmp_path)}
    second = {p.name: p.read_bytes() for p in gx_validation.write_suites(tmp_path)}
    assert first == second
    assert set(first) == {f"{feed.lower()}.json" for feed in all_contracts()}
    for data in first.values():
        text = data.decode("utf-8")
        assert '"id"' not in text and "great_expectations_version" not in text
