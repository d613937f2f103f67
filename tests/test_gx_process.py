"""A large delivery's GX runs in a process of its own (pipelines.gx_process): it validates what the
checked pass found, its failures fail the delivery, and it never outlives the ingest."""
from __future__ import annotations

import datetime as dt

import pytest

import pipelines.ingest as ingest
from pipelines import gx_process
from pipelines.generate import generate
from pipelines.gx_process import GxProcess, ValidationError
from pipelines.ingest import ingest_file


@pytest.fixture
def processes(monkeypatch):
    """Every file is large enough for GX's own process; the processes started, and their replies."""
    monkeypatch.setattr(ingest, "PRELOAD_MAX_BYTES", 0)
    started, replies = [], []
    init, validate = GxProcess.__init__, GxProcess.validate

    def spawn(self):
        init(self)
        started.append(self)

    def answer(self, *args, **kwargs):
        replies.append(validate(self, *args, **kwargs))
        return replies[-1]
    monkeypatch.setattr(GxProcess, "__init__", spawn)
    monkeypatch.setattr(GxProcess, "validate", answer)
    return started, replies


def test_a_large_delivery_is_validated_by_gx_in_a_process_of_its_own(warehouse, db, inbox, processes):
    made = generate("CUTRU", 400, "01", 0.05, inbox, date=dt.date(2026, 11, 13), seed=5)
    r = ingest_file(made["path"])
    started, replies = processes
    assert r["status"] == "loaded_with_rejections"
    assert (r["rows_read"], r["rows_loaded"] + r["rows_quarantined"]) == (400, 400)
    # GX's own SQL over the checked rows counts what the checked pass rejected, rule by rule
    assert len(started) == 1 and len(replies) == 1
    assert replies[0]["success"] is False and replies[0]["row_count"] == 400
    assert {code: n for code, n in replies[0]["unexpected"].items() if n} == r["rejections"]
    report = (inbox.parent / "home").glob(f"**/{r['delivery_id']}/validation.html")
    page = next(report).read_text(encoding="utf-8")
    assert all(f"rule_{code}" in page for code in r["rejections"]) and len(r["rejections"]) > 3
    assert started[0].proc.poll() is not None  # ended with the ingest
    assert db.execute("select count(*) from store.person").fetchone() == (r["rows_loaded"],)


def test_when_gx_s_process_ends_before_it_answers_nothing_is_published(warehouse, db, inbox, processes,
                                                                       monkeypatch):
    made = generate("CUTRU", 300, "01", 0.0, inbox, date=dt.date(2026, 11, 13), seed=6)
    answer = GxProcess.validate

    def killed_first(self, *args, **kwargs):
        self.proc.kill()
        return answer(self, *args, **kwargs)
    monkeypatch.setattr(GxProcess, "validate", killed_first)
    with pytest.raises(ValidationError, match=r"^the GX process ended \(exit code -9\) before it validated checked_\d+$"):
        ingest_file(made["path"])
    assert db.execute("select (select count(*) from store.person), (select count(*) from core.changes), "
                      "(select count(*) from pg_tables where schemaname = 'stage')").fetchone() == (0, 0, 0)

    monkeypatch.setattr(GxProcess, "validate", answer)
    r = ingest_file(made["path"])
    assert (r["status"], r["rows_loaded"], r["changes"]["new"]) == ("loaded", 300, 300)


def test_gx_s_error_in_its_process_is_raised_in_the_ingest(warehouse, tmp_path):
    gx = GxProcess()
    try:
        with pytest.raises(ValidationError, match="checked_404"):
            gx.validate(warehouse, "checked_404", "CUTRU", tmp_path / "v.html", title="missing")
        assert gx.proc.poll() is None  # it answered and waits for the next request
    finally:
        gx.close()
    assert gx.proc.returncode is not None


def test_a_rejected_file_does_not_wait_for_gx_s_process(warehouse, inbox, processes):
    bad = inbox / "CUTRU_01_20261113_001.csv"
    bad.write_text("SO_DINH_DANH;HO_TEN\n001090000001;A\n", encoding="utf-8")
    r = ingest_file(bad)
    started, replies = processes
    assert r["status"] == "rejected" and replies == []
    assert started[0].proc.returncode is not None


def test_gx_s_process_lowers_its_own_priority_only(monkeypatch, tmp_path):
    """Its scheduling group (a session of its own) goes to nice 19 where Linux has autogroups."""
    written = []

    class Group:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, text):
            written.append(text)
    monkeypatch.setattr(gx_process, "open", lambda path, mode: Group() if path == "/proc/self/autogroup" else None,
                        raising=False)
    gx_process._lowest_priority()
    assert written == ["19"]


def test_a_snapshot_sent_again_whole_ends_its_gx_process_unasked_and_next_week_s_asks(warehouse, inbox, tmp_path,
                                                                                     processes):
    from pipelines.generate import snapshot_changes
    from test_bulk_loading import sent_again

    week1 = generate("CUTRU", 300, "01", 0.0, inbox, date=dt.date(2026, 11, 13), seed=7)
    ingest_file(week1["path"])
    again = ingest_file(sent_again(week1["path"], tmp_path, "CUTRU_01_20261113_002.csv"))
    started, replies = processes
    assert again["changes"]["unchanged"] == 300 and (len(started), len(replies)) == (2, 1)
    assert started[1].proc.returncode is not None
    week2 = snapshot_changes(week1["path"], tmp_path / "w2", changed=0.02, removed=0.0, new=0.01, seed=2,
                             date=dt.date(2026, 11, 20))
    r = ingest_file(week2["path"])
    assert r["changes"] == {"new": 3, "changed": 6, "unchanged": 294, "removed": 0}
    assert (len(started), len(replies)) == (3, 2) and replies[1]["row_count"] == 9


def test_where_no_process_can_be_started_gx_runs_in_the_ingest(warehouse, db, inbox, monkeypatch, caplog):
    monkeypatch.setattr(ingest, "PRELOAD_MAX_BYTES", 0)

    def refused(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(gx_process.subprocess, "Popen", refused)
    made = generate("CUTRU", 200, "01", 0.05, inbox, date=dt.date(2026, 11, 13), seed=8)
    r = ingest_file(made["path"])
    assert r["status"] == "loaded_with_rejections" and r["rows_loaded"] + r["rows_quarantined"] == 200
    assert ("GX's own process could not be started ([Errno 11] Resource temporarily unavailable): "
            "GX runs in the ingest process") in caplog.messages
    assert next((inbox.parent / "home").glob(f"**/{r['delivery_id']}/validation.html")).exists()
