"""Generated deliveries (every quirk, known defects) give exactly the receipts their manifests predict."""
from __future__ import annotations

import datetime as dt

import pytest

from pipelines.generate import generate, snapshot_changes
from pipelines.ingest import ingest_file


@pytest.mark.parametrize("options", [
    dict(encoding="utf-8-sig", crlf=True, repeat_header_at=300, trailing_blank_lines=3),
    dict(encoding="cp1258", crlf=True),
    dict(encoding="utf-16", crlf=True),
    dict(encoding="utf-8", quirks=False),
], ids=["utf8-bom-crlf-repeated-header", "windows-1258", "utf16-excel", "plain"])
def test_cutru_receipt_matches_manifest(warehouse, db, inbox, options):
    m = generate("CUTRU", 1000, "79", 0.05, inbox, date=dt.date(2026, 11, 20), seed=7, **options)
    r = ingest_file(m["path"])
    assert r["rows_read"] == m["rows_read"] == 1000
    assert r["rejections"] == m["rejections"]
    assert r["rows_quarantined"] == m["defect_rows"]
    assert r["rows_loaded"] == 1000 - m["defect_rows"]
    assert r["rows_read"] == r["rows_loaded"] + r["rows_quarantined"]
    assert db.execute("select count(*) from core.person").fetchone()[0] == r["changes"]["new"]
    assert db.execute("select count(*) from quarantine.row").fetchone()[0] == m["defect_rows"]
    # every current ward is a real current unit
    assert db.execute("select count(*) from core.person p left join ref.admin_unit u on u.code = "
                      "p.residence_ward_code and u.level = 'ward' and u.valid_to is null "
                      "where u.code is null").fetchone() == (0,)


def test_hotich_receipt_matches_manifest(warehouse, db, inbox):
    people = generate("CUTRU", 300, "01", 0.0, inbox, date=dt.date(2026, 11, 13), seed=3)
    ingest_file(people["path"])
    ids = [r[0] for r in db.execute("select person_id from core.person order by 1 limit 100")]
    m = generate("HOTICH", 400, "01", 0.05, inbox, date=dt.date(2026, 11, 20), seed=4, person_ids=ids)
    r = ingest_file(m["path"])
    assert (r["rows_read"], r["rows_quarantined"]) == (400, m["defect_rows"])
    assert r["rejections"] == m["rejections"]
    deaths = db.execute("select count(*) from core.civil_event e join core.person p using (person_id) "
                        "where e.event_type = 'death'").fetchone()[0]
    assert db.execute("select count(*) from core.person where death_date is not null").fetchone()[0] == deaths


def test_weekly_snapshot_changes_are_counted_exactly(warehouse, db, inbox, tmp_path):
    week1 = generate("CUTRU", 2000, "01", 0.0, inbox, date=dt.date(2026, 11, 13), seed=11)
    assert ingest_file(week1["path"])["changes"] == {"new": 2000, "changed": 0, "unchanged": 0, "removed": 0}
    week2 = snapshot_changes(week1["path"], tmp_path, changed=0.02, removed=0.01, new=0.01, seed=2,
                             date=dt.date(2026, 11, 20))
    r = ingest_file(week2["path"])
    assert r["changes"] == {"new": week2["new"], "changed": week2["changed"],
                            "unchanged": week2["unchanged"], "removed": week2["removed"]}
    assert db.execute("select count(*) from core.person").fetchone()[0] == 2000 - week2["removed"] + week2["new"]


def test_a_delivery_checked_in_parallel_ranges_gives_the_same_result(warehouse, db, inbox, monkeypatch):
    """Large deliveries are checked range by range on several connections: the receipt, the
    quarantine and the core are exactly those of one connection (duplicates across ranges too)."""
    import pipelines.ingest as ingest

    m = generate("CUTRU", 3000, "79", 0.05, inbox, date=dt.date(2026, 11, 20), seed=7, repeat_header_at=1500)
    monkeypatch.setattr(ingest, "PARALLEL_MIN_ROWS", 0)
    monkeypatch.setenv("COREHUB_PARALLEL", "3")
    r = ingest_file(m["path"])
    assert (r["rows_read"], r["rows_quarantined"]) == (3000, m["defect_rows"])
    assert r["rejections"] == m["rejections"] and m["rejections"].get("duplicate_key")
    parallel = db.execute("select person_id, full_name, birth_date, residence_ward_code from core.person "
                          "order by 1").fetchall()
    quarantined = db.execute("select row_no, reasons, detail from quarantine.row order by 1").fetchall()

    db.execute("truncate store.person, quarantine.row, store.change_log")
    db.execute("delete from meta.delivery")
    monkeypatch.setenv("COREHUB_PARALLEL", "1")
    again = ingest_file(m["path"])
    assert {k: again[k] for k in ("rows_read", "rows_quarantined", "rejections", "changes")} == \
        {k: r[k] for k in ("rows_read", "rows_quarantined", "rejections", "changes")}
    assert db.execute("select person_id, full_name, birth_date, residence_ward_code from core.person "
                      "order by 1").fetchall() == parallel
    assert db.execute("select row_no, reasons, detail from quarantine.row order by 1").fetchall() == quarantined
