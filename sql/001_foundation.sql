-- Schemas, the delivery register, the quarantine and the administrative-unit reference.

create schema if not exists meta;        -- deliveries, migrations: the pipeline's own bookkeeping
create schema if not exists stage;       -- per-delivery working tables, dropped after each run
create schema if not exists quarantine;  -- rows kept out of the core, with their reasons
create schema if not exists ref;         -- reference data (administrative units)
create schema if not exists store;       -- bitemporal version tables behind the published views
create schema if not exists history;     -- published: every version, bitemporal
create schema if not exists core;        -- published: current state
create schema if not exists rules;       -- SQL functions the contracts' rules call

create table meta.delivery (
    delivery_id      bigint generated always as identity primary key,
    feed             text,                  -- NULL (like the next three) when the file name is unreadable
    province_code    text,
    delivery_date    date,
    seq              text,
    file_name        text        not null,
    sha256           text        not null,
    status           text        not null default 'processing'
                     check (status in ('processing', 'loaded', 'loaded_with_rejections', 'rejected', 'superseded')),
    received_at      timestamptz not null default clock_timestamp(),
    finished_at      timestamptz,
    receipt          jsonb
);
create unique index delivery_sha256_done on meta.delivery (sha256) where status <> 'processing';
create index delivery_feed_province on meta.delivery (feed, province_code, delivery_date);

create table quarantine.row (
    delivery_id      bigint      not null references meta.delivery,
    feed             text        not null,
    row_no           bigint      not null,
    reasons          text[]      not null,
    detail           text        not null,   -- which values broke which rule, for the agency
    record_key       text,                    -- the row's key as sent, when it has one
    raw              jsonb       not null,    -- every value exactly as delivered
    resolved_by      bigint      references meta.delivery,
    primary key (delivery_id, row_no)
);
create index quarantine_open on quarantine.row (feed) where resolved_by is null;

-- Every administrative unit, before and after the 1 July 2025 reorganisation.
-- Pre-2025 units have valid_from NULL (before records began) and valid_to 2025-07-01;
-- current ones valid_from 2025-07-01 and valid_to NULL. successor_code: the current unit a
-- pre-2025 unit became (the default one when it was split: partial_merge).
create table ref.admin_unit (
    code             text    not null,
    level            text    not null check (level in ('province', 'district', 'ward')),
    name             text    not null,
    province_code    text    not null,
    district_code    text,
    valid_from       date,
    valid_to         date,
    successor_code   text,
    partial_merge    boolean not null default false
);
create unique index admin_unit_key on ref.admin_unit (level, code, coalesce(valid_from, '0001-01-01'));
