"""DKKD, the enterprise register, end to end against a real warehouse: tax codes, code lists, money,
VSIC, branches and their parents, legal representatives linked at read time, snapshot history,
Excel workbooks (title rows, typed cells, bad workbooks), and generated deliveries."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from stdnum.vn import mst

from pipelines import workbook
from pipelines.contracts import load
from pipelines.generate import generate, is_valid_tax_code, read_delivery, tax_check_digit
from pipelines.ingest import ingest_file
from population_helpers import CUTRU_HEADER, csv_text, deliver, person, write

DKKD_HEADER = ["MA_SO_DN", "TEN_DN", "TEN_TIENG_ANH", "TEN_VIET_TAT", "LOAI_HINH", "NGAY_THANH_LAP", "TINH_TRANG",
               "VON_DIEU_LE", "NGANH_NGHE_CHINH", "MA_TINH_TRU_SO", "MA_XA_TRU_SO", "DIA_CHI_TRU_SO",
               "SO_DINH_DANH_NDD", "HO_TEN_NDD"]
CORE_COLUMNS = ("enterprise_code, parent_enterprise_code, legal_name, english_name, short_name, legal_form, status, "
                "registration_date, charter_capital_vnd, main_activity_code, seat_ward_code, seat_address, "
                "legal_rep_person_id, legal_rep_name")
UTC = dt.timezone.utc
NO_CHANGES = {"new": 0, "changed": 0, "unchanged": 0, "removed": 0}

# valid enterprise codes (check digits verified by python-stdnum below)
A, B, C, D = "0100109106", "0100109113", "0100109120", "0300000018"
HCM = "7900000012"


def ent(code=A, name="Công ty cổ phần Sữa Hà Nội", english="", short="", form="Công ty cổ phần", founded="12/03/2010",
        status="Đang hoạt động", capital="1.000.000.000", vsic="1050", province="01", ward="00004",
        address="12 Phố Huế", rep="", rep_name="") -> list[str]:
    return [code, name, english, short, form, founded, status, capital, vsic, province, ward, address, rep, rep_name]


def dkkd(inbox: Path, name: str, rows: list[list[str]], header=DKKD_HEADER) -> dict:
    return deliver(inbox, name, header, rows)


def core(db, where: str = "true") -> list[tuple]:
    return db.execute(f"select {CORE_COLUMNS} from core.enterprise where {where} order by enterprise_code").fetchall()


def test_the_codes_used_here_are_valid():
    assert all(mst.is_valid(c) for c in (A, B, C, D, HCM))
    assert [tax_check_digit(c[:9]) for c in (A, B, C, D, HCM)] == [c[9] for c in (A, B, C, D, HCM)]


# -------------------------------------------------------------------------------------- loading

def test_clean_snapshot_loads_with_exact_receipt_and_rows(warehouse, db, inbox):
    rows = [
        ent(code=A, name="CÔNG TY CỔ PHẦN  SỮA HÀ NỘI", english="Hanoi Milk Joint Stock Company",
            short="HANOIMILK, JSC", form="CÔNG TY CỔ PHẦN", capital="1.000.000.000", ward="00103",
            rep="001090000001", rep_name="NGUYỄN  VĂN AN"),
        ent(code=A + "-001", name="Chi nhánh Công ty cổ phần Sữa Hà Nội tại Hải Phòng", form="Chi nhánh",
            founded="01/08/2025", status="Tạm ngừng kinh doanh", capital="", ward="00103", address=""),
        ent(code=B, name=" Doanh nghiệp tư nhân Vàng bạc Kim Thành ", form="doanh nghiep tu nhan", founded="05/01/2000",
            status="DA GIAI THE", capital="500000000", vsic="47730", ward="00001", address="NULL",
            rep="001190000002", rep_name="Trần Thị Bình"),
        ent(code=D, name="Công ty TNHH Một thành viên Xuất nhập khẩu Đông Á", form="Công ty TNHH một thành viên",
            founded="20/10/2025", status="Bị thu hồi GCN ĐKDN", capital="2.500.000.000,00", vsic="NULL",
            ward="00008", rep="NULL"),
    ]
    r = dkkd(inbox, "DKKD_01_20261120_001.csv", rows)
    assert r == {
        "delivery_id": r["delivery_id"], "feed": "DKKD", "file": "DKKD_01_20261120_001.csv", "sha256": r["sha256"],
        "status": "loaded", "rows_read": 4, "rows_loaded": 4, "rows_quarantined": 0, "rejections": {},
        "findings": {"unresolved_person": 2}, "changes": {"new": 4, "changed": 0, "unchanged": 0, "removed": 0},
        "report": r["report"], "rejected_rows": r["rejected_rows"],
    }
    assert core(db) == [
        # 00103 on a 2010 registration is the pre-2025 ward 00103, now part of 00611
        (A, None, "CÔNG TY CỔ PHẦN SỮA HÀ NỘI", "Hanoi Milk Joint Stock Company", "HANOIMILK, JSC", "joint_stock",
         "active", dt.date(2010, 3, 12), 1_000_000_000, "1050", "00611", "12 Phố Huế", "001090000001",
         "Nguyễn Văn An"),
        # ... and on a registration after 1 July 2025 the current ward 00103
        (A + "-001", A, "Chi nhánh Công ty cổ phần Sữa Hà Nội tại Hải Phòng", None, None, "branch", "suspended",
         dt.date(2025, 8, 1), None, "1050", "00103", None, None, None),
        (B, None, "Doanh nghiệp tư nhân Vàng bạc Kim Thành", None, None, "private_enterprise", "dissolved",
         dt.date(2000, 1, 5), 500_000_000, "47730", "00097", None, "001190000002", "Trần Thị Bình"),
        (D, None, "Công ty TNHH Một thành viên Xuất nhập khẩu Đông Á", None, None, "llc_single_member",
         "certificate_revoked", dt.date(2025, 10, 20), 2_500_000_000, None, "00008", "12 Phố Huế", None, None),
    ]
    # a version is valid from the delivery's date (DKKD rows carry no date of change)
    assert db.execute("select distinct valid_from, valid_to, recorded_to from history.enterprise").fetchall() == [
        (dt.datetime(2026, 11, 19, 17, tzinfo=UTC), None, None)]


def test_every_defect_gets_its_code(warehouse, db, inbox):
    no_check_digit = "010000005"          # 31*0 + 29*1 + ... + 3*5 is a multiple of 11: no valid code starts so
    assert tax_check_digit(no_check_digit) is None
    rows = [
        ent(code=A),                                                       # fine
        ent(code="0100109107"),                                            # invalid_tax_code: check digit
        ent(code=no_check_digit + "0"),                                    # invalid_tax_code: no check digit exists
        ent(code="0100000003"),                                            # invalid_tax_code: N3..N9 = 0000000
        ent(code=A + "-000"),                                              # invalid_tax_code: suffix 000
        ent(code="0100109107-001"),                                        # invalid_tax_code: parent digits invalid
        ent(code="0100.109.113"),                                          # invalid_tax_code: formatted variant
        ent(code="0100109120001"),                                         # invalid_tax_code: 13 digits, no hyphen
        ent(code="100109106"),                                             # invalid_tax_code: leading zero lost
        ent(code=B, name=""),                                              # missing_required
        ent(code=C, form="Hộ kinh doanh"),                                 # invalid_code: legal form
        ent(code=D, status="Hoạt động"),                                   # invalid_code: status
        ent(code="0100109138", vsic="469"),                                # invalid_code: VSIC, 3 digits
        ent(code="0100109145", vsic="04690"),                              # invalid_code: no VSIC division 04
        ent(code="0100109152", capital="1,5 tỷ"),                          # invalid_number
        ent(code="0100109177", capital="1.00.000"),                        # invalid_number: bad grouping
        ent(code="0100109184", capital="12,5"),                            # invalid_number: a fraction of a dong
        ent(code="0100109191", founded="31/02/2010"),                      # invalid_date
        ent(code="0100109201", ward="99999"),                              # unknown_admin_unit
        ent(code="0100109219", rep="12345"),                               # invalid_personal_id
        ent(code="0100109226", address="A"), ent(code="0100109226", address="B"),  # duplicate_key
    ]
    assert all(mst.is_valid(r[0]) for r in rows[9:])
    r = dkkd(inbox, "DKKD_01_20261120_001.csv", rows)
    assert (r["status"], r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == ("loaded_with_rejections", 22, 1, 21)
    assert r["rejections"] == {"missing_required": 1, "invalid_tax_code": 8, "invalid_code": 4, "invalid_date": 1,
                               "invalid_number": 3, "unknown_admin_unit": 1, "invalid_personal_id": 1,
                               "duplicate_key": 2}
    assert db.execute("select row_no, reasons, detail from quarantine.row order by row_no").fetchall() == [
        (2, ["invalid_tax_code"], "invalid_tax_code: MA_SO_DN=0100109107"),
        (3, ["invalid_tax_code"], "invalid_tax_code: MA_SO_DN=0100000050"),
        (4, ["invalid_tax_code"], "invalid_tax_code: MA_SO_DN=0100000003"),
        (5, ["invalid_tax_code"], "invalid_tax_code: MA_SO_DN=0100109106-000"),
        (6, ["invalid_tax_code"], "invalid_tax_code: MA_SO_DN=0100109107-001"),
        (7, ["invalid_tax_code"], "invalid_tax_code: MA_SO_DN=0100.109.113"),
        (8, ["invalid_tax_code"], "invalid_tax_code: MA_SO_DN=0100109120001"),
        (9, ["invalid_tax_code"], "invalid_tax_code: MA_SO_DN=100109106"),
        (10, ["missing_required"], "missing_required: TEN_DN"),
        (11, ["invalid_code"], "invalid_code: LOAI_HINH=Hộ kinh doanh"),
        (12, ["invalid_code"], "invalid_code: TINH_TRANG=Hoạt động"),
        (13, ["invalid_code"], "invalid_code: NGANH_NGHE_CHINH=469"),
        (14, ["invalid_code"], "invalid_code: NGANH_NGHE_CHINH=04690"),
        (15, ["invalid_number"], "invalid_number: VON_DIEU_LE=1,5 tỷ"),
        (16, ["invalid_number"], "invalid_number: VON_DIEU_LE=1.00.000"),
        (17, ["invalid_number"], "invalid_number: VON_DIEU_LE=12,5"),
        (18, ["invalid_date"], "invalid_date: NGAY_THANH_LAP=31/02/2010"),
        (19, ["unknown_admin_unit"], "unknown_admin_unit: MA_XA_TRU_SO=99999"),
        (20, ["invalid_personal_id"], "invalid_personal_id: SO_DINH_DANH_NDD=12345"),
        (21, ["duplicate_key"], "duplicate_key: MA_SO_DN=0100109226"),
        (22, ["duplicate_key"], "duplicate_key: MA_SO_DN=0100109226"),
    ]
    assert [row[0] for row in core(db)] == [A]
    with open(r["rejected_rows"], encoding="utf-8") as fh:
        rejected = list(csv.DictReader(fh))
    assert len(rejected) == 21 and rejected[5]["MA_SO_DN"] == "0100.109.113"


def test_quirks_are_conformed(warehouse, db, inbox):
    header = [" ma_so_dn ", "Ten_Dn", "LOAI_HINH ", "ngay_thanh_lap", "TINH_TRANG", "MA_XA_TRU_SO", "MA_TINH_TRU_SO",
              "VON_DIEU_LE", "HO_TEN_NDD", "SO_DINH_DANH_NDD", "GHI_CHU"]     # any case and order, an extra column
    rows = [
        [A, "CÔNG TY  TNHH\tAN KHANG", "CONG TY TNHH HAI THANH VIEN TRO LEN", "12/03/2010", " đang hoạt động ",
         "00004", "01", "1.000.000.000,00", "TRẦN   THỊ BÌNH", "001190000002", "ghi chú"],
        [B, "Công ty cổ phần Hòa Bình".replace("ò", "o\u0300"), "công ty cổ phần", "01/08/2025", "PHÁ SẢN", "00004",
         "01", "0", "NULL", "NULL", ""],
    ]
    text = csv_text(header, rows[:1]) + ",".join(header) + "\n" + csv_text(header, rows[1:]).split("\n", 1)[1]
    r = ingest_file(write(inbox, "DKKD_01_20261120_001.csv", "\ufeff" + text + "\n\n", newline="\r\n"))
    assert (r["status"], r["rows_read"], r["rows_loaded"], r["findings"]) == ("loaded", 2, 2, {"unresolved_person": 1})
    assert core(db) == [
        (A, None, "CÔNG TY TNHH AN KHANG", None, None, "llc_multi_member", "active", dt.date(2010, 3, 12),
         1_000_000_000, None, "00004", None, "001190000002", "Trần Thị Bình"),
        (B, None, "Công ty cổ phần Hòa Bình", None, None, "joint_stock", "bankrupt", dt.date(2025, 8, 1), 0, None,
         "00004", None, None, None),
    ]


@pytest.mark.parametrize("text,expected", [
    ("1000000000", 1_000_000_000), ("1.000.000.000", 1_000_000_000), ("1.000.000.000,00", 1_000_000_000),
    ("500.000", 500_000), ("999", 999), ("0", 0), ("1,0", 1), ("999.999.999.999.999.999", 999_999_999_999_999_999),
    ("1.000.000.000.000.000.000", None), ("1,5", None), ("1.5", None), ("1.0000", None), (".100", None),
    ("100.", None), ("1,000,000", None), ("1.000,", None), ("-1.000", None), ("+1000", None), ("1 000 000", None),
    ("1.000.000đ", None), ("abc", None), (",00", None),
])
def test_money(db, text, expected):
    assert db.execute("select rules.parse_money(%s)", (text,)).fetchone() == (expected,)


@pytest.mark.parametrize("text,valid", [
    ("4690", True), ("46901", True), ("0111", True), ("01110", True), ("9900", True), ("469", False),
    ("469012", False), ("0469", False), ("3400", False), ("G4690", False), ("46.90", False), ("４６９０", False),
])
def test_vsic_format(db, text, valid):
    assert db.execute("select rules.is_vsic(%s)", (text,)).fetchone() == (valid,)


# -------------------------------------------------------------------------------------- the tax-code rule

def _variants(rng: random.Random, code: str) -> str:
    """A spelling of a code as people type it: dots, spaces, hyphens moved or dropped."""
    digits = code.replace("-", "")
    k = rng.randrange(6)
    if k == 0:
        return ".".join(digits[i:i + 3] for i in range(0, len(digits), 3))
    if k == 1:
        return " ".join(digits[i:i + rng.randrange(1, 5)] for i in range(0, len(digits), 4))
    if k == 2:
        return digits                                   # a branch without its hyphen
    if k == 3:
        cut = rng.randrange(1, len(digits))
        return digits[:cut] + rng.choice("-. ") + digits[cut:]
    if k == 4:
        return f"  {code} "                             # surrounding spaces: trimmed like every value
    return code[:4] + "." + code[4:7] + "." + code[7:]


def test_tax_code_rule_agrees_with_python_stdnum(db):
    """>= 100,000 random codes and spellings: the SQL rule and stdnum.vn.mst give the same verdict
    on the same normalisation. The pipeline trims a value and then takes the code exactly as the
    register writes it (10 digits, or NNNNNNNNNN-NNN); stdnum first compacts dots, spaces and
    hyphens away. So: (1) on any text, ours is valid exactly when the trimmed text is in the
    register's form and stdnum finds it valid; (2) on stdnum's canonical form of any text
    (stdnum.vn.mst.format: compacted, the branch hyphen put back), ours equals stdnum's verdict."""
    rng = random.Random(20261120)
    texts = []
    for i in range(40_000):                              # ten digits, half with their check digit
        first9 = "".join(rng.choice("0123456789") for _ in range(9))
        if i % 5 == 0:
            first9 = first9[:2] + "0000000"              # the N3..N9 = 0000000 case
        check = mst.calc_check_digit(first9)
        texts.append(first9 + (check if i % 2 and len(check) == 1 else rng.choice("0123456789")))
    for i in range(30_000):                              # dependent units
        parent = texts[rng.randrange(40_000)]
        suffix = "000" if i % 20 == 0 else f"{rng.randrange(1000):03d}"
        texts.append(f"{parent}-{suffix}")
    for _ in range(30_000):                              # the same codes as people type them
        texts.append(_variants(rng, texts[rng.randrange(70_000)]))
    for _ in range(5_000):                               # wrong lengths, letters, stray characters
        n = rng.randrange(1, 16)
        texts.append("".join(rng.choice("0123456789-. Oabx") for _ in range(n)))
    canonical = [mst.format(t) for t in texts]
    assert len(texts) >= 100_000
    db.execute("create temp table codes (i int, text text, canonical text)")
    with db.cursor().copy("copy codes (i, text, canonical) from stdin") as cp:
        for i, (t, c) in enumerate(zip(texts, canonical)):
            cp.write_row((i, t, c))
    ours = db.execute("select rules.is_tax_code(btrim(text, ' ')), rules.is_tax_code(canonical) "
                      "from codes order by i").fetchall()
    register_form = re.compile(r"[0-9]{10}(-[0-9]{3})?")
    disagree = []
    for t, (as_sent, on_canonical) in zip(texts, ours):
        theirs = mst.is_valid(t)
        if as_sent != (theirs and bool(register_form.fullmatch(t.strip(" ")))) or on_canonical != theirs:
            disagree.append((t, as_sent, on_canonical, theirs))
        assert is_valid_tax_code(t.strip(" ")) == as_sent    # the generator's twin of the rule, too
    assert disagree == []
    valid = sum(1 for as_sent, _ in ours if as_sent)
    spelled = sum(1 for t, (as_sent, on_canonical) in zip(texts, ours) if on_canonical and not as_sent)
    assert valid > 20_000 and spelled > 5_000          # both verdicts are well represented


