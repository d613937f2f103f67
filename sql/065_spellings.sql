-- Static dictionaries (pipelines/spellings.py): every well-formed spelling of a contract's
-- low-cardinality columns (dates, times of day, code lists, country codes), conformed once per
-- warehouse by the columns' own rules. They live in a schema of their own, named by a hash of
-- the SQL that built them; a migration drops them (it may change a rule) and they are built again.
create schema if not exists spelling;
revoke all on schema spelling from public;
grant usage on schema spelling to core_writer;
alter default privileges in schema spelling grant select on tables to core_writer;
