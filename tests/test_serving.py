"""Serving downstream services: history as of any time, the change feed, open data, the data dictionary."""
from __future__ import annotations

import datetime as dt
import re

import psycopg
import pytest

from pipelines import dictionary
from pipelines.config import PROJECT_ROOT
from pipelines.contracts import all_contracts
from pipelines.roles import role_url
from population_helpers import CUTRU_HEADER, HOTICH_HEADER, deliver, event, person



def at(text: str) -> dt.datetime:
    """An instant in Viet Nam's local time (UTC+7)."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone(dt.timedelta(hours=7)))


def reader(warehouse: str) -> psycopg.Connection:
    conn = psycopg.connect(role_url(warehouse, "core_reader"), autocommit=True)
    conn.execute("set timezone = 'UTC'")
    return conn


def now(db) -> dt.datetime:
    return db.execute("select clock_timestamp()").fetchone()[0]


# -- history as of any time ------------------------------------------------------------------------
def test_person_as_of_answers_where_someone_lived_as_we_knew_it_then(warehouse, db, inbox):
    deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER,
            [person(ward="00004", updated="01/08/2025 10:00:00")])
    known_after_first = now(db)
    # the person moved on 1 October 2025; the warehouse learns it a week later
    deliver(inbox, "CUTRU_01_20261127_001.csv", CUTRU_HEADER,
            [person(ward="00097", address="5 Tràng Tiền", updated="01/10/2025 09:00:00")])
    with reader(warehouse) as conn:
        def ward(valid_at, known_at=None):
            sql = ("select residence_ward_code from history.person_as_of(%s) where person_id = '001090000001'"
                   if known_at is None else
                   "select residence_ward_code from history.person_as_of(%s, %s) where person_id = '001090000001'")
            args = (valid_at,) if known_at is None else (valid_at, known_at)
            return [r[0] for r in conn.execute(sql, args).fetchall()]

        assert ward(at("2025-07-31T12:00")) == []                  # not yet in the register
        assert ward(at("2025-08-01T10:00")) == ["00004"]           # valid from is inclusive
        assert ward(at("2025-09-15T00:00")) == ["00004"]
        assert ward(at("2025-10-01T09:00")) == ["00097"]           # valid to is exclusive
        assert ward(at("2026-01-01T00:00")) == ["00097"]
        # as we knew it after the first delivery: the move was not known yet
        assert ward(at("2026-01-01T00:00"), known_after_first) == ["00004"]
        assert ward(at("2025-09-15T00:00"), known_after_first) == ["00004"]
        # before anything was loaded the warehouse knew nothing
        assert ward(at("2026-01-01T00:00"), at("2020-01-01T00:00")) == []

        # the same columns, names and types, as core.person; as of now it is core.person
        as_of = conn.execute("select * from history.person_as_of(now()) order by person_id")
        current = conn.execute("select * from core.person order by person_id")
        assert [(d.name, d.type_code) for d in as_of.description] == [(d.name, d.type_code) for d in current.description]
        assert as_of.fetchall() == current.fetchall()


def test_as_of_of_a_death_and_of_civil_events(warehouse, db, inbox):
    deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, [person(updated="01/08/2025 10:00:00")])
    deliver(inbox, "HOTICH_01_20261121_001.csv", HOTICH_HEADER,
            [event(no="HT-1", kind="KHAI_TU", date="10/10/2026", registered="11/10/2026")])
    with reader(warehouse) as conn:
        def death(valid_at):
            return conn.execute("select death_date from history.person_as_of(%s)", (valid_at,)).fetchall()

        assert death(at("2026-10-09T12:00")) == [(None,)]
        assert death(at("2026-10-10T00:00")) == [(dt.date(2026, 10, 10),)]
        events = conn.execute("select province_code, event_no, event_type from history.civil_event_as_of(%s)",
                              (at("2026-10-10T00:00"),)).fetchall()
        assert events == [("01", "HT-1", "death")]
        assert conn.execute("select count(*) from history.civil_event_as_of(%s)",
                            (at("2026-10-09T23:59"),)).fetchone() == (0,)
        as_of = conn.execute("select * from history.civil_event_as_of(now())")
        current = conn.execute("select * from core.civil_event")
        assert [d.name for d in as_of.description] == [d.name for d in current.description]
        assert as_of.fetchall() == current.fetchall()


def test_as_of_is_inlined_so_a_key_filter_uses_the_index(db):
    plan = "\n".join(r[0] for r in db.execute(
        "explain select * from history.person_as_of(now()) where person_id = '001090000001'").fetchall())
    assert "Function Scan" not in plan and "person_versions" in plan


# -- the change feed ---------------------------------------------------------------------------------
def test_a_downstream_service_syncs_incrementally_from_the_change_feed(warehouse, db, inbox):
    deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER,
            [person(pid="001090000001"), person(pid="001090000002", name="Lê Thị Cúc", sex="Nam")])
    feed = "select seq, entity, entity_key, operation from core.changes where seq > %s order by seq"
    with reader(warehouse) as conn:
        first = conn.execute(feed, (0,)).fetchall()
        assert sorted((e, k, op) for _, e, k, op in first) == [("person", "001090000001", "insert"),
                                                                ("person", "001090000002", "insert")]
        last_seen = first[-1][0]
        # next week: one moved, one left the province's snapshot, one is new; then a death
        deliver(inbox, "CUTRU_01_20261127_001.csv", CUTRU_HEADER,
                [person(pid="001090000001", ward="00097"), person(pid="001090000003", name="Phạm Văn Dũng")])
        deliver(inbox, "HOTICH_01_20261128_001.csv", HOTICH_HEADER,
                [event(no="HT-9", pid="001090000003", name="Phạm Văn Dũng")])
        second = conn.execute(feed, (last_seen,)).fetchall()
        assert sorted((e, k, op) for _, e, k, op in second) == sorted([
            ("person", "001090000001", "update"), ("person", "001090000002", "delete"),
            ("person", "001090000003", "insert"), ("civil_event", "01|HT-9", "insert"),
            ("person", "001090000003", "update")])
        assert [s for s, *_ in second] == sorted(s for s, *_ in second) and second[0][0] > last_seen
        last_seen = second[-1][0]
        # the same delivery again under a new name changes nothing: nothing to sync
        deliver(inbox, "CUTRU_01_20261127_002.csv", CUTRU_HEADER,
                [person(pid="001090000001", ward="00097"), person(pid="001090000003", name="Phạm Văn Dũng")])
        assert conn.execute(feed, (last_seen,)).fetchall() == []
        # what a sync does with each change: read the key's current row (none after a delete)
        assert conn.execute("select residence_ward_code from core.person where person_id = '001090000001'"
                            ).fetchone() == ("00097",)
        assert conn.execute("select 1 from core.person where person_id = '001090000002'").fetchone() is None


# -- open data -----------------------------------------------------------------------------------------
def test_population_counts_suppress_small_groups_and_leave_out_the_dead(warehouse, db, inbox):
    men = [person(pid=f"00109000000{i}", name=f"Người {i}") for i in range(1, 7)]        # 6 men born 1990
    women = [person(pid="001190000007", name="Trần Thị Bình", sex="Nữ", born="00/05/1990")]
    deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, men + women)
    with psycopg.connect(role_url(warehouse, "core_public"), autocommit=True) as public:
        query = ("select ward_code, ward_name is not null, province_code, sex, age_from, age_band, persons "
                 "from open_data.population_by_ward order by sex")
        assert public.execute(query).fetchall() == [
            ("00004", True, "01", "female", 35, "35-39", None),   # one woman: suppressed
            ("00004", True, "01", "male", 35, "35-39", 6)]
        deliver(inbox, "HOTICH_01_20261121_001.csv", HOTICH_HEADER, [event(pid="001090000001", name="Người 1")])
        assert public.execute(query).fetchall()[1][-1] == 5
        deliver(inbox, "HOTICH_01_20261122_001.csv", HOTICH_HEADER, [event(no="HT-2", pid="001090000002", name="Người 2")])
        assert public.execute(query).fetchall()[1][-1] is None


def _enterprise_missing() -> bool:
    return not any(c.entity == "enterprise" for c in all_contracts().values())


DKKD_HEADER = ["MA_SO_DN", "TEN_DN", "LOAI_HINH", "NGAY_THANH_LAP", "TINH_TRANG", "VON_DIEU_LE",
               "MA_TINH_TRU_SO", "MA_XA_TRU_SO", "DIA_CHI_TRU_SO", "SO_DINH_DANH_NDD", "HO_TEN_NDD"]
ENTERPRISES = [  # (code, name, legal form, status, representative's personal ID)
    ("0100109106", "Công ty Cổ phần Sông Hồng", "Công ty cổ phần", "Đang hoạt động", "001090000001"),
    ("0100100079", "Công ty TNHH Ba Đình", "Công ty TNHH một thành viên", "Tạm ngừng kinh doanh", "001191000002"),
    ("0100109106-001", "Chi nhánh Hoàn Kiếm", "Chi nhánh", "Đang hoạt động", "001090000001"),
]


def deliver_enterprises(folder) -> dict:
    """A small DKKD delivery (hand-made: exact values) naming legal representatives by personal ID."""
    rows = [[code, name, form, "01/01/2010", status, "1000000000", "01", "00004", "1 Tràng Tiền", rep, "Nguyễn Văn An"]
            for code, name, form, status, rep in ENTERPRISES]
    return deliver(folder, "DKKD_01_20261120_001.csv", DKKD_HEADER, rows)


@pytest.mark.skipif(_enterprise_missing(), reason="the enterprise feed (DKKD, core.enterprise) is not built yet: "
                                                   "this test runs as soon as schemas/dkkd.yaml exists")
def test_open_data_enterprise_has_no_personal_id(warehouse, db, inbox):
    receipt = deliver_enterprises(inbox)
    assert receipt["rows_loaded"] == len(ENTERPRISES), receipt
    ids = {e[4] for e in ENTERPRISES}
    with psycopg.connect(role_url(warehouse, "core_public"), autocommit=True) as public:
        cur = public.execute("select * from open_data.enterprise order by 1")
        rows = cur.fetchall()
        assert len(rows) == len(ENTERPRISES)
        values = {str(v) for row in rows for v in row if v is not None}
        assert {"0100109106", "active", "suspended"} <= values      # the register and its status are public
        assert not values & ids                                     # representatives' personal IDs are not
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            public.execute("select * from core.enterprise")
    with reader(warehouse) as conn:                                 # core_reader sees them
        assert {r[0] for r in conn.execute("select legal_rep_person_id from core.enterprise")} == ids


# -- the data dictionary --------------------------------------------------------------------------------
def test_data_dictionary_is_up_to_date(db):
    expected = dictionary.generate(db)
    committed = dictionary.DICTIONARY.read_text(encoding="utf-8") if dictionary.DICTIONARY.exists() else ""
    assert committed == expected, "docs/data-dictionary.md is out of date: run .venv/bin/python -m pipelines.dictionary"


def test_data_dictionary_covers_every_feed_and_published_column(db):
    text = dictionary.generate(db)
    for contract in all_contracts().values():
        assert f"### {contract.feed}: {contract.title}" in text
        for col in contract.columns:
            assert f"`{col.source}`" in text
    views = db.execute("select table_schema || '.' || table_name from information_schema.views "
                       "where table_schema in ('core', 'history', 'open_data')").fetchall()
    for (view,) in views:
        assert f"### {view}\n" in text
    # every column of a population view is described (a contract, a comment or the load)
    for view in ("core.person", "history.person", "core.civil_event", "history.civil_event", "core.changes",
                 "open_data.population_by_ward"):
        section = text.split(f"### {view}\n", 1)[1].split("\n### ", 1)[0]
        assert "(undocumented)" not in section, view
    assert "| `birth_date` | date | Date of birth" in text
    assert "| `death_date` | date |" in text and "HOTICH (effect on person)" in text


# -- the README's worked queries run as written -------------------------------------------------------
def test_readme_downstream_queries_run_as_core_reader(warehouse, db, inbox):
    deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, [person()])
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## For downstream services", 1)[1]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    statements = [s.strip() for b in blocks for s in re.sub(r"--[^\n]*", "", b).split(";") if s.strip()]
    assert len(statements) >= 3
    with reader(warehouse) as conn:
        for sql in statements:
            conn.execute(sql.replace(":last_seen", "0"))
        assert conn.execute(statements[0]).fetchone()[0] == "001090000001"
