-- Event by event, in offset order: each reads its account's row as the batch has left it.
CREATE FUNCTION apply(batch jsonb) RETURNS TABLE(ord int, reason text)
LANGUAGE plpgsql AS $$
DECLARE
    event jsonb;
    account account_balances_sql;
    id text;
BEGIN
    FOR event IN SELECT value FROM jsonb_array_elements(batch) LOOP
        id := event->>'key';
        SELECT * INTO account FROM account_balances_sql a WHERE a.account_id = id FOR UPDATE;
        ord := (event->>'ord')::int;
        reason := NULL;
        IF event->>'type' = 'accounts.AccountOpened' THEN
            IF FOUND THEN
                reason := format('account %s is already open', id);
            ELSE
                INSERT INTO account_balances_sql
                VALUES (id, event->'data'->>'owner', event->'data'->>'currency', 0, 'open', 1, event->>'id',
                        (event->>'time')::timestamptz, now());
            END IF;
        ELSIF NOT FOUND THEN
            reason := format('account %s does not exist', id);
        ELSIF account.status = 'closed' THEN
            reason := format('account %s is closed', id);
        ELSIF event->>'type' = 'accounts.AccountClosed' THEN
            UPDATE account_balances_sql a
            SET status = 'closed', events_applied = a.events_applied + 1, last_event_id = event->>'id',
                last_event_time = (event->>'time')::timestamptz, updated_at = now()
            WHERE a.account_id = id;
        ELSIF account.currency <> event->'data'->>'currency' THEN
            reason := format('account %s holds %s, not %s', id, account.currency, event->'data'->>'currency');
        ELSE
            UPDATE account_balances_sql a
            SET balance_minor = a.balance_minor + CASE event->>'type'
                    WHEN 'accounts.FundsDeposited' THEN (event->'data'->>'amount_minor')::bigint
                    ELSE -(event->'data'->>'amount_minor')::bigint END,
                events_applied = a.events_applied + 1, last_event_id = event->>'id',
                last_event_time = (event->>'time')::timestamptz, updated_at = now()
            WHERE a.account_id = id;
        END IF;
        IF reason IS NOT NULL THEN
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;
