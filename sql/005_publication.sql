-- One row per publish run and core view: when the published data last moved, and how big it is.
create table meta.publication (
    publication_id   bigint generated always as identity primary key,
    view_name        text        not null,
    row_count        bigint      not null,
    published_at     timestamptz not null default clock_timestamp()
);
