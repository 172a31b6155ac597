-- Called once per batch with the batch's events in offset order; returns a row for each event a
-- rule refuses (none: all applied).
CREATE FUNCTION apply(batch jsonb) RETURNS TABLE(ord int, reason text)
LANGUAGE plpgsql AS $$
DECLARE
    event jsonb;
    wanted bigint;
    available bigint;
BEGIN
    FOR event IN SELECT value FROM jsonb_array_elements(batch) LOOP
        wanted := (event->'data'->>'quantity')::bigint;
        IF event->>'type' = 'inventory.StockReceived' THEN
            INSERT INTO stock_levels AS s (sku, on_hand, updated_at)
            VALUES (event->>'key', wanted, (event->>'time')::timestamptz)
            ON CONFLICT (sku) DO UPDATE SET on_hand = s.on_hand + excluded.on_hand, updated_at = excluded.updated_at;
        ELSIF event->>'type' = 'inventory.ItemShipped' THEN
            SELECT s.on_hand INTO available FROM stock_levels s WHERE s.sku = event->>'key' FOR UPDATE;
            IF coalesce(available, 0) < wanted THEN
                ord := (event->>'ord')::int;
                reason := format('cannot ship %s of %s: %s on hand', wanted, event->>'key', coalesce(available, 0));
                RETURN NEXT;
            ELSE
                UPDATE stock_levels s
                SET on_hand = s.on_hand - wanted, shipped = s.shipped + wanted, last_order_id = event->'data'->>'order_id',
                    updated_at = (event->>'time')::timestamptz
                WHERE s.sku = event->>'key';
            END IF;
        END IF;
    END LOOP;
END
$$;
