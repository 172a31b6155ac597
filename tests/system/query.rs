//! The query API against the real broker and database: every endpoint against what the events
//! say, read-your-writes through the gateway's consistency tokens, the bounded wait when a worker
//! is stopped, pagination while writes continue, projection status, bad parameters, OpenAPI.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde_json::{json, Value};

use crate::helpers::{wait_until, AccountsScenario, HttpProcess, TestEnv};
use crate::scenario::ReferenceScenario;

const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";
const PROBLEM_BASE: &str = "https://eventline.dev/problems/";

fn opened(id: &str, account: &str, owner: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/t", "type": "accounts.AccountOpened", "subject": account,
           "data": {"account_id": account, "owner": owner, "currency": "EUR"}})
}

fn deposit(id: &str, account: &str, amount: i64) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/t", "type": "accounts.FundsDeposited", "subject": account,
           "dataversion": 2, "data": {"account_id": account, "amount_minor": amount, "currency": "EUR", "channel": "card"}})
}

fn project_created(id: &str, project: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/t", "type": "projects.ProjectCreated", "subject": project,
           "data": {"project_id": project, "name": "Read your writes"}})
}

fn task_created(id: &str, project: &str, task: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/t", "type": "projects.TaskCreated", "subject": project,
           "data": {"project_id": project, "task_id": task, "title": "a task"}})
}

/// Publishes one event through the gateway; returns the 202 body.
async fn publish(http: &HttpProcess, key: &str, event: &Value) -> Value {
    let bearer = format!("Bearer {key}");
    let response = http.post(&[("content-type", STRUCTURED), ("authorization", &bearer)], event.to_string()).await;
    assert_eq!(response.status(), 202, "publish {event}");
    response.json().await.unwrap()
}