# -------------------------------------------------------------------------------------- history

def test_status_changes_are_versions_and_an_absent_enterprise_is_removed(warehouse, db, inbox):
    week1 = dkkd(inbox, "DKKD_01_20261113_001.csv", [ent(code=A), ent(code=B, name="Công ty cổ phần Bình An")])
    assert week1["changes"] == {"new": 2, "changed": 0, "unchanged": 0, "removed": 0}
    # next week A is suspended, B is gone from the register, C is new
    week2 = dkkd(inbox, "DKKD_01_20261120_001.csv", [
        ent(code=A, status="Tạm ngừng kinh doanh"), ent(code=C, name="Công ty cổ phần Cát Tường")])
    assert week2["changes"] == {"new": 1, "changed": 1, "unchanged": 0, "removed": 1}
    week3 = dkkd(inbox, "DKKD_01_20261127_001.csv", [
        ent(code=A, status="Đã giải thể"), ent(code=C, name="Công ty cổ phần Cát Tường")])
    assert week3["changes"] == {"new": 0, "changed": 1, "unchanged": 1, "removed": 0}
    assert [(row[0], row[6]) for row in core(db)] == [(A, "dissolved"), (C, "active")]
    day = lambda d: dt.datetime(2026, 11, d - 1, 17, tzinfo=UTC)  # noqa: E731  (00:00 UTC+7 of that day)
    # as the warehouse knows it now: one version per status, each valid from its delivery's date
    assert db.execute("select status, valid_from, valid_to from history.enterprise where enterprise_code = %s "
                      "and recorded_to is null order by valid_from", (A,)).fetchall() == [
        ("active", day(13), day(20)), ("suspended", day(20), day(27)), ("dissolved", day(27), None)]
    assert db.execute("select count(*) from history.enterprise where enterprise_code = %s", (A,)).fetchone() == (5,)
    # B is no longer current; its last version ended at the snapshot that left it out
    assert db.execute("select status, valid_to from history.enterprise where enterprise_code = %s "
                      "and recorded_to is null", (B,)).fetchall() == [("active", day(20))]
    # as of any time, as known at any time
    as_of = lambda valid, known="now()": db.execute(  # noqa: E731
        f"select enterprise_code, status from history.enterprise_as_of(%s, {known}) order by 1", (valid,)).fetchall()
    assert as_of("2026-11-15 00:00+07") == [(A, "active"), (B, "active")]
    assert as_of("2026-11-21 00:00+07") == [(A, "suspended"), (C, "active")]
    assert as_of("2026-12-01 00:00+07") == [(A, "dissolved"), (C, "active")]
    before_week2 = db.execute("select min(recorded_from) from history.enterprise where enterprise_code = %s",
                              (C,)).fetchone()[0] - dt.timedelta(microseconds=1)
    assert db.execute("select enterprise_code, status from history.enterprise_as_of('2026-12-01 00:00+07', %s) "
                      "order by 1", (before_week2,)).fetchall() == [(A, "active"), (B, "active")]
    # the change feed
    w1, w2, w3 = week1["delivery_id"], week2["delivery_id"], week3["delivery_id"]
    assert sorted(db.execute("select delivery_id, entity_key, operation from core.changes "
                             "where entity = 'enterprise'").fetchall()) == [
        (w1, A, "insert"), (w1, B, "insert"), (w2, A, "update"), (w2, B, "delete"), (w2, C, "insert"),
        (w3, A, "update")]
    # the same bytes again: a duplicate; the same content under a new name: unchanged
    assert ingest_file(inbox / "DKKD_01_20261127_001.csv")["status"] == "duplicate"
    again = dkkd(inbox, "DKKD_01_20261127_002.csv", [
        ent(code=C, name="Công ty cổ phần Cát Tường"), ent(code=A, status="Đã giải thể")])
    assert again["changes"] == {"new": 0, "changed": 0, "unchanged": 2, "removed": 0}


