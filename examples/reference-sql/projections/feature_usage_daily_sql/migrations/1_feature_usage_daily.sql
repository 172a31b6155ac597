CREATE TABLE feature_usage_daily_sql (
    day          date        NOT NULL,
    feature      text        NOT NULL,
    uses         bigint      NOT NULL CHECK (uses >= 0),
    unique_users integer     NOT NULL CHECK (unique_users >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, feature)
);

CREATE TABLE feature_usage_daily_sql_users (
    day     date NOT NULL,
    feature text NOT NULL,
    user_id text NOT NULL,
    PRIMARY KEY (day, feature, user_id)
);
