CREATE FUNCTION apply(batch jsonb) RETURNS TABLE(ord int, reason text)
LANGUAGE sql AS $$
    WITH events AS (
        SELECT ((e->>'time')::timestamptz AT TIME ZONE 'UTC')::date AS day,
               e->'data'->>'feature' AS feature,
               e->'data'->>'user_id' AS user_id
        FROM jsonb_array_elements(batch) AS e
    ), first_seen AS (
        INSERT INTO feature_usage_daily_users (day, feature, user_id)
        SELECT DISTINCT day, feature, user_id FROM events
        ON CONFLICT DO NOTHING
        RETURNING day, feature
    ), uses AS (
        SELECT day, feature, count(*) AS uses FROM events GROUP BY day, feature
    ), new_users AS (
        SELECT day, feature, count(*) AS users FROM first_seen GROUP BY day, feature
    )
    INSERT INTO feature_usage_daily AS f (day, feature, uses, unique_users, updated_at)
    SELECT u.day, u.feature, u.uses, coalesce(n.users, 0), now()
    FROM uses AS u LEFT JOIN new_users AS n USING (day, feature)
    ON CONFLICT (day, feature) DO UPDATE SET
        uses = f.uses + excluded.uses,
        unique_users = f.unique_users + excluded.unique_users,
        updated_at = now();
    SELECT NULL::int, NULL::text WHERE false;
$$;