def test_a_quarantined_enterprise_is_not_removed_from_the_snapshot(warehouse, db, inbox):
    dkkd(inbox, "DKKD_01_20261113_001.csv", [ent(code=A), ent(code=B)])
    r = dkkd(inbox, "DKKD_01_20261120_001.csv", [ent(code=A), ent(code=B, founded="31/02/2010")])
    assert r["changes"] == {"new": 0, "changed": 0, "unchanged": 1, "removed": 0}
    assert [row[0] for row in core(db)] == [A, B]


def test_snapshots_are_per_province(warehouse, db, inbox):
    dkkd(inbox, "DKKD_01_20261120_001.csv", [ent(code=A)])
    r = dkkd(inbox, "DKKD_79_20261120_001.csv", [ent(code=HCM, province="79", ward="26734")])
    assert r["changes"] == {"new": 1, "changed": 0, "unchanged": 0, "removed": 0}
    assert [(row[0], row[10]) for row in core(db)] == [(A, "00004"), (HCM, "26737")]


# -------------------------------------------------------------------------------------- links

def test_orphan_branch_is_loaded_with_a_finding_and_finds_its_parent_when_it_arrives(warehouse, db, inbox):
    dkkd(inbox, "DKKD_01_20261120_001.csv", [ent(code=A)])
    r = dkkd(inbox, "DKKD_79_20261120_001.csv", [
        ent(code=HCM, province="79", ward="26734"),
        ent(code=HCM + "-001", form="Chi nhánh", province="79", ward="26734"),   # parent in this delivery
        ent(code=A + "-002", form="Chi nhánh", province="79", ward="26734"),     # parent in another province's register
        ent(code=B + "-001", form="Chi nhánh", province="79", ward="26734"),     # parent nowhere: an orphan
    ])
    assert (r["status"], r["rows_loaded"], r["findings"]) == ("loaded", 4, {"orphan_branch": 1})
    branches = ("select b.enterprise_code, b.parent_enterprise_code, p.legal_name from core.enterprise b "
                "left join core.enterprise p on p.enterprise_code = b.parent_enterprise_code "
                "where b.parent_enterprise_code is not null order by 1")
    assert db.execute(branches).fetchall() == [
        (A + "-002", A, "Công ty cổ phần Sữa Hà Nội"), (B + "-001", B, None),
        (HCM + "-001", HCM, "Công ty cổ phần Sữa Hà Nội")]
    # the parent arrives with Hà Nội's next snapshot: the link holds, nothing was frozen
    dkkd(inbox, "DKKD_01_20261127_001.csv", [ent(code=A), ent(code=B, name="Công ty cổ phần Bình An")])
    assert db.execute(branches).fetchall()[1] == (B + "-001", B, "Công ty cổ phần Bình An")


