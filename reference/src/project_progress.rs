//! The `project_progress` projection: per project, its tasks total and completed (PostgreSQL
//! computes the percentage), and a `tasks` row per task with its status and assignee.
//!
//! Domain rules: a project is created once; a task is created once, in an existing project; only
//! an existing task can be assigned; only an open task can be completed, and only a completed
//! one reopened.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::project_progress::{self as queries};
use crate::store::project_progress::{Project, Task, TaskStatus};
use chrono::{DateTime, Utc};
use eventline_core::contract::ValidatedEvent;
use eventline_store::StoreTx;

use crate::events::ProjectEvent;
use eventline_consumers::projections::{Applicable, Folded, Handler, Migration};

pub struct ProjectProgress;

type TaskKey = (String, String);

/// The project and task rows a batch touches, and which of them it changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectsState {
    pub projects: BTreeMap<String, Project>,
    pub tasks: BTreeMap<TaskKey, Task>,
    pub changed_projects: BTreeSet<String>,
    pub changed_tasks: BTreeSet<TaskKey>,
}

impl Handler for ProjectProgress {
    type Event = ProjectEvent;
    type State = ProjectsState;
    const NAME: &'static str = "project_progress";
    const TOPICS: &'static [&'static str] = &["projects.events"];
    const TABLES: &'static [&'static str] = crate::store::project_progress::TABLES;
    const MIGRATIONS: &'static [Migration] = &[
        Migration {
            version: 20261128100002,
            description: "project progress",
            sql: include_str!("../migrations/project_progress/20261128100002_project_progress.sql"),
        },
        Migration {
            version: 20261128100012,
            description: "project progress analytics",
            sql: include_str!("../migrations/project_progress/20261128100012_project_progress_analytics.sql"),
        },
    ];
    const HANDLES: &'static [(&'static str, &'static [u32])] = &[
        ("projects.ProjectCreated", &[1]),
        ("projects.TaskCreated", &[1]),
        ("projects.TaskAssigned", &[1]),
        ("projects.TaskCompleted", &[1]),
        ("projects.TaskReopened", &[1]),
    ];

    fn decode(event: &ValidatedEvent) -> Result<ProjectEvent, String> {
        ProjectEvent::decode(event)
    }

    async fn load(
        tx: &mut StoreTx,
        events: &[&Applicable<ProjectEvent>],
    ) -> Result<ProjectsState, eventline_store::Error> {
        let mut project_ids = BTreeSet::new();
        let mut task_keys = BTreeSet::new();
        for event in events.iter().map(|a| &a.payload) {
            let (project, task) = ids(event);
            project_ids.insert(project.to_string());
            if let Some(task) = task {
                task_keys.insert((project.to_string(), task.to_string()));
            }
        }
        let projects = queries::lock_projects(tx, &project_ids.into_iter().collect::<Vec<_>>()).await?;
        let tasks = queries::load_tasks(tx, &task_keys.into_iter().collect::<Vec<_>>()).await?;
        Ok(ProjectsState {
            projects: projects.into_iter().map(|p| (p.project_id.clone(), p)).collect(),
            tasks: tasks.into_iter().map(|t| ((t.project_id.clone(), t.task_id.clone()), t)).collect(),
            ..ProjectsState::default()
        })
    }

    fn fold(mut state: ProjectsState, events: &[&Applicable<ProjectEvent>]) -> Folded<ProjectsState> {
        let mut rejected = Vec::new();
        for (index, applicable) in events.iter().enumerate() {
            if let Err(reason) =
                apply(&mut state, &applicable.payload, &applicable.event.envelope().id, applicable.time)
            {
                rejected.push((index, reason));
            }
        }
        Folded { state, rejected }
    }

    async fn save(tx: &mut StoreTx, state: ProjectsState) -> Result<(), eventline_store::Error> {
        let projects: Vec<Project> = state.changed_projects.iter().map(|id| state.projects[id].clone()).collect();
        let tasks: Vec<Task> = state.changed_tasks.iter().map(|key| state.tasks[key].clone()).collect();
        queries::upsert_projects(tx, &projects).await?;
        queries::upsert_tasks(tx, &tasks).await
    }
}

/// The project id and, for task events, the task id.
fn ids(event: &ProjectEvent) -> (&str, Option<&str>) {
    match event {
        ProjectEvent::ProjectCreated(e) => (&e.project_id, None),
        ProjectEvent::TaskCreated(e) => (&e.project_id, Some(&e.task_id)),
        ProjectEvent::TaskAssigned(e) => (&e.project_id, Some(&e.task_id)),
        ProjectEvent::TaskCompleted(e) | ProjectEvent::TaskReopened(e) => (&e.project_id, Some(&e.task_id)),
    }
}

