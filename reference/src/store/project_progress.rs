//! Rows of the `project_progress` projection: `project_progress` and `tasks`.

use chrono::{DateTime, Utc};

use eventline_store::{Error, Store, StoreTx};

/// The tables this projection owns, in the order readers lock them (a rebuild moves them).
pub const TABLES: &[&str] = &["project_progress", "tasks"];

/// One project's row. `percent_complete` is computed by PostgreSQL from the counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub project_id: String,
    pub name: String,
    pub tasks_total: i32,
    pub tasks_completed: i32,
    pub events_applied: i64,
    pub last_event_id: String,
    pub last_event_time: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Open,
    Completed,
}

impl TaskStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Completed => "completed",
        }
    }

    fn from_column(value: &str) -> Self {
        // The column's CHECK constraint allows only these two.
        if value == "completed" {
            Self::Completed
        } else {
            Self::Open
        }
    }
}

/// One task's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub project_id: String,
    pub task_id: String,
    pub title: String,
    pub status: TaskStatus,
    pub assignee: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
}

struct TaskRow {
    project_id: String,
    task_id: String,
    title: String,
    status: String,
    assignee: Option<String>,
    completed_at: Option<DateTime<Utc>>,
}

impl From<TaskRow> for Task {
    fn from(row: TaskRow) -> Self {
        Self {
            project_id: row.project_id,
            task_id: row.task_id,
            title: row.title,
            status: TaskStatus::from_column(&row.status),
            assignee: row.assignee,
            completed_at: row.completed_at,
        }
    }
}

/// These projects' rows, locked until the transaction ends.
pub async fn lock_projects(tx: &mut StoreTx, project_ids: &[String]) -> Result<Vec<Project>, Error> {
    Ok(sqlx::query_as!(
        Project,
        "SELECT project_id, name, tasks_total, tasks_completed, events_applied, last_event_id, last_event_time
         FROM project_progress WHERE project_id = ANY($1) ORDER BY project_id FOR UPDATE",
        project_ids
    )
    .fetch_all(tx.connection())
    .await?)
}

/// The rows of these (project, task) pairs that exist.
pub async fn load_tasks(tx: &mut StoreTx, keys: &[(String, String)]) -> Result<Vec<Task>, Error> {
    let (projects, tasks): (Vec<String>, Vec<String>) = keys.iter().cloned().unzip();
    let rows = sqlx::query_as!(
        TaskRow,
        "SELECT t.project_id, t.task_id, t.title, t.status, t.assignee, t.completed_at
         FROM tasks t JOIN UNNEST($1::text[], $2::text[]) AS wanted(project_id, task_id)
           ON wanted.project_id = t.project_id AND wanted.task_id = t.task_id
         ORDER BY t.project_id, t.task_id",
        &projects,
        &tasks
    )
    .fetch_all(tx.connection())
    .await?;
    Ok(rows.into_iter().map(Task::from).collect())
}

/// Writes project rows in one statement.
pub async fn upsert_projects(tx: &mut StoreTx, rows: &[Project]) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&Project) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let totals: Vec<i32> = rows.iter().map(|r| r.tasks_total).collect();
    let completed: Vec<i32> = rows.iter().map(|r| r.tasks_completed).collect();
    let applied: Vec<i64> = rows.iter().map(|r| r.events_applied).collect();
    let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.last_event_time).collect();
    sqlx::query!(
        "INSERT INTO project_progress
           (project_id, name, tasks_total, tasks_completed, events_applied, last_event_id, last_event_time, updated_at)
         SELECT *, now() FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int4[], $5::int8[], $6::text[],
                                     $7::timestamptz[])
         ON CONFLICT (project_id) DO UPDATE SET
           name = EXCLUDED.name,
           tasks_total = EXCLUDED.tasks_total,
           tasks_completed = EXCLUDED.tasks_completed,
           events_applied = EXCLUDED.events_applied,
           last_event_id = EXCLUDED.last_event_id,
           last_event_time = EXCLUDED.last_event_time,
           updated_at = now()",
        &column(|r| r.project_id.clone()),
        &column(|r| r.name.clone()),
        &totals,
        &completed,
        &applied,
        &column(|r| r.last_event_id.clone()),
        &times,
    )
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// Writes task rows in one statement.
pub async fn upsert_tasks(tx: &mut StoreTx, rows: &[Task]) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&Task) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let assignees: Vec<Option<String>> = rows.iter().map(|r| r.assignee.clone()).collect();
    let completed_at: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.completed_at).collect();
    sqlx::query!(
        "INSERT INTO tasks (project_id, task_id, title, status, assignee, completed_at, updated_at)
         SELECT *, now() FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
         ON CONFLICT (project_id, task_id) DO UPDATE SET
           title = EXCLUDED.title,
           status = EXCLUDED.status,
           assignee = EXCLUDED.assignee,
           completed_at = EXCLUDED.completed_at,
           updated_at = now()",
        &column(|r| r.project_id.clone()),
        &column(|r| r.task_id.clone()),
        &column(|r| r.title.clone()),
        &column(|r| r.status.as_str().to_string()),
        &assignees as &[Option<String>],
        &completed_at as &[Option<DateTime<Utc>>],
    )
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// Every project, ordered by id, with its percentage as PostgreSQL computed it.
pub async fn projects(store: &Store) -> Result<Vec<(Project, f64)>, Error> {
    let rows = sqlx::query!(
        r#"SELECT project_id, name, tasks_total, tasks_completed, events_applied, last_event_id, last_event_time,
                  percent_complete::float8 AS "percent_complete!"
           FROM project_progress ORDER BY project_id"#
    )
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let project = Project {
                project_id: r.project_id,
                name: r.name,
                tasks_total: r.tasks_total,
                tasks_completed: r.tasks_completed,
                events_applied: r.events_applied,
                last_event_id: r.last_event_id,
                last_event_time: r.last_event_time,
            };
            (project, r.percent_complete)
        })
        .collect())
}

