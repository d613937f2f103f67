-- Comments on the published objects that no feed contract describes: docs/data-dictionary.md
-- (python -m pipelines.dictionary) reads them. Columns of a feed's entity are documented in its
-- contract (schemas/<feed>.yaml) instead.

comment on view core.changes is
    'The change feed: one row per change to a current-state row; sync with where seq > :last_seen order by seq';
comment on column core.changes.seq is 'Sequence number, increasing in the order the warehouse made the changes';
comment on column core.changes.entity is 'Which current-state view changed: person, civil_event, ... (core.<entity>)';
comment on column core.changes.entity_key is 'The key of the changed row as text; a composite key joined with | (province_code|event_no)';
comment on column core.changes.operation is 'insert (a new key), update (a new current version), delete (no longer current)';
comment on column core.changes.delivery_id is 'The delivery that caused the change (meta.delivery)';
comment on column core.changes.changed_at is 'When the change was made in the warehouse (its load transaction)';

comment on table ref.admin_unit is
    'Every administrative unit, before and after the 1 July 2025 reorganisation';
comment on column ref.admin_unit.code is 'GSO code of the unit';
comment on column ref.admin_unit.level is 'province, district or ward (wards include communes and towns)';
comment on column ref.admin_unit.name is 'Official name';
comment on column ref.admin_unit.province_code is 'Province the unit belongs to (code of the same era)';
comment on column ref.admin_unit.district_code is 'District the unit belonged to (pre-2025 units; NULL after: districts were abolished)';
comment on column ref.admin_unit.valid_from is 'First day the unit existed (NULL: before records began)';
comment on column ref.admin_unit.valid_to is 'First day it no longer existed (2025-07-01 for pre-2025 units; NULL: current)';
comment on column ref.admin_unit.successor_code is 'For a pre-2025 unit: the current unit it became (the default one when split)';
comment on column ref.admin_unit.partial_merge is 'True when the unit was split between several successors';

-- The pipeline's lookups over ref.admin_unit change as the pipeline does: comment those that exist.
do $lookups$
declare
    c record;
begin
    for c in select * from (values
        ('ref.legacy_province', null, 'Pre-2025 province codes (the digits 2-3 of a personal identification number)'),
        ('ref.legacy_province', 'code', 'Pre-2025 GSO province code'),
        ('ref.province_lookup', null, 'Any province code, pre- or post-2025, and the current province it is now'),
        ('ref.province_lookup', 'code', 'GSO province code as sent (either era)'),
        ('ref.province_lookup', 'current_code', 'The current province'),
        ('ref.ward_lookup', null, 'Any ward code, pre- or post-2025, with what the pipeline needs to resolve it'),
        ('ref.ward_lookup', 'code', 'GSO ward code as sent (either era)'),
        ('ref.ward_lookup', 'legacy_successor', 'The current successor of the pre-2025 ward with this code, if there was one'),
        ('ref.ward_lookup', 'is_current', 'True when a current ward has this code'),
        ('ref.ward_lookup', 'partial_merge', 'True when the pre-2025 ward with this code was split'),
        ('ref.ward_resolution', null, 'Any ward code read in either era (before or after 1 July 2025) and the current ward it means'),
        ('ref.ward_resolution', 'code', 'GSO ward code as sent'),
        ('ref.ward_resolution', 'after_reform', 'Which era the record is read in: true from 1 July 2025'),
        ('ref.ward_resolution', 'current_code', 'The current ward that code means in that era')
    ) as t(object, col, doc) loop
        if to_regclass(c.object) is null then
            continue;
        elsif c.col is null then
            execute format('comment on view %s is %L', c.object, c.doc);
        elsif exists (select 1 from pg_attribute where attrelid = to_regclass(c.object) and attname = c.col
                      and not attisdropped) then
            execute format('comment on column %s.%I is %L', c.object, c.col, c.doc);
        end if;
    end loop;
end
$lookups$;
