-- project_progress: one row per project with its task counts; tasks: one row per task.
CREATE TABLE project_progress (
    project_id       text        PRIMARY KEY,
    name             text        NOT NULL,
    tasks_total      integer     NOT NULL CHECK (tasks_total >= 0),
    tasks_completed  integer     NOT NULL CHECK (tasks_completed BETWEEN 0 AND tasks_total),
    percent_complete numeric(5, 2) GENERATED ALWAYS AS (
        CASE WHEN tasks_total = 0 THEN 0 ELSE round(100.0 * tasks_completed / tasks_total, 2) END
    ) STORED,
    events_applied   bigint      NOT NULL CHECK (events_applied > 0),
    last_event_id    text        NOT NULL,
    last_event_time  timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tasks (
    project_id   text        NOT NULL,
    task_id      text        NOT NULL,
    title        text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('open', 'completed')),
    assignee     text,
    completed_at timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, task_id)
);

CREATE INDEX tasks_by_assignee ON tasks (assignee, project_id, task_id) WHERE assignee IS NOT NULL;
