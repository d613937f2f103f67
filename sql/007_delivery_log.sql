-- Operations: one row per processed delivery with its timings per stage and its counts,
-- for the status page and reject-rate trends (meta.delivery keeps the receipt itself).
create schema if not exists ops;

create table ops.delivery_log (
    delivery_id       bigint primary key,
    feed              text,
    province_code     text,
    file_name         text        not null,
    status            text        not null,
    rows_read         bigint      not null,
    rows_loaded       bigint      not null,
    rows_quarantined  bigint      not null,
    stage_seconds     jsonb       not null,   -- {"stage": 0.4, "check": 2.1, ...}
    seconds           numeric     not null,
    finished_at       timestamptz not null default clock_timestamp()
);
create index delivery_log_feed_time on ops.delivery_log (feed, province_code, finished_at);
