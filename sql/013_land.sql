-- The land core (feeds TDDAT, schemas/tddat.yaml, and GCN, schemas/gcn.yaml): parcels with their
-- geometry, and land-use right certificates with one row per holder. store.* are the bitemporal
-- version tables (bookkeeping as store.person, sql/004 and 009); core.* and history.* the
-- published views.
--
-- Geometry is kept as GeoJSON text in WGS84 exactly as Shapely wrote it from the delivered
-- geometry (it reads back to the same coordinates, bit for bit), with its geodesic area and its
-- bounding box as a PostgreSQL box: a GiST index on the box finds overlap candidates without
-- PostGIS (pipelines/land.py). Holders are kept as sent and linked to core.person /
-- core.enterprise by a join when read, so a holder who reaches the population data later is
-- found from then on without reloading the certificate.

create table store.land_parcel (
    version_id              bigint generated always as identity primary key,
    parcel_id               text        not null,
    ward_code               text        not null,
    survey_ward_code        text        not null,
    sheet_no                text        not null,
    parcel_no               text        not null,
    area_m2                 numeric     not null,
    computed_area_m2        numeric     not null,
    land_use_codes          text[]      not null,
    address                 text,
    geometry                text        not null,
    bbox                    box         not null,
    scope                   text        not null,
    content_hash            text        not null,
    raw_hash                text,
    delivery_id             bigint      not null,  -- meta.delivery (no FK: a million-row load would check each)
    valid_from              timestamptz not null,
    valid_to                timestamptz not null default 'infinity',
    recorded_from           timestamptz not null,
    recorded_to             timestamptz not null default 'infinity'
);
create unique index land_parcel_current on store.land_parcel (survey_ward_code, sheet_no, parcel_no)
    where valid_to = 'infinity' and recorded_to = 'infinity';
create unique index land_parcel_id_current on store.land_parcel (parcel_id)
    where valid_to = 'infinity' and recorded_to = 'infinity';
create index land_parcel_scope_raw_current on store.land_parcel (scope, raw_hash)
    where valid_to = 'infinity' and recorded_to = 'infinity';
create index land_parcel_versions on store.land_parcel (parcel_id, recorded_from);
-- "the parcels of a ward"
create index land_parcel_ward_current on store.land_parcel (ward_code)
    where valid_to = 'infinity' and recorded_to = 'infinity';
-- overlap candidates: boxes that intersect (&&), one index probe per parcel. Not partial on
-- purpose: a partial index whose predicate is "current" is a path to every current row, and right
-- after a first load (statistics of an empty table) the planner took it as the inner side of the
-- merge's anti-join, walking the whole index once per incoming row.
create index land_parcel_bbox on store.land_parcel using gist (bbox);

create table store.land_right (
    version_id              bigint generated always as identity primary key,
    certificate_serial      text        not null,
    parcel_id               text        not null,
    issued_on               date        not null,
    holder_type             text        not null check (holder_type in ('person', 'organisation')),
    -- '' when the row has none: these two are part of the key (one row per certificate and holder),
    -- and an equality join needs a value; the views show NULL
    holder_person_id        text        not null,
    holder_enterprise_code  text        not null,
    holder_name             text        not null,
    share_pct               numeric,
    status                  text        not null check (status in ('valid', 'revoked', 'transferred')),
    register_entry_no       text,
    survey_ward_code        text        not null,
    sheet_no                text        not null,
    parcel_no               text        not null,
    scope                   text        not null,
    content_hash            text        not null,
    raw_hash                text,
    delivery_id             bigint      not null,
    valid_from              timestamptz not null,
    valid_to                timestamptz not null default 'infinity',
    recorded_from           timestamptz not null,
    recorded_to             timestamptz not null default 'infinity'
);
create unique index land_right_current on store.land_right (certificate_serial, holder_person_id, holder_enterprise_code)
    where valid_to = 'infinity' and recorded_to = 'infinity';
create index land_right_scope_raw_current on store.land_right (scope, raw_hash)
    where valid_to = 'infinity' and recorded_to = 'infinity';
create index land_right_versions on store.land_right (certificate_serial, recorded_from);
-- "the holders of this parcel"
create index land_right_parcel_current on store.land_right (parcel_id)
    where valid_to = 'infinity' and recorded_to = 'infinity';
