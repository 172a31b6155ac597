//! The operator console (`/console`) against a real eventline, Kafka and PostgreSQL: signing in,
//! what each page shows, Server-Sent Events that cost the same however many pages are open, and
//! (in a real headless Chromium driven by Playwright) a live overview.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::events::{account_event, deposit, opened, withdrawal};
use crate::helpers::{wait_until, HttpProcess, TestEnv};

/// A client that shows redirects instead of following them.
fn browser_like() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Signs in with `token`: the answer to the sign-in form.
async fn sign_in(console: &HttpProcess, token: &str) -> reqwest::Response {
    browser_like()
        .post(format!("{}/console/login", console.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .expect("the console answers")
}

/// The session cookie the sign-in set (`name=value`).
async fn session(console: &HttpProcess, token: &str) -> String {
    let answer = sign_in(console, token).await;
    assert_eq!(answer.status(), 303, "{:?}", answer.text().await);
    let cookie = answer.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/console"));
    cookie.split(';').next().unwrap().to_string()
}

async fn get(console: &HttpProcess, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut request = browser_like().get(format!("{}{path}", console.base));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.expect("the console answers")
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_in_needs_the_status_scope_and_the_pages_show_every_projection() {
    let env = TestEnv::new().await;
    let console = env.spawn_http("console", &["console"], &[]).await;

    // Without a session, pages send the browser to sign in; live streams say so.
    let answer = get(&console, "/console", None).await;
    assert_eq!((answer.status().as_u16(), answer.headers()["location"].to_str().unwrap()), (303, "/console/login"));
    assert_eq!(get(&console, "/console/live", None).await.status(), 401);
    let form = get(&console, "/console/login", None).await.text().await.unwrap();
    assert!(form.contains(r#"<input id="token" type="password" name="token""#), "{form}");

    // Bad credentials, and good ones without the scope, are refused on the form, saying why.
    let wrong = sign_in(&console, "elk_nope_nope").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("Not signed in: the API key is not valid."));
    let empty = sign_in(&console, "").await;
    assert_eq!(empty.status(), 400);
    assert!(empty.text().await.unwrap().contains("Paste an API key or a JWT to sign in."));
    let (_, reader) = env.create_key_with_scopes("reader-only", &[], &["read:*"]);
    let unscoped = sign_in(&console, &reader).await;
    assert_eq!(unscoped.status(), 403);
    assert!(unscoped.text().await.unwrap().contains("Not signed in: projection status needs the scope status."));
    let garbage = browser_like()
        .post(format!("{}/console/login", console.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("password=x")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);

    // Signed in with the status scope: every projection on the overview, each with its page.
    let (_, operator) = env.create_key_with_scopes("operator", &[], &["status"]);
    let cookie = session(&console, &operator).await;
    let overview = get(&console, "/console", Some(&cookie)).await;
    assert_eq!(overview.status(), 200);
    let overview = overview.text().await.unwrap();
    for projection in ["account_balances", "daily_activity", "feature_usage_daily", "project_progress"] {
        assert!(overview.contains(&format!(r#"<tr data-projection="{projection}""#)), "{projection}: {overview}");
    }
    assert!(overview.contains("Signed in as <strong>key:"), "{overview}");
    let page = get(&console, "/console/projections/account_balances", Some(&cookie)).await.text().await.unwrap();
    assert!(page.contains("<caption>Partitions</caption>"), "{page}");
    assert_eq!(page.matches("<tr><td>").count(), 6, "a row per partition: {page}");
    let missing = get(&console, "/console/projections/nope", Some(&cookie)).await;
    assert_eq!(missing.status(), 404);
    let missing = missing.text().await.unwrap();
    assert!(missing.contains("This application has no projection named <code>nope</code>."), "{missing}");
    // A value from the URL is escaped, never markup.
    let tricky = get(&console, "/console/projections/%3Cscript%3E", Some(&cookie)).await.text().await.unwrap();
    assert!(tricky.contains("<code>&lt;script&gt;</code>") && !tricky.contains("<code><script>"), "{tricky}");

    // The assets are embedded.
    let css = get(&console, "/console/assets/console.css", None).await;
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert!(css.text().await.unwrap().contains("prefers-color-scheme: dark"));

    // Signing out ends the session in the browser.
    let out =
        browser_like().post(format!("{}/console/logout", console.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(out.status(), 303);
    assert!(out.headers()["set-cookie"].to_str().unwrap().starts_with("eventline_console=; Path=/console; Max-Age=0"));
    // A revoked key stops working on the next request after the key cache (5 s).
    let revoked = env.run(&["keys", "revoke", operator.split('_').nth(1).unwrap()]);
    assert!(revoked.status.success());
    wait_until("the revoked key's session to end", || async {
        get(&console, "/console", Some(&cookie)).await.status() == 303
    })
    .await;
}

/// `eventline_console_snapshots_total` in the process's `/metrics`.
async fn snapshots_taken(console: &HttpProcess) -> f64 {
    let text = console.anonymous.get(format!("{}/metrics", console.base)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("eventline_console_snapshots_total "))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn open_pages_share_one_snapshot_per_refresh_and_none_is_taken_without_them() {
    let env = TestEnv::new().await;
    let refresh_ms = 500;
    let console = env.spawn_http("console", &["console"], &[("EVENTLINE_CONSOLE_REFRESH_MS", "500")]).await;
    let (_, operator) = env.create_key_with_scopes("operator", &[], &["status"]);
    let cookie = session(&console, &operator).await;

    // Nobody watching: no snapshot at all.
    tokio::time::sleep(Duration::from_millis(3 * refresh_ms)).await;
    assert_eq!(snapshots_taken(&console).await, 0.0);

    // Twenty open pages, each reading its stream.
    let before = snapshots_taken(&console).await;
    let started = Instant::now();
    let mut pages = Vec::new();
    for _ in 0..20 {
        let mut stream = get(&console, "/console/live", Some(&cookie)).await;
        assert_eq!(stream.headers()["content-type"], "text/event-stream");
        pages.push(tokio::spawn(async move {
            let mut received = 0;
            let deadline = Instant::now() + Duration::from_secs(4);
            while Instant::now() < deadline {
                match tokio::time::timeout(Duration::from_millis(200), stream.chunk()).await {
                    Ok(Ok(Some(chunk))) => {
                        received += String::from_utf8_lossy(&chunk).matches("event: snapshot").count()
                    }
                    Ok(_) => break,
                    Err(_) => {}
                }
            }
            received
        }));
    }
    let mut received = Vec::new();
    for page in pages {
        received.push(page.await.unwrap());
    }
    let elapsed = started.elapsed().as_millis() as f64;
    let taken = snapshots_taken(&console).await - before;
    // One snapshot per refresh period for all twenty (plus the one the first page asked for),
    // never one per page.
    let periods = elapsed / refresh_ms as f64;
    assert!(taken >= 3.0 && taken <= periods + 2.0, "{taken} snapshots in {elapsed} ms for 20 pages");
    assert!(received.iter().all(|&n| n >= 3), "every page got the snapshots: {received:?}");
}

/// The Python of the virtual environment with Playwright that `scripts/test.sh` installs.
fn browser_python() -> PathBuf {
    let python = std::env::var_os("BROWSER_TESTS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".eventline/browser/bin/python"));
    assert!(
        python.exists(),
        "no Playwright for Python at {} (BROWSER_TESTS_PYTHON): run scripts/test.sh, which installs it and chromium",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_browser_the_overview_goes_live_and_flags_a_stuck_partition() {
    let env = TestEnv::new().await;
    let console = env.spawn_http("console", &["console"], &[("EVENTLINE_CONSOLE_REFRESH_MS", "500")]).await;
    let (_, operator) = env.create_key_with_scopes("operator", &[], &["status"]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/overview.py");
    let screenshots = env.file("screenshots");
    let errors = env.file("browser.log");
    let mut browser = tokio::process::Command::new(browser_python())
        .arg(&script)
        .env("CONSOLE_URL", format!("{}/console", console.base))
        .env("CONSOLE_TOKEN", &operator)
        .env("SCREENSHOTS", &screenshots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&errors).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("Python runs");
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut said = Vec::new();
    let failed = |what: &str| -> ! {
        let log = std::fs::read_to_string(&errors).unwrap_or_default();
        panic!("{what}; screenshots in {}; the browser script said:\n{log}", screenshots.display())
    };
    let mut next_line = async || {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        let line = line.expect("the browser script answers within 60 s").unwrap().unwrap_or_default();
        said.push(line.clone());
        line
    };
    // Signed in, every projection shown, no lag yet: then events are published (and no worker
    // runs), and the page must show them waiting without being reloaded.
    let ready = next_line().await;
    let ready = ready.strip_prefix("ready ").unwrap_or_else(|| failed(&format!("not ready: `{ready}`")));
    let ready: Value = serde_json::from_str(ready).unwrap();
    assert_eq!(
        ready["projections"],
        serde_json::json!(["account_balances", "daily_activity", "feature_usage_daily", "project_progress"])
    );
    assert_eq!(ready["account_balances_lag"], "0");
    let events: Vec<Value> = (0..7).map(|i| opened(&format!("o{i}"), &format!("acct-{i}"))).collect();
    env.publish("opened.ndjson", &events);
    let mut stdin = browser.stdin.take().unwrap();
    stdin.write_all(format!("published {}\n", events.len()).as_bytes()).await.unwrap();
    let live = next_line().await;
    let live = live.strip_prefix("live ").unwrap_or_else(|| failed(&format!("not live: `{live}`")));
    let live: Value = serde_json::from_str(live).unwrap();
    assert_eq!(live["account_balances_lag"], "7", "{live}");
    assert_eq!(live["reloaded"], false, "the page was updated in place: {live}");
    assert!(live["stuck"].as_str().unwrap().starts_with("⚠ stuck: "), "{live}");
    assert_eq!(live["first_row"], "account_balances", "the stuck projection is listed first: {live}");
    let status = browser.wait().await.unwrap();
    if !status.success() {
        failed(&format!("the browser script failed ({status}) after {said:?}"));
    }
}

/// POSTs a console form as a browser would, with the session `cookie`.
async fn post_form(console: &HttpProcess, path: &str, cookie: &str, form: &[(&str, &str)]) -> reqwest::Response {
    browser_like()
        .post(format!("{}{path}", console.base))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .expect("the console answers")
}

/// The CSRF token in a page's action forms.
fn csrf_in(page: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = page.find(marker).unwrap_or_else(|| panic!("no CSRF field: {page}")) + marker.len();
    page[start..].split('"').next().unwrap().to_string()
}

/// The dead letters of `account_balances` as `(id, key, event id, kind)`, by key, then in id
/// order (keys on different partitions are dead-lettered in no set order between them).
async fn dead_letters_of(env: &TestEnv) -> Vec<(i64, String, String, String)> {
    let letters = env.store.dead_letters("account_balances").await.unwrap();
    let mut letters: Vec<_> = letters
        .into_iter()
        .map(|l| (l.id, l.record_key.unwrap_or_default(), l.event_id.unwrap_or_default(), l.reason_kind))
        .collect();
    letters.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
    letters
}

/// A worker whose contract refuses withdrawals over 2000 dead-letters acct-a's big one (its key's
/// next events park behind it); a domain rule refuses acct-b's withdrawal in USD, and its later
/// opening, which holds personal data, parks. Returns the worker and the strict registry's folder.
async fn poisoned(env: &TestEnv) -> (crate::helpers::Process, tempfile::TempDir) {
    let strict = tempfile::tempdir().unwrap();
    crate::dlq::too_strict_registry(strict.path());
    let events = [
        opened("open-a", "acct-a"),
        deposit("dep-a", "acct-a", 6000),
        withdrawal("wd-big", "acct-a", 5000),
        deposit("dep-a2", "acct-a", 100),
        opened("open-b", "acct-b"),
        account_event("wd-usd", "accounts.FundsWithdrawn", "acct-b", json!({"amount_minor": 5, "currency": "USD"})),
        opened("open-b-again", "acct-b"),
    ];
    let worker_env = [("EVENTLINE_SCHEMAS_DIR", strict.path().to_str().unwrap())];
    let worker = env.spawn("worker", &["worker", "account_balances"], &worker_env);
    env.publish("events.ndjson", &events);
    wait_until("every event to be passed", || async { env.applied_through("account_balances").await == 7 }).await;
    (worker, strict)
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_filtered_masked_and_acted_on_only_with_the_operate_scope_and_a_csrf_token() {
    let env = TestEnv::new().await;
    let (_worker, _strict) = poisoned(&env).await;
    let letters = dead_letters_of(&env).await;
    let kinds: Vec<(&str, &str)> = letters.iter().map(|(_, key, _, kind)| (key.as_str(), kind.as_str())).collect();
    assert_eq!(kinds, [("acct-a", "invalid"), ("acct-a", "parked"), ("acct-b", "rejected"), ("acct-b", "parked")]);
    let (big, opening) = (letters[0].0, letters[3].0);
    // The console runs with the fixed (built-in) registry: the deployment that fixed the cause.
    let console = env.spawn_http("console", &["console"], &[]).await;
    let viewer = session(&console, &env.create_key_with_scopes("viewer", &[], &["status"]).1).await;
    let operator = session(&console, &env.create_key_with_scopes("operator", &[], &["status", "operate"]).1).await;
    let privacy = session(&console, &env.create_key_with_scopes("privacy", &[], &["status", "personal"]).1).await;

    // Filters in the query string; each bad one named on the page, nothing listed.
    let list = get(&console, "/console/dead-letters?projection=account_balances&kind=parked", Some(&viewer)).await;
    let list = list.text().await.unwrap();
    assert_eq!(list.matches("<tr data-letter=").count(), 2, "{list}");
    assert!(list.contains("<caption>2 dead letters</caption>"), "{list}");
    for (query, error) in [
        ("kind=weird", "Not shown: `weird` is not a kind of dead letter (one of undecodable, invalid, rejected, parked)."),
        ("since=yesterday", "Not shown: `yesterday` is not a time (RFC 3339, like 2026-12-04T09:30:00Z)."),
        ("projection=nope", "Not shown: there is no projection `nope` (known: account_balances, project_progress, daily_activity, feature_usage_daily)."),
    ] {
        let answer = get(&console, &format!("/console/dead-letters?{query}"), Some(&viewer)).await;
        assert_eq!(answer.status(), 400, "{query}");
        let text = answer.text().await.unwrap();
        assert!(text.contains(error), "{query}: {text}");
    }
    let later =
        get(&console, "/console/dead-letters?since=2999-01-01T00:00", Some(&viewer)).await.text().await.unwrap();
    assert!(later.contains("<caption>0 dead letters</caption>"), "{later}");
    // A read-only viewer sees the actions disabled.
    assert!(list.contains("You can look but not act"), "{list}");
    assert!(
        list.contains(r#"<button type="submit" disabled title="needs the operate scope">Retry key</button>"#),
        "{list}"
    );

    // A parked opening holds the owner's name: masked without `personal`, in clear (and audited) with it.
    let masked = get(&console, &format!("/console/dead-letters/{opening}"), Some(&viewer)).await.text().await.unwrap();
    assert!(masked.contains(r#"<pre data-record="masked">"#) && masked.contains("&quot;owner&quot;: null"), "{masked}");
    let clear = get(&console, &format!("/console/dead-letters/{opening}"), Some(&privacy)).await.text().await.unwrap();
    assert!(
        clear.contains(r#"<pre data-record="clear">"#) && clear.contains("&quot;owner&quot;: &quot;o&quot;"),
        "{clear}"
    );
    assert_eq!(env.psql("SELECT count(*) FROM eventline_audit WHERE action = 'personal.read'"), "1");
    let missing = get(&console, "/console/dead-letters/999999", Some(&viewer)).await;
    assert_eq!(missing.status(), 404);

    // Refused: without `operate`, without the CSRF token, from another site, without the typed name.
    let page = get(&console, &format!("/console/dead-letters/{big}"), Some(&operator)).await.text().await.unwrap();
    let csrf = csrf_in(&page);
    let viewer_page = get(&console, &format!("/console/dead-letters/{big}"), Some(&viewer)).await.text().await.unwrap();
    let viewer_csrf = csrf_in(&viewer_page);
    let retry = format!("/console/dead-letters/{big}/retry");
    let refusals = [
        (
            post_form(&console, &retry, &viewer, &[("csrf", &viewer_csrf)]).await,
            403,
            "retrying dead letters needs the scope operate",
        ),
        (
            post_form(&console, &retry, &operator, &[]).await,
            403,
            "the form's CSRF token is missing or stale; reload the page and try again (nothing was done)",
        ),
        (
            post_form(&console, &retry, &operator, &[("csrf", &viewer_csrf)]).await,
            403,
            "the form's CSRF token is missing or stale",
        ),
        (
            browser_like()
                .post(format!("{}{retry}", console.base))
                .header("cookie", &operator)
                .header("origin", "https://elsewhere.example")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("csrf={csrf}"))
                .send()
                .await
                .unwrap(),
            403,
            "the form was sent from another site; nothing was done",
        ),
        (
            post_form(
                &console,
                &format!("/console/dead-letters/{opening}/purge"),
                &operator,
                &[("csrf", &csrf), ("confirm", "account")],
            )
            .await,
            400,
            "type the projection's name, account_balances, to confirm; nothing was purged",
        ),
        (
            post_form(
                &console,
                &format!("/console/dead-letters/{opening}/skip"),
                &operator,
                &[("csrf", &csrf), ("reason", " ")],
            )
            .await,
            400,
            "say why this event is skipped; nothing was done",
        ),
        (
            post_form(&console, "/console/dead-letters/999999/retry", &operator, &[("csrf", &csrf)]).await,
            404,
            "there is no dead letter 999999",
        ),
    ];
    for (answer, status, message) in refusals {
        assert_eq!(answer.status(), status, "{message}");
        let text = answer.text().await.unwrap();
        assert!(text.contains(message), "{message}: {text}");
    }
    assert_eq!(dead_letters_of(&env).await, letters, "nothing was done");
    let refused =
        env.psql("SELECT count(*) FROM eventline_audit WHERE action LIKE 'console.%' AND outcome ? 'refused'");
    assert_eq!(refused, "7", "every refused attempt is in the audit");

    // The operator retries acct-a's key: the big withdrawal now passes, the parked deposit follows.
    let done = post_form(&console, &retry, &operator, &[("csrf", &csrf)]).await;
    assert_eq!(done.status(), 200);
    let done = done.text().await.unwrap();
    assert!(done.contains(r#"<p data-outcome="applied">2 applied, 0 already applied, 0 passed over, 0 still dead (key <code>acct-a</code>).</p>"#), "{done}");
    assert_eq!(crate::dlq::balance(&env, "acct-a").await, Some((1100, 4)));
    // acct-b's key is purged, typed to confirm; the opening's letter names the key.
    let purged = post_form(
        &console,
        &format!("/console/dead-letters/{opening}/purge"),
        &operator,
        &[("csrf", &csrf), ("confirm", "account_balances")],
    )
    .await;
    assert_eq!(purged.status(), 200);
    assert!(purged.text().await.unwrap().contains("2 dead letters of key <code>acct-b</code> forgotten"));
    assert_eq!(dead_letters_of(&env).await, []);
    let audited = env.psql(
        "SELECT action || ' ' || (outcome ? 'done') || ' ' || (outcome->'origin' ? 'user_agent') FROM eventline_audit
         WHERE action LIKE 'console.%' AND outcome ? 'done' ORDER BY id",
    );
    assert_eq!(audited, "console.dlq.retry true true\nconsole.dlq.purge true true");
}

/// Runs a browser script of `tests/browser/` with `env`, and returns what it printed last as
/// JSON after `word`; fails with its log and where its screenshots are otherwise.
async fn browser_script(env: &TestEnv, script: &str, vars: &[(&str, &str)], word: &str) -> Value {
    let screenshots = env.file("screenshots");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser").join(script);
    let run = tokio::process::Command::new(browser_python())
        .arg(&path)
        .envs(vars.iter().copied())
        .env("SCREENSHOTS", &screenshots)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run).await.expect("the browser script ends").unwrap();
    let said = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{script} failed ({}); screenshots in {}:\n{said}\n{}",
        output.status,
        screenshots.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let last = said.lines().last().and_then(|line| line.strip_prefix(word)).unwrap_or_else(|| panic!("{said}"));
    serde_json::from_str(last.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_browser_an_operator_retries_dead_letters_after_the_fix_and_a_viewer_cannot() {
    let env = TestEnv::new().await;
    let (_worker, _strict) = poisoned(&env).await;
    let console = env.spawn_http("console", &["console"], &[]).await;
    let operator = env.create_key_with_scopes("operator", &[], &["status", "operate"]).1;
    let viewer = env.create_key_with_scopes("viewer", &[], &["status"]).1;
    let url = format!("{}/console", console.base);
    let vars = [("CONSOLE_URL", url.as_str()), ("OPERATOR_TOKEN", &operator), ("VIEWER_TOKEN", &viewer)];
    let found = browser_script(&env, "dead_letters.py", &vars, "done").await;
    assert_eq!(found["listed"], 4, "{found}");
    assert_eq!(
        found["preview"],
        "This applies again 4 dead letters of 2 keys of account_balances, each key's in order."
    );
    // acct-a's cause was fixed; acct-b's (a withdrawal in USD) was not: it stays, with the opening behind it.
    assert_eq!(found["outcome"], "2 keys retried: 2 applied, 2 still dead.");
    assert_eq!(found["left"], 2);
    assert_eq!(
        (found["viewer_buttons_disabled"].as_bool(), found["viewer_record_buttons_disabled"].as_bool()),
        (Some(true), Some(true))
    );
    // The projection is exact for the fixed key.
    assert_eq!(crate::dlq::balance(&env, "acct-a").await, Some((1100, 4)));
    let audited =
        env.psql("SELECT outcome->'done'->>'applied' FROM eventline_audit WHERE action = 'console.dlq.retry_all'");
    assert_eq!(audited, "2");
}

/// Page views by three users.
fn page_views(prefix: &str, count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            json!({"specversion": "1.0", "id": format!("{prefix}-{i}"), "source": "/web", "type": "activity.PageViewed",
                   "subject": format!("{prefix}-user-{}", i % 3), "time": "2026-12-04T10:00:00Z",
                   "data": {"user_id": format!("{prefix}-user-{}", i % 3), "path": "/pricing", "session_id": format!("{prefix}-s{i}")}})
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_is_previewed_per_partition_refuses_bad_starts_and_re_applies_what_it_counted() {
    let env = TestEnv::new().await;
    let accounts: Vec<Value> = (0..10).map(|i| opened(&format!("o{i}"), &format!("acct-{i}"))).collect();
    let worker = env.spawn("worker", &["worker", "account_balances", "daily_activity"], &[]);
    env.publish("accounts.ndjson", &accounts);
    env.publish("views.ndjson", &page_views("v", 12));
    wait_until("the events to be applied", || async {
        env.applied_through("account_balances").await == 10 && env.applied_through("daily_activity").await == 12
    })
    .await;
    let console = env.spawn_http("console", &["console"], &[]).await;
    let operator = session(&console, &env.create_key_with_scopes("operator", &[], &["status", "operate"]).1).await;
    let page = |query: String| {
        let (console, operator) = (&console, &operator);
        async move {
            let answer = get(console, &query, Some(operator)).await;
            (answer.status().as_u16(), answer.text().await.unwrap())
        }
    };

    // The form alone, then each bad start named, nothing done.
    let (status, form) = page("/console/projections/account_balances/replay".into()).await;
    assert_eq!(status, 200);
    assert!(form.contains(r#"<input type="radio" name="from" value="earliest" checked>"#), "{form}");
    let activity = env.topic("activity.events");
    let ends = env.end_offsets("activity.events").await;
    for (projection, query, expected) in [
        ("account_balances", "from=time&time=2026-12-01T00:00:00Z", "account_balances folds each entity's whole history, so it cannot start mid-stream: replay or rebuild it from earliest; nothing was done".to_string()),
        ("daily_activity", "from=offset&offsets=1:0,0:99999", format!("offset 99999 is outside partition 0 of {activity}, which holds offsets 0 to {}; nothing was done", ends[0])),
        ("daily_activity", "from=offset&offsets=6:0", format!("daily_activity reads no partition 6 of {activity}; nothing was done")),
        ("daily_activity", "from=offset&offsets=x:0", "`x` is not a partition number; nothing was done".to_string()),
        ("daily_activity", "from=offset&offsets=0:1,%201:y", "`y` is not an offset; nothing was done".to_string()),
        ("daily_activity", "from=offset&offsets=0:1,0:2", "partition 0 is given twice; nothing was done".to_string()),
        ("daily_activity", "from=offset&offsets=0", "`0` is not &lt;partition&gt;:&lt;offset&gt;; nothing was done".to_string()),
        ("daily_activity", "from=offset&offsets=", "give the offsets to start from, as partition:offset; nothing was done".to_string()),
        ("daily_activity", "from=time&time=soon", "`soon` is not a time (RFC 3339, like 2026-12-04T09:30:00Z); nothing was done".to_string()),
        ("daily_activity", "from=time&time=2000-01-01T00:00:00Z", format!("2000-01-01T00:00:00.000Z is before the earliest record {activity} still holds (")),
        ("daily_activity", "from=bogus", "`bogus` is not a start (earliest, time or offset); nothing was done".to_string()),
    ] {
        let (status, text) = page(format!("/console/projections/{projection}/replay?{query}")).await;
        assert_eq!(status, 400, "{query}: {text}");
        assert!(text.contains(&expected), "{query}: expected {expected} in {text}");
    }
    let (status, _) = page("/console/projections/nope/replay?from=earliest".into()).await;
    assert_eq!(status, 404);

    // Offsets for several partitions: those start there, the others from the earliest.
    let (status, preview) =
        page(format!("/console/projections/daily_activity/replay?from=offset&offsets=1:{},%200:{}", ends[1], ends[0]))
            .await;
    assert_eq!(status, 200, "{preview}");
    let expected = format!(
        "Replaying from <code>offset:0:{},1:{}</code> re-applies <strong>{} events</strong>",
        ends[0],
        ends[1],
        12 - ends[0] - ends[1]
    );
    assert!(preview.contains(&expected), "expected {expected} in {preview}");
    assert!(preview.contains(&format!(r#"name="offsets" value="1:{}, 0:{}""#, ends[1], ends[0])), "{preview}");

    // A preview from the earliest counts every event, per partition, and changes nothing.
    let (status, preview) = page("/console/projections/account_balances/replay?from=earliest".into()).await;
    assert_eq!(status, 200, "{preview}");
    assert!(preview.contains("re-applies <strong>10 events</strong>"), "{preview}");
    assert_eq!(preview.matches("<tr><td>").count(), 6, "a row per partition: {preview}");
    assert_eq!(env.applied_through("account_balances").await, 10);
    let starts = {
        let marker = r#"name="starts" value=""#;
        let at = preview.find(marker).unwrap() + marker.len();
        preview[at..].split('"').next().unwrap().to_string()
    };
    let csrf = csrf_in(&preview);
    let replay = "/console/projections/account_balances/replay";
    let form = |confirm: &'static str, starts: String| {
        vec![
            ("csrf", csrf.clone()),
            ("from", "earliest".to_string()),
            ("starts", starts),
            ("confirm", confirm.to_string()),
        ]
    };
    let as_pairs = |form: &Vec<(&'static str, String)>| form.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    let unconfirmed = post_form_owned(&console, replay, &operator, &as_pairs(&form("account", starts.clone()))).await;
    assert_eq!(unconfirmed.0, 400);
    assert!(unconfirmed.1.contains("type the projection's name, account_balances, to confirm; nothing was replayed"));
    let moved =
        post_form_owned(&console, replay, &operator, &as_pairs(&form("account_balances", "x:0:0".into()))).await;
    assert_eq!(moved.0, 409);
    assert!(moved.1.contains("where the replay starts changed since the preview"), "{}", moved.1);

    // Confirmed: reset, then the running worker re-applies exactly what was counted.
    let done = post_form_owned(&console, replay, &operator, &as_pairs(&form("account_balances", starts))).await;
    assert_eq!(done.0, 200, "{}", done.1);
    assert!(done.1.contains("account_balances was reset (10 rows, 0 dead letters, 0 parked keys removed); its workers re-apply about 10 events from <code>earliest</code>."), "{}", done.1);
    wait_until("the replay to be re-applied", || async {
        env.psql("SELECT count(*) FROM account_balances") == "10" && env.applied_through("account_balances").await == 10
    })
    .await;
    let audited =
        env.psql("SELECT string_agg(action, ',' ORDER BY id) FROM eventline_audit WHERE action LIKE '%replay'");
    assert_eq!(audited, "console.replay,console.replay,replay,console.replay");
    drop(worker);
}

/// POSTs a form with owned values: the status and the page.
async fn post_form_owned(console: &HttpProcess, path: &str, cookie: &str, form: &[(&str, String)]) -> (u16, String) {
    let answer = browser_like()
        .post(format!("{}{path}", console.base))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .expect("the console answers");
    (answer.status().as_u16(), answer.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_started_from_the_page_is_built_in_the_background_and_each_bad_start_is_refused() {
    let env = TestEnv::new().await;
    let accounts: Vec<Value> = (0..10).map(|i| opened(&format!("o{i}"), &format!("acct-{i}"))).collect();
    let worker = env.spawn("worker", &["worker", "account_balances"], &[]);
    env.publish("accounts.ndjson", &accounts);
    wait_until("the openings to be applied", || async { env.applied_through("account_balances").await == 10 }).await;
    let console = env.spawn_http("console", &["console"], &[("EVENTLINE_CONSOLE_REFRESH_MS", "500")]).await;
    let viewer = session(&console, &env.create_key_with_scopes("viewer", &[], &["status"]).1).await;
    let operator = session(&console, &env.create_key_with_scopes("operator", &[], &["status", "operate"]).1).await;
    let page_path = "/console/projections/account_balances";
    let page_of = |cookie: String| {
        let console = &console;
        async move { get(console, page_path, Some(&cookie)).await.text().await.unwrap() }
    };

    // The form is there for both; only the operator's button works.
    let viewer_page = page_of(viewer.clone()).await;
    assert!(
        viewer_page
            .contains(r#"<button type="submit" disabled title="needs the operate scope">Start the rebuild</button>"#),
        "{viewer_page}"
    );
    let page = page_of(operator.clone()).await;
    assert!(page.contains(r#"<button type="submit">Start the rebuild</button>"#), "{page}");
    let (csrf, viewer_csrf) = (csrf_in(&page), csrf_in(&viewer_page));

    let start = "/console/projections/account_balances/rebuild";
    for (cookie, form, status, expected) in [
        (&viewer, vec![("csrf", viewer_csrf.as_str()), ("from", "earliest")], 403, "starting a rebuild needs the scope operate"),
        (&operator, vec![("from", "earliest")], 403, "the form's CSRF token is missing or stale"),
        (&operator, vec![("csrf", csrf.as_str()), ("from", "time"), ("time", "soon")], 400, "`soon` is not a time (RFC 3339, like 2026-12-04T09:30:00Z); nothing was done"),
        (&operator, vec![("csrf", csrf.as_str()), ("from", "time"), ("time", "2026-12-01T00:00:00Z")], 400, "account_balances folds each entity's whole history, so it cannot start mid-stream: replay or rebuild it from earliest; nothing was done"),
        // Nothing above started one: there is none to resume.
        (&operator, vec![("csrf", csrf.as_str()), ("resume", "1")], 400, "no rebuild of account_balances is in progress; start one with `eventline rebuild start account_balances`; nothing was done"),
    ] {
        let answer = post_form(&console, start, cookie, &form).await;
        assert_eq!(answer.status(), status, "{form:?}");
        let text = answer.text().await.unwrap();
        assert!(text.contains(expected), "{form:?}: expected {expected} in {text}");
    }

    // Started: the answer comes at once, and this process builds the generation until it has
    // caught up, then pauses it.
    let started = post_form(&console, start, &operator, &[("csrf", &csrf), ("from", "earliest")]).await;
    assert_eq!(started.status(), 200);
    let started = started.text().await.unwrap();
    assert!(started.contains("Rebuild of account_balances started: generation 2, from earliest."), "{started}");
    wait_until("the page to say the generation started here has caught up", || async {
        page_of(operator.clone()).await.contains(r#"data-started="caught-up""#)
    })
    .await;
    let page = page_of(operator.clone()).await;
    assert!(
        page.contains("Generation 2, started here, has caught up and is paused: compare it, then cut over."),
        "{page}"
    );
    assert!(!page.contains("Start the rebuild"), "no second rebuild while one is being built: {page}");
    // Paused, not gone: the page offers to resume it.
    assert!(page.contains("Resume building"), "{page}");

    let cutover = post_form(
        &console,
        "/console/projections/account_balances/cutover",
        &operator,
        &[("csrf", &csrf), ("confirm", "account_balances")],
    )
    .await;
    assert_eq!(cutover.status(), 200);
    assert!(cutover.text().await.unwrap().contains("Readers now read generation 2"));
    let page = page_of(operator.clone()).await;
    assert!(!page.contains("data-started"), "nothing said of a generation now live: {page}");
    assert!(page.contains("Start the rebuild"), "{page}");
    let rows = env.psql("SELECT count(*) FROM account_balances");
    assert_eq!(rows, "10", "the new generation holds every account");
    let audited = env.psql(
        "SELECT string_agg((outcome ? 'done')::text, ',' ORDER BY id) FROM eventline_audit WHERE action = 'console.rebuild.start'",
    );
    assert_eq!(audited, "false,false,false,false,false,true", "every attempt audited, refused ones included");
    drop(worker);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_browser_a_rebuild_is_started_cut_over_and_rolled_back_while_queries_keep_answering() {
    let env = TestEnv::new().await;
    let up = env.spawn_http("up", &["up"], &[("EVENTLINE_CONSOLE_REFRESH_MS", "500")]).await;
    let accounts: Vec<Value> = (0..10).map(|i| opened(&format!("o{i}"), &format!("acct-{i}"))).collect();
    env.publish("accounts.ndjson", &accounts);
    wait_until("the openings to be applied", || async { env.applied_through("account_balances").await == 10 }).await;

    // Readers keep asking all along; every answer must be whole.
    let stop = tokio_util::sync::CancellationToken::new();
    let readers = tokio::spawn({
        let (client, url, stop) = (up.client.clone(), format!("{}/v1/accounts?limit=100", up.base), stop.clone());
        async move {
            let (mut answered, mut wrong) = (0, Vec::new());
            while !stop.is_cancelled() {
                let Ok(answer) = client.get(&url).send().await else {
                    wrong.push("no answer".to_string());
                    continue;
                };
                let status = answer.status().as_u16();
                let body: Value = answer.json().await.unwrap_or_default();
                match (status, body["items"].as_array().map(Vec::len)) {
                    (200, Some(10)) => answered += 1,
                    other => wrong.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (answered, wrong)
        }
    });
    let operator = env.create_key_with_scopes("operator", &[], &["status", "operate"]).1;
    let url = format!("{}/console", up.base);
    let found =
        browser_script(&env, "rebuild.py", &[("CONSOLE_URL", url.as_str()), ("OPERATOR_TOKEN", &operator)], "done")
            .await;
    stop.cancel();
    let (answered, wrong) = readers.await.unwrap();
    assert!(
        found["started"]
            .as_str()
            .unwrap()
            .starts_with("Rebuild of account_balances started: generation 2, from earliest."),
        "{found}"
    );
    assert_eq!(found["same_data"], json!(["true"]), "{found}");
    assert_eq!(found["cutover"], "Readers now read generation 2; the one before is kept for a rollback.");
    assert_eq!(found["rollback"], "Readers read generation 1 again; generation 2 is retired.");
    assert!(wrong.is_empty() && answered > 10, "{answered} whole answers, and these not: {wrong:?}");
    let audited = env.psql(
        "SELECT string_agg(action, ',' ORDER BY id) FROM eventline_audit WHERE action LIKE '%cutover' OR action LIKE '%rollback'",
    );
    assert_eq!(audited, "rebuild.cutover,console.rebuild.cutover,rebuild.rollback,console.rebuild.rollback");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_browser_no_page_has_a_critical_accessibility_violation_in_either_colour_scheme() {
    let env = TestEnv::new().await;
    let (_worker, _strict) = poisoned(&env).await;
    let letter = dead_letters_of(&env).await[0].0;
    let console = env.spawn_http("console", &["console"], &[]).await;
    let operator = env.create_key_with_scopes("operator", &[], &["status", "operate"]).1;
    let pages = json!({
        "overview": "",
        "projection": "/projections/account_balances",
        "dead-letters": "/dead-letters?projection=account_balances",
        "dead-letter": format!("/dead-letters/{letter}"),
        "replay": "/projections/account_balances/replay?from=earliest",
    });
    let url = format!("{}/console", console.base);
    let vars = [("CONSOLE_URL", url.as_str()), ("OPERATOR_TOKEN", &operator), ("PAGES", &pages.to_string())];
    let found = browser_script(&env, "accessibility.py", &vars, "done").await;
    let checked = found.as_object().unwrap();
    assert_eq!(checked.len(), 12, "six pages, two schemes each: {found}");
    for (page, violations) in checked {
        assert_eq!(violations.get("critical"), None, "{page}: {violations}");
        assert_eq!(violations.get("serious"), None, "{page}: {violations}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_page_filters_and_says_whether_the_chain_verifies_and_the_registry_lists_every_type() {
    let env = TestEnv::new().await;
    let console = env.spawn_http("console", &["console"], &[]).await;
    // Each key made is in the audit (keys.create), the sign-in keys included.
    let viewer = session(&console, &env.create_key_with_scopes("viewer", &[], &["status"]).1).await;
    env.create_key_with_scopes("ops-one", &[], &["read:*"]);
    let audit = get(&console, "/console/audit", Some(&viewer)).await.text().await.unwrap();
    assert!(audit.contains(r#"<p data-chain="intact">The hash chain verifies: 2 entries"#), "{audit}");
    assert_eq!(audit.matches("<tr data-entry=").count(), 2, "{audit}");
    let filtered = get(&console, "/console/audit?action=keys.revoke", Some(&viewer)).await.text().await.unwrap();
    assert!(filtered.contains("<caption>The latest 0 entries, newest first</caption>"), "{filtered}");
    let unknown = get(&console, "/console/audit?projection=nope", Some(&viewer)).await;
    assert_eq!(unknown.status(), 400);
    assert!(unknown.text().await.unwrap().contains("Not shown: there is no projection `nope` (known: "));
    // An entry edited behind eventline's back shows as a broken chain.
    let first = env.psql("SELECT min(id) FROM eventline_audit");
    crate::audit::tamper(&env, &format!("UPDATE eventline_audit SET reason = 'edited' WHERE id = {first}"));
    let broken = get(&console, "/console/audit", Some(&viewer)).await.text().await.unwrap();
    assert!(
        broken.contains(&format!(
            r#"<p class="error" role="alert" data-chain="broken">The hash chain is broken at entry {first}: its contents changed after it was written.</p>"#
        )),
        "{broken}"
    );

    let registry = get(&console, "/console/registry", Some(&viewer)).await.text().await.unwrap();
    for event_type in
        ["accounts.AccountOpened", "accounts.FundsDeposited", "activity.PageViewed", "projects.TaskCreated"]
    {
        assert!(
            registry.contains(&format!(r#"<h2 id="type-{event_type}"><code>{event_type}</code></h2>"#)),
            "{event_type}: {registry}"
        );
    }
    assert!(registry.contains(r#"<a href="/console/projections/account_balances">account_balances</a>"#), "{registry}");
    assert!(registry.contains("&quot;examples&quot;"), "schemas with their examples: {registry}");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_browser_a_replay_is_previewed_then_re_applies_the_events_it_counted() {
    let env = TestEnv::new().await;
    let up = env.spawn_http("up", &["up"], &[]).await;
    let accounts: Vec<Value> = (0..8).map(|i| opened(&format!("o{i}"), &format!("acct-{i}"))).collect();
    env.publish("accounts.ndjson", &accounts);
    wait_until("the openings to be applied", || async { env.applied_through("account_balances").await == 8 }).await;
    let before = env
        .psql("SELECT string_agg(account_id || ':' || events_applied, ',' ORDER BY account_id) FROM account_balances");
    let operator = env.create_key_with_scopes("operator", &[], &["status", "operate"]).1;
    let url = format!("{}/console", up.base);
    let found =
        browser_script(&env, "replay.py", &[("CONSOLE_URL", url.as_str()), ("OPERATOR_TOKEN", &operator)], "done")
            .await;
    assert_eq!(
        found["refused"],
        "account_balances folds each entity's whole history, so it cannot start mid-stream: replay or rebuild it from earliest; nothing was done"
    );
    assert_eq!(
        found["preview"],
        "Replaying from earliest re-applies 8 events as the topics stand now (more if more arrive)."
    );
    assert!(found["preview_url"].as_str().unwrap().ends_with("/replay?from=earliest&time=&offsets=0%3A3"), "{found}");
    assert_eq!(
        found["outcome"],
        "account_balances was reset (8 rows, 0 dead letters, 0 parked keys removed); its workers re-apply about 8 events from earliest."
    );
    // Its page names the group's one live member and the six partitions it holds.
    let cookie = session(&up, &operator).await;
    let page = get(&up, "/console/projections/account_balances", Some(&cookie)).await.text().await.unwrap();
    let topic = env.topic("accounts.events");
    assert_eq!(page.matches("<dt>Members</dt><dd><div><code>").count(), 1, "{page}");
    assert_eq!(page.matches(&format!("{topic}/")).count(), 6, "{page}");
    // The running worker re-applies exactly those: the same rows as before.
    wait_until("the replay to refill the projection", || async {
        env.psql(
            "SELECT string_agg(account_id || ':' || events_applied, ',' ORDER BY account_id) FROM account_balances",
        ) == before
    })
    .await;
}