def test_unresolved_representative_resolves_by_himself_when_the_person_arrives(warehouse, db, inbox):
    r = dkkd(inbox, "DKKD_01_20261113_001.csv", [ent(code=A, rep="001090000001", rep_name="Nguyễn Văn An")])
    assert r["findings"] == {"unresolved_person": 1}
    represented = ("select e.enterprise_code, e.legal_rep_person_id, p.full_name, p.birth_date "
                   "from core.enterprise e left join core.person p on p.person_id = e.legal_rep_person_id")
    assert db.execute(represented).fetchall() == [(A, "001090000001", None, None)]
    versions = db.execute("select count(*) from store.enterprise").fetchone()
    # the residence register lists him a day later: the link resolves, no enterprise version is written
    deliver(inbox, "CUTRU_01_20261114_001.csv", CUTRU_HEADER, [person(pid="001090000001")])
    assert db.execute(represented).fetchall() == [(A, "001090000001", "Nguyễn Văn An", dt.date(1990, 3, 12))]
    assert db.execute("select count(*) from store.enterprise").fetchone() == versions
    # next week's snapshot has nothing to report about him
    week2 = dkkd(inbox, "DKKD_01_20261120_001.csv", [ent(code=A, rep="001090000001", rep_name="Nguyễn Văn An"),
                                                     ent(code=B, rep="001090000001", rep_name="Nguyễn Văn An")])
    assert (week2["changes"], week2["findings"]) == ({"new": 1, "changed": 0, "unchanged": 1, "removed": 0}, {})


