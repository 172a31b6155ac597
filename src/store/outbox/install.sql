-- eventline's transactional outbox. Apply this to the database your service writes to, with your
-- own migration tool or with `eventline outbox install`; it is safe to apply twice.
--
-- In the same transaction as a business change, insert one row per event:
--   INSERT INTO eventline_outbox (event) VALUES ('{"specversion":"1.0","id":"…","source":"…",
--     "type":"accounts.FundsDeposited","subject":"acc-1","data":{…}}');
-- `eventline outbox-relay` publishes committed rows to Kafka (validated through the schema
-- registry), in insertion order per `subject`, and marks them published. Rows of a rolled-back
-- transaction never exist, so they are never published.

CREATE TABLE IF NOT EXISTS eventline_outbox (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The event, in CloudEvents JSON structured mode; `subject` is the entity id.
    event        jsonb       NOT NULL,
    event_key    text        GENERATED ALWAYS AS (event ->> 'subject') STORED,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    -- Set when the relay refused the event (it failed validation). Later events with the same
    -- subject wait behind it until the row is fixed (update `event`, clear `failed_at`) or deleted.
    failed_at    timestamptz,
    last_error   text
);

CREATE INDEX IF NOT EXISTS eventline_outbox_pending ON eventline_outbox (id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS eventline_outbox_pending_by_key ON eventline_outbox (event_key, id) WHERE published_at IS NULL;

-- Wakes the relays as soon as rows commit (they also poll, in case a notification is missed).
CREATE OR REPLACE FUNCTION eventline_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('eventline_outbox', '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS eventline_outbox_notify ON eventline_outbox;
CREATE TRIGGER eventline_outbox_notify AFTER INSERT ON eventline_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION eventline_outbox_notify();
