CREATE TABLE account_balances_sql (
    account_id      text        PRIMARY KEY,
    owner           text        NOT NULL,
    currency        text        NOT NULL,
    balance_minor   bigint      NOT NULL,
    status          text        NOT NULL,
    events_applied  bigint      NOT NULL,
    last_event_id   text        NOT NULL,
    last_event_time timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