def test_the_enterprises_a_person_represents_are_one_indexed_query(warehouse, db, inbox):
    people = [f"0010{80 + i % 20:02d}{i:06d}" for i in range(300)]
    m = generate("DKKD", 3000, "01", 0.0, inbox, date=dt.date(2026, 11, 20), seed=5, person_ids=people)
    r = ingest_file(m["path"])
    assert r["rows_loaded"] == 3000      # (these people are not in core.person: the links resolve when they come)
    db.execute("analyze store.enterprise")
    pid, n = db.execute("select legal_rep_person_id, count(*) from core.enterprise where legal_rep_person_id "
                        "is not null group by 1 order by 2 desc, 1 limit 1").fetchone()
    assert n > 1
    query = "select * from core.enterprise where legal_rep_person_id = %s"
    plan = json.dumps(db.execute("explain (format json) " + query, (pid,)).fetchone()[0])
    assert "enterprise_legal_rep_current" in plan and "Seq Scan" not in plan, plan
    got = db.execute(query + " order by enterprise_code", (pid,)).fetchall()
    expected = sorted(row["MA_SO_DN"].strip() for row in read_delivery(m["path"])
                      if row["SO_DINH_DANH_NDD"].strip() == pid)
    assert [row[0] for row in got] == expected and len(got) == n


# -------------------------------------------------------------------------------------- workbooks

