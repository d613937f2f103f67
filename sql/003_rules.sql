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
-- Written so that the planner inlines it; the regular expression only runs on names that need it.
create or replace function rules.collapse_spaces(v text) returns text
language sql immutable parallel safe as $$
    select case when strpos(v, '  ') > 0 or strpos(v, chr(9)) > 0
                then btrim(regexp_replace(v, '\s+', ' ', 'g')) else v end
$$;

create or replace function rules.conform_name(v text) returns text
language sql immutable parallel safe as $$
    select case when upper(v) = v and lower(v) <> v then initcap(rules.collapse_spaces(v))
                else rules.collapse_spaces(v) end
$$;

-- Dates are reshaped to ISO text by position (the spec fixes dd/mm/yyyy) and validated by
-- PostgreSQL's own date parser without raising (pg_input_is_valid, PostgreSQL 16+; an arithmetic
-- twin on older servers): 10 million rows go through these, so no regular expressions.
create or replace function rules.is_digits(v text) returns boolean
language sql immutable parallel safe as $$
    select v <> '' and ltrim(v, '0123456789') = ''
$$;

do $install$
begin
    if current_setting('server_version_num')::int >= 160000 then
        create or replace function rules.is_iso_date(v text) returns boolean
        language sql stable parallel safe as $$ select pg_input_is_valid(v, 'date') $$;
    else
        create or replace function rules.is_iso_date(v text) returns boolean
        language sql stable parallel safe as $$
            select rules.is_digits(substr(v, 1, 4) || substr(v, 6, 2) || substr(v, 9, 2))
               and substr(v, 5, 1) = '-' and substr(v, 8, 1) = '-'
               and substr(v, 6, 2) between '01' and '12'
               and substr(v, 9, 2) between '01' and case substr(v, 6, 2)
                   when '02' then case when substr(v, 1, 4)::int % 4 = 0
                                        and (substr(v, 1, 4)::int % 100 <> 0 or substr(v, 1, 4)::int % 400 = 0)
                                       then '29' else '28' end
                   when '04' then '30' when '06' then '30' when '09' then '30' when '11' then '30'
                   else '31' end
        $$;
    end if;
end
$install$;

-- 'dd/mm/yyyy' -> 'yyyy-mm-dd' (NULL unless the separators are where the spec puts them)
create or replace function rules.iso_date(v text) returns text
language sql immutable parallel safe as $$
    select case when length(v) = 10 and substr(v, 3, 1) = '/' and substr(v, 6, 1) = '/'
                     and substr(v, 7, 4) between '1800' and '2200'
                then substr(v, 7, 4) || '-' || substr(v, 4, 2) || '-' || substr(v, 1, 2) end
$$;

-- dd/mm/yyyy -> date; NULL when it is not a real calendar date between 1800 and 2200.
create or replace function rules.parse_date(v text) returns date
language sql stable parallel safe as $$
    select case when rules.is_iso_date(rules.iso_date(v)) then rules.iso_date(v)::date end
$$;

-- ' HH:MM:SS' (the part of a timestamp after its date) -> time of day; NULL when malformed.
create or replace function rules.time_of_day(t text) returns interval
language sql immutable parallel safe as $$
    select case
        when length(t) = 9 and substr(t, 1, 1) = ' ' and substr(t, 4, 1) = ':' and substr(t, 7, 1) = ':'
         and rules.is_digits(substr(t, 2, 2) || substr(t, 5, 2) || substr(t, 8, 2))
         and substr(t, 2, 2) < '24' and substr(t, 5, 2) < '60' and substr(t, 8, 2) < '60'
        then make_interval(hours => substr(t, 2, 2)::int, mins => substr(t, 5, 2)::int, secs => substr(t, 8, 2)::int)
    end
$$;

-- dd/mm/yyyy HH:MM:SS, local time UTC+7 -> timestamptz; NULL when malformed. The checked pass
-- applies the same two parts through dictionaries of distinct dates and times.
create or replace function rules.local_timestamp(day date, time_of_day interval) returns timestamptz
language sql immutable parallel safe as $$
    select (day + time_of_day) at time zone interval '+07:00'
$$;

create or replace function rules.parse_timestamp(v text) returns timestamptz
language sql stable parallel safe as $$
    select case when length(v) = 19
                then rules.local_timestamp(rules.parse_date(substr(v, 1, 10)), rules.time_of_day(substr(v, 11))) end
$$;

-- A birth date whose day or month may be unknown: dd/mm/yyyy, 00/mm/yyyy, 00/00/yyyy or yyyy.
-- Stored as the first day of the known period; rules.partial_date_precision() says which part is known.
create or replace function rules.partial_date_precision(v text) returns text
language sql stable parallel safe as $$
    select case
        when length(v) = 4 and rules.is_digits(v) and v between '1800' and '2200' then 'year'
        when length(v) <> 10 or substr(v, 3, 1) <> '/' or substr(v, 6, 1) <> '/' then null
        when substr(v, 1, 5) = '00/00' and rules.is_digits(substr(v, 7, 4))
             and substr(v, 7, 4) between '1800' and '2200' then 'year'
        when substr(v, 1, 2) = '00' and rules.parse_date('01' || substr(v, 3)) is not null then 'month'
        when rules.parse_date(v) is not null then 'day'
    end
$$;

create or replace function rules.parse_partial_date(v text) returns date
language sql stable parallel safe as $$
    select case rules.partial_date_precision(v)
        when 'year' then make_date(right(v, 4)::int, 1, 1)
        when 'month' then rules.parse_date('01' || substr(v, 3))
        when 'day' then rules.parse_date(v)
    end
$$;

-- Personal identification number (Decree 137/2015): 12 digits, starting 0, century/sex digit 0-5.
-- Digits 2-3 must also be a pre-2025 province code: the checked pass joins ref.legacy_province.
create or replace function rules.is_personal_id(v text) returns boolean
language sql immutable parallel safe as $$
    select length(v) = 12 and left(v, 1) = '0' and substr(v, 4, 1) between '0' and '5'
       and ltrim(v, '0123456789') = ''
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
