-- Least privilege. Group roles (NOLOGIN): a deployment creates login users and grants one of these to each.
--   bridge_pbms      PBMS writers: INSERT and SELECT on the staging tables, SELECT on the two status views.
--   bridge_operator  read only: the status views, staging and core tables (no writes anywhere).
--   bridge_app       the bridge itself: owns nothing new, may read and write its schemas.
-- Roles are cluster-wide, so they are created only when missing; grants are per database.

DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['bridge_pbms', 'bridge_operator', 'bridge_app'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END $$;

REVOKE ALL ON SCHEMA staging, bridge FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA staging, bridge FROM PUBLIC;

GRANT USAGE ON SCHEMA staging, bridge TO bridge_pbms, bridge_operator, bridge_app;

-- PBMS: stage rows and read their results; nothing else (no UPDATE/DELETE, no core tables).
GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA staging TO bridge_pbms;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA staging TO bridge_pbms;
GRANT SELECT ON bridge.envelope_status, bridge.disbursement_status TO bridge_pbms;

-- Operators: read everything, write nothing.
GRANT SELECT ON ALL TABLES IN SCHEMA staging, bridge TO bridge_operator;

-- The bridge's own processes.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA staging, bridge TO bridge_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA staging, bridge TO bridge_app;

-- Tables that later migrations create get the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA staging GRANT SELECT, INSERT ON TABLES TO bridge_pbms;
ALTER DEFAULT PRIVILEGES IN SCHEMA staging GRANT USAGE ON SEQUENCES TO bridge_pbms;
ALTER DEFAULT PRIVILEGES IN SCHEMA staging, bridge GRANT SELECT ON TABLES TO bridge_operator;
ALTER DEFAULT PRIVILEGES IN SCHEMA staging, bridge GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO bridge_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA staging, bridge GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO bridge_app;
