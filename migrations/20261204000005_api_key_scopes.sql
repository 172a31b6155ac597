-- What a key may read through the query API, beside the event types it may publish: `read:<projection>`,
-- `read:*`, `status`. Keys made before this read nothing: the query API used to answer everyone, and
-- a key's owner decides what it reads now. A key may now publish nothing, but must be able to do
-- something.
ALTER TABLE eventline_api_keys ADD COLUMN scopes text[] NOT NULL DEFAULT '{}';
ALTER TABLE eventline_api_keys DROP CONSTRAINT eventline_api_keys_event_types_check;
ALTER TABLE eventline_api_keys ADD CONSTRAINT eventline_api_keys_grant_something
    CHECK (cardinality(event_types) + cardinality(scopes) > 0);
