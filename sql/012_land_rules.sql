-- SQL functions of the land register's column types (pipelines/rules.py: survey_ward_code,
-- sheet_no, parcel_no, area, share, land_use, certificate_serial). Like sql/003 and sql/010: plain
-- SQL, IMMUTABLE, inlined where the planner can. The geometry checks are not here: PostgreSQL has
-- no polygon validity or geodesic area without PostGIS, so pipelines/land.py computes them with
-- Shapely and pyproj while the file streams to COPY.

-- A decimal number as the agencies write it: a decimal comma (125,5), dot thousands separators
-- (1.250,5 or 1.000), or plain digits. A dot is never read as a decimal point: 125.5 is malformed
-- grouping, so it is NULL rather than silently 1255 or 125.5. No sign.
create or replace function rules.parse_decimal(v text) returns numeric
language sql immutable parallel safe as $$
    select case
        when strpos(v, ',') = 0 then rules.grouped_amount(v)::numeric
        when rules.is_digits(substr(v, strpos(v, ',') + 1)) and length(v) - strpos(v, ',') <= 12
        then rules.grouped_amount(left(v, strpos(v, ',') - 1))
             + ('0.' || substr(v, strpos(v, ',') + 1))::numeric
    end
$$;

-- Land-use purpose codes of Circular 25/2014/TT-BTNMT and the 2024 additions (HNK, CNT, RSN).
create or replace function rules.land_use_code_list() returns text[]
language sql immutable parallel safe as $$
    select array['LUC', 'LUK', 'LUN', 'BHK', 'NHK', 'CLN', 'RSX', 'RPH', 'RDD', 'NTS', 'LMU', 'NKH', 'ONT',
                 'ODT', 'TSC', 'DTS', 'DVH', 'DYT', 'DGD', 'DTT', 'DKH', 'DXH', 'DNG', 'DSK', 'CQP', 'CAN',
                 'SKK', 'SKT', 'SKN', 'SKC', 'TMD', 'SKS', 'SKX', 'DGT', 'DTL', 'DDT', 'DDL', 'DSH', 'DKV',
                 'DNL', 'DBV', 'DCH', 'DRA', 'DCK', 'TON', 'TIN', 'NTD', 'SON', 'MNC', 'PNK', 'BCS', 'DCS',
                 'NCS', 'MVT', 'MVR', 'MVK', 'HNK', 'CNT', 'RSN']
$$;

-- 'ont + CLN' -> {ONT,CLN}, in the order sent; NULL when a part is empty, unknown or repeated.
-- An aggregate (not inlined): the contract conforms each distinct text once (a dictionary type).
create or replace function rules.land_use_codes(v text) returns text[]
language sql immutable parallel safe as $$
    select case when bool_and(c = any(rules.land_use_code_list())) and count(*) = count(distinct c)
                then array_agg(c order by n) end
    from unnest(string_to_array(upper(replace(replace(v, ' ', ''), chr(9), '')), '+')) with ordinality as u (c, n)
$$;

-- Two capital letters, a space, six digits: CS 123456.
create or replace function rules.is_certificate_serial(v text) returns boolean
language sql immutable parallel safe as $$
    select length(v) = 9 and substr(v, 3, 1) = ' ' and rules.is_digits(substr(v, 4))
       and translate(left(v, 2), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', '') = ''
$$;

-- A parcel's identity: survey-time commune code, sheet and parcel number as sent, e.g. 00004-12-345.
create or replace function rules.parcel_id(survey_ward_code text, sheet_no text, parcel_no text) returns text
language sql immutable parallel safe as $$
    select survey_ward_code || '-' || sheet_no || '-' || parcel_no
$$;
