-- SQL functions of the enterprise register's column types (pipelines/rules.py: tax_code, money,
-- vsic, org_name). Like sql/003_rules.sql: plain SQL, IMMUTABLE, inlined by the planner into the
-- one checked pass, no regular expressions (ten million rows go through these).

-- The check digit of an enterprise code (Circular 105/2020/TT-BTC; python-stdnum's stdnum.vn.mst).
-- d: ten ASCII digits N1..N10 (the caller checks that: the casts below need digits). S = 31 N1 +
-- 29 N2 + 23 N3 + 19 N4 + 17 N5 + 13 N6 + 7 N7 + 5 N8 + 3 N9; N10 must be 10 - (S mod 11). When
-- S mod 11 = 0 that is 10, which no digit equals: a prefix with S mod 11 = 0 has no valid code.
-- N3..N9 = 0000000 is no code either. S is summed from three lookups, one per group of three
-- digits (the weighted sums of 000-999, in arrays built here), which costs a third less than
-- summing nine weighted digits one by one.
do $check_digit$
declare
    sums text[];
begin
    select array_agg(sums_of_group order by g) into sums
    from (select g, '''{' || string_agg((w[1] * (x / 100) + w[2] * (x / 10 % 10) + w[3] * (x % 10))::text, ','
                                         order by x) || '}''' as sums_of_group
          from (values (1, array[31, 29, 23]), (2, array[19, 17, 13]), (3, array[7, 5, 3])) as weights (g, w)
          cross join generate_series(0, 999) as x
          group by g) per_group;
    execute format($f$
        create or replace function rules.tax_code_check(d text) returns boolean
        language sql immutable parallel safe as $$
            select substr(d, 3, 7) <> '0000000'
               and 10 - ((%s::int[])[substr(d, 1, 3)::int + 1] + (%s::int[])[substr(d, 4, 3)::int + 1]
                         + (%s::int[])[substr(d, 7, 3)::int + 1]) %% 11
                   = ascii(substr(d, 10, 1)) - 48
        $$$f$, sums[1], sums[2], sums[3]);
end
$check_digit$;

-- An enterprise code as the register writes it: 10 digits (an enterprise), or a dependent unit's
-- 13 digits written NNNNNNNNNN-NNN: its parent's ten-digit code (itself valid), a hyphen, and a
-- suffix other than 000. Nothing else: no dots, no spaces, no 13 digits without the hyphen (the
-- code is the register's key and is compared as sent; see schemas/dkkd.yaml). CASE, not AND, so
-- that the check digit is only computed on digits.
create or replace function rules.is_tax_code(v text) returns boolean
language sql immutable parallel safe as $$
    select case
        when length(v) = 10 and rules.is_digits(v) then rules.tax_code_check(v)
        when length(v) = 14 and substr(v, 11, 1) = '-' and right(v, 3) <> '000'
             and rules.is_digits(left(v, 10) || right(v, 3)) then rules.tax_code_check(left(v, 10))
        else false
    end
$$;

-- Digits grouped in threes by dots (1.000.000), or plain digits, at most 18 (a bigint) -> the
-- amount; NULL otherwise. The grouping is checked by position: reversed, the text must read
-- '###.###.###...'.
create or replace function rules.grouped_amount(i text) returns bigint
language sql immutable parallel safe as $$
    select case when i <> '' and length(i) <= 23
                     and case when strpos(i, '.') = 0 then length(i) <= 18 and rules.is_digits(i)
                              else left(i, 1) <> '.'
                                   and translate(reverse(i), '0123456789', '##########')
                                       = left('###.###.###.###.###.###.', length(i)) end
                then replace(i, '.', '')::bigint end
$$;

-- A whole amount in VND: 1000000000, 1.000.000.000 or 1.000.000.000,00 -> 1000000000; NULL for
-- anything else (a fraction of a dong, a sign, letters or a unit, commas as thousands separators).
-- The common case (no comma) passes the value itself on, so inlining repeats no computation.
create or replace function rules.parse_money(v text) returns bigint
language sql immutable parallel safe as $$
    select case
        when strpos(v, ',') = 0 then rules.grouped_amount(v)
        when substr(v, strpos(v, ',') + 1) <> '' and ltrim(substr(v, strpos(v, ',') + 1), '0') = ''
        then rules.grouped_amount(left(v, strpos(v, ',') - 1))
    end
$$;

-- A VSIC 2018 economic activity code (Decision 27/2018/QD-TTg): 4 digits (class) or 5 digits
-- (sub-class), whose first two are one of its divisions (those of ISIC Rev. 4).
create or replace function rules.is_vsic(v text) returns boolean
language sql immutable parallel safe as $$
    select length(v) in (4, 5) and rules.is_digits(v)
       and left(v, 2) in ('01', '02', '03', '05', '06', '07', '08', '09',
                          '10', '11', '12', '13', '14', '15', '16', '17', '18', '19', '20', '21', '22',
                          '23', '24', '25', '26', '27', '28', '29', '30', '31', '32', '33',
                          '35', '36', '37', '38', '39', '41', '42', '43', '45', '46', '47',
                          '49', '50', '51', '52', '53', '55', '56', '58', '59', '60', '61', '62', '63',
                          '64', '65', '66', '68', '69', '70', '71', '72', '73', '74', '75',
                          '77', '78', '79', '80', '81', '82', '84', '85', '86', '87', '88',
                          '90', '91', '92', '93', '94', '95', '96', '97', '98', '99')
$$;
