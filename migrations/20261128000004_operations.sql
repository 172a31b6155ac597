-- What operators need: who moved a position, dead letters that can be re-applied, an audit of
-- every operator action, and generations of a projection for rebuilds beside the live one.

-- The worker (host:pid) that last moved each position, shown by `eventline status`.
ALTER TABLE eventline_checkpoints ADD COLUMN written_by text;

-- The Kafka record's timestamp, so a retried dead letter is applied with the time it had.
ALTER TABLE eventline_dead_letters ADD COLUMN record_time timestamptz;

-- Where each applied event was read, so switching generations can forget exactly the ids applied
-- past the positions it switches to (rows from before this migration have none).
ALTER TABLE eventline_applied_events
    ADD COLUMN topic text,
    ADD COLUMN partition integer,
    ADD COLUMN "offset" bigint;

-- Every operator action (dlq retry/skip/purge, replay, rebuild cutover/rollback/cleanup): who,
-- when, on what, and what came of it. Rows are only ever added.
CREATE TABLE eventline_audit (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text        NOT NULL,
    action     text        NOT NULL,
    projection text        NOT NULL,
    target     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    reason     text,
    outcome    jsonb       NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX eventline_audit_by_projection ON eventline_audit (projection, id);

-- Generations of a projection. The live one's tables are in `public`; any other's (one being
-- built, or one retired by a cutover and kept for a rollback) are in schema
-- eventline_gen_<projection>_<generation>, with its own copies of the runtime tables. No row for
-- a projection means generation 1 is live and none other exists.
CREATE TABLE eventline_generations (
    projection   text        NOT NULL,
    generation   integer     NOT NULL CHECK (generation >= 1),
    state        text        NOT NULL CHECK (state IN ('building', 'live', 'retired')),
    -- `earliest`, or the RFC 3339 time a mid-stream rebuild started from.
    started_from text        NOT NULL DEFAULT 'earliest',
    created_at   timestamptz NOT NULL DEFAULT now(),
    caught_up_at timestamptz,
    live_since   timestamptz,
    PRIMARY KEY (projection, generation)
);

CREATE UNIQUE INDEX eventline_generations_one_building ON eventline_generations (projection) WHERE state = 'building';
CREATE UNIQUE INDEX eventline_generations_one_live ON eventline_generations (projection) WHERE state = 'live';

-- Creates target_schema.<table> shaped like public.<table>: columns, defaults, checks, generated
-- columns, identity, and its primary key, unique constraints and indexes under the same names, so
-- a generation moved into public is indistinguishable from one created by the migrations.
CREATE FUNCTION eventline_copy_table(source_table text, target_schema text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    source regclass := format('public.%I', source_table)::regclass;
    item record;
BEGIN
    EXECUTE format(
        'CREATE TABLE %I.%I (LIKE public.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED '
        'INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS)',
        target_schema, source_table, source_table);
    FOR item IN
        SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint
        WHERE conrelid = source AND contype IN ('p', 'u') ORDER BY conname
    LOOP
        EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', target_schema, source_table, item.conname, item.definition);
    END LOOP;
    FOR item IN
        SELECT pg_get_indexdef(i.indexrelid) AS definition FROM pg_index i
        WHERE i.indrelid = source AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
    LOOP
        EXECUTE regexp_replace(
            item.definition,
            ' ON (public\.)?' || quote_ident(source_table) || ' ',
            format(' ON %I.%I ', target_schema, source_table));
    END LOOP;
END
$$;

-- Row count and an order-independent checksum of a table's rows, every column but updated_at
-- (which records when a row was written, not what it holds).
CREATE FUNCTION eventline_table_checksum(schema_name text, table_name text, OUT row_count bigint, OUT checksum text)
LANGUAGE plpgsql AS $$
DECLARE
    columns text;
BEGIN
    SELECT string_agg(format('%I', column_name), ', ' ORDER BY column_name) INTO columns
    FROM information_schema.columns
    WHERE table_schema = schema_name AND information_schema.columns.table_name = eventline_table_checksum.table_name
      AND column_name <> 'updated_at';
    EXECUTE format(
        'SELECT count(*), to_hex(coalesce(mod(sum((''x'' || substr(md5(row(%s)::text), 1, 15))::bit(60)::bigint), 9223372036854775807), 0)::bigint) FROM %I.%I',
        columns, schema_name, table_name)
    INTO row_count, checksum;
END
$$;
