-- Lookups the checked pass joins: one row per sent code, so each is a single hash join.

create view ref.legacy_province as
    select code from ref.admin_unit where level = 'province' and valid_to = date '2025-07-01';

create view ref.province_lookup as
    select code, coalesce(max(successor_code) filter (where valid_to is not null),
                          max(code) filter (where valid_to is null)) as current_code
    from ref.admin_unit where level = 'province'
    group by code;

create view ref.ward_lookup as
    select code,
           max(successor_code) filter (where valid_to is not null) as legacy_successor,
           bool_or(valid_to is null) as is_current,
           bool_or(partial_merge) as partial_merge
    from ref.admin_unit where level = 'ward'
    group by code;
