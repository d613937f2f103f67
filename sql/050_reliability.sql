-- Crash safety and resubmissions (issue 6).
--
-- 'abandoned': a delivery whose process died (or failed inside) before it finished. The next
-- ingest finds it (its claim lock is free), drops its stage tables and marks it so; the file is
-- processed again as if it had never been seen, so an abandoned row never counts as done.
alter table meta.delivery drop constraint delivery_status_check;
alter table meta.delivery add constraint delivery_status_check
    check (status in ('processing', 'loaded', 'loaded_with_rejections', 'rejected', 'superseded', 'abandoned'));

drop index meta.delivery_sha256_done;
create unique index delivery_sha256_done on meta.delivery (sha256)
    where status not in ('processing', 'abandoned');

-- what a superseded delivery was superseded by; what kind of delivery it was
alter table meta.delivery add column superseded_by bigint references meta.delivery;
alter table meta.delivery add column partial boolean not null default false;  -- a resubmission: no snapshot semantics

-- a quarantined row is resolved by the later delivery of the same feed and province that loads
-- its key (a resubmission, or the next snapshot), or closed by the next full snapshot
alter table quarantine.row add column resolved_at timestamptz;
create index quarantine_open_key on quarantine.row (feed, record_key) where resolved_by is null;
