//! The reference application's query endpoints: accounts, projects with their tasks, daily
//! activity and feature use, each declared with `utoipa::path` so it cannot exist without its
//! OpenAPI entry. The shipped binary adds them to the query API (`App::reference`).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use eventline_api::params::Params;
use eventline_api::query::{
    accepted, page, path_parameter, Answer, ConsistencyParams, DateRangeParams, PageParams, Refused, CONSISTENCY, PAGE,
};
use eventline_api::{store_failure, Api, Caller, Freshness, Release};
use eventline_http::problem::ProblemDocument;
use eventline_http::Problem;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::store::account_balances::{self as accounts, AccountView};
use crate::store::daily_activity::{self as activity, DayView};
use crate::store::feature_usage_daily::{self as features, FeatureDayView};
use crate::store::project_progress::{self as projects, ProjectView, TaskView};

const ACCOUNTS: &str = "account_balances";
const PROJECTS: &str = "project_progress";
const ACTIVITY: &str = "daily_activity";
const FEATURES: &str = "feature_usage_daily";
/// The blind index of accounts' owners (`x-blind-index` in `accounts.AccountOpened`).
const OWNER_INDEX: &str = "account-owner";

#[derive(Serialize, ToSchema)]
pub(crate) struct Account {
    account_id: String,
    /// Personal data: null unless the caller holds the scope `personal`.
    owner: Option<String>,
    /// ISO 4217 code.
    currency: String,
    /// The balance in integer minor units of `currency` (cents for USD).
    balance_minor: i64,
    /// `open` or `closed`.
    status: String,
    events_applied: i64,
    last_event_id: String,
    last_event_time: DateTime<Utc>,
    /// The channel of the latest deposit, when there was one.
    last_deposit_channel: Option<String>,
    /// When this row last changed in PostgreSQL.
    updated_at: DateTime<Utc>,
}

impl From<AccountView> for Account {
    fn from(v: AccountView) -> Self {
        Self {
            account_id: v.account_id,
            owner: Some(v.owner),
            currency: v.currency,
            balance_minor: v.balance_minor,
            status: v.status,
            events_applied: v.events_applied,
            last_event_id: v.last_event_id,
            last_event_time: v.last_event_time,
            last_deposit_channel: v.last_deposit_channel,
            updated_at: v.updated_at,
        }
    }
}

