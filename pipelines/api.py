"""The lookup API for other e-government services: `corehub serve --host 127.0.0.1 --port 8000`.

Every call needs a client key (header X-API-Key, `corehub apikey create NAME --scope ...`) whose
scopes cover the endpoint; every request, answered or refused, is recorded in audit.access_log
before its answer leaves (no record, no answer: 503). The API connects as the role core_api,
which cannot read a person's record: verifying a person is a yes/no question asked of
api.verify_person() (sql/023_api.sql); everything else it reads is open_data.

What the other endpoints read:

  enterprise   open_data.enterprise (core.enterprise without personal ID numbers), keyed by the
               DKKD contract's key
  parcels      open_data.land_parcel, filtered on its ward_code (the current ward)
  rights       api.rights_of(holder_type text, holder_id text): a security-definer function the
               land serving migration grants to core_api ('person' or 'enterprise', the ID or code)

OpenAPI: /openapi.json (and /docs).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import json
import queue
import re
import threading
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from . import apikeys, contracts

log = logging.getLogger(__name__)

AUDIT = "corehub.audit"     # scope entry: what the access log records about the request
CLIENT = "corehub.client"   # scope entry: the authenticated client
PARCEL_ENTITY = "land_parcel"   # the land parcel feed's entity (TDDAT): open_data.land_parcel
MAX_BODY = 16_384           # bytes; a verify request is a few hundred
SUBJECT_KEYS = ("person_id", "code", "ward_code")

PERSON_ID = r"^[0-9]{12}$"
ENTERPRISE_CODE = r"^[0-9]{10}(-[0-9]{3})?$"
WARD_CODE = r"^[0-9]{5}$"


# -- the database -------------------------------------------------------------------------------
class Pool:
    """A few autocommit connections reused across requests (threads)."""

    def __init__(self, url: str, size: int = 8):
        self.url = url
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    @contextlib.contextmanager
    def connection(self):
        if not self._slots.acquire(timeout=30):
            raise RuntimeError("no database connection free")
        conn = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10,
                                       application_name="corehub-api", options="-c statement_timeout=10000")
            yield conn
        finally:
            if conn is not None:
                if conn.closed or conn.broken or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.close()
                else:
                    self._idle.put(conn)
            self._slots.release()

    def close(self):
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def resolve_db_url() -> str:
    """The URL the API connects with: COREHUB_API_URL, else the warehouse as core_api.

    When core_api cannot log in (an external server that wants passwords), the API falls back to
    the warehouse URL's own role and says so: set COREHUB_API_URL to a login in role core_api.
    """
    from . import warehouse
    from .migrations import ensure_ready
    from .roles import role_url

    explicit = os.environ.get("COREHUB_API_URL")
    if explicit:
        return explicit
    base = warehouse.url()
    ensure_ready(base)
    candidate = role_url(base, "core_api")
    try:
        psycopg.connect(candidate, connect_timeout=10).close()
        return candidate
    except psycopg.OperationalError as exc:
        log.warning("cannot connect as core_api (%s); the API falls back to the warehouse URL's own role, "
                    "which is not least privilege: set COREHUB_API_URL to a login in role core_api", exc)
        return base


# -- the access log ---------------------------------------------------------------------------
DEFAULT_RESULT = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                  413: "too_large", 422: "invalid"}


def _write_audit(pool: Pool, row: dict) -> None:
    with pool.connection() as conn:
        conn.execute("insert into audit.access_log (client, key_id, method, endpoint, subject_key, status, result) "
                     "values (%(client)s, %(key_id)s, %(method)s, %(endpoint)s, %(subject)s, %(status)s, %(result)s)",
                     row)


async def _read_body(receive) -> tuple[bytes, bool]:
    """The whole request body (the API's bodies are small), and whether it was cut at MAX_BODY."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _clean(text: str | None, limit: int = 200) -> str | None:
    """A value safe to store: no NUL, no lone surrogates, bounded."""
    if text is None:
        return None
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")[:limit]


class AuditMiddleware:
    """Authenticates /v1/ requests and records every request before its answer is sent.

    The answer is held until its row is in audit.access_log; when that fails the client gets
    503 instead, so nothing is disclosed without a record.
    """

    def __init__(self, app, pool_of):
        self.app, self.pool_of = app, pool_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        pool: Pool = self.pool_of()
        headers = Headers(scope=scope)
        key = headers.get("x-api-key")
        audit = scope[AUDIT] = {"client": None, "key_id": _clean(apikeys.key_id_of(key)), "subject": None,
                                "result": None}
        held: list[dict] = []
        status = {"code": 500}
        body, too_large = await _read_body(receive)
        replay = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive_again():
            return replay.pop() if replay else await receive()

        audit["body"] = body

        async def hold(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            held.append(message)

        try:
            if too_large:
                await JSONResponse({"detail": f"the request body is over {MAX_BODY} bytes"},
                                   status_code=413)(scope, receive_again, hold)
            elif scope["path"].startswith("/v1/"):
                client = await run_in_threadpool(self._authenticate, pool, key)
                if client is None:
                    response = JSONResponse({"detail": "a valid API key is required (header X-API-Key)"},
                                            status_code=401, headers={"WWW-Authenticate": "ApiKey"})
                    await response(scope, receive_again, hold)
                else:
                    audit["client"] = client.name
                    scope[CLIENT] = client
                    await self.app(scope, receive_again, hold)
            else:
                await self.app(scope, receive_again, hold)
        except Exception:
            try:
                await self._record(pool, scope, 500, "error")
            except Exception:
                log.exception("could not write audit.access_log")
            raise
        try:
            await self._record(pool, scope, status["code"], None)
        except Exception:
            log.exception("could not write audit.access_log; the answer is withheld")
            await JSONResponse({"detail": "the access log is unavailable; try again later"},
                               status_code=503)(scope, receive, send)
            return
        for message in held:
            await send(message)

    @staticmethod
    def _authenticate(pool: Pool, key: str | None):
        if apikeys.key_id_of(key) is None:
            return None
        with pool.connection() as conn:
            return apikeys.authenticate(conn, key)

    async def _record(self, pool: Pool, scope, code: int, result: str | None):
        audit = scope[AUDIT]
        route = scope.get("route")
        subject = audit["subject"]
        if subject is None:  # refused before the endpoint ran: the key it was asked about, if any
            params = dict(scope.get("path_params") or {})
            try:
                sent = json.loads(audit["body"]) if audit["body"] else None
                if isinstance(sent, dict):
                    params = {**{k: v for k, v in sent.items() if isinstance(v, str)}, **params}
            except (ValueError, RecursionError):
                pass
            subject = next((params[k] for k in SUBJECT_KEYS if k in params), None)
        row = {"client": audit["client"], "key_id": audit["key_id"], "method": scope["method"],
               "endpoint": _clean(getattr(route, "path", None) or scope["path"]),
               "subject": _clean(subject, 64), "status": code,
               "result": result or audit["result"] or DEFAULT_RESULT.get(code)
               or ("error" if code >= 500 else "ok")}
        await run_in_threadpool(_write_audit, pool, row)


# -- the endpoints ----------------------------------------------------------------------------
class Error(BaseModel):
    detail: str


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"person_id": "001090000001", "full_name": "Nguyễn Văn An", "birth_date": "1990-03-12"}]})

    person_id: str = Field(pattern=PERSON_ID, description="Personal identification number (12 digits)")
    full_name: str = Field(min_length=1, max_length=200,
                           description="Full name; compared after NFC, collapsing spaces and case folding "
                                       "(diacritics count: Nguyen is not Nguyễn)")
    birth_date: dt.date = Field(description=(
        "Date of birth, YYYY-MM-DD. Where the register knows only the month (year) of birth, any day of "
        "that month (year) matches: send the first day when the document says 00/05/1990."))

    @field_validator("birth_date", mode="before")
    @classmethod
    def _iso_date_only(cls, v):
        # a date is YYYY-MM-DD, nothing else (pydantic alone would take numbers and datetimes too)
        if not isinstance(v, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", v):
            raise ValueError("a date YYYY-MM-DD")
        return v


class VerifyResponse(BaseModel):
    match: bool = Field(description="true when a living person in the current register has this ID, name "
                                    "and birth date; false otherwise (nothing says why)")


api_key = APIKeyHeader(name="X-API-Key", description="the client's key (corehub apikey create)", auto_error=False)


def require(scope: str):
    """Dependency: the request's client holds `scope` (the middleware already authenticated it)."""
    def check(request: Request, _key: Annotated[str | None, Depends(api_key)]) -> apikeys.Client:
        client = request.scope.get(CLIENT)
        if client is None:  # only when mounted outside /v1/: the middleware guards /v1/
            raise HTTPException(401, "a valid API key is required (header X-API-Key)",
                                headers={"WWW-Authenticate": "ApiKey"})
        if scope not in client.scopes:
            raise HTTPException(403, f"this key does not have the scope {scope!r}")
        return client
    return check


ERRORS = {401: {"model": Error, "description": "missing, unknown or revoked key"},
          403: {"model": Error, "description": "the key lacks this endpoint's scope"}}
NOT_FOUND = {404: {"model": Error, "description": "not found"}}


def _contract(entity: str):
    return contracts.for_entity(entity)


def _rows(cur) -> list[dict]:
    names = [d.name for d in cur.description]
    return [jsonable_encoder(dict(zip(names, r))) for r in cur.fetchall()]


def _set(request: Request, **audit) -> None:
    request.scope[AUDIT].update(audit)


def create_app(db_url: str | None = None) -> FastAPI:
    """The application; connects lazily to db_url (default: resolve_db_url())."""
    state: dict[str, Any] = {}
    lock = threading.Lock()

    def pool() -> Pool:
        with lock:
            if "pool" not in state:
                state["pool"] = Pool(db_url or resolve_db_url())
            return state["pool"]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        if "pool" in state:
            state["pool"].close()

    app = FastAPI(
        title="corehub lookup API", version="1",
        description="Answers from Viet Nam's core population, enterprise and land databases for authorised "
                    "e-government services. Every request is recorded (Decree 13/2023/ND-CP).",
        lifespan=lifespan)
    app.add_middleware(AuditMiddleware, pool_of=pool)

    @app.post("/v1/persons/verify", response_model=VerifyResponse, responses=ERRORS,
              summary="Does this person ID belong to this name and birth date? (scope verify)")
    def verify(body: VerifyRequest, request: Request,
               _client: Annotated[apikeys.Client, Depends(require("verify"))]) -> VerifyResponse:
        _set(request, subject=body.person_id)
        name = body.full_name
        if "\x00" in name or not name.encode("utf-8", "ignore").decode("utf-8") == name:
            match = False  # no name in the register has these characters
        else:
            with pool().connection() as conn:
                match = conn.execute("select api.verify_person(%s, %s, %s)",
                                     (body.person_id, name, body.birth_date)).fetchone()[0]
        _set(request, result="match" if match else "no_match")
        return VerifyResponse(match=match)

    @app.get("/v1/enterprises/{code}", response_model=dict[str, Any], responses={**ERRORS, **NOT_FOUND},
             summary="An enterprise's public fields and status (scope enterprise)")
    def enterprise(request: Request, code: Annotated[str, Path(pattern=ENTERPRISE_CODE, description=(
                       "enterprise code (tax code): 10 digits, or 13 as NNNNNNNNNN-NNN for a branch"))],
                   _client: Annotated[apikeys.Client, Depends(require("enterprise"))]) -> dict[str, Any]:
        contract = _contract("enterprise")
        with pool().connection() as conn:
            cur = conn.execute(f'select * from open_data.enterprise where "{contract.key[0]}" = %s', (code,))
            rows = _rows(cur)
        if not rows:
            raise HTTPException(404, "no enterprise with this code")
        _set(request, result="found")
        return rows[0]

    @app.get("/v1/wards/{ward_code}/parcels", response_model=list[dict[str, Any]],
             responses={**ERRORS, **NOT_FOUND}, summary="The land parcels of a ward, without holders (scope land)")
    def parcels(request: Request,
                ward_code: Annotated[str, Path(pattern=WARD_CODE, description="current ward code (5 digits)")],
                _client: Annotated[apikeys.Client, Depends(require("land"))],
                limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
                offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> list[dict[str, Any]]:
        contract = _contract(PARCEL_ENTITY)
        with pool().connection() as conn:
            ward = next((c.to for c in contract.columns if c.type == "ward_code"), "ward_code")
            order = ", ".join(f'"{k}"' for k in contract.key)
            cur = conn.execute(f'select * from open_data.{PARCEL_ENTITY} where "{ward}" = %s '
                               f"order by {order} limit %s offset %s", (ward_code, limit, offset))
            rows = _rows(cur)
        _set(request, result=f"rows:{len(rows)}")
        return rows

    def _rights(request: Request, holder_type: str, holder_id: str) -> list[dict[str, Any]]:
        with pool().connection() as conn:
            rows = _rows(conn.execute("select * from api.rights_of(%s, %s)", (holder_type, holder_id)))
        _set(request, result=f"rows:{len(rows)}")
        return rows

    @app.get("/v1/persons/{person_id}/rights", response_model=list[dict[str, Any]],
             responses={**ERRORS, **NOT_FOUND}, summary="Land rights held by a person (scope rights)")
    def person_rights(request: Request,
                      person_id: Annotated[str, Path(pattern=PERSON_ID, description="personal identification number")],
                      _client: Annotated[apikeys.Client, Depends(require("rights"))]) -> list[dict[str, Any]]:
        return _rights(request, "person", person_id)

    @app.get("/v1/enterprises/{code}/rights", response_model=list[dict[str, Any]],
             responses={**ERRORS, **NOT_FOUND}, summary="Land rights held by an enterprise (scope rights)")
    def enterprise_rights(request: Request,
                          code: Annotated[str, Path(pattern=ENTERPRISE_CODE, description="enterprise code")],
                          _client: Annotated[apikeys.Client, Depends(require("rights"))]) -> list[dict[str, Any]]:
        return _rights(request, "enterprise", code)

    return app


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    url = resolve_db_url()
    from .config import redact_url
    log.info("lookup API on http://%s:%s (OpenAPI at /openapi.json), warehouse as %s", host, port, redact_url(url))
    uvicorn.run(create_app(url), host=host, port=port, log_level="info")
