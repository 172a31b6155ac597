//! The analytics surface as a pipeline sees it: psql logged in as a role granted
//! `eventline_analytics` reads every view, extracts what changed since a time, and can neither
//! write nor read the runtime's tables.

use std::process::Command;

use serde_json::json;

use crate::helpers::{stderr, stdout, wait_until, TestEnv};
use crate::scenario::ReferenceScenario;

const VIEWS: [&str; 5] = ["account_balances", "daily_activity", "feature_usage_daily", "projects", "tasks"];

/// A login role for one test, in `eventline_analytics`, dropped when the test ends. It logs in
/// with a password, as a pipeline's role would (only the postgres user is trusted on loopback).
struct PipelineRole {
    name: String,
    password: String,
    admin_url: String,
}

impl PipelineRole {
    fn create(env: &TestEnv) -> Self {
        let role = Self {
            name: format!("etl_{}", env.id),
            password: uuid::Uuid::new_v4().simple().to_string(),
            admin_url: env.database_url.expose().to_string(),
        };
        let created = psql(
            &role.admin_url,
            &format!("CREATE ROLE {} LOGIN PASSWORD '{}' IN ROLE eventline_analytics", role.name, role.password),
        );
        assert!(created.status.success(), "{}", stderr(&created));
        role
    }

    /// The test database's URL, logged in as this role.
    fn url(&self) -> String {
        let mut url = url::Url::parse(&self.admin_url).unwrap();
        url.set_username(&self.name).unwrap();
        url.set_password(Some(&self.password)).unwrap();
        url.to_string()
    }
}

impl Drop for PipelineRole {
    fn drop(&mut self) {
        let _ = psql(&self.admin_url, &format!("DROP ROLE IF EXISTS {}", self.name));
    }
}

fn psql(url: &str, sql: &str) -> std::process::Output {
    Command::new("psql").args([url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql]).output().expect("psql runs")
}

fn query(url: &str, sql: &str) -> String {
    let output = psql(url, sql);
    assert!(output.status.success(), "{sql}: {}", stderr(&output));
    stdout(&output).trim().to_string()
}

fn refused(url: &str, sql: &str, error: &str) {
    let output = psql(url, sql);
    assert!(!output.status.success(), "{sql} should be refused");
    assert!(stderr(&output).contains(error), "{sql}: expected `{error}`, got {}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_role_reads_every_view_extracts_changes_and_touches_nothing_else() {
    let env = TestEnv::new().await;
    let scenario = ReferenceScenario::generate(&env.id, 150, 17);
    env.publish("events.ndjson", &scenario.events);
    let (_, key) = env.create_key("analytics", &["accounts.*"]);
    let up = env.spawn_http("up", &["up"], &[]).await;
    wait_until("every projection to apply the scenario", || scenario.all_applied(&env)).await;

    let admin = env.database_url.expose().to_string();
    let views = query(&admin, "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.views WHERE table_schema = 'analytics'");
    assert_eq!(views, VIEWS.join(","));
    let role = PipelineRole::create(&env);
    let pipeline = role.url();

    // Every view is readable, has updated_at, and holds what the projection holds.
    for view in VIEWS {
        let column = query(&admin, &format!("SELECT data_type FROM information_schema.columns WHERE table_schema = 'analytics' AND table_name = '{view}' AND column_name = 'updated_at'"));
        assert_eq!(column, "timestamp with time zone", "{view}.updated_at");
        let comment = query(&admin, &format!("SELECT obj_description('analytics.{view}'::regclass)"));
        assert!(comment.contains("updated_at"), "{view} is documented: {comment}");
        query(&pipeline, &format!("SELECT * FROM analytics.{view} LIMIT 1"));
    }
    let count =
        |view: &str| query(&pipeline, &format!("SELECT count(*) FROM analytics.{view}")).parse::<usize>().unwrap();
    assert_eq!(count("account_balances"), scenario.accounts.expected.len());
    assert_eq!(count("projects"), scenario.projects.len());
    assert_eq!(count("tasks"), scenario.tasks.len());
    assert_eq!(count("daily_activity"), scenario.daily.len());
    assert_eq!(count("feature_usage_daily"), scenario.features.len());

    // "Everything changed since T": one deposit later, exactly its account has changed.
    let since = query(&pipeline, "SELECT now()");
    let (account, (balance, _, _)) = scenario.accounts.expected.iter().next().unwrap();
    let event = json!({"specversion": "1.0", "id": format!("{}-late", env.id), "source": "/t", "type": "accounts.FundsDeposited",
                       "subject": account, "dataversion": 2, "data": {"account_id": account, "amount_minor": 250, "currency": "EUR", "channel": "online"}});
    let response = up
        .post(
            &[("content-type", "application/cloudevents+json"), ("authorization", &format!("Bearer {key}"))],
            event.to_string(),
        )
        .await;
    assert_eq!(response.status(), 202);
    let total = scenario.per_topic["accounts.events"] as i64 + 1;
    wait_until("the late deposit", || async { env.applied_through("account_balances").await == total }).await;
    let changed = query(
        &pipeline,
        &format!(
            "SELECT account_id || ' ' || balance_minor FROM analytics.account_balances WHERE updated_at > '{since}'"
        ),
    );
    assert_eq!(changed, format!("{account} {}", balance + 250));

    // Read-only, and only the views.
    refused(
        &pipeline,
        &format!("INSERT INTO analytics.account_balances (account_id) VALUES ('{}-x')", env.id),
        "permission denied for view account_balances",
    );
    refused(
        &pipeline,
        "UPDATE analytics.account_balances SET balance_minor = 0",
        "permission denied for view account_balances",
    );
    refused(&pipeline, "DELETE FROM analytics.tasks", "permission denied for view tasks");
    refused(&pipeline, "CREATE VIEW analytics.mine AS SELECT 1", "permission denied for schema analytics");
    for table in [
        "account_balances",
        "tasks",
        "eventline_checkpoints",
        "eventline_dead_letters",
        "eventline_parked_keys",
        "eventline_api_keys",
        "eventline_applied_events",
    ] {
        refused(
            &pipeline,
            &format!("SELECT * FROM public.{table} LIMIT 1"),
            &format!("permission denied for table {table}"),
        );
    }
}