-- "the parcels this person / this enterprise holds rights on": on the expressions the views show
create index land_right_person_current on store.land_right ((nullif(holder_person_id, '')))
    where valid_to = 'infinity' and recorded_to = 'infinity';
create index land_right_enterprise_current on store.land_right ((nullif(holder_enterprise_code, '')))
    where valid_to = 'infinity' and recorded_to = 'infinity';

-- Parcels of the same survey commune overlapping beyond a sliver (more than 1 m2 and more than 1%
-- of the smaller one), recomputed for a province whenever its TDDAT snapshot is published: the
-- finding parcel_overlap, one row per parcel and the other parcel it overlaps.
create table store.land_parcel_overlap (
    scope                   text        not null,
    parcel_id               text        not null,
    other_parcel_id         text        not null,
    overlap_m2              numeric     not null,
    delivery_id             bigint      not null,
    primary key (parcel_id, other_parcel_id)
);
create index land_parcel_overlap_scope on store.land_parcel_overlap (scope);

-- Whether a parcel is current in the land register (GCN's rule unknown_parcel): one probe of
-- land_parcel_current.
create function rules.parcel_exists(ward text, sheet text, parcel text) returns boolean
language sql stable parallel safe as $$
    select exists (select 1 from store.land_parcel p
                   where p.survey_ward_code = ward and p.sheet_no = sheet and p.parcel_no = parcel
                     and p.valid_to = 'infinity' and p.recorded_to = 'infinity')
$$;

create view core.land_parcel as
    select parcel_id, ward_code, survey_ward_code, sheet_no, parcel_no, area_m2, computed_area_m2,
           land_use_codes, address, geometry
    from store.land_parcel
    where valid_to = 'infinity' and recorded_to = 'infinity';

create view history.land_parcel as
    select parcel_id, ward_code, survey_ward_code, sheet_no, parcel_no, area_m2, computed_area_m2,
           land_use_codes, address, geometry,
           valid_from, nullif(valid_to, 'infinity') as valid_to,
           recorded_from, nullif(recorded_to, 'infinity') as recorded_to
    from store.land_parcel;

create view core.land_right as
    select certificate_serial, parcel_id, issued_on, holder_type, nullif(holder_person_id, '') as holder_person_id,
           nullif(holder_enterprise_code, '') as holder_enterprise_code, holder_name, share_pct, status
    from store.land_right
    where valid_to = 'infinity' and recorded_to = 'infinity';

create view history.land_right as
    select certificate_serial, parcel_id, issued_on, holder_type, nullif(holder_person_id, '') as holder_person_id,
           nullif(holder_enterprise_code, '') as holder_enterprise_code, holder_name, share_pct, status,
           valid_from, nullif(valid_to, 'infinity') as valid_to,
           recorded_from, nullif(recorded_to, 'infinity') as recorded_to
    from store.land_right;

create view core.land_parcel_overlap as
    select parcel_id, other_parcel_id, overlap_m2 from store.land_parcel_overlap;

comment on view core.land_parcel is
    'Land parcels now: one row per parcel current in its province''s last TDDAT snapshot, geometry as GeoJSON (WGS84)';
comment on view history.land_parcel is 'Every version of every land parcel, bitemporal (open ends are NULL)';
comment on view core.land_right is
    'Land-use right certificates now: one row per certificate and holder, from the last GCN snapshot; '
    'holders as written on the certificate (join core.person / core.enterprise to resolve them)';
comment on view history.land_right is 'Every version of every certificate holder row, bitemporal (open ends are NULL)';
comment on view core.land_parcel_overlap is
    'Current overlaps between parcels of one survey commune (finding parcel_overlap): each pair both ways';

-- Where the warehouse has PostGIS installed, the same rows as PostGIS geometries (SRID 4326).
-- The embedded warehouse has none; the view is simply not there.
do $postgis$
begin
    if exists (select 1 from pg_extension where extname = 'postgis') then
        execute $v$
            create view core.land_parcel_geometry as
            select parcel_id, ward_code, st_setsrid(st_geomfromgeojson(geometry), 4326) as geom
            from core.land_parcel $v$;
    end if;
end
$postgis$;
