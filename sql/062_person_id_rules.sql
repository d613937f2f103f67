-- The personal identification number's rules, cheaper per row (pipelines/checks.py evaluates them
-- once per CUTRU row: 10 million in a large province). Same verdicts as sql/003_rules.sql's:
-- an ASCII digit class instead of ltrim() over a character set and of the regular expression \d,
-- and the birth year as date_part() (a float) instead of extract() (a numeric).
create or replace function rules.is_personal_id(v text) returns boolean
language sql immutable parallel safe as $$
    select length(v) = 12 and left(v, 1) = '0' and substr(v, 4, 1) between '0' and '5'
       and v ~ '^[0-9]+$'
$$;

-- Digit 4 (century and sex) and digits 5-6 (year) agree with the birth date and sex.
create or replace function rules.personal_id_agrees(id text, birth date, sex text) returns boolean
language sql immutable parallel safe as $$
    select id is null or birth is null or sex is null or not (length(id) = 12 and id ~ '^[0-9]+$') or (
        substr(id, 5, 2)::int = date_part('year', birth)::int % 100
        and substr(id, 4, 1)::int = 2 * ((date_part('year', birth)::int - 1900) / 100)
                                    + case sex when 'female' then 1 else 0 end)
$$;