/// Every task, ordered by project and task id.
pub async fn tasks(store: &Store) -> Result<Vec<Task>, Error> {
    let rows = sqlx::query_as!(
        TaskRow,
        "SELECT project_id, task_id, title, status, assignee, completed_at FROM tasks ORDER BY project_id, task_id"
    )
    .fetch_all(store.pool())
    .await?;
    Ok(rows.into_iter().map(Task::from).collect())
}

/// A project as readers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectView {
    pub project_id: String,
    pub name: String,
    pub tasks_total: i32,
    pub tasks_completed: i32,
    pub percent_complete: f64,
    pub events_applied: i64,
    pub last_event_time: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A task as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub project_id: String,
    pub task_id: String,
    pub title: String,
    pub status: String,
    pub assignee: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A project and a page of its tasks (in id order after `after`), read in one snapshot so the
/// counters and the tasks agree.
pub async fn project_with_tasks(
    store: &Store,
    project_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Option<(ProjectView, Vec<TaskView>)>, Error> {
    let mut tx = store.pool().begin().await?;
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    let Some(project) = project_view(&mut *tx, project_id).await? else { return Ok(None) };
    let tasks = tasks_view(&mut *tx, project_id, after, limit).await?;
    tx.commit().await?;
    Ok(Some((project, tasks)))
}

/// Projects in id order after `after`.
pub async fn projects_page(store: &Store, after: Option<&str>, limit: i64) -> Result<Vec<ProjectView>, Error> {
    Ok(sqlx::query_as!(
        ProjectView,
        r#"SELECT project_id, name, tasks_total, tasks_completed, percent_complete::float8 AS "percent_complete!",
                  events_applied, last_event_time, updated_at
           FROM project_progress WHERE ($1::text IS NULL OR project_id > $1)
           ORDER BY project_id LIMIT $2"#,
        after,
        limit
    )
    .fetch_all(store.pool())
    .await?)
}

async fn project_view(executor: impl sqlx::PgExecutor<'_>, project_id: &str) -> Result<Option<ProjectView>, Error> {
    Ok(sqlx::query_as!(
        ProjectView,
        r#"SELECT project_id, name, tasks_total, tasks_completed, percent_complete::float8 AS "percent_complete!",
                  events_applied, last_event_time, updated_at
           FROM project_progress WHERE project_id = $1"#,
        project_id
    )
    .fetch_optional(executor)
    .await?)
}

/// A project's tasks in id order after `after`.
async fn tasks_view(
    executor: impl sqlx::PgExecutor<'_>,
    project_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<TaskView>, Error> {
    Ok(sqlx::query_as!(
        TaskView,
        "SELECT project_id, task_id, title, status, assignee, completed_at, updated_at
         FROM tasks WHERE project_id = $1 AND ($2::text IS NULL OR task_id > $2)
         ORDER BY task_id LIMIT $3",
        project_id,
        after,
        limit
    )
    .fetch_all(executor)
    .await?)
}
