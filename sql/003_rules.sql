-- SQL functions named by the contracts' column types (pipelines/rules.py). Plain SQL, IMMUTABLE
-- where they can be, so the planner inlines them into the one checked pass over a delivery.

-- Lower case, no Vietnamese diacritics, no spaces: how code-list values are matched.
create or replace function rules.fold(v text) returns text
language sql immutable parallel safe as $$
    select replace(translate(lower(v),
        'àáạảãâầấậẩẫăằắặẳẵèéẹẻẽêềếệểễìíịỉĩòóọỏõôồốộổỗơờớợởỡùúụủũưừứựửữỳýỵỷỹđ',
        'aaaaaaaaaaaaaaaaaeeeeeeeeeeeiiiiiooooooooooooooooouuuuuuuuuuuyyyyyd'), ' ', '')
$$;

-- A name: spaces collapsed; a name sent in ALL CAPS becomes title case ("NGUYỄN VĂN AN" -> "Nguyễn Văn An").
create or replace function rules.conform_name(v text) returns text
language sql immutable parallel safe as $$
    select case when c = upper(c) and c <> lower(c) then initcap(c) else c end
    from (select btrim(regexp_replace(v, '\s+', ' ', 'g')) as c) s
$$;

-- dd/mm/yyyy -> date; NULL when it is not a real calendar date.
create or replace function rules.parse_date(v text) returns date
language sql immutable parallel safe as $$
    select case
        when v ~ '^\d{1,2}/\d{1,2}/\d{4}$'
         and split_part(v, '/', 3)::int between 1800 and 2200
         and split_part(v, '/', 2)::int between 1 and 12
         and split_part(v, '/', 1)::int between 1 and extract(day from
                (make_date(split_part(v, '/', 3)::int, split_part(v, '/', 2)::int, 1) + interval '1 month - 1 day'))
        then make_date(split_part(v, '/', 3)::int, split_part(v, '/', 2)::int, split_part(v, '/', 1)::int)
    end
$$;

-- dd/mm/yyyy HH:MM:SS, local time UTC+7 -> timestamptz; NULL when malformed.
create or replace function rules.parse_timestamp(v text) returns timestamptz
language sql immutable parallel safe as $$
    select case
        when v ~ '^\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2}$'
         and rules.parse_date(split_part(v, ' ', 1)) is not null
         and split_part(split_part(v, ' ', 2), ':', 1)::int < 24
         and split_part(split_part(v, ' ', 2), ':', 2)::int < 60
         and split_part(split_part(v, ' ', 2), ':', 3)::int < 60
        then (rules.parse_date(split_part(v, ' ', 1)) + split_part(v, ' ', 2)::time)::timestamp
             at time zone '+07:00'::interval
    end
$$;

-- A birth date whose day or month may be unknown: dd/mm/yyyy, 00/mm/yyyy, 00/00/yyyy or yyyy.
-- Stored as the first day of the known period; rules.partial_date_precision() says which part is known.
create or replace function rules.parse_partial_date(v text) returns date
language sql immutable parallel safe as $$
    select case
        when v ~ '^\d{4}$' and v::int between 1800 and 2200 then make_date(v::int, 1, 1)
        when v ~ '^0{1,2}/0{1,2}/\d{4}$' and split_part(v, '/', 3)::int between 1800 and 2200
            then make_date(split_part(v, '/', 3)::int, 1, 1)
        when v ~ '^0{1,2}/\d{1,2}/\d{4}$' and split_part(v, '/', 3)::int between 1800 and 2200
             and split_part(v, '/', 2)::int between 1 and 12
            then make_date(split_part(v, '/', 3)::int, split_part(v, '/', 2)::int, 1)
        else rules.parse_date(v)
    end
$$;

create or replace function rules.partial_date_precision(v text) returns text
language sql immutable parallel safe as $$
    select case
        when rules.parse_partial_date(v) is null then null
        when v ~ '^\d{4}$' or v ~ '^0{1,2}/0{1,2}/' then 'year'
        when v ~ '^0{1,2}/' then 'month'
        else 'day'
    end
$$;

-- Personal identification number (Decree 137/2015): 12 digits, 0 + pre-2025 province code,
-- century/sex digit 0-5. The province check reads ref.admin_unit through ref.legacy_province.
create or replace function rules.is_personal_id(v text) returns boolean
language sql stable parallel safe as $$
    select v ~ '^0\d\d[0-5]\d{8}$'
       and exists (select 1 from ref.legacy_province p where p.code = substr(v, 2, 2))
$$;

-- Digit 4 (century and sex) and digits 5-6 (year) agree with the birth date and sex.
create or replace function rules.personal_id_agrees(id text, birth date, sex text) returns boolean
language sql immutable parallel safe as $$
    select id is null or birth is null or sex is null or id !~ '^\d{12}$' or (
        substr(id, 5, 2)::int = extract(year from birth)::int % 100
        and substr(id, 4, 1)::int = 2 * ((extract(year from birth)::int - 1900) / 100)
                                    + case sex when 'female' then 1 else 0 end)
$$;

-- The current ward code for a sent code, read on the record's date: a code that exists in both
-- eras means the unit valid on that date; a code of one era only means that unit whatever the date.
create or replace function rules.resolve_ward(code text, legacy_successor text, is_current boolean, record_date date)
returns text language sql immutable parallel safe as $$
    select case
        when code is null then null
        when is_current and (legacy_successor is null or record_date >= date '2025-07-01') then code
        else legacy_successor
    end
$$;
