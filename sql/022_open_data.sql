-- open_data: what anyone may read (role core_public), with no personal data in it.
--
--   open_data.population_by_ward   living residents per current ward, sex and five-year age band
--   open_data.enterprise           the enterprise register without the legal representatives'
--                                  personal identification numbers (once core.enterprise exists)
--   open_data.parcel               land parcels without holders (once the land feeds exist; below)
--
-- The views run with their owner's rights, so core_public reads them without any access to core.
-- They are security barriers: a caller's own functions in a WHERE clause never see the rows
-- behind an aggregate or the columns left out.

create schema if not exists open_data;

-- Counts under 5 are suppressed (NULL) so that no one can be singled out in a small ward: the
-- row says the group exists, not how small it is. Age is in whole years on the day of the query,
-- from the birth date (the first day of the known period when only month or year is known).
create view open_data.population_by_ward with (security_barrier) as
    select p.residence_ward_code as ward_code, w.name as ward_name, w.province_code, p.sex,
           band.age_from, band.age_band,
           case when count(*) >= 5 then count(*) end as persons
    from core.person p
    cross join lateral (select greatest(extract(year from age(current_date, p.birth_date))::int, 0) as years) a
    cross join lateral (select least(a.years / 5 * 5, 80) as age_from) b
    cross join lateral (select b.age_from,
                               case when b.age_from = 80 then '80+'
                                    else b.age_from || '-' || (b.age_from + 4) end as age_band) band
    left join ref.admin_unit w on w.level = 'ward' and w.code = p.residence_ward_code and w.valid_to is null
    where p.death_date is null
    group by p.residence_ward_code, w.name, w.province_code, p.sex, band.age_from, band.age_band;

comment on view open_data.population_by_ward is
    'Living residents per current ward, sex and five-year age band; groups under 5 persons suppressed';
comment on column open_data.population_by_ward.ward_code is 'Ward of permanent residence (current code)';
comment on column open_data.population_by_ward.ward_name is 'Name of that ward (ref.admin_unit)';
comment on column open_data.population_by_ward.province_code is 'Province of that ward (current code)';
comment on column open_data.population_by_ward.sex is 'Sex: male or female';
comment on column open_data.population_by_ward.age_from is 'First age of the band, in whole years (0, 5, ..., 80), for sorting';
comment on column open_data.population_by_ward.age_band is 'Age band: 0-4, 5-9, ..., 75-79, 80+ (age today)';
comment on column open_data.population_by_ward.persons is 'Number of living residents; NULL when fewer than 5 (suppressed)';

-- The views over registers that arrive by their own feeds are (re)built by this procedure from
-- the current-state view, leaving out every column that holds a personal identification number
-- (named like *person_id, *personal_id, *_id_no, *rep_id, representative_id; tests/test_serving.py
-- checks the values once the enterprise feed exists). It runs below, and any later
-- migration that adds or changes such a core view ends with `call meta.refresh_open_data();`.
--
-- Land (feeds TDDAT and GCN, not built yet): the land migration creates its core views and then
--   create view open_data.parcel with (security_barrier) as
--       select <parcel columns: ward, sheet, parcel number, area, land use, address, geometry>
--       from core.parcel;          -- no holders: they are in the certificates (GCN), never here
-- core_public, core_reader and core_api read it at once (default privileges below). Rights held
-- by a person or enterprise stay out of open_data: the API reads them for authorised clients
-- through a security-definer function granted to core_api (as api.verify_person, sql/023_api.sql).
create procedure meta.refresh_open_data()
language plpgsql as $$
declare
    cols text;
begin
    if to_regclass('core.enterprise') is not null then
        select string_agg(quote_ident(attname), ', ' order by attnum) into cols
        from pg_attribute
        where attrelid = 'core.enterprise'::regclass and attnum > 0 and not attisdropped
          and attname !~ '(person_id|personal_id|_id_no|identity_no|identification_no|rep_id|representative_id|_pid|_cccd|_cmnd)$';
        execute 'drop view if exists open_data.enterprise';
        execute format('create view open_data.enterprise with (security_barrier) as select %s from core.enterprise', cols);
        execute 'comment on view open_data.enterprise is '
                '''The enterprise register (core.enterprise) without personal identification numbers''';
    end if;
end
$$;
revoke execute on procedure meta.refresh_open_data() from public;

grant usage on schema open_data to core_public, core_reader, core_api;
alter default privileges in schema open_data grant select on tables to core_public, core_reader, core_api;
call meta.refresh_open_data();
grant select on all tables in schema open_data to core_public, core_reader, core_api;
