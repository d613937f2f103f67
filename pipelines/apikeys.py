"""API keys of the lookup API's clients: issued per client with scopes, stored hashed.

A key reads ``chk_<key_id>_<secret>``: ``key_id`` (12 hex digits) is its public part, used to find
it and written in the access log; ``secret`` (32 random bytes, URL-safe base64) is shown once, when
the key is created, and never stored: api.client_key keeps a random per-key salt and
sha256(salt || secret). Secrets are random, not chosen by people, so one salted hash is enough
(no slow password hash needed) and a stolen table does not give back a single key.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import psycopg

PREFIX = "chk"
# What a client may ask (pipelines/api.py names the scope of each endpoint).
SCOPES = {
    "verify": "verify a person's identity: yes/no (POST /v1/persons/verify)",
    "enterprise": "public fields and status of an enterprise (GET /v1/enterprises/{code})",
    "land": "parcels of a ward, without holders (GET /v1/wards/{ward_code}/parcels)",
    "rights": "land rights held by a person or enterprise (GET /v1/persons/{person_id}/rights, "
              "GET /v1/enterprises/{code}/rights)",
}
_KEY = re.compile(rf"^{PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$")
_CLIENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ApiKeyError(ValueError):
    """A bad client name or scope list."""


@dataclass(frozen=True)
class Client:
    name: str
    key_id: str
    scopes: frozenset[str]


def _hash(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode("ascii")).digest()


def parse_scopes(text: str) -> list[str]:
    scopes = sorted({s.strip() for s in text.split(",") if s.strip()})
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ApiKeyError(f"unknown scope(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(SCOPES)}")
    return scopes


def create(conn: psycopg.Connection, client: str, scopes: list[str]) -> str:
    """Issue a new key for `client` with `scopes`; returns the key (the only time it exists)."""
    if not _CLIENT.match(client):
        raise ApiKeyError(f"client name {client!r}: letters, digits, '.', '_' or '-', at most 64")
    scopes = parse_scopes(",".join(scopes))
    key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_bytes(16)
    conn.execute("insert into api.client_key (key_id, client, scopes, salt, key_hash) values (%s, %s, %s, %s, %s)",
                 (key_id, client, scopes, salt, _hash(salt, secret)))
    return f"{PREFIX}_{key_id}_{secret}"


def revoke(conn: psycopg.Connection, key_id_or_client: str) -> int:
    """Revoke one key (by key_id) or every key of a client (by name); returns how many."""
    return conn.execute("update api.client_key set revoked_at = now() "
                        "where (key_id = %s or client = %s) and revoked_at is null",
                        (key_id_or_client, key_id_or_client)).rowcount


def list_keys(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("select client, key_id, array_to_string(scopes, ','), created_at, revoked_at "
                        "from api.client_key order by client, created_at").fetchall()


def key_id_of(key: str | None) -> str | None:
    """The public part of a presented key, when it is shaped like one (for the access log)."""
    m = _KEY.match(key or "")
    return m.group(1) if m else None


def authenticate(conn: psycopg.Connection, key: str | None) -> Client | None:
    """The client holding this key, or None (missing, malformed, unknown, revoked or wrong secret)."""
    m = _KEY.match(key or "")
    if not m:
        return None
    key_id, secret = m.groups()
    row = conn.execute("select client, scopes, salt, key_hash from api.client_key "
                       "where key_id = %s and revoked_at is null", (key_id,)).fetchone()
    if row is None:
        return None
    client, scopes, salt, key_hash = row
    if not hmac.compare_digest(_hash(bytes(salt), secret), bytes(key_hash)):
        return None
    return Client(name=client, key_id=key_id, scopes=frozenset(scopes))


def main(args) -> int:
    """`corehub apikey create NAME --scope verify,enterprise` | `list` | `revoke KEY_ID_OR_NAME`."""
    import sys

    from . import warehouse
    from .migrations import ensure_ready

    if args.action in ("create", "revoke") and not args.name:
        print(f"corehub apikey {args.action}: name the client" + (" (or key id)" if args.action == "revoke" else ""),
              file=sys.stderr)
        return 2
    url = warehouse.url()
    ensure_ready(url)
    with psycopg.connect(url, autocommit=True) as conn:
        if args.action == "create":
            try:
                key = create(conn, args.name, parse_scopes(args.scope))
            except ApiKeyError as exc:
                print(f"corehub apikey: {exc}", file=sys.stderr)
                return 2
            print(f"client {args.name}, scopes {','.join(parse_scopes(args.scope))}, key id {key_id_of(key)}")
            print("the key is shown only now (only its salted hash is kept); give it to the client:")
            print(key)
        elif args.action == "list":
            for client, key_id, scopes, created, revoked in list_keys(conn):
                print(f"{client}\t{key_id}\t{scopes}\tcreated {created:%Y-%m-%d %H:%M}"
                      + (f"\trevoked {revoked:%Y-%m-%d %H:%M}" if revoked else ""))
        else:
            n = revoke(conn, args.name)
            print(f"revoked {n} key(s)")
            return 0 if n else 1
    return 0
