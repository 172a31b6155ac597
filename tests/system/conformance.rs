//! schemathesis, as a new user would run it, against both HTTP surfaces of `eventline up` (the
//! gateway and the query API) with a key that may publish and read everything: every check and
//! phase of `tests/system/schemathesis.toml` must pass, so `/openapi.json` says exactly what the
//! server accepts and answers.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{wait_until, HttpProcess, TestEnv};

/// The version `scripts/test.sh` installs; another may check differently.
const SCHEMATHESIS: &str = "4.32.5";
/// A run takes about 30 s here; far longer means it hangs.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// The list endpoints and the environment variable the configuration reads each one's cursor
/// from; the path is read with `limit=1` to get one.
const CURSORS: &[(&str, &str)] = &[
    ("ACCOUNTS", "/v1/accounts"),
    ("PROJECTS", "/v1/projects"),
    ("TASKS", "/v1/projects/prj-1/tasks"),
    ("ACTIVITY", "/v1/activity/daily?from=2026-11-01&to=2026-11-30"),
    ("FEATURES", "/v1/features/daily?from=2026-11-01&to=2026-11-30"),
    ("TABLES_ACCOUNT_BALANCES", "/v1/tables/account_balances"),
    ("TABLES_PROJECT_PROGRESS", "/v1/tables/project_progress"),
    ("TABLES_TASKS", "/v1/tables/tasks"),
    ("TABLES_DAILY_ACTIVITY", "/v1/tables/daily_activity"),
    ("TABLES_DAILY_ACTIVITY_USERS", "/v1/tables/daily_activity_users"),
    ("TABLES_FEATURE_USAGE_DAILY", "/v1/tables/feature_usage_daily"),
    ("TABLES_FEATURE_USAGE_DAILY_USERS", "/v1/tables/feature_usage_daily_users"),
];

/// Two rows in every list, so each has a second page and a cursor to it.
fn events() -> Vec<Value> {
    let event = |id: &str, event_type: &str, subject: &str, data: Value| {
        json!({"specversion": "1.0", "id": id, "source": "/conformance", "type": event_type,
               "subject": subject, "time": "2026-11-02T10:00:00Z", "data": data})
    };
    let mut events = Vec::new();
    for n in 1..=2 {
        let (account, project, task, user) =
            (format!("acc-{n}"), format!("prj-{n}"), format!("t-{n}"), format!("u-{n}"));
        let day = format!("2026-11-0{n}T10:00:00Z");
        events.push(event(
            &format!("a{n}"),
            "accounts.AccountOpened",
            &account,
            json!({"account_id": account, "owner": "Ada Lovelace", "currency": "EUR"}),
        ));
        events.push(event(
            &format!("p{n}"),
            "projects.ProjectCreated",
            &project,
            json!({"project_id": project, "name": "Launch"}),
        ));
        events.push(event(
            &format!("t{n}"),
            "projects.TaskCreated",
            "prj-1",
            json!({"project_id": "prj-1", "task_id": task, "title": "Write"}),
        ));
        for (id, event_type, data) in [
            (format!("v{n}"), "activity.PageViewed", json!({"user_id": user, "path": "/pricing", "session_id": "s-1"})),
            (format!("f{n}"), "activity.FeatureUsed", json!({"user_id": user, "feature": "export"})),
        ] {
            let mut event = event(&id, event_type, &user, data);
            event["time"] = json!(day);
            events.push(event);
        }
    }
    events
}

/// The schemathesis command, failing loudly when it is not installed.
fn schemathesis() -> tokio::process::Command {
    let found = std::process::Command::new("st").arg("--version").output();
    let version = found.as_ref().map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
    assert!(
        version.contains(SCHEMATHESIS),
        "schemathesis {SCHEMATHESIS} is needed on the PATH as `st` (scripts/test.sh installs it into \
         .eventline/schemathesis/bin); found: {version}{:?}",
        found.err()
    );
    tokio::process::Command::new("st")
}

async fn next_cursor(up: &HttpProcess, path: &str) -> Option<String> {
    let separator = if path.contains('?') { '&' } else { '?' };
    let page: Value = up.get(&format!("{path}{separator}limit=1")).await.json().await.unwrap_or(Value::Null);
    page["next_cursor"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn both_http_surfaces_do_what_their_openapi_says() {
    let mut command = schemathesis();
    let env = TestEnv::new().await;
    let (_, key) = env.create_key_with_scopes("conformance", &["*"], &["read:*", "status", "personal"]);
    let up = env.spawn_http("up", &["up"], &[]).await;

    let mut token = String::new();
    for event in events() {
        let response = up
            .post(
                &[("authorization", &format!("Bearer {key}")), ("content-type", "application/cloudevents+json")],
                event.to_string(),
            )
            .await;
        assert_eq!(response.status(), 202, "{event}");
        token = response.json::<Value>().await.unwrap()["consistency_token"].as_str().unwrap().to_string();
    }
    let mut cursors = Vec::new();
    for (name, path) in CURSORS {
        wait_until(&format!("{path} to have a second page"), || async { next_cursor(&up, path).await.is_some() }).await;
        cursors.push((format!("EVENTLINE_ST_CURSOR_{name}"), next_cursor(&up, path).await.unwrap()));
    }

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/system/schemathesis.toml");
    let work = env.file("schemathesis");
    std::fs::create_dir_all(&work).unwrap();
    let log_path = env.file("schemathesis.log");
    let log = std::fs::File::create(&log_path).unwrap();
    command
        .arg("--no-color")
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/openapi.json", up.base)])
        .args(["--report", "har", "--report-dir"])
        .arg(&work)
        // Hypothesis keeps its example database in the working folder.
        .current_dir(&work)
        .env("EVENTLINE_ST_KEY", &key)
        .env("EVENTLINE_ST_TOKEN", &token)
        .envs(cursors)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true);
    let status = tokio::time::timeout(RUN_LIMIT, command.status())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran over {RUN_LIMIT:?}; its output: {}", log_path.display()))
        .expect("schemathesis runs");
    let output = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "schemathesis found what /openapi.json does not say ({status}):\n{output}");
    // Every operation it selected went through coverage and fuzzing, and it left none out.
    let selected = output.lines().find_map(|line| line.trim().strip_prefix("Operations:")).unwrap_or_default();
    let (operations, total) = selected.trim().split_once(" selected / ").unwrap_or_default();
    assert_eq!((operations, total), (operations, format!("{operations} total").as_str()), "{output}");
    assert!(operations.parse::<usize>().is_ok_and(|n| n > 20), "{output}");
    for phase in ["Coverage", "Fuzzing"] {
        assert_eq!(phase_result(&output, phase), Some(format!("✅ {operations} passed")), "{phase}:\n{output}");
    }
}

/// The line under a phase's heading in schemathesis's output: what became of its operations.
fn phase_result(output: &str, phase: &str) -> Option<String> {
    let mut lines = output.lines().skip_while(|line| !line.contains(&format!("{phase} (in ")));
    lines.nth(2).map(|line| line.trim().to_string())
}
