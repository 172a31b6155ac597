-- analytics.account_balances: one row per account. Extract "what changed since T" with
-- WHERE updated_at > T (the index below keeps that cheap).
CREATE INDEX account_balances_by_updated_at ON account_balances (updated_at);

CREATE VIEW analytics.account_balances AS
SELECT account_id, owner, currency, balance_minor, status, events_applied, last_event_id, last_event_time,
       last_deposit_channel, updated_at
FROM public.account_balances;

COMMENT ON VIEW analytics.account_balances IS 'One row per account: balance in integer minor units of currency, status (open|closed), events applied, the last event, the channel of the latest deposit; updated_at for incremental extraction.';
GRANT SELECT ON analytics.account_balances TO eventline_analytics;
