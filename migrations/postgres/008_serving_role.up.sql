-- 008_serving_role: a serving role that does not own the record.
--
-- The append-only triggers bind every role but the tables' owner and a
-- superuser: the owner may ALTER TABLE ... DISABLE TRIGGER or DROP TRIGGER
-- without any further privilege. A server that connects as the role that
-- ran the migrations can therefore switch its own guards off. The
-- deployment this migration prepares: migrations run as the owner
-- (`perfusiond migrate --database-url <owner URL>`), and `perfusiond serve`
-- connects as a login role that is a member of perfusion_app, which holds
-- exactly what the server needs:
--
--   * SELECT and INSERT on every table of the schema (the record is
--     written by INSERT only);
--   * UPDATE of the case state columns of `cases` (status, times, details
--     version, ledger head; forward only, perfusion_guard_case), which also
--     lets LockCase take its row lock (SELECT ... FOR UPDATE);
--   * UPDATE of `sample_sources` (resume watermark, chunk coverage);
--   * UPDATE and DELETE of the derived metrics (case_metrics,
--     case_metric_values), UPDATE of outbox_deliveries (delivery state) and
--     of break_glass_grants (ending a grant);
--   * USAGE of the schema and of its sequences.
--
-- It gets no UPDATE or DELETE on any recorded table, no TRUNCATE, and owns
-- nothing, so ALTER TABLE, DROP TRIGGER and DROP TABLE are refused to it.
-- Tables later migrations create get SELECT and INSERT by default
-- privileges; a later migration grants anything more explicitly.
--
-- Creating the role needs CREATEROLE. If the migrating role lacks it, a
-- database administrator creates it once first (CREATE ROLE perfusion_app
-- NOLOGIN) and this migration then only grants to it. Roles are shared by
-- every database of a PostgreSQL cluster: one perfusion_app serves them all.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'perfusion_app') THEN
        BEGIN
            CREATE ROLE perfusion_app NOLOGIN;
        EXCEPTION
            -- Another database of the cluster migrating at the same moment.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'the role perfusion_app does not exist and the migrating role may not create it'
                    USING HINT = 'As a database administrator run: CREATE ROLE perfusion_app NOLOGIN; then migrate again.';
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO perfusion_app', current_schema());
    EXECUTE format('GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA %I TO perfusion_app', current_schema());
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO perfusion_app', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT ON TABLES TO perfusion_app', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO perfusion_app', current_schema());
END
$$;

GRANT UPDATE (status, started_at, closed_at, closed_by, details_version, head_seq, head_hash) ON cases TO perfusion_app;
GRANT UPDATE ON sample_sources TO perfusion_app;
GRANT UPDATE, DELETE ON case_metrics, case_metric_values TO perfusion_app;
GRANT UPDATE ON outbox_deliveries TO perfusion_app;
GRANT UPDATE ON break_glass_grants TO perfusion_app;
-- The access audit's chain heads move forward one row per site (007).
GRANT UPDATE ON access_chain_heads TO perfusion_app;
