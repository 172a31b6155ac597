-- Set-based: one statement for the whole batch. Users first seen on a day are inserted (and
-- returned); each day of the batch adds them and its page views.
CREATE FUNCTION apply(batch jsonb) RETURNS TABLE(ord int, reason text)
LANGUAGE sql AS $$
    WITH events AS (
        SELECT ((e->>'time')::timestamptz AT TIME ZONE 'UTC')::date AS day,
               e->'data'->>'user_id' AS user_id,
               e->>'type' = 'activity.PageViewed' AS viewed
        FROM jsonb_array_elements(batch) AS e
    ), first_seen AS (
        INSERT INTO daily_activity_users (day, user_id)
        SELECT DISTINCT day, user_id FROM events
        ON CONFLICT DO NOTHING
        RETURNING day
    ), per_day AS (
        SELECT day, count(*) FILTER (WHERE viewed) AS views FROM events GROUP BY day
    ), new_users AS (
        SELECT day, count(*) AS users FROM first_seen GROUP BY day
    )
    INSERT INTO daily_activity AS d (day, active_users, page_views, updated_at)
    SELECT p.day, coalesce(n.users, 0), p.views, now()
    FROM per_day AS p LEFT JOIN new_users AS n USING (day)
    ON CONFLICT (day) DO UPDATE SET
        active_users = d.active_users + excluded.active_users,
        page_views = d.page_views + excluded.page_views,
        updated_at = now();
    -- Activity events are facts: none is refused.
    SELECT NULL::int, NULL::text WHERE false;
$$;