/// `accounts` as `caller` may see them: owners in clear once the read is audited, or null.
async fn released(api: &Api, caller: &Caller, accounts: Vec<Account>) -> Result<Vec<Account>, Refused> {
    let keys: Vec<serde_json::Value> = accounts.iter().map(|a| serde_json::json!(a.account_id)).collect();
    let release = api.release_personal(caller, ACCOUNTS, "account_balances", &keys).await?;
    let mut released = Vec::with_capacity(accounts.len());
    for account in accounts {
        let owner = match &release {
            Release::Clear(_) => {
                let opened = api.open_personal(serde_json::Value::from(account.owner.clone())).await?;
                opened.as_str().map(str::to_string)
            }
            Release::Withheld(_) => None,
        };
        released.push(Account { owner, ..account });
    }
    Ok(released)
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AccountPage {
    items: Vec<Account>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// One account's balance.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}",
    tag = "query",
    params(("account_id" = String, Path, description = "The account's id"), ConsistencyParams),
    responses(
        (status = 200, description = "The account", body = Account),
        (status = 400, description = "A bad parameter", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such account (yet)", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 425, description = "The projection has not reached the consistency token within wait_ms", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn account(
    caller: Caller,
    State(api): State<Api>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Answer {
    let account_id = path_parameter(path)?;
    let params = Params::parse(query.as_deref(), &CONSISTENCY)?;
    let freshness = api.freshness(&caller, ACCOUNTS, &params.consistency()?).await?;
    let account = accounts::account(api.store(), &account_id).await.map_err(store_failure)?;
    let account = account.ok_or_else(|| Problem::not_found(format!("no account `{account_id}`")))?;
    let account = released(&api, &caller, vec![Account::from(account)]).await?;
    Ok((freshness.headers(), Json(&account[0])).into_response())
}

/// Accounts in id order, optionally of one owner.
#[utoipa::path(
    get,
    path = "/v1/accounts",
    tag = "query",
    params(("owner" = Option<String>, Query, description = "Only this owner's accounts", min_length = 1, max_length = 256), PageParams, ConsistencyParams),
    responses(
        (status = 200, description = "A page of accounts", body = AccountPage),
        (status = 400, description = "A bad parameter", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 425, description = "The projection has not reached the consistency token within wait_ms", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn accounts(caller: Caller, State(api): State<Api>, RawQuery(query): RawQuery) -> Answer {
    let params = Params::parse(query.as_deref(), &accepted(&["owner", PAGE[0], PAGE[1]]))?;
    let (owner, limit) = (params.text("owner")?, params.limit()?);
    if owner.is_some() {
        // Which accounts an owner filter finds tells whose they are.
        caller.require_personal("filtering accounts by owner")?;
    }
    let after: Option<String> = params.cursor("accounts")?;
    let freshness = api.freshness(&caller, ACCOUNTS, &params.consistency()?).await?;
    // Sealed owners are found through their blind index (the accounts are their data subjects),
    // owners in clear (nothing sealed here) in the column.
    let found_by_index = match owner {
        Some(owner) => api.blind_index_subjects(OWNER_INDEX, &serde_json::Value::from(owner)).await?,
        None => None,
    };
    let in_column = owner.filter(|_| found_by_index.is_none());
    // No stored text holds a NUL (PostgreSQL takes none): such an owner has no accounts.
    let rows = if in_column.is_some_and(|owner| owner.contains('\0')) {
        Vec::new()
    } else {
        let subjects = found_by_index.as_deref();
        accounts::accounts_page(api.store(), in_column, subjects, after.as_deref(), limit + 1)
            .await
            .map_err(store_failure)?
    };
    let (items, next_cursor) = page(rows, limit, "accounts", |a| a.account_id.clone());
    let mut items = released(&api, &caller, items.into_iter().map(Account::from).collect()).await?;
    if found_by_index.is_some() {
        // An index entry outlives a change of owner (or a publish that failed): opened, each
        // owner is compared again.
        items.retain(|account| account.owner.as_deref() == owner);
    }
    let body = AccountPage { items, next_cursor };
    Ok((freshness.headers(), Json(body)).into_response())
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Project {
    project_id: String,
    name: String,
    tasks_total: i32,
    tasks_completed: i32,
    /// 0 to 100, two decimals.
    percent_complete: f64,
    events_applied: i64,
    last_event_time: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ProjectView> for Project {
    fn from(v: ProjectView) -> Self {
        Self {
            project_id: v.project_id,
            name: v.name,
            tasks_total: v.tasks_total,
            tasks_completed: v.tasks_completed,
            percent_complete: v.percent_complete,
            events_applied: v.events_applied,
            last_event_time: v.last_event_time,
            updated_at: v.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Task {
    task_id: String,
    title: String,
    /// `open` or `completed`.
    status: String,
    assignee: Option<String>,
    completed_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl From<TaskView> for Task {
    fn from(v: TaskView) -> Self {
        Self {
            task_id: v.task_id,
            title: v.title,
            status: v.status,
            assignee: v.assignee,
            completed_at: v.completed_at,
            updated_at: v.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectPage {
    items: Vec<Project>,
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectDetail {
    #[serde(flatten)]
    project: Project,
    /// The first page of its tasks, in id order.
    tasks: Vec<Task>,
    /// Continue with `GET /v1/projects/{project_id}/tasks?cursor=…`; absent when this is all.
    next_tasks_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TaskPage {
    items: Vec<Task>,
    next_cursor: Option<String>,
}

/// Projects in id order, with their progress.
#[utoipa::path(
    get,
    path = "/v1/projects",
    tag = "query",
    params(PageParams, ConsistencyParams),
    responses(
        (status = 200, description = "A page of projects", body = ProjectPage),
        (status = 400, description = "A bad parameter", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 425, description = "The projection has not reached the consistency token within wait_ms", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn projects(caller: Caller, State(api): State<Api>, RawQuery(query): RawQuery) -> Answer {
    let params = Params::parse(query.as_deref(), &accepted(&PAGE))?;
    let limit = params.limit()?;
    let after: Option<String> = params.cursor("projects")?;
    let freshness = api.freshness(&caller, PROJECTS, &params.consistency()?).await?;
    let rows = projects::projects_page(api.store(), after.as_deref(), limit + 1).await.map_err(store_failure)?;
    let (items, next_cursor) = page(rows, limit, "projects", |p| p.project_id.clone());
    let body = ProjectPage { items: items.into_iter().map(Project::from).collect(), next_cursor };
    Ok((freshness.headers(), Json(body)).into_response())
}

/// One project's progress and the first page of its tasks (`limit` sizes it).
#[utoipa::path(
    get,
    path = "/v1/projects/{project_id}",
    tag = "query",
    params(("project_id" = String, Path, description = "The project's id"), PageParams, ConsistencyParams),
    responses(
        (status = 200, description = "The project and its tasks", body = ProjectDetail),
        (status = 400, description = "A bad parameter", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such project (yet)", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 425, description = "The projection has not reached the consistency token within wait_ms", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn project(
    caller: Caller,
    State(api): State<Api>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Answer {
    let (freshness, project, tasks) = project_and_tasks(&caller, &api, path, query).await?;
    let body = ProjectDetail { project: project.into(), tasks: tasks.items, next_tasks_cursor: tasks.next_cursor };
    Ok((freshness.headers(), Json(body)).into_response())
}

/// A project's tasks in id order.
#[utoipa::path(
    get,
    path = "/v1/projects/{project_id}/tasks",
    tag = "query",
    params(("project_id" = String, Path, description = "The project's id"), PageParams, ConsistencyParams),
    responses(
        (status = 200, description = "A page of tasks", body = TaskPage),
        (status = 400, description = "A bad parameter", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such project (yet)", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 425, description = "The projection has not reached the consistency token within wait_ms", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn tasks(
    caller: Caller,
    State(api): State<Api>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Answer {
    let (freshness, _, tasks) = project_and_tasks(&caller, &api, path, query).await?;
    Ok((freshness.headers(), Json(tasks)).into_response())
}

/// What both project routes read: the project (404 when there is none) and a page of its tasks.
async fn project_and_tasks(
    caller: &Caller,
    api: &Api,
    path: Result<Path<String>, PathRejection>,
    query: Option<String>,
) -> Result<(Freshness, ProjectView, TaskPage), Refused> {
    let project_id = path_parameter(path)?;
    let params = Params::parse(query.as_deref(), &accepted(&PAGE))?;
    let limit = params.limit()?;
    let after: Option<String> = params.cursor("tasks")?;
    let freshness = api.freshness(caller, PROJECTS, &params.consistency()?).await?;
    let found = projects::project_with_tasks(api.store(), &project_id, after.as_deref(), limit + 1)
        .await
        .map_err(store_failure)?;
    let (project, tasks) = found.ok_or_else(|| Problem::not_found(format!("no project `{project_id}`")))?;
    let (items, next_cursor) = page(tasks, limit, "tasks", |t| t.task_id.clone());
    Ok((freshness, project, TaskPage { items: items.into_iter().map(Task::from).collect(), next_cursor }))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Day {
    /// The UTC day.
    day: NaiveDate,
    /// Distinct users with a page view or a feature use that day.
    active_users: i32,
    page_views: i64,
    updated_at: DateTime<Utc>,
}

impl From<DayView> for Day {
    fn from(v: DayView) -> Self {
        Self { day: v.day, active_users: v.active_users, page_views: v.page_views, updated_at: v.updated_at }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DayPage {
    /// Days with activity, in order; days without any are absent.
    items: Vec<Day>,
    next_cursor: Option<String>,
}

/// Daily activity between two dates.
#[utoipa::path(
    get,
    path = "/v1/activity/daily",
    tag = "query",
    params(DateRangeParams, PageParams, ConsistencyParams),
    responses(
        (status = 200, description = "A page of days", body = DayPage),
        (status = 400, description = "A bad parameter", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 425, description = "The projection has not reached the consistency token within wait_ms", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn daily_activity(caller: Caller, State(api): State<Api>, RawQuery(query): RawQuery) -> Answer {
    let params = Params::parse(query.as_deref(), &accepted(&["from", "to", PAGE[0], PAGE[1]]))?;
    let ((from, to), limit) = (params.date_range()?, params.limit()?);
    let after: Option<NaiveDate> = params.cursor("activity")?;
    let freshness = api.freshness(&caller, ACTIVITY, &params.consistency()?).await?;
    let rows = activity::daily_page(api.store(), from, to, after, limit + 1).await.map_err(store_failure)?;
    let (items, next_cursor) = page(rows, limit, "activity", |d| d.day);
    let body = DayPage { items: items.into_iter().map(Day::from).collect(), next_cursor };
    Ok((freshness.headers(), Json(body)).into_response())
}

#[derive(Serialize, ToSchema)]
pub(crate) struct FeatureDay {
    day: NaiveDate,
    feature: String,
    uses: i64,
    unique_users: i32,
    updated_at: DateTime<Utc>,
}

impl From<FeatureDayView> for FeatureDay {
    fn from(v: FeatureDayView) -> Self {
        Self { day: v.day, feature: v.feature, uses: v.uses, unique_users: v.unique_users, updated_at: v.updated_at }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct FeatureDayPage {
    /// In (day, feature) order.
    items: Vec<FeatureDay>,
    next_cursor: Option<String>,
}

/// Feature use per day between two dates, optionally of one feature.
#[utoipa::path(
    get,
    path = "/v1/features/daily",
    tag = "query",
    params(DateRangeParams, ("feature" = Option<String>, Query, description = "Only this feature", min_length = 1, max_length = 256), PageParams, ConsistencyParams),
    responses(
        (status = 200, description = "A page of (day, feature) rows", body = FeatureDayPage),
        (status = 400, description = "A bad parameter", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 425, description = "The projection has not reached the consistency token within wait_ms", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn daily_features(caller: Caller, State(api): State<Api>, RawQuery(query): RawQuery) -> Answer {
    let params = Params::parse(query.as_deref(), &accepted(&["from", "to", "feature", PAGE[0], PAGE[1]]))?;
    let ((from, to), limit, feature) = (params.date_range()?, params.limit()?, params.text("feature")?);
    let after: Option<(NaiveDate, String)> = params.cursor("features")?;
    let freshness = api.freshness(&caller, FEATURES, &params.consistency()?).await?;
    let rows = if feature.is_some_and(|feature| feature.contains('\0')) {
        Vec::new()
    } else {
        features::features_page(api.store(), from, to, feature, after, limit + 1).await.map_err(store_failure)?
    };
    let (items, next_cursor) = page(rows, limit, "features", |f| (f.day, f.feature.clone()));
    let body = FeatureDayPage { items: items.into_iter().map(FeatureDay::from).collect(), next_cursor };
    Ok((freshness.headers(), Json(body)).into_response())
}

/// The reference endpoints, for the query API's router.
pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(account))
        .routes(routes!(accounts))
        .routes(routes!(projects))
        .routes(routes!(project))
        .routes(routes!(tasks))
        .routes(routes!(daily_activity))
        .routes(routes!(daily_features))
}
