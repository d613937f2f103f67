"""The warehouse's roles (created by sql/020_roles.sql) and connection URLs for them."""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

ROLES = {
    "core_reader": "reads core, history and ref in full (personal data); writes nothing",
    "core_public": "reads only open_data (no personal data)",
    "core_writer": "the pipeline's loading role: appends to store, meta, quarantine, ops; works in stage",
    "core_api": "the lookup API: yes/no identity checks, open_data, its keys and the access log",
}


def role_url(url: str, role: str) -> str:
    """The same server and database as `url`, as `role` (without a password)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
        raise ValueError("the warehouse URL must be a postgresql://user@host:port/database URL")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{role}@{host}", parts.path, parts.query, parts.fragment))


def external_instructions(role: str) -> str:
    """What an administrator of a server other than the embedded one sets up to use a role."""
    return (
        f"The migrations created the role {role} ({ROLES[role]}) on this server: LOGIN, without a "
        f"password, so the URL above works only where pg_hba.conf trusts it. For a service, "
        f"create its own login in that role and connect with it instead:\n"
        f"    create role <service> login password '<secret>' in role {role};\n"
        f"    -- postgresql://<service>:<secret>@<host>:<port>/<database>, allowed in pg_hba.conf\n"
        f"Every grant goes to {role}, so the login gets exactly its rights (and loses them with "
        f"`revoke {role} from <service>`).")
