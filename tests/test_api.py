"""The lookup API, run for real: `corehub serve` in a subprocess on 127.0.0.1, keys from `corehub apikey`."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from conftest import _with_db
from pipelines import cli
from population_helpers import CUTRU_HEADER, HOTICH_HEADER, deliver, event, person

PEOPLE = [
    person(pid="001090000001", name="Nguyễn Văn An", born="12/03/1990"),
    person(pid="001191000002", name="Trần Thị Bình", born="00/05/1991", sex="Nữ"),        # month known
    person(pid="001092000003", name="Lê Văn Cường", born="1992"),                         # year known
    person(pid="001093000004", name="Phạm Văn Dũng", born="01/01/1993"),                  # dies below
    person(pid="001194000005", name="HOÀNG THỊ ÉN", born="02/02/1994", sex="Nữ"),         # sent in capitals
]


@dataclass
class Api:
    base: str
    db_url: str
    keys: dict[str, str]
    log: Path

    def post(self, path, key="all", **kw):
        headers = {"X-API-Key": self.keys[key]} if key else {}
        return httpx.post(self.base + path, headers=headers, timeout=10, **kw)

    def get(self, path, key="all", **kw):
        headers = {"X-API-Key": self.keys[key]} if key else {}
        return httpx.get(self.base + path, headers=headers, timeout=10, **kw)

    def verify(self, person_id, full_name, birth_date, key="all") -> bool:
        r = self.post("/v1/persons/verify", key, json={"person_id": person_id, "full_name": full_name,
                                                        "birth_date": birth_date})
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"match"}
        return r.json()["match"]

    def last_audit(self, n=1):
        with psycopg.connect(self.db_url) as conn:
            rows = conn.execute("select client, key_id, method, endpoint, subject_key, status, result "
                                "from audit.access_log order by seq desc limit %s", (n,)).fetchall()
        return rows[0] if n == 1 else rows[::-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _apikey(*args) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["apikey", *args])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def api(warehouse_server, tmp_path_factory):
    admin, template = warehouse_server
    name = f"corehub_api_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "{template}"')
    url = _with_db(admin, name)
    home = tmp_path_factory.mktemp("api-home")
    inbox = home / "drop"
    inbox.mkdir()
    proc = None
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("WAREHOUSE_URL", url)
            mp.setenv("COREHUB_HOME", str(home))
            mp.delenv("COREHUB_API_URL", raising=False)
            deliver(inbox, "CUTRU_01_20261120_001.csv", CUTRU_HEADER, PEOPLE)
            deliver(inbox, "HOTICH_01_20261121_001.csv", HOTICH_HEADER,
                    [event(no="HT-1", pid="001093000004", name="Phạm Văn Dũng")])
            keys = {}
            for client, scopes in [("all", "verify,enterprise,land,rights"), ("verify-only", "verify"),
                                   ("enterprise-only", "enterprise"), ("revoked", "verify")]:
                code, out = _apikey("create", client, "--scope", scopes)
                assert code == 0
                keys[client] = out.strip().splitlines()[-1]   # the key is the last line
            _apikey("revoke", "revoked")
            port = _free_port()
            log = home / "serve.log"
            with open(log, "wb") as fh:
                proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "--host", "127.0.0.1",
                                         "--port", str(port)], env=os.environ.copy(), stdout=fh,
                                        stderr=subprocess.STDOUT)
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(base + "/openapi.json", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            yield Api(base, url, keys, log)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


# -- verify ----------------------------------------------------------------------------------------------
def test_verify_matches_the_register_and_says_nothing_else(api):
    assert api.verify("001090000001", "Nguyễn Văn An", "1990-03-12") is True
    assert api.verify("001090000001", "Nguyễn Văn An", "1990-03-13") is False      # another day
    assert api.verify("001090000001", "Nguyễn Văn Anh", "1990-03-12") is False     # another name
    assert api.verify("001090000001", "Nguyen Van An", "1990-03-12") is False      # diacritics count
    assert api.verify("001090000009", "Nguyễn Văn An", "1990-03-12") is False      # nobody has this ID
    r = api.post("/v1/persons/verify", json={"person_id": "001090000009", "full_name": "X", "birth_date": "1990-03-12"})
    assert r.json() == {"match": False} and "person" not in r.text.lower()


def test_verify_compares_names_after_nfc_spaces_and_case_folding(api):
    nfd = unicodedata.normalize("NFD", "Nguyễn Văn An")
    assert nfd != "Nguyễn Văn An"
    for name in (nfd, "NGUYỄN VĂN AN", "  nguyễn   văn  an ", "nGUYỄN\tVăn An"):
        assert api.verify("001090000001", name, "1990-03-12") is True, name
    # stored from ALL CAPS as title case; any case matches
    assert api.verify("001194000005", "hoàng thị én", "1994-02-02") is True
    assert api.verify("001194000005", "HOÀNG THỊ ÉN", "1994-02-02") is True


def test_verify_partial_birth_dates_match_within_the_known_period(api):
    # born 00/05/1991: the register knows the month
    assert api.verify("001191000002", "Trần Thị Bình", "1991-05-01") is True
    assert api.verify("001191000002", "Trần Thị Bình", "1991-05-31") is True
    assert api.verify("001191000002", "Trần Thị Bình", "1991-06-01") is False
    assert api.verify("001191000002", "Trần Thị Bình", "1990-05-01") is False
    # born 1992: the register knows the year
    assert api.verify("001092000003", "Lê Văn Cường", "1992-01-01") is True
    assert api.verify("001092000003", "Lê Văn Cường", "1992-12-31") is True
    assert api.verify("001092000003", "Lê Văn Cường", "1993-01-01") is False


def test_verify_never_matches_a_deceased_person(api):
    assert api.verify("001093000004", "Phạm Văn Dũng", "1993-01-01") is False


@pytest.mark.parametrize("body", [
    {"person_id": "1234", "full_name": "A", "birth_date": "1990-01-01"},
    {"person_id": "001090000001", "full_name": "A", "birth_date": "1990-02-30"},
    {"person_id": "001090000001", "full_name": "A", "birth_date": "12/03/1990"},
    {"person_id": "001090000001", "full_name": "A", "birth_date": 19900312},
    {"person_id": "001090000001", "full_name": "", "birth_date": "1990-03-12"},
    {"person_id": "001090000001", "full_name": "A", "birth_date": "1990-03-12", "sex": "male"},
])
def test_verify_rejects_malformed_requests(api, body):
    r = api.post("/v1/persons/verify", json=body)
    assert r.status_code == 422
    assert api.last_audit()[5:] == (422, "invalid")


def test_verify_with_a_nul_or_odd_text_is_a_plain_no(api):
    assert api.verify("001090000001", "Nguyễn\x00 Văn An", "1990-03-12") is False
    assert api.verify("001090000001", "Nguyễn Văn An" * 15, "1990-03-12") is False


# -- keys and scopes ---------------------------------------------------------------------------------
def test_missing_bad_revoked_or_unscoped_keys_are_refused_and_recorded(api):
    body = {"person_id": "001090000001", "full_name": "Nguyễn Văn An", "birth_date": "1990-03-12"}
    good = api.keys["verify-only"]
    key_id = good.split("_")[1]
    cases = [
        (None, 401, (None, None, "POST", "/v1/persons/verify", "001090000001", 401, "unauthorized")),
        ("not-a-key", 401, (None, None, "POST", "/v1/persons/verify", "001090000001", 401, "unauthorized")),
        (good[:-4] + "AAAA", 401, (None, key_id, "POST", "/v1/persons/verify", "001090000001", 401, "unauthorized")),
        ("chk_000000000000_" + good.split("_", 2)[2], 401,
         (None, "000000000000", "POST", "/v1/persons/verify", "001090000001", 401, "unauthorized")),
        (api.keys["revoked"], 401, (None, api.keys["revoked"].split("_")[1], "POST", "/v1/persons/verify",
                                    "001090000001", 401, "unauthorized")),
        (api.keys["enterprise-only"], 403, ("enterprise-only", api.keys["enterprise-only"].split("_")[1], "POST",
                                            "/v1/persons/verify", "001090000001", 403, "forbidden")),
        (good, 200, ("verify-only", key_id, "POST", "/v1/persons/verify", "001090000001", 200, "match")),
    ]
    for key, status, audit in cases:
        headers = {"X-API-Key": key} if key else {}
        r = httpx.post(api.base + "/v1/persons/verify", json=body, headers=headers, timeout=10)
        assert r.status_code == status, (key, r.text)
        if status != 200:
            assert "match" not in r.json()
        assert api.last_audit() == audit


def test_other_endpoints_need_their_scope(api):
    assert api.get("/v1/enterprises/0100109106", key="verify-only").status_code == 403
    assert api.last_audit()[3:] == ("/v1/enterprises/{code}", "0100109106", 403, "forbidden")
    assert api.get("/v1/wards/00004/parcels", key="enterprise-only").status_code == 403
    assert api.get("/v1/persons/001090000001/rights", key="enterprise-only").status_code == 403
    assert api.last_audit()[3:] == ("/v1/persons/{person_id}/rights", "001090000001", 403, "forbidden")
    assert api.get("/v1/enterprises/0100109106/rights", key=None).status_code == 401


def test_keys_are_stored_hashed_and_the_cli_checks_scopes(api, monkeypatch):
    with psycopg.connect(api.db_url) as conn:
        stored = " ".join(str(r) for r in conn.execute("select * from api.client_key").fetchall())
        for key in api.keys.values():
            secret = key.split("_", 2)[2]
            assert key not in stored and secret not in stored
            assert secret.encode() not in b"".join(bytes(r[0]) + bytes(r[1]) for r in conn.execute(
                "select salt, key_hash from api.client_key").fetchall())
    monkeypatch.setenv("WAREHOUSE_URL", api.db_url)
    assert _apikey("create", "x", "--scope", "verify,everything")[0] == 2
    assert _apikey("create", "bad name!", "--scope", "verify")[0] == 2
    code, out = _apikey("list")
    assert code == 0 and "all\t" in out and "revoked " in out and "chk_" not in out


# -- the enterprise register ----------------------------------------------------------------------
def test_enterprise_lookup_answers_public_fields_and_status(api, tmp_path, monkeypatch):
    from test_serving import ENTERPRISES, deliver_enterprises

    monkeypatch.setenv("WAREHOUSE_URL", api.db_url)
    monkeypatch.setenv("COREHUB_HOME", str(tmp_path))
    (tmp_path / "drop").mkdir()
    assert deliver_enterprises(tmp_path / "drop")["rows_loaded"] == len(ENTERPRISES)
    r = api.get("/v1/enterprises/0100109106")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["enterprise_code"] == "0100109106" and answer["status"] == "active"
    assert answer["legal_name"] == "Công ty Cổ phần Sông Hồng"
    assert "001090000001" not in r.text and not any("person_id" in k for k in answer)   # no personal ID
    assert api.last_audit()[3:] == ("/v1/enterprises/{code}", "0100109106", 200, "found")
    branch = api.get("/v1/enterprises/0100109106-001").json()
    assert branch["parent_enterprise_code"] == "0100109106"
    assert api.get("/v1/enterprises/0101243150").status_code == 404
    assert api.last_audit()[5:] == (404, "not_found")


def test_parcels_of_a_ward_and_the_rights_of_a_holder(api, tmp_path, monkeypatch):
    from test_land import DKKD_HEADER, ENT_A, gcn, parcel, right, square, tddat

    monkeypatch.setenv("WAREHOUSE_URL", api.db_url)
    monkeypatch.setenv("COREHUB_HOME", str(tmp_path))
    inbox = tmp_path / "drop"
    inbox.mkdir()
    tddat(inbox, "TDDAT_01_20261120_001.csv", [parcel(no="1"), parcel(no="2", geom=square(1)),
                                                parcel(ward="00103", no="3", geom=square(2))])
    deliver(inbox, "DKKD_01_20261120_001.csv", DKKD_HEADER,
            [[ENT_A, "Công ty cổ phần Sữa Hà Nội", "Công ty cổ phần", "12/03/2010", "Đang hoạt động", "01", "00004"]])
    r = gcn(inbox, "GCN_01_20261120_001.csv", [
        right("CS 000001", "1", pid="001090000001", name="Nguyễn Văn An", share="50"),
        right("CS 000001", "1", pid="001191000002", name="Trần Thị Bình", share="50"),
        right("CS 000002", "2", kind="TC", ent=ENT_A, name="Công ty cổ phần Sữa Hà Nội")])
    assert (r["status"], r["rows_loaded"]) == ("loaded", 3)
    parcels = api.get("/v1/wards/00004/parcels")
    assert parcels.status_code == 200, parcels.text
    assert [p["parcel_id"] for p in parcels.json()] == ["00004-12-1", "00004-12-2"]
    assert not any("holder" in k or "person" in k for p in parcels.json() for k in p)   # no holders
    assert "001090000001" not in parcels.text
    assert api.last_audit()[3:] == ("/v1/wards/{ward_code}/parcels", "00004", 200, "rows:2")
    assert [p["parcel_id"] for p in api.get("/v1/wards/00611/parcels").json()] == ["00103-12-3"]  # current ward
    rights = api.get("/v1/persons/001090000001/rights")
    assert rights.status_code == 200 and rights.json() == [
        {"certificate_serial": "CS 000001", "parcel_id": "00004-12-1", "ward_code": "00004",
         "issued_on": "2015-06-15", "holder_name": "Nguyễn Văn An", "share_pct": 50.0, "status": "valid"}]
    assert api.last_audit()[3:] == ("/v1/persons/{person_id}/rights", "001090000001", 200, "rows:1")
    assert [x["parcel_id"] for x in api.get(f"/v1/enterprises/{ENT_A}/rights").json()] == ["00004-12-2"]
    assert api.get("/v1/persons/001092000003/rights").json() == []
    # rights are personal data: only for clients with the scope rights; refused and still recorded
    assert api.get("/v1/persons/001090000001/rights", key="enterprise-only").status_code == 403
    assert api.last_audit()[5:] == (403, "forbidden")


# -- the access log and the role -----------------------------------------------------------------------
def test_every_request_is_recorded_even_outside_v1(api):
    assert httpx.get(api.base + "/openapi.json", timeout=10).status_code == 200
    assert api.last_audit() == (None, None, "GET", "/openapi.json", None, 200, "ok")
    assert httpx.get(api.base + "/nowhere", timeout=10).status_code == 404
    assert api.last_audit()[2:] == ("GET", "/nowhere", None, 404, "not_found")
    assert httpx.delete(api.base + "/v1/persons/verify", headers={"X-API-Key": api.keys["all"]},
                        timeout=10).status_code == 405
    assert api.last_audit()[0] == "all" and api.last_audit()[5:] == (405, "method_not_allowed")


def test_no_record_no_answer(api):
    """When the access log cannot be written, the answer is withheld (503), not sent unrecorded."""
    with psycopg.connect(api.db_url, autocommit=True) as conn:
        before = conn.execute("select count(*) from audit.access_log").fetchone()[0]
        conn.execute("revoke insert on audit.access_log from core_api")
        try:
            r = api.post("/v1/persons/verify", json={"person_id": "001090000001", "full_name": "Nguyễn Văn An",
                                                     "birth_date": "1990-03-12"})
        finally:
            conn.execute("grant insert on audit.access_log to core_api")
        assert r.status_code == 503 and "match" not in r.text
        assert conn.execute("select count(*) from audit.access_log").fetchone()[0] == before


def test_the_api_connects_as_core_api_and_cannot_read_people(api):
    with psycopg.connect(api.db_url) as conn:
        users = conn.execute("select distinct usename from pg_stat_activity where application_name = 'corehub-api' "
                             "and datname = current_database()").fetchall()
    assert users == [("core_api",)]
    from pipelines.roles import role_url

    with psycopg.connect(role_url(api.db_url, "core_api")) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select full_name from core.person")


def test_sql_name_folding_agrees_with_python_casefold(api):
    letters = "àáạảãâầấậẩẫăằắặẳẵèéẹẻẽêềếệểễìíịỉĩòóọỏõôồốộổỗơờớợởỡùúụủũưừứựửữỳýỵỷỹđ"
    names = ["Nguyễn Văn An", "ĐẶNG THỊ THU HƯƠNG", "  Lý   Ý  Nhi ", letters, letters.upper(),
             unicodedata.normalize("NFD", letters.upper()), "Straße ẞ", "Σίσυφος ΣΊΣΥΦΟΣ", "O'Brien-Smith"]
    with psycopg.connect(api.db_url) as conn:
        for name in names:
            sql = conn.execute("select api.name_key(%s)", (name,)).fetchone()[0]
            assert sql == " ".join(unicodedata.normalize("NFC", name).casefold().split()), name


# -- the OpenAPI contract, fuzzed ------------------------------------------------------------------------
def test_openapi_spec_holds_under_schemathesis(api, tmp_path):
    spec = httpx.get(api.base + "/openapi.json", timeout=10).json()
    assert {"/v1/persons/verify", "/v1/enterprises/{code}", "/v1/wards/{ward_code}/parcels",
            "/v1/persons/{person_id}/rights", "/v1/enterprises/{code}/rights"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["APIKeyHeader"] == {"type": "apiKey", "in": "header",
                                                                     "name": "X-API-Key",
                                                                     "description": spec["components"][
                                                                         "securitySchemes"]["APIKeyHeader"][
                                                                         "description"]}
    # bounded: a few examples per operation, no stateful phase; one worker (Python 3.11.7's ast.parse,
    # which hypothesis calls to describe filters, fails now and then when run in several threads)
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    proc = subprocess.run(
        [st, "run", api.base + "/openapi.json", "--header", f"X-API-Key: {api.keys['all']}",
         "--checks", "all", "--max-examples", "8", "--seed", "1", "--phases", "examples,coverage,fuzzing",
         "--workers", "1", "--request-timeout", "10", "--max-response-time", "5", "--no-shrink"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    with psycopg.connect(api.db_url) as conn:   # every one of those requests is in the log
        assert conn.execute("select count(*) from audit.access_log where status >= 400").fetchone()[0] > 0


def test_the_api_prefers_core_api_and_says_so_when_it_cannot(warehouse, monkeypatch, caplog):
    import re

    import pipelines.roles as roles
    from pipelines.api import resolve_db_url

    assert resolve_db_url() == roles.role_url(warehouse, "core_api")
    monkeypatch.setenv("COREHUB_API_URL", "postgresql://someone@db.example:5432/corehub")
    assert resolve_db_url() == "postgresql://someone@db.example:5432/corehub"
    monkeypatch.delenv("COREHUB_API_URL")
    monkeypatch.setattr(roles, "role_url", lambda url, role: re.sub(r"//[^@/]*@", "//corehub_no_such_role@", url))
    with caplog.at_level("WARNING"):
        assert resolve_db_url() == warehouse
    assert "not least privilege" in caplog.text and "COREHUB_API_URL" in caplog.text