/// GETs `path` and returns (status, headers, JSON body).
async fn get(http: &HttpProcess, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = http.get(path).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

async fn get_ok(http: &HttpProcess, path: &str) -> Value {
    let (status, _, body) = get(http, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Like [`get_ok`], as a caller that sees personal data (the owner filter needs it).
async fn get_personal(env: &TestEnv, http: &HttpProcess, path: &str) -> Value {
    let (_, token) = env.create_key_with_scopes("personal", &[], &["read:*", "personal"]);
    let response = http.get_as(path, Some(&token)).await;
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Every item of a paginated list, following `next_cursor` (`path` already has a `?`).
async fn walk(http: &HttpProcess, path: &str, cursor_field: &str, items_field: &str) -> (Vec<Value>, usize) {
    walk_from(http, path, get_ok(http, path).await, cursor_field, items_field).await
}

/// Like [`walk`], from a first page already read.
async fn walk_from(
    http: &HttpProcess,
    path: &str,
    first: Value,
    cursor_field: &str,
    items_field: &str,
) -> (Vec<Value>, usize) {
    let (mut items, mut pages) = (Vec::new(), 0);
    let mut body = first;
    loop {
        pages += 1;
        items.extend(body[items_field].as_array().expect("items").iter().cloned());
        let Some(cursor) = body[cursor_field].as_str() else { break };
        body = get_ok(http, &format!("{path}&cursor={cursor}")).await;
    }
    (items, pages)
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_answers_what_the_events_say() {
    let env = TestEnv::new().await;
    let scenario = ReferenceScenario::generate(&env.id, 400, 61);
    env.publish("events.ndjson", &scenario.events);
    let up = env.spawn_http("up", &["up"], &[]).await;
    wait_until("every projection to apply the scenario", || scenario.all_applied(&env)).await;

    // Accounts, all of them, seven at a time.
    let (accounts, pages) = walk(&up, "/v1/accounts?limit=7", "next_cursor", "items").await;
    assert_eq!(pages, scenario.accounts.expected.len().div_ceil(7));
    let actual: BTreeMap<String, (i64, i64, Option<String>)> = accounts
        .iter()
        .map(|a| {
            let channel = a["last_deposit_channel"].as_str().map(str::to_string);
            (
                a["account_id"].as_str().unwrap().to_string(),
                (a["balance_minor"].as_i64().unwrap(), a["events_applied"].as_i64().unwrap(), channel),
            )
        })
        .collect();
    assert_eq!(actual, scenario.accounts.expected);
    let (first_id, first) = scenario.accounts.expected.iter().next().unwrap();
    let one = get_ok(&up, &format!("/v1/accounts/{first_id}")).await;
    assert_eq!((one["balance_minor"].as_i64().unwrap(), one["currency"].as_str().unwrap()), (first.0, "EUR"));
    let one = get_personal(&env, &up, &format!("/v1/accounts/{first_id}")).await;
    let owner = one["owner"].as_str().unwrap().to_string();
    let owned = get_personal(&env, &up, &format!("/v1/accounts?owner={}", encode(&owner))).await;
    let owned_ids: Vec<&str> =
        owned["items"].as_array().unwrap().iter().map(|a| a["account_id"].as_str().unwrap()).collect();
    assert_eq!(owned_ids, [first_id.as_str()], "owners are unique in the scenario");

    // Projects, five at a time, and each project's tasks three at a time.
    let (projects, _) = walk(&up, "/v1/projects?limit=5", "next_cursor", "items").await;
    let actual: BTreeMap<String, (i32, i32, i64)> = projects
        .iter()
        .map(|p| {
            let counts = (
                p["tasks_total"].as_i64().unwrap() as i32,
                p["tasks_completed"].as_i64().unwrap() as i32,
                p["events_applied"].as_i64().unwrap(),
            );
            (p["project_id"].as_str().unwrap().to_string(), counts)
        })
        .collect();
    assert_eq!(actual, scenario.projects);
    let mut tasks = BTreeMap::new();
    for project_id in scenario.projects.keys() {
        let detail = get_ok(&up, &format!("/v1/projects/{project_id}?limit=3")).await;
        assert_eq!(detail["project_id"], json!(project_id));
        // The detail's first page of tasks continues at the tasks endpoint.
        let mut page: Vec<Value> = detail["tasks"].as_array().unwrap().clone();
        if let Some(cursor) = detail["next_tasks_cursor"].as_str() {
            let tasks_path = format!("/v1/projects/{project_id}/tasks?limit=3");
            let first = get_ok(&up, &format!("{tasks_path}&cursor={cursor}")).await;
            let (rest, _) = walk_from(&up, &tasks_path, first, "next_cursor", "items").await;
            page.extend(rest);
        }
        for t in page {
            let done = t["status"] == json!("completed");
            let assignee = t["assignee"].as_str().map(str::to_string);
            tasks.insert((project_id.clone(), t["task_id"].as_str().unwrap().to_string()), (done, assignee));
        }
    }
    assert_eq!(tasks, scenario.tasks);

    // Days and features over the whole range, and narrower ranges.
    let (from, to) = (scenario.daily.keys().next().unwrap(), scenario.daily.keys().last().unwrap());
    let (days, _) = walk(&up, &format!("/v1/activity/daily?from={from}&to={to}&limit=4"), "next_cursor", "items").await;
    let actual: BTreeMap<NaiveDate, (i32, i64)> = days
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().parse().unwrap(),
                (d["active_users"].as_i64().unwrap() as i32, d["page_views"].as_i64().unwrap()),
            )
        })
        .collect();
    assert_eq!(actual, scenario.daily);
    let single = get_ok(&up, &format!("/v1/activity/daily?from={to}&to={to}")).await;
    assert_eq!(single["items"].as_array().unwrap().len(), 1);
    let (features, _) =
        walk(&up, &format!("/v1/features/daily?from={from}&to={to}&limit=3"), "next_cursor", "items").await;
    let actual: BTreeMap<(NaiveDate, String), (i64, i32)> = features
        .iter()
        .map(|f| {
            let key = (f["day"].as_str().unwrap().parse().unwrap(), f["feature"].as_str().unwrap().to_string());
            (key, (f["uses"].as_i64().unwrap(), f["unique_users"].as_i64().unwrap() as i32))
        })
        .collect();
    assert_eq!(actual, scenario.features);
    let feature = &scenario.features.keys().next().unwrap().1;
    let (one_feature, _) =
        walk(&up, &format!("/v1/features/daily?from={from}&to={to}&feature={feature}&limit=2"), "next_cursor", "items")
            .await;
    let expected = scenario.features.keys().filter(|(_, f)| f == feature).count();
    assert_eq!(one_feature.len(), expected);
    assert!(one_feature.iter().all(|f| f["feature"] == json!(feature)));

    // Missing entities, and the freshness every answer carries.
    for (path, detail) in [
        ("/v1/accounts/nobody", "no account `nobody`"),
        ("/v1/projects/nothing", "no project `nothing`"),
        ("/v1/projects/nothing/tasks", "no project `nothing`"),
    ] {
        let (status, headers, body) = get(&up, path).await;
        assert_eq!(
            (status, body["type"].as_str().unwrap(), body["detail"].as_str().unwrap()),
            (404, "https://eventline.dev/problems/not-found", detail)
        );
        assert_eq!(headers["content-type"], "application/problem+json");
    }
    let (_, headers, _) = get(&up, "/v1/accounts?limit=1").await;
    let positions = headers["eventline-positions"].to_str().unwrap();
    let topic = env.topic("accounts.events");
    let total: i64 = positions
        .split(',')
        .map(|p| {
            let (rest, offset) = p.rsplit_once(':').unwrap();
            assert!(rest.starts_with(&format!("{topic}:")), "{p}");
            offset.parse::<i64>().unwrap()
        })
        .sum();
    assert_eq!(total, scenario.per_topic["accounts.events"] as i64, "positions {positions}");
    let at = headers["eventline-checkpointed-at"].to_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(at).expect("an RFC 3339 time");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hundred_writes_are_each_read_back_with_their_token() {
    let env = TestEnv::new().await;
    let (_, key) = env.create_key("ryw", &["*"]);
    let up = env.spawn_http("up", &["up"], &[]).await;
    let (account, project) = (format!("{}-acct", env.id), format!("{}-proj", env.id));
    publish(&up, &key, &opened(&format!("{}-o", env.id), &account, "ryw")).await;
    publish(&up, &key, &project_created(&format!("{}-p", env.id), &project)).await;
    let (mut balance, mut deposits, mut tasks) = (0, 0, 0);
    for i in 0..300 {
        if i % 2 == 0 {
            let amount = i + 1;
            let accepted = publish(&up, &key, &deposit(&format!("{}-d{i}", env.id), &account, amount)).await;
            (balance, deposits) = (balance + amount, deposits + 1);
            let token = accepted["consistency_token"].as_str().unwrap();
            let (status, headers, body) = get(&up, &format!("/v1/accounts/{account}?consistency_token={token}")).await;
            assert_eq!(status, 200, "iteration {i}: {body}");
            assert_eq!(
                (body["balance_minor"].as_i64(), body["events_applied"].as_i64()),
                (Some(balance), Some(deposits + 1)),
                "iteration {i}"
            );
            // The freshness header shows the partition past the write.
            let written = &accepted["events"][0];
            let needle = format!("{}:{}:", written["topic"].as_str().unwrap(), written["partition"]);
            let position = headers["eventline-positions"]
                .to_str()
                .unwrap()
                .split(',')
                .find(|p| p.starts_with(&needle))
                .unwrap()
                .to_string();
            let next: i64 = position.rsplit(':').next().unwrap().parse().unwrap();
            assert!(next > written["offset"].as_i64().unwrap(), "iteration {i}: {position} vs {written}");
        } else {
            let accepted =
                publish(&up, &key, &task_created(&format!("{}-t{i}", env.id), &project, &format!("task-{i:03}"))).await;
            tasks += 1;
            let token = accepted["consistency_token"].as_str().unwrap();
            let body = get_ok(&up, &format!("/v1/projects/{project}?limit=1&consistency_token={token}")).await;
            assert_eq!(body["tasks_total"].as_i64(), Some(tasks), "iteration {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_worker_stopped_the_wait_ends_with_not_yet_consistent() {
    let env = TestEnv::new().await;
    let (_, key) = env.create_key("stopped", &["accounts.*"]);
    let gateway = env.spawn_http("gateway", &["gateway"], &[]).await;
    let api = env.spawn_http("api", &["api"], &[]).await;
    let worker = env.spawn("worker", &["worker", "account_balances"], &[]);
    let account = format!("{}-acct", env.id);
    let first = publish(&gateway, &key, &opened(&format!("{}-o", env.id), &account, "o")).await;
    let token = first["consistency_token"].as_str().unwrap();
    let body = get_ok(&api, &format!("/v1/accounts/{account}?consistency_token={token}&wait_ms=30000")).await;
    assert_eq!(body["balance_minor"], json!(0));
    assert!(worker.terminate().success());

    let second = publish(&gateway, &key, &deposit(&format!("{}-d", env.id), &account, 700)).await;
    let token = second["consistency_token"].as_str().unwrap();
    let asked = Instant::now();
    let response = api.get(&format!("/v1/accounts/{account}?consistency_token={token}&wait_ms=400")).await;
    let waited = asked.elapsed();
    assert_eq!(response.status(), 425);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert_eq!(response.headers()["retry-after"], "1");
    let positions = response.headers()["eventline-positions"].to_str().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], json!(format!("{PROBLEM_BASE}not-yet-consistent")));
    assert_eq!(body["projection"], json!("account_balances"));
    let written = &second["events"][0];
    let offset = written["offset"].as_i64().unwrap();
    assert_eq!(
        body["missing"],
        json!([{"topic": written["topic"], "partition": written["partition"], "offset": offset, "applied_through": offset}]),
        "the projection stopped right before the deposit"
    );
    assert!(
        positions.contains(&format!("{}:{}:{offset}", written["topic"].as_str().unwrap(), written["partition"])),
        "{positions}"
    );
    assert!(waited >= Duration::from_millis(400), "the answer came after the wait, not before ({waited:?})");

    // Without a token the answer is the projection as it stands; its headers say how far it got.
    let (status, headers, body) = get(&api, &format!("/v1/accounts/{account}")).await;
    assert_eq!((status, body["balance_minor"].as_i64()), (200, Some(0)));
    assert_eq!(headers["eventline-positions"].to_str().unwrap(), positions);

    // A worker coming back wakes a waiting query, which then sees the deposit.
    let (client, url) =
        (api.client.clone(), format!("{}/v1/accounts/{account}?consistency_token={token}&wait_ms=30000", api.base));
    let waiting = tokio::spawn(async move { client.get(url).send().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the query waits while the worker is stopped");
    let _worker = env.spawn("worker-again", &["worker", "account_balances"], &[]);
    let response = waiting.await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["balance_minor"], json!(700));
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_walks_five_thousand_rows_without_duplicates_or_gaps_while_writes_continue() {
    let env = TestEnv::new().await;
    let (_, key) = env.create_key("pages", &["accounts.*"]);
    let account = |i: usize| format!("{}-acct-{i:05}", env.id);
    let events: Vec<Value> = (0..5000).map(|i| opened(&format!("{}-o{i}", env.id), &account(i), "o")).collect();
    env.publish("opened.ndjson", &events);
    let up = Arc::new(env.spawn_http("up", &["up"], &[]).await);
    wait_until("the 5,000 accounts to be applied", || async { env.applied_through("account_balances").await == 5000 })
        .await;

    // A writer opens accounts that sort between the existing ones and deposits into existing ones.
    let (stop, batches) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let writer = {
        let (up, stop, batches, id, key) = (up.clone(), stop.clone(), batches.clone(), env.id.clone(), key.clone());
        tokio::spawn(async move {
            let bearer = format!("Bearer {key}");
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Value> = (0..20)
                    .map(|j| {
                        n += 1;
                        let target = format!("{id}-acct-{:05}", (n * 37) % 5000);
                        if j % 2 == 0 {
                            opened(&format!("{id}-new{n}"), &format!("{target}-new"), "o")
                        } else {
                            deposit(&format!("{id}-dep{n}"), &target, 5)
                        }
                    })
                    .collect();
                let response = up
                    .post(&[("content-type", BATCH), ("authorization", &bearer)], Value::from(batch).to_string())
                    .await;
                assert_eq!(response.status(), 202);
                batches.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    wait_until("the writer to get going", || async { batches.load(Ordering::Relaxed) > 0 }).await;
    let before = batches.load(Ordering::Relaxed);
    let (items, pages) = walk(&up, "/v1/accounts?limit=97", "next_cursor", "items").await;
    let during = batches.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    let ids: Vec<String> = items.iter().map(|a| a["account_id"].as_str().unwrap().to_string()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids strictly increase across {pages} pages: no duplicate");
    let seen: BTreeSet<&String> = ids.iter().collect();
    let missing: Vec<String> = (0..5000).map(account).filter(|a| !seen.contains(a)).collect();
    assert!(
        missing.is_empty(),
        "no gap: {} of the first 5,000 missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(pages >= 5000 / 97, "{pages} pages");
    assert!(during > 0, "writes went on during the walk");
}

#[tokio::test(flavor = "multi_thread")]
async fn projections_status_reports_positions_lag_and_dead_letters() {
    let env = TestEnv::new().await;
    let scenario = AccountsScenario::generate(&env.id, 10, 200, 5);
    let mut events = scenario.events.clone();
    events.push(deposit(&format!("{}-poison", env.id), &format!("{}-ghost", env.id), 1));
    env.publish("events.ndjson", &events);
    let api = env.spawn_http("api", &["api"], &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let body = get_ok(&api, "/v1/projections").await;
    let names: Vec<&str> =
        body["projections"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["account_balances", "project_progress", "daily_activity", "feature_usage_daily"]);
    let accounts = &body["projections"][0];
    assert_eq!(accounts["topics"], json!([env.topic("accounts.events")]));
    assert_eq!(accounts["lag_events"], json!(201));
    assert!(accounts["lag_seconds"].as_f64().unwrap() >= 1.0, "{accounts}");
    assert_eq!(accounts["rebuild_in_progress"], json!(false));
    assert_eq!(accounts["checkpointed_at"], Value::Null);
    let partitions = accounts["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 6);
    let ends = env.end_offsets("accounts.events").await;
    for p in partitions {
        let partition = p["partition"].as_u64().unwrap() as usize;
        assert_eq!((p["stored_offset"].clone(), p["end_offset"].as_i64()), (Value::Null, Some(ends[partition])));
        assert_eq!(p["lag_events"].as_i64(), Some(ends[partition]));
    }
    let projects = &body["projections"][1];
    assert_eq!((projects["lag_events"].as_i64(), projects["lag_seconds"].as_f64()), (Some(0), Some(0.0)));

    let _worker = env.spawn("worker", &["worker", "account_balances"], &[]);
    wait_until("the lag to reach zero", || async {
        get_ok(&api, "/v1/projections").await["projections"][0]["lag_events"] == json!(0)
    })
    .await;
    let accounts = get_ok(&api, "/v1/projections").await["projections"][0].clone();
    assert_eq!((accounts["dead_letters"].as_i64(), accounts["parked_keys"].as_i64()), (Some(1), Some(1)));
    assert_eq!(accounts["lag_seconds"].as_f64(), Some(0.0));
    assert!(accounts["checkpointed_at"].is_string());
    for p in accounts["partitions"].as_array().unwrap() {
        // A partition no event went to has nothing stored.
        let expected_stored = if p["end_offset"] == json!(0) { Value::Null } else { p["end_offset"].clone() };
        assert_eq!(p["stored_offset"], expected_stored, "{p}");
        assert_eq!(p["lag_seconds"].as_f64(), Some(0.0));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_are_refused_and_hostile_values_stay_values() {
    let env = TestEnv::new().await;
    let account = format!("{}-acct", env.id);
    env.publish("one.ndjson", &[opened(&format!("{}-o", env.id), &account, "o")]);
    let up = env.spawn_http("up", &["up"], &[]).await;
    wait_until("the account", || async { env.applied_through("account_balances").await == 1 }).await;

    let b64 = |text: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    };
    let cursor_of_projects = b64(r#"{"e":"projects","k":"x"}"#);
    let negative_token = b64(r#"{"v":1,"p":[["accounts.events",0,-1]]}"#);
    let long = "x".repeat(300);
    let range = "from=2026-01-01&to=2026-01-31";
    let accounts_takes = "consistency_token, wait_ms, owner, limit, cursor";
    let cases: Vec<(String, String)> = vec![
        ("/v1/activity/daily".into(), "`from` is required (YYYY-MM-DD)".into()),
        ("/v1/activity/daily?from=2026-01-01".into(), "`to` is required (YYYY-MM-DD)".into()),
        (
            "/v1/activity/daily?from=2026-13-01&to=2026-12-01".into(),
            "`from` must be a date as YYYY-MM-DD, not `2026-13-01`".into(),
        ),
        (
            "/v1/activity/daily?from=2026-02-30&to=2026-03-01".into(),
            "`from` must be a date as YYYY-MM-DD, not `2026-02-30`".into(),
        ),
        (
            "/v1/activity/daily?from=2026-01-01&to=yesterday".into(),
            "`to` must be a date as YYYY-MM-DD, not `yesterday`".into(),
        ),
        (
            "/v1/activity/daily?from=2026-03-02&to=2026-03-01".into(),
            "`from` (2026-03-02) is after `to` (2026-03-01)".into(),
        ),
        (
            "/v1/features/daily?from=2027-01-01&to=2026-01-01&feature=x".into(),
            "`from` (2027-01-01) is after `to` (2026-01-01)".into(),
        ),
        (format!("/v1/features/daily?{range}&feature="), "`feature` is empty".into()),
        (format!("/v1/features/daily?{range}&feature={long}"), "`feature` is longer than 256 characters".into()),
        ("/v1/accounts?limit=0".into(), "`limit` must be a whole number from 1 to 1000, not `0`".into()),
        ("/v1/accounts?limit=1001".into(), "`limit` must be a whole number from 1 to 1000, not `1001`".into()),
        (
            "/v1/projects?limit=99999999999999999999".into(),
            "`limit` must be a whole number from 1 to 1000, not `99999999999999999999`".into(),
        ),
        ("/v1/projects?limit=-5".into(), "`limit` must be a whole number from 1 to 1000, not `-5`".into()),
        (
            "/v1/accounts?cursor=bm90IGEgY3Vyc29y".into(),
            "`cursor` is not a cursor this endpoint issued; start again without one".into(),
        ),
        (
            format!("/v1/accounts?cursor={cursor_of_projects}"),
            "`cursor` is not a cursor this endpoint issued; start again without one".into(),
        ),
        (
            format!("/v1/activity/daily?{range}&cursor={}", b64(r#"{"e":"activity","k":"not a date"}"#)),
            "`cursor` is not a cursor this endpoint issued; start again without one".into(),
        ),
        (
            "/v1/accounts?consistency_token=garbage".into(),
            "`consistency_token` is not a token the gateway issued".into(),
        ),
        (
            format!("/v1/accounts?consistency_token={negative_token}"),
            "`consistency_token` is not a token the gateway issued".into(),
        ),
        (
            "/v1/accounts?wait_ms=30001".into(),
            "`wait_ms` must be a whole number of milliseconds from 0 to 30000, not `30001`".into(),
        ),
        (
            "/v1/accounts?wait_ms=-1".into(),
            "`wait_ms` must be a whole number of milliseconds from 0 to 30000, not `-1`".into(),
        ),
        ("/v1/accounts?limt=5".into(), format!("unknown parameter `limt`; this endpoint takes {accounts_takes}")),
        ("/v1/accounts?limit=1&limit=2".into(), "parameter `limit` is given more than once".into()),
        ("/v1/accounts?owner=".into(), "`owner` is empty".into()),
        ("/v1/projections?verbose=1".into(), "unknown parameter `verbose`; this endpoint takes no parameters".into()),
        (
            format!("/v1/accounts/{account}?limit=5"),
            "unknown parameter `limit`; this endpoint takes consistency_token, wait_ms".into(),
        ),
        // SQL-looking values where a typed value belongs.
        (
            format!("/v1/activity/daily?from={}&to=2026-01-31", encode("2026-01-01' OR '1'='1")),
            "`from` must be a date as YYYY-MM-DD, not `2026-01-01' OR '1'='1`".into(),
        ),
        (
            format!("/v1/accounts?limit={}", encode("1; DROP TABLE account_balances; --")),
            "`limit` must be a whole number from 1 to 1000, not `1; DROP TABLE account_balances; --`".into(),
        ),
        (
            format!("/v1/accounts?cursor={}", encode("' OR 1=1 --")),
            "`cursor` is not a cursor this endpoint issued; start again without one".into(),
        ),
        (
            format!("/v1/accounts?consistency_token={}", encode("x' OR '1'='1")),
            "`consistency_token` is not a token the gateway issued".into(),
        ),
    ];
    for (path, detail) in &cases {
        let (status, headers, body) = get(&up, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(headers["content-type"], "application/problem+json", "{path}");
        assert_eq!(body["type"], json!(format!("{PROBLEM_BASE}invalid-parameter")), "{path}");
        assert_eq!(body["detail"].as_str(), Some(detail.as_str()), "{path}");
    }

    // Where any text is a legal value, hostile text is only a value: it matches nothing.
    let hostile = "'; DROP TABLE account_balances; --";
    let (status, _, _) = get(&up, &format!("/v1/accounts/{}", encode(hostile).replace('+', "%20"))).await;
    assert_eq!(status, 404);
    let body = get_personal(&env, &up, &format!("/v1/accounts?owner={}", encode("' OR '1'='1"))).await;
    assert_eq!(body["items"], json!([]));
    let body = get_ok(&up, &format!("/v1/features/daily?{range}&feature={}", encode(hostile))).await;
    assert_eq!(body["items"], json!([]));
    // No stored text holds a NUL, and 256 characters are taken however many bytes they take.
    for owner in ["Ada%00Lovelace".to_string(), encode(&"é".repeat(256))] {
        let body = get_personal(&env, &up, &format!("/v1/accounts?owner={owner}")).await;
        assert_eq!(body["items"], json!([]), "{owner}");
    }
    let body = get_ok(&up, &format!("/v1/features/daily?{range}&feature=ex%00port")).await;
    assert_eq!(body["items"], json!([]));
    let still = get_ok(&up, &format!("/v1/accounts/{account}")).await;
    assert_eq!(still["account_id"], json!(account), "the table is still there");

    // A path or method nothing serves.
    let (status, _, body) = get(&up, "/v1/acounts").await;
    assert_eq!((status, body["type"].as_str()), (404, Some("https://eventline.dev/problems/not-found")));
    let response = up.client.delete(format!("{}/v1/accounts/{account}", up.base)).send().await.unwrap();
    assert_eq!(response.status(), 405);
}

/// Every route each process serves, by method.
const GATEWAY_ROUTES: &[(&str, &str)] = &[("post", "/v1/events")];
const API_ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/accounts"),
    ("get", "/v1/accounts/{account_id}"),
    ("get", "/v1/projects"),
    ("get", "/v1/projects/{project_id}"),
    ("get", "/v1/projects/{project_id}/tasks"),
    ("get", "/v1/activity/daily"),
    ("get", "/v1/features/daily"),
    ("get", "/v1/projections"),
    // Every table the reference projections declare, read by filters and by primary key.
    ("get", "/v1/tables/account_balances"),
    ("get", "/v1/tables/account_balances/{account_id}"),
    ("get", "/v1/tables/project_progress"),
    ("get", "/v1/tables/project_progress/{project_id}"),
    ("get", "/v1/tables/tasks"),
    ("get", "/v1/tables/tasks/{project_id}/{task_id}"),
    ("get", "/v1/tables/daily_activity"),
    ("get", "/v1/tables/daily_activity/{day}"),
    ("get", "/v1/tables/daily_activity_users"),
    ("get", "/v1/tables/daily_activity_users/{day}/{user_id}"),
    ("get", "/v1/tables/feature_usage_daily"),
    ("get", "/v1/tables/feature_usage_daily/{day}/{feature}"),
    ("get", "/v1/tables/feature_usage_daily_users"),
    ("get", "/v1/tables/feature_usage_daily_users/{day}/{feature}/{user_id}"),
];
const COMMON_ROUTES: &[(&str, &str)] =
    &[("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics"), ("get", "/openapi.json")];

fn documented(openapi: &Value) -> BTreeSet<(String, String)> {
    openapi["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (method.clone(), path.clone())))
        .collect()
}

fn routes(lists: &[&[(&str, &str)]]) -> BTreeSet<(String, String)> {
    lists.iter().flat_map(|l| l.iter()).map(|(m, p)| (m.to_string(), p.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_describes_every_route_each_process_serves() {
    let env = TestEnv::new().await;
    let up = env.spawn_http("up", &["up"], &[]).await;
    let openapi = get_ok(&up, "/openapi.json").await;
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3.1"), "{}", openapi["openapi"]);
    assert_eq!(documented(&openapi), routes(&[GATEWAY_ROUTES, API_ROUTES, COMMON_ROUTES]));
    // Each documented route is served: nothing answers with the router's own 404 or 405.
    for (method, path) in documented(&openapi) {
        let url = format!("{}{}", up.base, path.replace("{account_id}", "a").replace("{project_id}", "p"));
        let request = if method == "post" { up.client.post(&url) } else { up.client.get(&url) };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let fallback = body["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("no resource at") || d.ends_with("does not accept this method"));
        assert!(!fallback && status != 405, "{method} {path}: {status} {body}");
    }
    // Every answer the query API documents carries a schema for its body.
    let schemas = openapi["components"]["schemas"].as_object().unwrap();
    for name in [
        "Account",
        "AccountPage",
        "ProjectDetail",
        "TaskPage",
        "DayPage",
        "FeatureDayPage",
        "ProjectionsStatus",
        "ProblemDocument",
        "Accepted",
    ] {
        assert!(schemas.contains_key(name), "schema {name}");
    }

    // The gateway's body has an example event per registered type, and each is published.
    let examples = openapi["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/cloudevents+json"]
        ["examples"]
        .as_object()
        .unwrap();
    let catalog: Value = serde_json::from_str(include_str!("../../schemas/catalog.json")).unwrap();
    let types: BTreeSet<&String> =
        catalog["domains"].as_object().unwrap().values().flat_map(|d| d["types"].as_object().unwrap().keys()).collect();
    assert_eq!(examples.keys().collect::<BTreeSet<_>>(), types);
    let (_, publisher) = env.create_key("examples", &["*"]);
    for (event_type, example) in examples {
        let response = up
            .post(
                &[("authorization", &format!("Bearer {publisher}")), ("content-type", "application/cloudevents+json")],
                example["value"].to_string(),
            )
            .await;
        assert_eq!(response.status(), 202, "{event_type}: {}", response.text().await.unwrap());
    }

    // A gateway alone and an API alone describe only what they serve.
    let gateway = env.spawn_http("gateway", &["gateway"], &[]).await;
    assert_eq!(documented(&get_ok(&gateway, "/openapi.json").await), routes(&[GATEWAY_ROUTES, COMMON_ROUTES]));
    let api = env.spawn_http("api", &["api"], &[]).await;
    assert_eq!(documented(&get_ok(&api, "/openapi.json").await), routes(&[API_ROUTES, COMMON_ROUTES]));
    let (status, _, _) = get(&api, "/readyz").await;
    assert_eq!(status, 200);
}
