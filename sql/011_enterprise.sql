-- The enterprise core (feed DKKD, schemas/dkkd.yaml): enterprises and their dependent units.
-- store.enterprise is the bitemporal version table (bookkeeping as store.person, sql/004 and 009);
-- core.enterprise and history.enterprise are the published views.
--
-- The legal representative is kept as sent (legal_rep_person_id): it is linked to core.person by
-- a join when read, never resolved into a frozen value at load, so a representative who reaches
-- the population register later is found from then on. A branch's parent is the first ten digits
-- of its code (parent_enterprise_code), found the same way.

create table store.enterprise (
    version_id              bigint generated always as identity primary key,
    enterprise_code         text        not null,
    parent_enterprise_code  text,
    legal_name              text        not null,
    english_name            text,
    short_name              text,
    legal_form              text        not null check (legal_form in (
                                'llc_single_member', 'llc_multi_member', 'joint_stock', 'partnership',
                                'private_enterprise', 'branch', 'representative_office')),
    status                  text        not null check (status in (
                                'active', 'suspended', 'dissolving', 'dissolved', 'certificate_revoked',
                                'bankrupt')),
    registration_date       date        not null,
    charter_capital_vnd     bigint,
    main_activity_code      text,
    seat_ward_code          text        not null,
    seat_address            text,
    legal_rep_person_id     text,
    legal_rep_name          text,
    seat_province_code      text        not null,
    scope                   text        not null,
    content_hash            text        not null,
    raw_hash                text,
    delivery_id             bigint      not null,  -- meta.delivery (no FK: a million-row load would check each)
    valid_from              timestamptz not null,
    valid_to                timestamptz not null default 'infinity',
    recorded_from           timestamptz not null,
    recorded_to             timestamptz not null default 'infinity'
);
create unique index enterprise_current on store.enterprise (enterprise_code)
    where valid_to = 'infinity' and recorded_to = 'infinity';
-- a snapshot's scope (removals) and rows sent again byte for byte (pipelines/checks.known_sql)
create index enterprise_scope_raw_current on store.enterprise (scope, raw_hash)
    where valid_to = 'infinity' and recorded_to = 'infinity';
create index enterprise_versions on store.enterprise (enterprise_code, recorded_from);
-- "the enterprises this person represents": one index scan on core.enterprise.legal_rep_person_id
create index enterprise_legal_rep_current on store.enterprise (legal_rep_person_id)
    where valid_to = 'infinity' and recorded_to = 'infinity';
-- "the branches of this enterprise"
create index enterprise_parent_current on store.enterprise (parent_enterprise_code)
    where valid_to = 'infinity' and recorded_to = 'infinity' and parent_enterprise_code is not null;

create view core.enterprise as
    select enterprise_code, parent_enterprise_code, legal_name, english_name, short_name, legal_form,
           status, registration_date, charter_capital_vnd, main_activity_code, seat_ward_code,
           seat_address, legal_rep_person_id, legal_rep_name
    from store.enterprise
    where valid_to = 'infinity' and recorded_to = 'infinity';

create view history.enterprise as
    select enterprise_code, parent_enterprise_code, legal_name, english_name, short_name, legal_form,
           status, registration_date, charter_capital_vnd, main_activity_code, seat_ward_code,
           seat_address, legal_rep_person_id, legal_rep_name,
           valid_from, nullif(valid_to, 'infinity') as valid_to,
           recorded_from, nullif(recorded_to, 'infinity') as recorded_to
    from store.enterprise;

-- core.enterprise as it was valid at valid_at, as the warehouse knew it at known_at (the pattern of
-- history.person_as_of): versions are half-open intervals [from, to).
create function history.enterprise_as_of(valid_at timestamptz, known_at timestamptz default now())
returns table (enterprise_code text, parent_enterprise_code text, legal_name text, english_name text,
               short_name text, legal_form text, status text, registration_date date,
               charter_capital_vnd bigint, main_activity_code text, seat_ward_code text,
               seat_address text, legal_rep_person_id text, legal_rep_name text)
language sql stable parallel safe as $$
    select h.enterprise_code, h.parent_enterprise_code, h.legal_name, h.english_name, h.short_name,
           h.legal_form, h.status, h.registration_date, h.charter_capital_vnd, h.main_activity_code,
           h.seat_ward_code, h.seat_address, h.legal_rep_person_id, h.legal_rep_name
    from history.enterprise h
    where h.valid_from <= valid_at and (h.valid_to is null or h.valid_to > valid_at)
      and h.recorded_from <= known_at and (h.recorded_to is null or h.recorded_to > known_at)
$$;

comment on view core.enterprise is
    'The enterprise register now: one row per enterprise or dependent unit current in its province''s last DKKD snapshot';
comment on view history.enterprise is
    'Every version of every enterprise, bitemporal (open ends are NULL)';
comment on column core.enterprise.parent_enterprise_code is
    'A dependent unit''s parent: the first ten digits of its code (NULL for an enterprise); join core.enterprise to find it';
comment on column history.enterprise.parent_enterprise_code is
    'A dependent unit''s parent: the first ten digits of its code (NULL for an enterprise)';
comment on function history.enterprise_as_of(timestamptz, timestamptz) is
    'core.enterprise as it was valid at valid_at, as the warehouse knew it at known_at (default now)';

-- Later migrations (020 roles, 021 function grants, 022 open data) cover these objects on a new
-- warehouse; on one where they ran already, do here what they would have done.
do $published$
begin
    if to_regprocedure('meta.refresh_open_data()') is not null then
        execute 'call meta.refresh_open_data()';
    end if;
    if exists (select 1 from pg_roles where rolname = 'core_reader') then
        execute 'revoke execute on function history.enterprise_as_of(timestamptz, timestamptz) from public';
        execute 'grant execute on function history.enterprise_as_of(timestamptz, timestamptz) to core_reader, core_writer';
    end if;
end
$published$;
