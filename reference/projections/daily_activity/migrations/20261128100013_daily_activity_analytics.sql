-- analytics.daily_activity.
CREATE INDEX daily_activity_by_updated_at ON daily_activity (updated_at);

CREATE VIEW analytics.daily_activity AS
SELECT day, active_users, page_views, updated_at FROM public.daily_activity;

COMMENT ON VIEW analytics.daily_activity IS 'One row per UTC day: distinct active users and page views; updated_at for incremental extraction.';
GRANT SELECT ON analytics.daily_activity TO eventline_analytics;
