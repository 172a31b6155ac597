-- daily_activity: per UTC day, how many users were active and how many pages were viewed.
-- A user is active on a day when any activity event of theirs is timed on it.
CREATE TABLE daily_activity (
    day          date        PRIMARY KEY,
    active_users integer     NOT NULL CHECK (active_users >= 0),
    page_views   bigint      NOT NULL CHECK (page_views >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Who was active on which day, to count each user once a day. Only the worker owning a user's
-- partition writes that user's rows.
CREATE TABLE daily_activity_users (
    day     date NOT NULL,
    user_id text NOT NULL,
    PRIMARY KEY (day, user_id)
);
