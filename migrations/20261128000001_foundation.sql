-- The runtime's own tables, prefixed eventline_, and the first projection.

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

-- Records a projection could not apply, with everything needed to inspect, retry or skip them.
CREATE TABLE eventline_dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection  text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    record_key  text,
    event_id    text,
    event_type  text,
    -- undecodable | invalid | rejected (a domain rule refused the event)
    reason_kind text        NOT NULL,
    reason      text        NOT NULL,
    payload     bytea,
    headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (projection, topic, partition, "offset")
);

CREATE INDEX eventline_dead_letters_by_key ON eventline_dead_letters (projection, record_key);

-- One row per account: the balance in integer minor units and how it got there.
CREATE TABLE account_balances (
    account_id      text        PRIMARY KEY,
    owner           text        NOT NULL,
    currency        text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance_minor   bigint      NOT NULL,
    status          text        NOT NULL CHECK (status IN ('open', 'closed')),
    events_applied  bigint      NOT NULL CHECK (events_applied > 0),
    last_event_id   text        NOT NULL,
    last_event_time timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX account_balances_by_owner ON account_balances (owner, account_id);
