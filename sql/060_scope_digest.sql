-- A digest of each scope's current versions: how many there are and the sum of a 64-bit hash
-- of their raw hashes (pipelines/history.py keeps it in step with every merge, under the
-- change-feed lock). A snapshot whose rows have exactly these raw hashes is the scope sent again
-- unchanged: one pass over the staged rows tells, instead of joining them to the store
-- (pipelines/ingest.py). Raw hashes of current versions are distinct (they include the key), so
-- equal counts and sums mean equal sets, barring a 64-bit coincidence (about 1 in 10^19).
create table store.scope_digest (
    entity   text    not null,
    scope    text    not null,
    versions bigint  not null,  -- current versions of the scope
    hashed   bigint  not null,  -- of which have a raw hash (a version written by another feed's effect has none)
    hash_sum numeric not null,  -- sum of rules.digest_hash(raw_hash), exact
    primary key (entity, scope)
);

-- The one hash the digests sum, here so that the merge that keeps them and the ingest that
-- compares a delivery with them cannot disagree (plain SQL: the planner inlines it).
create function rules.digest_hash(h text) returns bigint
language sql immutable parallel safe as $$
    select hashtextextended(h, 0)
$$;
