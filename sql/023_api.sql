-- The lookup API (pipelines/api.py): client keys, the access log, and the one question about a
-- person it may ask. It connects as core_api, which cannot read core.person at all: it can only
-- ask api.verify_person() for a yes or no.

create schema if not exists api;
create schema if not exists audit;

-- One row per issued key (a client may hold several, e.g. while rotating). A key is
-- chk_<key_id>_<secret>; only sha256(salt || secret) is kept, never the key itself.
create table api.client_key (
    key_id      text        primary key,
    client      text        not null,
    scopes      text[]      not null,
    salt        bytea       not null,
    key_hash    bytea       not null,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);
create index client_key_client on api.client_key (client);

-- Every request to the API, answered or refused (Decree 13/2023: every access to personal data
-- is recorded). Append-only: rows are never changed or removed, not even by the owner.
create table audit.access_log (
    seq          bigint      generated always as identity primary key,
    accessed_at  timestamptz not null default clock_timestamp(),
    client       text,                  -- NULL when no valid key was presented
    key_id       text,                  -- the key's public part, as presented (even when unknown)
    method       text        not null,
    endpoint     text        not null,  -- the route, e.g. /v1/persons/verify
    subject_key  text,                  -- whom or what was asked about: person_id, enterprise code, ward
    status       int         not null,  -- HTTP status of the answer
    result       text        not null   -- match, no_match, found, not_found, unauthorized, forbidden, invalid, ...
);
create index access_log_subject on audit.access_log (subject_key, accessed_at);
create index access_log_client on audit.access_log (client, accessed_at);

create function audit.forbid_change() returns trigger language plpgsql as $$
begin
    raise exception '% is append-only', tg_table_schema || '.' || tg_table_name;
end
$$;
create trigger access_log_append_only before update or delete or truncate on audit.access_log
    for each statement execute function audit.forbid_change();

-- Names are compared after NFC, spaces collapsed, and case folding: lower case plus the full
-- folds PostgreSQL's lower() lacks for names (ß and ẞ -> ss, final ς -> σ); Python's
-- str.casefold() agrees on every Vietnamese name (tests/test_api.py checks it).
create function api.name_key(v text) returns text
language sql immutable parallel safe as $$
    select replace(replace(normalize(lower(btrim(regexp_replace(normalize(v, NFC), '\s+', ' ', 'g'))), NFC),
                           'ß', 'ss'), 'ς', 'σ')
$$;

-- Does a living person with this id, name and birth date exist in the current register?
-- A birth date known only to the month (year) matches any day of that month (year); the caller
-- always sends a full date (the first day of the period when their document has 00/05/1990).
-- A person recorded as deceased never matches. Answers true or false, nothing else.
create function api.verify_person(p_person_id text, p_full_name text, p_birth_date date) returns boolean
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select coalesce((
        select api.name_key(p.full_name) = api.name_key(p_full_name)
           and p.death_date is null
           and p.birth_date = case p.birth_date_precision
                                  when 'month' then date_trunc('month', p_birth_date::timestamp)::date
                                  when 'year' then date_trunc('year', p_birth_date::timestamp)::date
                                  else p_birth_date end
        from core.person p
        where p.person_id = p_person_id), false)
$$;
revoke execute on function api.verify_person(text, text, date) from public;

grant usage on schema api, audit to core_api;
grant select on api.client_key to core_api;          -- salted hashes: to check a presented key
grant insert on audit.access_log to core_api;        -- write only: it cannot read the log back
grant execute on function api.verify_person(text, text, date) to core_api;
revoke all on schema api, audit from public;
