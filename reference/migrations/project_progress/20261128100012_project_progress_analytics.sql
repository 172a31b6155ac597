-- analytics.projects and analytics.tasks.
CREATE INDEX project_progress_by_updated_at ON project_progress (updated_at);
CREATE INDEX tasks_by_updated_at ON tasks (updated_at);

CREATE VIEW analytics.projects AS
SELECT project_id, name, tasks_total, tasks_completed, percent_complete, events_applied, last_event_time, updated_at
FROM public.project_progress;

CREATE VIEW analytics.tasks AS
SELECT project_id, task_id, title, status, assignee, completed_at, updated_at
FROM public.tasks;

COMMENT ON VIEW analytics.projects IS 'One row per project: tasks total and completed, percent_complete (0 to 100, two decimals); updated_at for incremental extraction.';
COMMENT ON VIEW analytics.tasks IS 'One row per task: status (open|completed), assignee, completed_at; updated_at for incremental extraction.';
GRANT SELECT ON analytics.projects, analytics.tasks TO eventline_analytics;
