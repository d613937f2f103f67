-- Who may read and write what (Decree 13/2023/ND-CP: access to personal data by need only).
--
--   core_reader   reads core, history and ref in full (personal data); writes nothing
--   core_public   reads only the schema open_data (no personal data; sql/022_open_data.sql)
--   core_writer   the pipeline's loading role: appends to store, meta, quarantine, ops; works in stage
--   core_api      the lookup API (sql/023_api.sql): yes/no answers, never a person's record
--
-- Roles are cluster-wide, grants are per database: every database that runs this migration
-- creates the roles if they are missing (another database of the same server may have created
-- them already, maybe at this very moment) and grants on its own objects. The roles are created
-- LOGIN without a password: the embedded warehouse trusts 127.0.0.1; on any other server give
-- them a password, or (better) create one login per service that is a member of one of them
-- (`corehub url --role ROLE` prints how).

do $roles$
declare
    r text;
begin
    foreach r in array array['core_reader', 'core_public', 'core_writer', 'core_api'] loop
        if not exists (select 1 from pg_roles where rolname = r) then
            begin
                execute format('create role %I login nosuperuser nocreatedb nocreaterole noreplication', r);
            exception
                when duplicate_object or unique_violation then
                    null;  -- created meanwhile by the migration of another database on this server
                when insufficient_privilege then
                    raise exception 'corehub needs the role % and may not create it', r
                        using hint = format('Ask the administrator of this server to run: create role %I login;', r);
            end;
        end if;
    end loop;
    -- least privilege is void if someone made one of them powerful: say so loudly
    for r in select rolname from pg_roles
             where rolname in ('core_reader', 'core_public', 'core_writer', 'core_api')
               and (rolsuper or rolcreatedb or rolcreaterole or rolbypassrls or rolreplication) loop
        raise warning 'role % has more than corehub grants it (superuser, createdb, createrole, bypassrls or replication)', r;
    end loop;
    execute format('grant connect on database %I to core_reader, core_public, core_writer, core_api',
                   current_database());
end
$roles$;

-- core_reader: the published interface, read-only. Views created later in these schemas (the
-- enterprise and land feeds) are readable as soon as they exist (default privileges).
grant usage on schema core, history, ref to core_reader;
grant select on all tables in schema core, history, ref to core_reader;
alter default privileges in schema core, history, ref grant select on tables to core_reader;

-- core_writer: what a delivery needs and nothing more. History is only appended to: no delete or
-- truncate on store, and no way to touch the migrations, the roles or the published views'
-- definitions (they belong to the migrations' owner).
grant usage on schema meta, store, quarantine, ops, stage, rules, ref, core, history to core_writer;
grant create on schema stage to core_writer;
grant select, insert, update on all tables in schema meta, store, quarantine, ops to core_writer;
revoke insert, update on meta.schema_migration from core_writer;
grant select on all tables in schema ref, core, history to core_writer;
alter default privileges in schema meta, store, quarantine, ops grant select, insert, update on tables to core_writer;
alter default privileges in schema ref, core, history grant select on tables to core_writer;

-- PostgreSQL 17+: let the writer analyse the version tables it fills (the publish step does).
do $maintain$
begin
    if current_setting('server_version_num')::int >= 170000 then
        execute 'grant maintain on all tables in schema store to core_writer';
        execute 'alter default privileges in schema store grant maintain on tables to core_writer';
    end if;
end
$maintain$;

-- Nobody but the owner creates anything in the published schemas (PostgreSQL 15+ already keeps
-- PUBLIC out of schema public).
revoke all on schema core, history, ref, store, meta, quarantine, stage, ops from public;