def _workbook(path: Path, rows: list[list], title: str | None = "DANH SÁCH DOANH NGHIỆP", sheet: str = "DKKD",
              extra_sheets: int = 0) -> Path:
    """An .xlsx as Excel saves it (shared strings; openpyxl's normal mode)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    if title is not None:
        ws.append([title])
        ws.append([])
    for row in rows:
        ws.append(row)
    for i in range(extra_sheets):
        wb.create_sheet(f"Ghi chú {i + 1}").append(["ghi chú"])
    wb.save(path)
    return _with_shared_strings(path)


SST_TYPE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"
INLINE_CELL = re.compile(r'<c ([^>]*?)t="inlineStr"([^>]*)><is><t[^>]*>(.*?)</t></is></c>', re.S)


def _with_shared_strings(path: Path) -> Path:
    """The workbook as Excel saves it: text cells point into xl/sharedStrings.xml (openpyxl writes
    inline strings), some entries as rich text runs with a phonetic guide (which is not text)."""
    members = _members(path)
    table: dict[str, int] = {}

    def shared(m: re.Match) -> str:
        return f'<c {m.group(1)}t="s"{m.group(2)}><v>{table.setdefault(m.group(3), len(table))}</v></c>'

    for name in [n for n in members if n.startswith("xl/worksheets/sheet")]:
        members[name] = INLINE_CELL.sub(shared, members[name].decode("utf-8")).encode("utf-8")
    items = []
    for text, i in table.items():
        if i % 4 == 1 and "&" not in text and len(text) > 1:
            half = len(text) // 2
            items.append(f'<si><r><t xml:space="preserve">{text[:half]}</t></r><r><rPr><b/></rPr>'
                         f'<t xml:space="preserve">{text[half:]}</t></r><rPh sb="0" eb="1"><t>FURIGANA</t></rPh></si>')
        else:
            items.append(f'<si><t xml:space="preserve">{text}</t></si>')
    members["xl/sharedStrings.xml"] = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="{len(table)}" '
        f'uniqueCount="{len(table)}">{"".join(items)}</sst>').encode("utf-8")
    members["xl/_rels/workbook.xml.rels"] = members["xl/_rels/workbook.xml.rels"].replace(
        b"</Relationships>", f'<Relationship Type="{SST_TYPE}" Target="sharedStrings.xml" Id="rIdSst" />'
                             f'</Relationships>'.encode())
    members["[Content_Types].xml"] = members["[Content_Types].xml"].replace(
        b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                     b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>')
    path.write_bytes(_zip(members))
    return path


WB_HEADER = ["Ma_so_dn", "TEN_DN", "LOAI_HINH", "NGAY_THANH_LAP", "TINH_TRANG", "VON_DIEU_LE", "NGANH_NGHE_CHINH",
             "MA_TINH_TRU_SO", "MA_XA_TRU_SO", "SO_DINH_DANH_NDD", "HO_TEN_NDD"]


def test_workbook_with_a_title_row_loads_like_a_csv_file(warehouse, db, inbox):
    rows = [
        WB_HEADER,
        # typed cells as Excel holds them: a date cell, numbers (codes that lost their leading zeros)
        [int(A), "CÔNG TY CỔ PHẦN SỮA HÀ NỘI", "Công ty cổ phần", dt.date(2010, 3, 12), "Đang hoạt động",
         1_000_000_000, 111, 1, 4, 1090000001, "NGUYỄN VĂN AN"],
        [A + "-001", "Chi nhánh tại Hải Phòng", "Chi nhánh", dt.datetime(2025, 8, 1, 9, 30), "Đang hoạt động",
         None, "4690", "01", "00103", None, None],
        [B, "Công ty TNHH Bình An", "Công ty TNHH một thành viên", "05/01/2000", "Đã giải thể", "2.500.000.000",
         4690.0, "01", "00001", "001190000002", "Trần Thị Bình"],
        [],                                                     # an empty row: skipped like a blank line
        [C, "Công ty cổ phần Cát Tường", "Công ty cổ phần", "31/02/2010", "Đang hoạt động", 12.5, "4690", 1, 4,
         None, None],
    ]
    path = _workbook(inbox / "DKKD_01_20261120_001.xlsx", rows)
    r = ingest_file(path)
    assert (r["status"], r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == (
        "loaded_with_rejections", 4, 3, 1)
    assert r["rejections"] == {"invalid_date": 1, "invalid_number": 1}
    assert r["findings"] == {"unresolved_person": 2}
    assert core(db) == [
        (A, None, "CÔNG TY CỔ PHẦN SỮA HÀ NỘI", None, None, "joint_stock", "active", dt.date(2010, 3, 12),
         1_000_000_000, "0111", "00004", None, "001090000001", "Nguyễn Văn An"),
        (A + "-001", A, "Chi nhánh tại Hải Phòng", None, None, "branch", "active", dt.date(2025, 8, 1), None,
         "4690", "00103", None, None, None),
        (B, None, "Công ty TNHH Bình An", None, None, "llc_single_member", "dissolved", dt.date(2000, 1, 5),
         2_500_000_000, "4690", "00097", None, "001190000002", "Trần Thị Bình"),
    ]
    # the quarantine keeps the values as the sheet shows them; rows count from the header
    assert db.execute("select row_no, detail, raw->>'NGAY_THANH_LAP', raw->>'VON_DIEU_LE', raw->>'MA_XA_TRU_SO' "
                      "from quarantine.row").fetchall() == [
        (4, "invalid_date: NGAY_THANH_LAP=31/02/2010 | invalid_number: VON_DIEU_LE=12,5", "31/02/2010", "12,5",
         "00004")]
    assert "sheet &#x27;DKKD&#x27;, header on row 3" in Path(r["report"]).read_text(encoding="utf-8")


def test_a_header_without_a_required_column_is_found_and_reported(warehouse, db, inbox):
    rows = [[h for h in WB_HEADER if h != "TINH_TRANG"], [A, "Công ty cổ phần Sữa Hà Nội"]]
    r = ingest_file(_workbook(inbox / "DKKD_01_20261120_001.xlsx", rows))
    assert r["status"] == "rejected"
    assert r["reason"].startswith("required column(s) missing from the header: TINH_TRANG (the header has: Ma_so_dn, ")


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _bad_workbooks(tmp: Path) -> list[tuple[str, bytes, str]]:
    good = _members(_workbook(tmp / "good.xlsx", [WB_HEADER, [A, "X", "Công ty cổ phần", "12/03/2010",
                                                              "Đang hoạt động", "", "", "01", "00004"]]))
    no_sheets = dict(good)
    no_sheets["xl/workbook.xml"] = re.sub(rb"<sheets>.*</sheets>", b"<sheets/>", good["xl/workbook.xml"])
    broken = dict(good)
    broken["xl/worksheets/sheet1.xml"] = good["xl/worksheets/sheet1.xml"][:-200]
    beyond = _members(_workbook(tmp / "beyond.xlsx", [WB_HEADER, [A, "X", "Công ty cổ phần", "12/03/2010",
                                                                  "Đang hoạt động", "", "", "01", "00004", "", "",
                                                                  "", "", "ghi chú"]]))
    empty = _members(_workbook(tmp / "empty.xlsx", [], title=None, extra_sheets=1))
    titles_only = _members(_workbook(tmp / "titles.xlsx", [["Sở Kế hoạch và Đầu tư"], [1, 2, 3]]))
    header_only = _members(_workbook(tmp / "header.xlsx", [WB_HEADER]))
    required = "MA_SO_DN, TEN_DN, LOAI_HINH, NGAY_THANH_LAP, TINH_TRANG, MA_TINH_TRU_SO, MA_XA_TRU_SO"
    return [
        ("DKKD_01_20261120_001.xlsx", csv_text(DKKD_HEADER, [ent()]).encode(),
         "the file is not an Excel workbook (.xlsx): it is not a zip package "
         "(it looks like text: if it is a CSV file, name it .csv)"),
        ("DKKD_01_20261120_001.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600,
         "the file is an Excel 97-2003 workbook (.xls) or a password-protected workbook: save it as an Excel "
         "Workbook (.xlsx) without a password, or as CSV"),
        ("DKKD_01_20261120_001.xlsx", _zip({"notes.txt": b"hello"}),
         "the file is a zip archive, not an Excel workbook (.xlsx): it has no workbook part"),
        ("DKKD_01_20261120_001.xlsx", _zip(good)[:-300],
         "the file is not a readable Excel workbook (.xlsx): the zip package is damaged (File is not a zip file)"),
        ("DKKD_01_20261120_001.xlsx", _zip(no_sheets), "the workbook has no sheet"),
        ("DKKD_01_20261120_001.xlsx", _zip(empty),
         "the first sheet 'DKKD' of the workbook is empty: no header row and no rows"),
        ("DKKD_01_20261120_001.xlsx", _zip(titles_only),
         f"no header row found on the first sheet 'DKKD': none of its first 3 rows names the columns of a DKKD "
         f"delivery (required: {required})"),
        ("DKKD_01_20261120_001.xlsx", _zip(header_only), "the file has a header but no data rows"),
        ("DKKD_01_20261120_001.xlsx", _zip(broken),
         "the workbook is damaged: the cells of sheet 'DKKD' are not readable XML ("),      # + expat's words
        ("DKKD_01_20261120_001.xlsx", _zip(beyond),
         "row 4 of sheet 'DKKD' has a value in column N ('ghi chú'), right of the header's last column K: every "
         "value needs a column name in the header row"),
        ("DKKD_01_20261120_001.csv", _zip(good), "the file is an Excel workbook named .csv: deliver it named .xlsx"),
        ("CUTRU_01_20261120_001.xlsx", _zip({**good, "x.txt": b"x"}), "a CUTRU delivery must be one of csv, not .xlsx"),
    ]


def test_bad_workbooks_are_rejected_with_a_clear_reason(warehouse, db, inbox, tmp_path):
    for name, data, reason in _bad_workbooks(tmp_path):
        path = inbox / name
        path.write_bytes(data)
        r = ingest_file(path)
        assert r["status"] == "rejected", (reason, r)
        assert r["reason"].startswith(reason) if reason.endswith("(") else r["reason"] == reason, r["reason"]
        assert (r["rows_read"], r["rows_loaded"], r["changes"]) == (0, 0, NO_CHANGES)
        assert db.execute("select count(*) from store.enterprise").fetchone() == (0,)
        assert db.execute("select count(*) from pg_tables where schemaname = 'stage'").fetchone() == (0,)
        assert "Why the whole file was rejected" in Path(r["report"]).read_text(encoding="utf-8")
        path.unlink()


def test_the_cli_rejects_a_bad_workbook_without_a_traceback(warehouse, inbox, tmp_path):
    path = inbox / "DKKD_01_20261120_001.xlsx"
    path.write_bytes(_zip({"notes.txt": b"hello"}))
    cli = str(Path(sys.executable).with_name("corehub"))
    proc = subprocess.run([cli, "ingest", str(path), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["reason"] == ("the file is a zip archive, not an Excel workbook (.xlsx): "
                                                 "it has no workbook part")
    assert "Traceback" not in proc.stderr


# -------------------------------------------------------------------------------------- generated deliveries

@pytest.mark.parametrize("options", [
    dict(),
    dict(encoding="utf-8-sig", crlf=True, repeat_header_at=200, trailing_blank_lines=2),
    dict(quirks=False),
    dict(file_type="xlsx", title_row="DANH SÁCH DOANH NGHIỆP - TP. HỒ CHÍ MINH", repeat_header_at=500),
], ids=["csv", "csv-bom-crlf-repeated-header", "csv-plain", "xlsx-title-row"])
def test_generated_delivery_matches_its_manifest(warehouse, db, inbox, options):
    people = generate("CUTRU", 400, "79", 0.0, inbox, date=dt.date(2026, 11, 13), seed=3)
    ingest_file(people["path"])
    ids = [row[0] for row in db.execute("select person_id from core.person order by 1 limit 150")]
    m = generate("DKKD", 1500, "79", 0.06, inbox, date=dt.date(2026, 11, 20), seed=7, person_ids=ids, **options)
    r = ingest_file(m["path"])
    assert (r["rows_read"], r["rows_quarantined"], r["rows_loaded"]) == (1500, m["defect_rows"], 1500 - m["defect_rows"])
    assert r["rejections"] == m["rejections"] and set(m["rejections"]) == set(load("DKKD").rejection_codes)
    assert r["findings"] == m["findings"] and m["findings"]["orphan_branch"] > 0
    assert 0 < m["findings"]["unresolved_person"] < r["rows_loaded"]
    assert db.execute("select count(*) from core.enterprise").fetchone() == (r["changes"]["new"],)
    # every current ward is a real current unit; every branch's parent is a valid code
    assert db.execute("select count(*) from core.enterprise e left join ref.admin_unit u on u.code = "
                      "e.seat_ward_code and u.level = 'ward' and u.valid_to is null "
                      "where u.code is null").fetchone() == (0,)
    assert db.execute("select count(*) from core.enterprise where parent_enterprise_code is not null "
                      "and not rules.is_tax_code(parent_enterprise_code)").fetchone() == (0,)


# -------------------------------------------------------------------------------------- the workbook reader

def _calamine_text(v) -> str:
    """A cell as python-calamine reads it, as text (an independent reading of the same workbook)."""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, dt.datetime):
        return f"{v:%d/%m/%Y}" + ("" if v.time() == dt.time() else f" {v:%H:%M:%S}")
    if isinstance(v, dt.date):
        return f"{v:%d/%m/%Y}"
    if isinstance(v, dt.time):
        return f"{v:%H:%M:%S}"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v).replace(".", ",")
    return "" if v is None else str(v)


def _reader_rows(path, contract=None) -> tuple[list[str], list[list[str]]]:
    fmt, pieces = workbook.open_workbook(path, contract)
    text = b"".join(pieces).decode("utf-8")
    return fmt.header, list(csv.reader(io.StringIO(text, newline="")))


def _mixed_workbook(path: Path, rows: int = 300) -> Path:
    """Every kind of cell, with gaps, in openpyxl's normal mode (shared strings, as Excel writes)."""
    from openpyxl import Workbook

    rng = random.Random(4)
    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet 1"
    ws.append(["a", "b", "c", "d", "e", "f", "g", "h"])
    for i in range(rows):
        row = [f"tên {i} “ngoặc”, phẩy", i, rng.random() * 1e6,
               dt.date(1990, 1, 1) + dt.timedelta(days=rng.randrange(20000)),
               dt.datetime(2025, 1, 1, rng.randrange(24), rng.randrange(60), rng.randrange(60)), rng.random() < 0.5,
               None if i % 3 else "dòng 1\ndòng 2", dt.time(rng.randrange(24), rng.randrange(60))]
        if i % 7 == 0:
            row[3] = None                                   # a gap in the middle of a row
        ws.append(row)
    ws.cell(row=rows + 3, column=2).value = 45000           # after an empty row: a serial number shown as a date
    ws.cell(row=rows + 3, column=2).number_format = "dd/mm/yyyy"
    wb.save(path)
    return _with_shared_strings(path)


