-- analytics.feature_usage_daily.
CREATE INDEX feature_usage_daily_by_updated_at ON feature_usage_daily (updated_at);

CREATE VIEW analytics.feature_usage_daily AS
SELECT day, feature, uses, unique_users, updated_at FROM public.feature_usage_daily;

COMMENT ON VIEW analytics.feature_usage_daily IS 'One row per UTC day and feature: uses and distinct users; updated_at for incremental extraction.';
GRANT SELECT ON analytics.feature_usage_daily TO eventline_analytics;
