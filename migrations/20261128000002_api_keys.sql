-- Gateway API keys. Only a SHA-256 hash of each key's secret is stored; the secret is shown once,
-- when the key is created. `event_types` holds patterns (`accounts.*`, `projects.TaskCreated`, `*`)
-- of the event types the key may publish.
CREATE TABLE eventline_api_keys (
    key_id      text        PRIMARY KEY,
    name        text        NOT NULL,
    secret_hash bytea       NOT NULL,
    event_types text[]      NOT NULL CHECK (cardinality(event_types) > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
