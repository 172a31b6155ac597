-- feature_usage_daily: per UTC day and feature, how often it was used and by how many users.
CREATE TABLE feature_usage_daily (
    day          date        NOT NULL,
    feature      text        NOT NULL,
    uses         bigint      NOT NULL CHECK (uses >= 0),
    unique_users integer     NOT NULL CHECK (unique_users >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, feature)
);

-- Who used which feature on which day, to count each user once.
CREATE TABLE feature_usage_daily_users (
    day     date NOT NULL,
    feature text NOT NULL,
    user_id text NOT NULL,
    PRIMARY KEY (day, feature, user_id)
);
