-- The change feed: one row per change to a current-state row, in the order the warehouse made
-- them. A downstream service syncs incrementally with `where seq > :last_seen`.
-- entity_key is the entity's key as text (composite keys joined with '|').
create table store.change_log (
    seq          bigint generated always as identity primary key,
    entity       text        not null,
    entity_key   text        not null,
    operation    text        not null check (operation in ('insert', 'update', 'delete')),
    delivery_id  bigint      not null,
    changed_at   timestamptz not null default now()
);

create view core.changes as
    select seq, entity, entity_key, operation, delivery_id, changed_at from store.change_log;
