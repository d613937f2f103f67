-- The raw hash of the delivered row each version came from (pipelines/checks.raw_hash_sql): a row
-- delivered again unchanged is recognised by one index lookup and not checked again.
alter table store.person add column raw_hash text;
alter table store.civil_event add column raw_hash text;

drop index store.person_scope_current;
create index person_scope_raw_current on store.person (scope, raw_hash)
    where valid_to = 'infinity' and recorded_to = 'infinity';
create index civil_event_scope_raw_current on store.civil_event (scope, raw_hash)
    where valid_to = 'infinity' and recorded_to = 'infinity';
