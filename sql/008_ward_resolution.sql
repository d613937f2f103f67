-- Ward resolution per (sent code, whether the record is dated after the 1 July 2025 reform):
-- 2 rows per code, so the checked pass resolves a million rows with one hash join instead of
-- calling rules.resolve_ward() on each.
create view ref.ward_resolution as
    select w.code, e.after_reform,
           rules.resolve_ward(w.code, w.legacy_successor, w.is_current,
                              case when e.after_reform then date '2025-07-01' else date '2025-06-30' end)
               as current_code
    from ref.ward_lookup w
    cross join (values (false), (true)) as e (after_reform);