/// Applies one event, or says why not (changing nothing then).
fn apply(state: &mut ProjectsState, event: &ProjectEvent, event_id: &str, time: DateTime<Utc>) -> Result<(), String> {
    let (project_id, task_id) = ids(event);
    if let ProjectEvent::ProjectCreated(created) = event {
        if state.projects.contains_key(project_id) {
            return Err(format!("project {project_id} already exists"));
        }
        let project = Project {
            project_id: project_id.to_string(),
            name: created.name.clone(),
            tasks_total: 0,
            tasks_completed: 0,
            events_applied: 0,
            last_event_id: String::new(),
            last_event_time: time,
        };
        state.projects.insert(project_id.to_string(), project);
    } else {
        let project = state.projects.get(project_id).ok_or_else(|| format!("project {project_id} does not exist"))?;
        let key = (project_id.to_string(), task_id.unwrap_or_default().to_string());
        let task = state.tasks.get(&key);
        let (mut total, mut completed) = (project.tasks_total, project.tasks_completed);
        let updated = match (event, task) {
            (ProjectEvent::TaskCreated(created), None) => {
                total += 1;
                Task {
                    project_id: key.0.clone(),
                    task_id: key.1.clone(),
                    title: created.title.clone(),
                    status: TaskStatus::Open,
                    assignee: None,
                    completed_at: None,
                }
            }
            (ProjectEvent::TaskCreated(_), Some(_)) => {
                return Err(format!("task {} already exists in {project_id}", key.1))
            }
            (_, None) => return Err(format!("task {} does not exist in {project_id}", key.1)),
            (ProjectEvent::TaskAssigned(assigned), Some(task)) => {
                Task { assignee: Some(assigned.assignee.clone()), ..task.clone() }
            }
            (ProjectEvent::TaskCompleted(_), Some(task)) if task.status == TaskStatus::Open => {
                completed += 1;
                Task { status: TaskStatus::Completed, completed_at: Some(time), ..task.clone() }
            }
            (ProjectEvent::TaskCompleted(_), Some(_)) => return Err(format!("task {} is already completed", key.1)),
            (ProjectEvent::TaskReopened(_), Some(task)) if task.status == TaskStatus::Completed => {
                completed -= 1;
                Task { status: TaskStatus::Open, completed_at: None, ..task.clone() }
            }
            (ProjectEvent::TaskReopened(_), Some(_)) => return Err(format!("task {} is not completed", key.1)),
            (ProjectEvent::ProjectCreated(_), Some(_)) => unreachable!("handled above"),
        };
        let project = state.projects.get_mut(project_id).expect("checked above");
        project.tasks_total = total;
        project.tasks_completed = completed;
        state.tasks.insert(key.clone(), updated);
        state.changed_tasks.insert(key);
    }
    let project = state.projects.get_mut(project_id).expect("exists now");
    project.events_applied += 1;
    project.last_event_id = event_id.to_string();
    project.last_event_time = time;
    state.changed_projects.insert(project_id.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ProjectCreated, TaskAssigned, TaskCreated, TaskRef};

    fn run(state: ProjectsState, events: &[ProjectEvent]) -> (ProjectsState, Vec<(usize, String)>) {
        let mut state = state;
        let mut rejected = Vec::new();
        for (i, event) in events.iter().enumerate() {
            if let Err(reason) = apply(&mut state, event, &format!("e{i}"), DateTime::UNIX_EPOCH) {
                rejected.push((i, reason));
            }
        }
        (state, rejected)
    }

    fn created(p: &str) -> ProjectEvent {
        ProjectEvent::ProjectCreated(ProjectCreated { project_id: p.into(), name: format!("{p} name") })
    }
    fn task(p: &str, t: &str) -> ProjectEvent {
        ProjectEvent::TaskCreated(TaskCreated { project_id: p.into(), task_id: t.into(), title: "do it".into() })
    }
    fn assign(p: &str, t: &str, who: &str) -> ProjectEvent {
        ProjectEvent::TaskAssigned(TaskAssigned { project_id: p.into(), task_id: t.into(), assignee: who.into() })
    }
    fn complete(p: &str, t: &str) -> ProjectEvent {
        ProjectEvent::TaskCompleted(TaskRef { project_id: p.into(), task_id: t.into() })
    }
    fn reopen(p: &str, t: &str) -> ProjectEvent {
        ProjectEvent::TaskReopened(TaskRef { project_id: p.into(), task_id: t.into() })
    }

    #[test]
    fn tasks_count_towards_their_project() {
        let events = [
            created("p"),
            task("p", "a"),
            task("p", "b"),
            task("p", "c"),
            assign("p", "a", "ada"),
            complete("p", "a"),
            complete("p", "b"),
            reopen("p", "b"),
        ];
        let (state, rejected) = run(ProjectsState::default(), &events);
        assert!(rejected.is_empty(), "{rejected:?}");
        let project = &state.projects["p"];
        assert_eq!((project.tasks_total, project.tasks_completed, project.events_applied), (3, 1, 8));
        let a = &state.tasks[&("p".to_string(), "a".to_string())];
        assert_eq!((a.status, a.assignee.as_deref()), (TaskStatus::Completed, Some("ada")));
        assert_eq!(state.tasks[&("p".to_string(), "b".to_string())].status, TaskStatus::Open);
        assert_eq!(state.changed_tasks.len(), 3);
    }

    #[test]
    fn domain_rules_refuse_events_without_changing_anything() {
        let events = [
            task("ghost", "a"),
            created("p"),
            created("p"),
            task("p", "a"),
            task("p", "a"),
            assign("p", "zz", "ada"),
            reopen("p", "a"),
            complete("p", "a"),
            complete("p", "a"),
        ];
        let (state, rejected) = run(ProjectsState::default(), &events);
        let reasons: Vec<(usize, &str)> = rejected.iter().map(|(i, r)| (*i, r.as_str())).collect();
        assert_eq!(
            reasons,
            [
                (0, "project ghost does not exist"),
                (2, "project p already exists"),
                (4, "task a already exists in p"),
                (5, "task zz does not exist in p"),
                (6, "task a is not completed"),
                (8, "task a is already completed"),
            ]
        );
        let project = &state.projects["p"];
        assert_eq!((project.tasks_total, project.tasks_completed, project.events_applied), (1, 1, 3));
    }
}
