-- account_balances: one row per account, its balance in integer minor units and how it got there.
CREATE TABLE account_balances (
    account_id           text        PRIMARY KEY,
    owner                text        NOT NULL,
    currency             text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance_minor        bigint      NOT NULL,
    status               text        NOT NULL CHECK (status IN ('open', 'closed')),
    events_applied       bigint      NOT NULL CHECK (events_applied > 0),
    last_event_id        text        NOT NULL,
    last_event_time      timestamptz NOT NULL,
    -- Channel of the latest deposit (accounts.FundsDeposited v2); `unknown` for deposits
    -- published as v1 and upcast.
    last_deposit_channel text,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX account_balances_by_owner ON account_balances (owner, account_id);
