-- The projection runtime's own tables, all prefixed eventline_. Each projection's tables come
-- with the projection, from src/store/projections/<name>/migrations/.

-- Where each projection stands in each partition it reads: the next offset to apply.
-- A worker moves this row in the same transaction as the projection rows the batch wrote,
-- and only if it still holds the value the worker started the batch from (a compare-and-set
-- that fences a worker which lost the partition). Kafka's group offsets only mirror it.
CREATE TABLE eventline_checkpoints (
    projection  text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL CHECK (partition >= 0),
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);

-- Records a projection did not apply, with everything needed to inspect, retry or skip them.
CREATE TABLE eventline_dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection  text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    record_key  text,
    event_id    text,
    event_type  text,
    -- undecodable | invalid | rejected (a domain rule refused it) | parked (behind an earlier
    -- dead letter of the same key)
    reason_kind text        NOT NULL CHECK (reason_kind IN ('undecodable', 'invalid', 'rejected', 'parked')),
    reason      text        NOT NULL,
    payload     bytea,
    headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (projection, topic, partition, "offset")
);

CREATE INDEX eventline_dead_letters_by_key ON eventline_dead_letters (projection, record_key, id);

-- Keys whose events wait behind a dead letter: every later event of a parked key becomes a
-- dead letter too, in order, until an operator retries or skips them.
CREATE TABLE eventline_parked_keys (
    projection  text        NOT NULL,
    record_key  text        NOT NULL,
    reason      text        NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, record_key)
);

-- Ids of the events each projection applied, so an event published again (at a new offset) is
-- applied once. Kept for a retention window (EVENTLINE_DEDUP_WINDOW_HOURS); a copy arriving
-- later than that is applied again.
CREATE TABLE eventline_applied_events (
    projection  text        NOT NULL,
    event_id    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, event_id)
);

CREATE INDEX eventline_applied_events_by_age ON eventline_applied_events (projection, applied_at);
