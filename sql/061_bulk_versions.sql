-- Bulk loads of versions (pipelines/history.py).
--
-- Version ids are surrogate keys: each session takes them 10,000 at a time instead of one sequence
-- call per row (a province's first load inserts millions).
alter table store.person alter column version_id set cache 10000;
alter table store.civil_event alter column version_id set cache 10000;
alter table store.enterprise alter column version_id set cache 10000;
alter table store.land_parcel alter column version_id set cache 10000;
alter table store.land_right alter column version_id set cache 10000;

-- The change feed's sequence numbers must follow commit order, so they are not cached: a merge
-- takes one block of them under the change-feed lock and numbers its rows itself.
grant usage, update on sequence store.change_log_seq_seq to core_writer;
