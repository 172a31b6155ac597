-- The analytics surface: a schema of stable, documented views over the projections (each
-- projection adds its views from its own migrations), and a read-only role for pipelines.
-- The role cannot log in; grant it to the login roles your pipelines use:
--   CREATE ROLE etl LOGIN PASSWORD '…' IN ROLE eventline_analytics;
CREATE SCHEMA IF NOT EXISTS analytics;
COMMENT ON SCHEMA analytics IS 'eventline''s read models for analytics: stable column names, updated_at on every row for incremental extraction.';

-- Roles belong to the whole cluster, and several databases may be migrating at once.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'eventline_analytics') THEN
        CREATE ROLE eventline_analytics NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

GRANT USAGE ON SCHEMA analytics TO eventline_analytics;
-- Views created later in this schema by the database's owner are readable too.
ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO eventline_analytics;
