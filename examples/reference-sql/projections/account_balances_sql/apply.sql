-- Event by event, in offset order: each reads its account's row as the batch has left it. The
-- common case is one statement per event (an UPDATE that only matches an open account in the
-- event's currency); only an event that does not match reads the row to say why.
CREATE FUNCTION apply(batch jsonb) RETURNS TABLE(ord int, reason text)
LANGUAGE plpgsql AS $$
DECLARE
    event jsonb;
    account account_balances_sql;
    id text;
    kind text;
    amount bigint;
BEGIN
    FOR event IN SELECT value FROM jsonb_array_elements(batch) LOOP
        id := event->>'key';
        kind := event->>'type';
        ord := (event->>'ord')::int;
        reason := NULL;
        IF kind = 'accounts.AccountOpened' THEN
            INSERT INTO account_balances_sql
            VALUES (id, event->'data'->>'owner', event->'data'->>'currency', 0, 'open', 1, event->>'id',
                    (event->>'time')::timestamptz, now())
            ON CONFLICT (account_id) DO NOTHING;
            IF NOT FOUND THEN
                reason := format('account %s is already open', id);
            END IF;
        ELSE
            IF kind = 'accounts.AccountClosed' THEN
                UPDATE account_balances_sql a
                SET status = 'closed', events_applied = a.events_applied + 1, last_event_id = event->>'id',
                    last_event_time = (event->>'time')::timestamptz, updated_at = now()
                WHERE a.account_id = id AND a.status = 'open';
            ELSE
                amount := (event->'data'->>'amount_minor')::bigint;
                IF kind = 'accounts.FundsWithdrawn' THEN
                    amount := -amount;
                END IF;
                UPDATE account_balances_sql a
                SET balance_minor = a.balance_minor + amount, events_applied = a.events_applied + 1,
                    last_event_id = event->>'id', last_event_time = (event->>'time')::timestamptz, updated_at = now()
                WHERE a.account_id = id AND a.status = 'open' AND a.currency = event->'data'->>'currency';
            END IF;
            IF NOT FOUND THEN
                SELECT * INTO account FROM account_balances_sql a WHERE a.account_id = id;
                IF NOT FOUND THEN
                    reason := format('account %s does not exist', id);
                ELSIF account.status = 'closed' THEN
                    reason := format('account %s is closed', id);
                ELSE
                    reason := format('account %s holds %s, not %s', id, account.currency, event->'data'->>'currency');
                END IF;
            END IF;
        END IF;
        IF reason IS NOT NULL THEN
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;
