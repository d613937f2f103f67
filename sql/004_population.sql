-- The population core: persons (CUTRU) and civil status events (HOTICH).
-- store.* are the bitemporal version tables; history.* and core.* are the published views.
-- The history views show an open end (infinity in the store) as NULL.
-- Bookkeeping on every version: scope (the delivering province whose snapshot carries it),
-- content_hash (md5 of the content columns: unchanged rows are found by it), delivery_id.

create table store.person (
    version_id              bigint generated always as identity primary key,
    person_id               text        not null,
    full_name               text        not null,
    birth_date              date        not null,
    birth_date_precision    text        not null check (birth_date_precision in ('day', 'month', 'year')),
    sex                     text        not null check (sex in ('male', 'female')),
    nationality             text        not null,
    residence_ward_code     text        not null,
    residence_address       text,
    household_no            text,
    death_date              date,
    old_id_no               text,
    ethnicity               text,
    relation_to_head        text,
    residence_province_code text        not null,
    updated_at              timestamptz not null,
    scope                   text        not null,
    content_hash            text        not null,
    delivery_id             bigint      not null,  -- meta.delivery (no FK: a million-row load would check each)
    valid_from              timestamptz not null,
    valid_to                timestamptz not null default 'infinity',
    recorded_from           timestamptz not null,
    recorded_to             timestamptz not null default 'infinity'
);
create unique index person_current on store.person (person_id)
    where valid_to = 'infinity' and recorded_to = 'infinity';
create index person_scope_current on store.person (scope)
    where valid_to = 'infinity' and recorded_to = 'infinity';
create index person_versions on store.person (person_id, recorded_from);

create table store.civil_event (
    version_id              bigint generated always as identity primary key,
    province_code           text        not null,
    event_no                text        not null,
    event_type              text        not null check (event_type in ('birth', 'death', 'marriage', 'divorce')),
    event_date              date        not null,
    registered_on           date        not null,
    registry_ward_code      text        not null,
    person_id               text        not null,
    full_name               text        not null,
    related_person_id       text,
    scope                   text        not null,
    content_hash            text        not null,
    delivery_id             bigint      not null,  -- meta.delivery (no FK: a million-row load would check each)
    valid_from              timestamptz not null,
    valid_to                timestamptz not null default 'infinity',
    recorded_from           timestamptz not null,
    recorded_to             timestamptz not null default 'infinity'
);
create unique index civil_event_current on store.civil_event (province_code, event_no)
    where valid_to = 'infinity' and recorded_to = 'infinity';
create index civil_event_person on store.civil_event (person_id, event_type)
    where valid_to = 'infinity' and recorded_to = 'infinity';

create view core.person as
    select person_id, full_name, birth_date, birth_date_precision, sex, nationality,
           residence_ward_code, residence_address, household_no, death_date
    from store.person
    where valid_to = 'infinity' and recorded_to = 'infinity';

create view history.person as
    select person_id, full_name, birth_date, birth_date_precision, sex, nationality,
           residence_ward_code, residence_address, household_no, death_date,
           valid_from, nullif(valid_to, 'infinity') as valid_to,
           recorded_from, nullif(recorded_to, 'infinity') as recorded_to
    from store.person;

create view core.civil_event as
    select province_code, event_no, event_type, event_date, registered_on, registry_ward_code,
           person_id, full_name, related_person_id
    from store.civil_event
    where valid_to = 'infinity' and recorded_to = 'infinity';

create view history.civil_event as
    select province_code, event_no, event_type, event_date, registered_on, registry_ward_code,
           person_id, full_name, related_person_id,
           valid_from, nullif(valid_to, 'infinity') as valid_to,
           recorded_from, nullif(recorded_to, 'infinity') as recorded_to
    from store.civil_event;
