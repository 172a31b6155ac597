//! What `eventline erase` scrubs besides the key (issue 16): a subject's id in the rows a
//! projection keeps about it, in every generation (and in every row written later: a rebuild, a
//! replay in place), with counts over those rows unchanged; dead letters (structured or binary
//! mode) and unpublished outbox rows holding its personal data in clear. A part it cannot reach
//! is named, exit 75, the subject fenced all the same; running it again completes it, as it
//! does after a run killed past its fence.

use serde_json::{json, Value};

use crate::helpers::{stderr, stdout, wait_until, Services, TestEnv};

const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const INSTALL_OUTBOX: &str = include_str!("../../src/store/outbox/install.sql");

fn viewed(id: &str, user: &str, time: &str, session: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/web", "type": "activity.PageViewed", "subject": user,
           "time": time, "data": {"user_id": user, "path": "/pricing", "session_id": session}})
}

fn users(env: &TestEnv, schema: &str) -> String {
    env.psql(&format!(
        "SELECT string_agg(day || ' ' || user_id, ',' ORDER BY day, user_id) FROM {schema}.daily_activity_users"
    ))
}

fn erase(env: &TestEnv, subject: &str, extra_env: &[(&str, &str)]) -> std::process::Output {
    env.command(&["erase", "--subject", subject, "--reason", "ticket 9", "--requested-by", "the person"])
        .envs(extra_env.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn erase_replaces_the_subjects_id_in_every_generation_and_sets_clear_outbox_rows_aside() {
    let env = TestEnv::with_app(Services::from_env(), &[("EVENTLINE_KEY_ENCRYPTION_KEY", KEK)]).await;
    let (day1, day2) = ("2026-12-01T10:00:00Z", "2026-12-02T10:00:00Z");
    env.publish(
        "views",
        &[
            viewed("v-1", "u-1", day1, "s-1"),
            viewed("v-2", "u-1", day2, "s-2"),
            viewed("v-3", "u-2", day1, "s-3"),
            viewed("v-4", "u-1", day1, "s-4"),
        ],
    );
    let worker = env.spawn("worker", &["worker", "daily_activity"], &[]);
    wait_until("the views to be counted", || async {
        env.psql("SELECT coalesce(sum(page_views), 0) FROM daily_activity") == "4"
    })
    .await;
    // A record that reached Kafka past the way in, unsealed and invalid: a dead letter holding a
    // session id in clear.
    let mut poison = viewed("v-9", "u-1", day2, "SessionInClear-9");
    poison["data"]["path"] = json!(42);
    let headers = [("content-type", "application/cloudevents+json")];
    crate::kafka_binding::produce_to(&env, "activity.events", "u-1", poison.to_string().as_bytes(), &headers).await;
    // And one in binary mode (the data alone in the value, its attributes in `ce_` headers), parked
    // behind the first.
    let binary = json!({"user_id": "u-1", "path": 42, "session_id": "SessionInBinary-10"}).to_string();
    let binary_headers = [
        ("ce_specversion", "1.0"),
        ("ce_id", "v-10"),
        ("ce_source", "/sdk"),
        ("ce_type", "activity.PageViewed"),
        ("ce_subject", "u-1"),
        ("ce_time", day2),
        ("content-type", "application/json"),
    ];
    crate::kafka_binding::produce_to(&env, "activity.events", "u-1", binary.as_bytes(), &binary_headers).await;
    wait_until("the poison to be set aside", || async {
        env.psql("SELECT count(*) FROM eventline_dead_letters WHERE projection = 'daily_activity'") == "2"
    })
    .await;
    // A second generation, cut over: the first is kept, retired, in its own schema.
    let rebuilt = env.run(&["rebuild", "start", "daily_activity", "--cutover", "--progress", "json"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    let retired = env.psql(
        "SELECT 'eventline_gen_daily_activity_' || generation FROM eventline_generations WHERE projection = 'daily_activity' AND state = 'retired'",
    );
    assert_eq!(users(&env, &retired), "2026-12-01 u-1,2026-12-01 u-2,2026-12-02 u-1");
    let counts = || {
        env.psql(
            "SELECT string_agg(day || ' ' || active_users || ' ' || page_views, ',' ORDER BY day) FROM daily_activity",
        )
    };
    assert_eq!(counts(), "2026-12-01 2 3,2026-12-02 1 1");
    // Two rows written to the outbox and not relayed yet, personal data in clear.
    env.psql(INSTALL_OUTBOX);
    for (id, user) in [("v-5", "u-1"), ("v-6", "u-2")] {
        let event = viewed(id, user, day2, &format!("session-of-{user}"));
        env.psql(&format!("INSERT INTO eventline_outbox (event) VALUES ('{event}')"));
    }

    // No erasure yet: no table pays for the guard that keeps erased ids out.
    let guarded = || env.psql("SELECT count(*) FROM pg_trigger WHERE tgname = 'eventline_erased_subjects'");
    assert_eq!(guarded(), "0");

    let erased = erase(&env, "u-1", &[]);
    assert!(erased.status.success(), "{}", stderr(&erased));
    // The live and the retired generation's table of users per day.
    assert_eq!(guarded(), "2");
    assert_eq!(
        stdout(&erased),
        "erased subject u-1: its personal data is unreadable everywhere within 5 s; 0 blind-index entries deleted\n\
         daily_activity: its id replaced in 4 rows\n\
         dead letters: personal data in clear removed from 4 dead letters\n\
         outbox: 1 unpublished row about it set aside, their personal data in clear removed\n"
    );
    // Both generations' dead letters, the session id gone, the rest as it was.
    // Invalid records have no event id of their own: the binary one is the one with `ce_` headers.
    let payload = |schema: &str, binary: bool| -> Value {
        let sql = format!(
            "SELECT convert_from(payload, 'UTF8') FROM {schema}.eventline_dead_letters WHERE (headers ? 'ce_id') = {binary}"
        );
        serde_json::from_str(&env.psql(&sql)).unwrap()
    };
    for schema in ["public", retired.as_str()] {
        let structured = payload(schema, false);
        assert_eq!(structured["data"], json!({"user_id": "u-1", "path": 42, "session_id": null}), "{schema}");
        assert_eq!(structured["id"], "v-9");
        assert_eq!(payload(schema, true), json!({"user_id": "u-1", "path": 42, "session_id": null}), "{schema}");
    }
    // The same placeholder everywhere, counts as they were, the other user untouched.
    let placeholder = env.psql("SELECT placeholder FROM eventline_erased_subjects WHERE subject = 'u-1'");
    assert!(placeholder.starts_with("erased-") && placeholder.len() == 39, "{placeholder}");
    let scrubbed = format!("2026-12-01 {placeholder},2026-12-01 u-2,2026-12-02 {placeholder}");
    assert_eq!(users(&env, "public"), scrubbed);
    assert_eq!(users(&env, &retired), scrubbed);
    assert_eq!(counts(), "2026-12-01 2 3,2026-12-02 1 1");
    assert_eq!(
        env.psql("SELECT string_agg(event->>'subject' || ' ' || coalesce(event->'data'->>'session_id', 'null') || ' ' || (failed_at IS NOT NULL) || ' ' || coalesce(last_error, ''), ',' ORDER BY id) FROM eventline_outbox"),
        "u-1 null true its data subject was erased: the personal data it held in clear was removed by eventline erase [subject-erased],\
         u-2 session-of-u-2 false"
    );

    // Rebuilt from the log, where u-1 still is: the cutover puts the same placeholder in.
    let rebuilt = env.run(&["rebuild", "start", "daily_activity", "--cutover", "--progress", "json"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    assert_eq!(users(&env, "public"), scrubbed);
    assert_eq!(counts(), "2026-12-01 2 3,2026-12-02 1 1");

    // Again: the rebuild read the record that came past the way in once more (Kafka keeps it, in
    // clear), so its new dead letter is scrubbed; then there is nothing more to do.
    let again = erase(&env, "u-1", &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        stdout(&again),
        "subject u-1 was already erased (or had no personal data): it stays fenced\n\
         dead letters: personal data in clear removed from 2 dead letters\n"
    );
    let again = erase(&env, "u-1", &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), "subject u-1 was already erased (or had no personal data): it stays fenced\n");

    // Replayed in place, from the log where u-1 still is: the rows written again keep the
    // placeholder (the guard is on the live table, which the rebuild's generation became).
    let replayed = env.run(&["replay", "daily_activity", "--from", "earliest"]);
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    wait_until("the views to be counted again", || async { counts() == "2026-12-01 2 3,2026-12-02 1 1" }).await;
    assert_eq!(users(&env, "public"), scrubbed, "{}", worker.log());
    worker.terminate();
}

/// Sealing on, u-1's page view counted by a `daily_activity` worker, which goes on running.
async fn one_view_counted() -> (TestEnv, crate::helpers::Process) {
    let env = TestEnv::with_app(Services::from_env(), &[("EVENTLINE_KEY_ENCRYPTION_KEY", KEK)]).await;
    env.publish("views", &[viewed("v-1", "u-1", "2026-12-01T10:00:00Z", "s-1")]);
    let worker = env.spawn("worker", &["worker", "daily_activity"], &[]);
    wait_until("the view to be counted", || async { env.psql("SELECT count(*) FROM daily_activity_users") == "1" })
        .await;
    (env, worker)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erasure_that_cannot_reach_a_part_says_which_keeps_the_fence_and_completes_when_run_again() {
    let (env, worker) = one_view_counted().await;
    env.psql(INSTALL_OUTBOX);
    env.psql(&format!(
        "INSERT INTO eventline_outbox (event) VALUES ('{}')",
        viewed("v-2", "u-1", "2026-12-01T11:00:00Z", "s-2")
    ));

    // The outbox's database is not there.
    let missing = env.database_url.expose().rsplit_once('/').unwrap().0.to_string() + "/no_such_outbox_db";
    let partial = erase(&env, "u-1", &[("EVENTLINE_OUTBOX_DATABASE_URL", &missing)]);
    assert_eq!(partial.status.code(), Some(75), "{}", stderr(&partial));
    assert_eq!(
        stdout(&partial),
        "erased subject u-1: its personal data is unreadable everywhere within 5 s; 0 blind-index entries deleted\n\
         daily_activity: its id replaced in 1 row\n"
    );
    let error = stderr(&partial);
    assert!(
        error.starts_with("error: subject u-1 is fenced and its key destroyed, but not reached: the outbox (database no_such_outbox_db: ")
            && error.ends_with("); run erase again to complete it\n"),
        "{error}"
    );
    assert_eq!(env.psql("SELECT erased_at IS NOT NULL FROM eventline_keys.subject_keys WHERE subject = 'u-1'"), "t");
    assert_eq!(env.psql("SELECT event->'data'->>'session_id' FROM eventline_outbox"), "s-2");

    // Run again where the outbox is: completed.
    let completed = erase(&env, "u-1", &[]);
    assert!(completed.status.success(), "{}", stderr(&completed));
    assert_eq!(
        stdout(&completed),
        "subject u-1 was already erased (or had no personal data): it stays fenced\n\
         outbox: 1 unpublished row about it set aside, their personal data in clear removed\n"
    );
    assert_eq!(env.psql("SELECT coalesce(event->'data'->>'session_id', 'null') FROM eventline_outbox"), "null");
    assert_eq!(env.psql("SELECT count(*) FROM daily_activity_users WHERE user_id = 'u-1'"), "0");
    worker.terminate();
}

/// Killed after the fence, while it waits to scrub a projection's rows: the subject stays fenced
/// and its key destroyed, and the next run completes the scrub.
#[tokio::test(flavor = "multi_thread")]
async fn an_erasure_killed_after_its_fence_leaves_the_subject_fenced_and_a_new_run_completes_it() {
    use eventline_store::sqlx::{self, Connection};
    let (env, worker) = one_view_counted().await;
    worker.terminate();

    // Someone holds the projection's table, so the erasure stops where it scrubs it: killed there.
    let mut holder = sqlx::PgConnection::connect(env.database_url.expose()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE daily_activity_users IN ACCESS EXCLUSIVE MODE").execute(&mut holder).await.unwrap();
    let erasing =
        env.spawn("erase", &["erase", "--subject", "u-1", "--reason", "ticket 9", "--requested-by", "the person"], &[]);
    let waiting = "SELECT count(*) FROM pg_locks WHERE relation = 'daily_activity_users'::regclass AND NOT granted";
    wait_until("the erasure to wait for the table", || async { env.psql(waiting) == "1" }).await;
    let status = erasing.kill_hard();
    assert!(!status.success());
    // Its session, left waiting, is ended as the server would once it noticed the client gone.
    env.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE relation = 'daily_activity_users'::regclass AND NOT granted",
    );
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();

    assert_eq!(
        env.psql("SELECT (wrapped_key IS NULL) || ' ' || (erased_at IS NOT NULL) FROM eventline_keys.subject_keys WHERE subject = 'u-1'"),
        "true true",
        "fenced, its key destroyed"
    );
    assert_eq!(env.psql("SELECT count(*) FROM daily_activity_users WHERE user_id = 'u-1'"), "1", "not scrubbed yet");
    let refused = env
        .run_with_stdin(&["publish"], format!("{}\n", viewed("v-2", "u-1", "2026-12-01T11:00:00Z", "s-2")).as_bytes());
    assert_eq!(refused.status.code(), Some(65), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("its data subject `u-1` was erased"), "{}", stderr(&refused));

    let completed = erase(&env, "u-1", &[]);
    assert!(completed.status.success(), "{}", stderr(&completed));
    assert_eq!(
        stdout(&completed),
        "subject u-1 was already erased (or had no personal data): it stays fenced\n\
         daily_activity: its id replaced in 1 row\n"
    );
    assert_eq!(env.psql("SELECT count(*) FROM daily_activity_users WHERE user_id = 'u-1'"), "0");
    assert_eq!(env.psql("SELECT count(*) FROM daily_activity_users"), "1", "the count stays what it was");
    assert_eq!(env.psql("SELECT count(*) FROM eventline_audit WHERE action = 'subject.erase'"), "2");
}

/// A declarative projection keeping each user's last session id (personal) beside their id (a
/// subject column), in a folder of its own.
fn last_sessions_projection() -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("eventline-last-sessions-{}", rand::random::<u32>()));
    let folder = root.join("last_sessions");
    std::fs::create_dir_all(folder.join("migrations")).unwrap();
    std::fs::write(
        folder.join("projection.toml"),
        r#"name = "last_sessions"
version = 1
topics = ["activity.events"]
tables = ["last_sessions"]
personal_columns = ["last_sessions.session_id"]
subject_columns = ["last_sessions.user_id"]
ignores = ["activity.FeatureUsed"]

[handles]
"activity.PageViewed" = [1]
"#,
    )
    .unwrap();
    std::fs::write(
        folder.join("migrations/1_last_sessions.sql"),
        "CREATE TABLE last_sessions (user_id text PRIMARY KEY, session_id text, path text NOT NULL);",
    )
    .unwrap();
    std::fs::write(
        folder.join("apply.sql"),
        r#"CREATE FUNCTION apply(batch jsonb) RETURNS TABLE(ord int, reason text)
LANGUAGE sql AS $$
    INSERT INTO last_sessions AS s (user_id, session_id, path)
    SELECT DISTINCT ON (e->'data'->>'user_id') e->'data'->>'user_id', e->'data'->>'session_id', e->'data'->>'path'
    FROM jsonb_array_elements(batch) WITH ORDINALITY AS b(e, n)
    ORDER BY e->'data'->>'user_id', n DESC
    ON CONFLICT (user_id) DO UPDATE SET session_id = excluded.session_id, path = excluded.path;
    SELECT NULL::int, NULL::text WHERE false;
$$;
"#,
    )
    .unwrap();
    root
}

#[tokio::test(flavor = "multi_thread")]
async fn personal_data_projected_in_clear_before_sealing_is_removed_from_rows_about_an_erased_subject() {
    let projections = last_sessions_projection();
    // No key-encryption key yet: events travel and are projected with their session ids in clear.
    let env =
        TestEnv::with_app(Services::from_env(), &[("EVENTLINE_PROJECTIONS_DIR", projections.to_str().unwrap())]).await;
    let rows = || {
        env.psql("SELECT string_agg(user_id || '|' || coalesce(session_id, 'null') || '|' || path, ',' ORDER BY user_id) FROM last_sessions")
    };
    env.publish(
        "clear",
        &[viewed("v-1", "u-1", "2026-12-01T10:00:00Z", "s-1"), viewed("v-2", "u-2", "2026-12-01T10:00:00Z", "s-2")],
    );
    let worker = env.spawn("worker", &["worker", "last_sessions"], &[]);
    wait_until("both users' sessions", || async { rows() == "u-1|s-1|/pricing,u-2|s-2|/pricing" }).await;

    // Sealing turned on, then u-1 erased: the session id in clear in the row about u-1 is removed
    // with the id, in the same statement; u-2's row is untouched.
    let erased = erase(&env, "u-1", &[("EVENTLINE_KEY_ENCRYPTION_KEY", KEK)]);
    assert!(erased.status.success(), "{}", stderr(&erased));
    assert_eq!(
        stdout(&erased),
        "subject u-1 was already erased (or had no personal data): it stays fenced\n\
         last_sessions: its id replaced in 1 row\n"
    );
    let placeholder = env.psql("SELECT placeholder FROM eventline_erased_subjects WHERE subject = 'u-1'");
    assert_eq!(rows(), format!("{placeholder}|null|/pricing,u-2|s-2|/pricing"));

    // Replayed from the log, where u-1's session id is in clear, and a late event about u-1 (on its
    // partition, after the first): the rows written again keep neither the id nor the session id.
    let replayed = env.run(&["replay", "last_sessions", "--from", "earliest"]);
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    let mut late = viewed("v-3", "u-1", "2026-12-01T11:00:00Z", "s-3");
    late["data"]["path"] = json!("/after");
    env.publish("late", &[late]);
    let expected = format!("{placeholder}|null|/after,u-2|s-2|/pricing");
    wait_until("the replay and the late event", || async { rows() == expected }).await;
    assert_eq!(
        env.psql("SELECT count(*) FROM last_sessions WHERE user_id = 'u-1' OR session_id IN ('s-1', 's-3')"),
        "0"
    );
    worker.terminate();
    std::fs::remove_dir_all(projections).unwrap();
}
