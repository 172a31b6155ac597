-- The runtime writes one row here per applied event, which makes this the hottest table it has.
-- An event id is now remembered as the first 16 bytes of its SHA-256: the primary key compares
-- 16 bytes instead of text under a collation and its index is a third the size. The age index,
-- used only to forget old ids, becomes a BRIN (rows arrive in time order, and it costs next to
-- nothing per insert). Rebuild generations' copies of the table are converted the same way.
DO $$
DECLARE
    target record;
BEGIN
    FOR target IN
        SELECT n.nspname AS schema
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relname = 'eventline_applied_events' AND c.relkind = 'r'
    LOOP
        EXECUTE format('ALTER TABLE %I.eventline_applied_events ADD COLUMN event_digest bytea', target.schema);
        EXECUTE format(
            'UPDATE %I.eventline_applied_events SET event_digest = substring(sha256(convert_to(event_id, ''UTF8'')) FROM 1 FOR 16)',
            target.schema);
        -- Takes the primary key (and the age index) with it.
        EXECUTE format('ALTER TABLE %I.eventline_applied_events DROP COLUMN event_id', target.schema);
        EXECUTE format(
            'ALTER TABLE %I.eventline_applied_events ALTER COLUMN event_digest SET NOT NULL, '
            'ADD CONSTRAINT eventline_applied_events_pkey PRIMARY KEY (projection, event_digest)',
            target.schema);
    END LOOP;
END
$$;

DROP INDEX public.eventline_applied_events_by_age;
CREATE INDEX eventline_applied_events_by_age ON public.eventline_applied_events USING brin (applied_at);
