-- Two costs of the checked pass (pipelines/checks.py), which runs once per row of a delivery:
-- 10 million in a large province. Measured with callgrind on 100,000 CUTRU rows: 6.66 billion
-- instructions before, 5.83 billion with these and checks.py's rule guards (docs/PERFORMANCE.md).

-- A value without its leading and trailing spaces. btrim() walks every character of a UTF-8
-- value; two LIKEs test only its ends, and most values have no space to trim (half the
-- instructions). Written here, not in checks.py's SQL, because psycopg reads a % in a statement
-- with parameters as a placeholder. Both functions are inlined (their argument is a column).
create or replace function rules.trim_spaces(v text) returns text
language sql immutable parallel safe as $$
    select case when v like ' %' or v like '% ' then btrim(v) else v end
$$;

-- A value as staged, cleaned: trimmed; empty and the literal NULL that some offices send become
-- SQL NULL.
create or replace function rules.clean_text(v text) returns text
language sql immutable parallel safe as $$
    select nullif(nullif(rules.trim_spaces(v), ''), 'NULL')
$$;

-- rules.personal_id_agrees without a regular expression for the IDs that agree (nearly all of
-- them) and without casts: digits 4-6 are compared as text with what the birth date and sex make
-- them (century-and-sex digit, two year digits). Same verdicts as sql/062_person_id_rules.sql:
-- for an ID of 12 digits that text comparison is its digit comparison (a century outside 0-9
-- makes a text of another length, never equal), and an ID that is not 12 digits agrees whatever
-- its digits 4-6, which only IDs that differ there go on to test with the regular expression
-- (about 2,900 instructions a call, the comparison about a third of that).
create or replace function rules.personal_id_agrees(id text, birth date, sex text) returns boolean
language sql immutable parallel safe as $$
    select id is null or birth is null or sex is null
        or substr(id, 4, 3) = (2 * ((date_part('year', birth)::int - 1900) / 100)
                               + case sex when 'female' then 1 else 0 end)::text
                              || lpad((date_part('year', birth)::int % 100)::text, 2, '0')
        or not (length(id) = 12 and id ~ '^[0-9]+$')
$$;
