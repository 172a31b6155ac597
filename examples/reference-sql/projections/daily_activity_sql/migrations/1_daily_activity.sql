CREATE TABLE daily_activity_sql (
    day          date        PRIMARY KEY,
    active_users integer     NOT NULL CHECK (active_users >= 0),
    page_views   bigint      NOT NULL CHECK (page_views >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Who was active on which day, to count each user once a day.
CREATE TABLE daily_activity_sql_users (
    day     date NOT NULL,
    user_id text NOT NULL,
    PRIMARY KEY (day, user_id)
);
