-- Serving the land core (issue 7): history as of any time for parcels and rights, parcels in
-- open_data, and the rights a person or enterprise holds for the lookup API.
--
-- Who reads what (sql/020_roles.sql): core_reader reads core.land_parcel, core.land_right and their
-- history in full (holders' personal identification numbers included: it is entitled to personal
-- data) through the default privileges of core and history; core_public reads parcels only, in
-- open_data.land_parcel, never a holder; core_api asks api.rights_of() (below) and reads
-- open_data.land_parcel, nothing else of the land core.

-- core.land_parcel / core.land_right as they were valid at valid_at, as the warehouse knew them at
-- known_at (the pattern of history.person_as_of, sql/021): versions are half-open intervals.
--
--   -- the parcels of ward 00611 on 1 March 2026, as we knew it then
--   select parcel_id, area_m2 from history.land_parcel_as_of('2026-03-01 00:00+07', '2026-03-01 00:00+07')
--   where ward_code = '00611';
create function history.land_parcel_as_of(valid_at timestamptz, known_at timestamptz default now())
returns table (parcel_id text, ward_code text, survey_ward_code text, sheet_no text, parcel_no text,
               area_m2 numeric, computed_area_m2 numeric, land_use_codes text[], address text, geometry text)
language sql stable parallel safe as $$
    select h.parcel_id, h.ward_code, h.survey_ward_code, h.sheet_no, h.parcel_no, h.area_m2, h.computed_area_m2,
           h.land_use_codes, h.address, h.geometry
    from history.land_parcel h
    where h.valid_from <= valid_at and (h.valid_to is null or h.valid_to > valid_at)
      and h.recorded_from <= known_at and (h.recorded_to is null or h.recorded_to > known_at)
$$;

create function history.land_right_as_of(valid_at timestamptz, known_at timestamptz default now())
returns table (certificate_serial text, parcel_id text, issued_on date, holder_type text, holder_person_id text,
               holder_enterprise_code text, holder_name text, share_pct numeric, status text)
language sql stable parallel safe as $$
    select h.certificate_serial, h.parcel_id, h.issued_on, h.holder_type, h.holder_person_id,
           h.holder_enterprise_code, h.holder_name, h.share_pct, h.status
    from history.land_right h
    where h.valid_from <= valid_at and (h.valid_to is null or h.valid_to > valid_at)
      and h.recorded_from <= known_at and (h.recorded_to is null or h.recorded_to > known_at)
$$;

comment on function history.land_parcel_as_of(timestamptz, timestamptz) is
    'core.land_parcel as it was valid at valid_at, as the warehouse knew it at known_at (default now)';
comment on function history.land_right_as_of(timestamptz, timestamptz) is
    'core.land_right as it was valid at valid_at, as the warehouse knew it at known_at (default now)';

-- Parcels for everyone: core.land_parcel has no holder (holders are in core.land_right, never
-- here). A security barrier view owned by the migrations' owner, like the other open_data views.
create view open_data.land_parcel with (security_barrier) as
    select parcel_id, ward_code, survey_ward_code, sheet_no, parcel_no, area_m2, computed_area_m2,
           land_use_codes, address, geometry
    from core.land_parcel;
comment on view open_data.land_parcel is 'Land parcels (core.land_parcel); no holders';

-- The rights a person or an enterprise holds, for the lookup API (core_api reads no core view):
-- holder_type 'person' with a personal identification number, or 'enterprise' with an enterprise
-- code. One index scan on land_right_person_current / land_right_enterprise_current.
create function api.rights_of(holder_type text, holder_id text)
returns table (certificate_serial text, parcel_id text, ward_code text, issued_on date, holder_name text,
               share_pct numeric, status text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select r.certificate_serial, r.parcel_id, p.ward_code, r.issued_on, r.holder_name, r.share_pct, r.status
    from core.land_right r
    left join core.land_parcel p on p.parcel_id = r.parcel_id
    where (rights_of.holder_type = 'person' and r.holder_person_id = rights_of.holder_id)
       or (rights_of.holder_type = 'enterprise' and r.holder_enterprise_code = rights_of.holder_id)
    order by r.certificate_serial, r.parcel_id
$$;
revoke execute on function api.rights_of(text, text) from public;
grant execute on function api.rights_of(text, text) to core_api;
grant select on open_data.land_parcel to core_public, core_reader, core_api;