def test_the_reader_agrees_with_python_calamine(tmp_path):
    from python_calamine import CalamineWorkbook

    path = _mixed_workbook(tmp_path / "mixed.xlsx")
    header, rows = _reader_rows(path)
    with CalamineWorkbook.from_path(str(path)) as wb:
        theirs = wb.get_sheet_by_index(0).to_python(skip_empty_area=False)
    theirs = [[_calamine_text(v) for v in row] for row in theirs]
    theirs = [row + [""] * (8 - len(row)) for row in theirs if any(row)]
    assert header == theirs[0] == ["a", "b", "c", "d", "e", "f", "g", "h"]
    assert rows == theirs[1:] and len(rows) == 301
    assert rows[-1][:2] == ["", "15/03/2023"]


def test_big_shared_string_tables_are_kept_on_disk(tmp_path, monkeypatch):
    path = _mixed_workbook(tmp_path / "mixed.xlsx")
    in_memory = _reader_rows(path)
    monkeypatch.setattr(workbook, "SPILL_STRINGS_BYTES", 0)
    looked_up = []
    real = workbook._DiskStrings.__getitem__
    monkeypatch.setattr(workbook._DiskStrings, "__getitem__", lambda self, i: looked_up.append(i) or real(self, i))
    assert _reader_rows(path) == in_memory and looked_up


