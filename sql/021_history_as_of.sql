-- History as of any time: the rows that were valid at `valid_at` as the warehouse knew them at
-- `known_at` (default: now, i.e. as we know it today), with the columns of the current-state view.
--
--   -- where did this person live on 1 March 2025, as we knew it then?
--   select residence_ward_code
--   from history.person_as_of('2025-03-01 00:00+07', '2025-03-01 00:00+07')
--   where person_id = '001090000001';
--
-- valid_at: a point in valid time (when the fact was true in the world); known_at: a point in
-- recorded time (when the warehouse held it). Both are instants: a bare date is midnight in the
-- session's time zone, so name the zone (+07 for Viet Nam). Versions are half-open intervals
-- [from, to): a version ended at t is not valid at t.
--
-- Plain SQL over the history views, so the planner inlines them: a filter on the key outside the
-- call uses the key's index, and a caller needs nothing but read access to history (core_reader).
-- Each feed adds its own `history.<entity>_as_of` in this pattern (enterprise, land parcel, land right).

create function history.person_as_of(valid_at timestamptz, known_at timestamptz default now())
returns table (person_id text, full_name text, birth_date date, birth_date_precision text, sex text,
               nationality text, residence_ward_code text, residence_address text, household_no text,
               death_date date)
language sql stable parallel safe as $$
    select h.person_id, h.full_name, h.birth_date, h.birth_date_precision, h.sex, h.nationality,
           h.residence_ward_code, h.residence_address, h.household_no, h.death_date
    from history.person h
    where h.valid_from <= valid_at and (h.valid_to is null or h.valid_to > valid_at)
      and h.recorded_from <= known_at and (h.recorded_to is null or h.recorded_to > known_at)
$$;

create function history.civil_event_as_of(valid_at timestamptz, known_at timestamptz default now())
returns table (province_code text, event_no text, event_type text, event_date date, registered_on date,
               registry_ward_code text, person_id text, full_name text, related_person_id text)
language sql stable parallel safe as $$
    select h.province_code, h.event_no, h.event_type, h.event_date, h.registered_on, h.registry_ward_code,
           h.person_id, h.full_name, h.related_person_id
    from history.civil_event h
    where h.valid_from <= valid_at and (h.valid_to is null or h.valid_to > valid_at)
      and h.recorded_from <= known_at and (h.recorded_to is null or h.recorded_to > known_at)
$$;

comment on function history.person_as_of(timestamptz, timestamptz) is
    'core.person as it was valid at valid_at, as the warehouse knew it at known_at (default now)';
comment on function history.civil_event_as_of(timestamptz, timestamptz) is
    'core.civil_event as it was valid at valid_at, as the warehouse knew it at known_at (default now)';

-- Functions are executable by PUBLIC unless revoked; history is for core_reader (and the writer).
revoke execute on all functions in schema history from public;
grant execute on all functions in schema history to core_reader, core_writer;
alter default privileges in schema history revoke execute on functions from public;
alter default privileges in schema history grant execute on functions to core_reader, core_writer;
