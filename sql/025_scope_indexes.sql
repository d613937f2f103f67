-- Rows sent again byte for byte are now found by their key and raw hash together
-- (pipelines/checks.known_sql), through the key's own index: the (scope, raw_hash) indexes only
-- cost time on every load (a random md5 per row: measured a quarter of a first load's insert).
-- What remains needed is a snapshot's scope: the current versions of one province (removals).
-- Its key has few values and new versions come in heap order, so the index grows at its ends.
drop index store.person_scope_raw_current;
create index person_scope_current on store.person (scope)
    where valid_to = 'infinity' and recorded_to = 'infinity';

drop index store.civil_event_scope_raw_current;
create index civil_event_scope_current on store.civil_event (scope)
    where valid_to = 'infinity' and recorded_to = 'infinity';

drop index store.enterprise_scope_raw_current;
create index enterprise_scope_current on store.enterprise (scope)
    where valid_to = 'infinity' and recorded_to = 'infinity';