def test_reading_a_workbook_takes_memory_that_does_not_grow_with_its_rows(tmp_path, monkeypatch):
    import tracemalloc

    monkeypatch.setattr(workbook, "ROWS_PER_PIECE", 256)    # both sizes well above one piece

    def peak(rows: int) -> int:
        m = generate("DKKD", rows, "01", 0.0, tmp_path / str(rows), file_type="xlsx", seed=1)
        tracemalloc.start()
        fmt, pieces = workbook.open_workbook(m["path"], load("DKKD"))
        n = sum(piece.count(b"\n") for piece in pieces)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert n == rows
        return top

    small, large = peak(3_000), peak(30_000)
    assert large < small * 1.5, (small, large)


@pytest.mark.parametrize("serial,date1904,expected", [
    (1, False, (dt.date(1900, 1, 1), 0)), (59, False, (dt.date(1900, 2, 28), 0)), (60, False, (None, 0)),
    (61, False, (dt.date(1900, 3, 1), 0)), (45000.5, False, (dt.date(2023, 3, 15), 43200)),
    (0, True, (dt.date(1904, 1, 1), 0)), (43538.99999999, False, (dt.date(2019, 3, 15), 0)),  # rounds to 00:00
])
def test_excel_serial_dates(serial, date1904, expected):
    assert workbook._serial_datetime(serial, date1904) == expected


@pytest.mark.parametrize("code,kind", [
    ("dd/mm/yyyy", "date"), ("[$-42A]dd/mm/yyyy", "date"), ("yyyy-mm-dd h:mm", "date"), ("mmm-yy", "date"),
    ("h:mm:ss", "time"), ("[h]:mm", "time"), ("mm:ss", "time"), ("#,##0", None), ("0.00E+00", None),
    ('#,##0 "đồng"', None), ('"Ngày" dd', "date"), ("General", None), ("[Red]#,##0;-#,##0", None),
])
def test_number_formats_that_show_dates(code, kind):
    assert workbook._format_kind(code) == kind
