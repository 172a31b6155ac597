//! Who may read the query API: API keys with read scopes, and JWTs from a configured issuer,
//! with RFC 6750 answers (401 `invalid_token`, 403 `insufficient_scope` naming the scope).

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::{stderr, stdout, wait_until, HttpProcess, TestEnv};
use crate::issuer::{KeySetServer, SigningKey};

/// The answer's status, its `WWW-Authenticate` challenge and its problem document.
async fn refusal(http: &HttpProcess, path: &str, token: Option<&str>) -> (u16, String, Value) {
    let response = http.get_as(path, token).await;
    let status = response.status().as_u16();
    let challenge =
        response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, challenge, response.json().await.unwrap_or(Value::Null))
}

const INSUFFICIENT: &str = "https://eventline.dev/problems/insufficient-scope";

#[tokio::test(flavor = "multi_thread")]
async fn the_query_api_answers_api_keys_by_their_read_scopes() {
    let env = TestEnv::new().await;
    let api = env.spawn_http("api", &["api"], &[]).await;
    let (_, accounts) = env.create_key_with_scopes("accounts-reader", &[], &["read:account_balances"]);
    let (_, status) = env.create_key_with_scopes("monitoring", &[], &["status"]);
    let (_, publisher) = env.create_key("publisher", &["accounts.*"]);

    // No credentials: 401 with a bare challenge (RFC 6750 §3.1).
    let (code, challenge, body) = refusal(&api, "/v1/accounts/a-1", None).await;
    assert_eq!((code, challenge.as_str()), (401, "Bearer realm=\"eventline\""), "{body}");
    assert_eq!(body["detail"], "send an API key as `Authorization: Bearer <key>`");
    // Wrong credentials: invalid_token.
    let (code, challenge, body) = refusal(&api, "/v1/accounts/a-1", Some("elk_000000000000_guess")).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(
        challenge,
        "Bearer realm=\"eventline\", error=\"invalid_token\", error_description=\"the API key is not valid\""
    );
    let (code, _, body) = refusal(&api, "/v1/accounts/a-1", Some("not-a-key")).await;
    assert_eq!((code, body["detail"].as_str()), (401, Some("the API key is not valid")));

    // Its own projection, through its endpoints and its tables: allowed (the row is not there).
    for path in ["/v1/accounts/a-1", "/v1/tables/account_balances/a-1"] {
        let (code, _, body) = refusal(&api, path, Some(&accounts)).await;
        assert_eq!(code, 404, "{path}: {body}");
    }
    assert_eq!(api.get_as("/v1/accounts", Some(&accounts)).await.status(), 200);
    // Another projection, or status: 403 naming the scope it lacks.
    for (path, scope) in [
        ("/v1/projects", "read:project_progress"),
        ("/v1/tables/tasks", "read:project_progress"),
        ("/v1/activity/daily?from=2026-01-01&to=2026-01-02", "read:daily_activity"),
        ("/v1/projections", "status"),
    ] {
        let (code, challenge, body) = refusal(&api, path, Some(&accounts)).await;
        assert_eq!(code, 403, "{path}: {body}");
        assert_eq!(body["type"], INSUFFICIENT, "{path}");
        assert_eq!(body["scope"], scope, "{path}");
        assert!(
            challenge.starts_with(&format!(
                "Bearer realm=\"eventline\", error=\"insufficient_scope\", scope=\"{scope}\", error_description=\""
            )),
            "{path}: {challenge}"
        );
    }
    let (_, _, body) = refusal(&api, "/v1/projects", Some(&accounts)).await;
    assert_eq!(body["detail"], "reading project_progress needs the scope read:project_progress (or read:*)");
    assert_eq!(api.get_as("/v1/projections", Some(&status)).await.status(), 200);
    assert_eq!(refusal(&api, "/v1/accounts", Some(&status)).await.0, 403);
    // A key that may publish reads nothing it was not given.
    assert_eq!(refusal(&api, "/v1/accounts", Some(&publisher)).await.0, 403);
    // What every process serves needs no credentials.
    for path in ["/healthz", "/openapi.json", "/metrics"] {
        assert_eq!(api.get_as(path, None).await.status(), 200, "{path}");
    }

    // /openapi.json says so, operation by operation.
    let openapi: Value = api.get_as("/openapi.json", None).await.json().await.unwrap();
    let scheme = &openapi["components"]["securitySchemes"]["apiKey"];
    assert_eq!((scheme["type"].as_str(), scheme["scheme"].as_str()), (Some("http"), Some("bearer")), "{scheme}");
    assert_eq!(scheme["bearerFormat"], "elk_<key id>_<secret>");
    assert!(openapi["components"]["securitySchemes"].get("jwt").is_none(), "no issuer is configured");
    let paths = openapi["paths"].as_object().unwrap();
    for (path, item) in paths.iter().filter(|(path, _)| path.starts_with("/v1/")) {
        let operation = if path == "/v1/events" { &item["post"] } else { &item["get"] };
        assert_eq!(operation["security"], json!([{"apiKey": []}]), "{path}");
        for status in ["401", "403"] {
            assert!(operation["responses"][status].is_object(), "{path} documents {status}");
        }
    }

    // Revoked: refused within the keys' cache time.
    let key_id = accounts.split('_').nth(1).unwrap();
    assert!(env.run(&["keys", "revoke", key_id]).status.success());
    wait_until("the revocation to bite", || async {
        refusal(&api, "/v1/accounts", Some(&accounts)).await.2["detail"] == "the API key has been revoked"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_made_with_scopes_the_application_has() {
    let env = TestEnv::new().await;
    let unknown = env.run(&["keys", "create", "--name", "x", "--scope", "read:nothing"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(
        stderr(&unknown).lines().find(|l| l.starts_with("error:")).unwrap(),
        "error: `read:nothing` names no projection of this application (`nothing`); known: account_balances, \
         project_progress, daily_activity, feature_usage_daily"
    );
    let not_a_scope = env.run(&["keys", "create", "--name", "x", "--scope", "write:account_balances"]);
    assert_eq!(not_a_scope.status.code(), Some(2));
    assert!(
        stderr(&not_a_scope).contains(
            "`write:account_balances` is not a scope (use read:<projection>, read:*, status, personal, or operate)"
        ),
        "{}",
        stderr(&not_a_scope)
    );
    let nothing = env.run(&["keys", "create", "--name", "x"]);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(stderr(&nothing).contains("--types <PATTERN>"), "{}", stderr(&nothing));

    let made = env.run(&["keys", "create", "--name", "dashboards", "--scope", "read:*", "--scope", "status"]);
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(stderr(&made).contains("(dashboards), which may hold read:*, status;"), "{}", stderr(&made));
    let listed = stdout(&env.run(&["keys", "list"]));
    let line = listed.lines().find(|l| l.contains("dashboards")).unwrap();
    assert!(line.contains("read:*,status"), "{listed}");
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

const ISSUER: &str = "https://id.eventline.test/";

fn claims(scope: &str) -> Value {
    json!({"iss": ISSUER, "aud": "eventline-api", "sub": "analyst-7", "exp": now() + 300, "scope": scope})
}

#[tokio::test(flavor = "multi_thread")]
async fn jwts_of_the_configured_issuer_read_and_publish_by_their_scopes() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (k1, stranger, k2) =
        (SigningKey::new(dir.path(), "k1"), SigningKey::new(dir.path(), "x"), SigningKey::new(dir.path(), "k2"));
    let keys = KeySetServer::start(vec![k1.jwk.clone()]).await;
    let jwt_env = [
        ("EVENTLINE_JWT_ISSUER", ISSUER),
        ("EVENTLINE_JWT_AUDIENCE", "eventline-api"),
        ("EVENTLINE_JWT_JWKS_URL", keys.url.as_str()),
    ];
    let up = env.spawn_http("up", &["up"], &jwt_env).await;

    // Both schemes, on the gateway's operation and the query API's alike.
    let openapi: Value = up.get_as("/openapi.json", None).await.json().await.unwrap();
    assert_eq!(openapi["components"]["securitySchemes"]["jwt"]["bearerFormat"], "JWT");
    for (path, method) in [("/v1/events", "post"), ("/v1/accounts", "get"), ("/v1/tables/tasks", "get")] {
        assert_eq!(openapi["paths"][path][method]["security"], json!([{"apiKey": []}, {"jwt": []}]), "{path}");
    }

    let reader = k1.sign("k1", &claims("read:account_balances openid"));
    assert_eq!(refusal(&up, "/v1/accounts/a-1", Some(&reader)).await.0, 404, "allowed; no such row");
    let (code, challenge, body) = refusal(&up, "/v1/projections", Some(&reader)).await;
    assert_eq!((code, body["scope"].as_str()), (403, Some("status")), "{body}");
    assert!(challenge.contains("error=\"insufficient_scope\", scope=\"status\""), "{challenge}");
    // `scp` as a list, as some providers send it.
    let mut listed = claims("");
    listed["scp"] = json!(["status"]);
    assert_eq!(up.get_as("/v1/projections", Some(&k1.sign("k1", &listed))).await.status(), 200);

    // Each way a token can be wrong, said in the problem and in the challenge.
    let mut expired = claims("read:*");
    expired["exp"] = json!(now() - 3600);
    let mut elsewhere = claims("read:*");
    elsewhere["aud"] = json!("another-api");
    let mut forged_issuer = claims("read:*");
    forged_issuer["iss"] = json!("https://evil.example/");
    let mut anonymous = claims("read:*");
    anonymous.as_object_mut().unwrap().remove("sub");
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("read:*"),
        &EncodingKey::from_secret(b"a secret anyone could guess"),
    )
    .unwrap();
    let cases = [
        (k1.sign("k1", &expired), "it has expired"),
        (k1.sign("k1", &elsewhere), "it is not meant for eventline-api"),
        (k1.sign("k1", &forged_issuer), "it was not issued by https://id.eventline.test/"),
        (k1.sign("k1", &anonymous), "it has no `sub` claim"),
        (stranger.sign("k1", &claims("read:*")), "its signature does not verify"),
        (hs256, "its algorithm HS256 is not accepted (only asymmetric signatures are)"),
        ("a.b.c".to_string(), "it is not a JWT"),
    ];
    for (token, reason) in cases {
        let (code, challenge, body) = refusal(&up, "/v1/accounts", Some(&token)).await;
        let detail = format!("the JWT is not valid: {reason}");
        assert_eq!((code, body["detail"].as_str()), (401, Some(detail.as_str())), "{reason}");
        assert_eq!(
            challenge,
            format!("Bearer realm=\"eventline\", error=\"invalid_token\", error_description=\"{detail}\"")
        );
    }

    // Publishing needs a `publish:` scope; a reader publishes nothing.
    let event = json!({
        "specversion": "1.0", "id": "jwt-1", "source": "/tests", "type": "accounts.AccountOpened", "subject": "a-jwt",
        "data": {"account_id": "a-jwt", "owner": "Ada", "currency": "EUR"}
    });
    let post = |token: String| {
        let event = event.to_string();
        let up = &up;
        async move {
            up.post(
                &[("content-type", "application/cloudevents+json"), ("authorization", &format!("Bearer {token}"))],
                event,
            )
            .await
        }
    };
    let refused = post(reader.clone()).await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["detail"], "these credentials may publish no event type; nothing was published");
    assert_eq!(post(k1.sign("k1", &claims("publish:accounts.*"))).await.status(), 202);

    // A key the set does not hold yet: refused, with the set refetched at most every few seconds
    // however many tokens name it; once the issuer publishes it, accepted.
    let rotated = k2.sign("k2", &claims("read:*"));
    let (code, _, body) = refusal(&up, "/v1/accounts", Some(&rotated)).await;
    assert_eq!(
        (code, body["detail"].as_str()),
        (401, Some("the JWT is not valid: it is signed by key `k2`, which the issuer's key set does not hold"))
    );
    keys.keys.lock().unwrap().push(k2.jwk.clone());
    let before = keys.fetches.load(Ordering::SeqCst);
    let started = std::time::Instant::now();
    wait_until("the rotated key to be fetched", || async {
        up.get_as("/v1/accounts", Some(&rotated)).await.status() == 200
    })
    .await;
    let fetched = keys.fetches.load(Ordering::SeqCst) - before;
    let bound = 1 + started.elapsed().as_secs() as usize / 10;
    assert!((1..=bound).contains(&fetched), "{fetched} fetches in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_whose_keys_cannot_be_fetched_gets_a_503_not_a_wrong_answer() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::new(dir.path(), "k1");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{closed}/jwks.json");
    let api = env
        .spawn_http(
            "api",
            &["api"],
            &[
                ("EVENTLINE_JWT_ISSUER", ISSUER),
                ("EVENTLINE_JWT_AUDIENCE", "eventline-api"),
                ("EVENTLINE_JWT_JWKS_URL", &url),
            ],
        )
        .await;
    let response = api.get_as("/v1/accounts", Some(&key.sign("k1", &claims("read:*")))).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().starts_with("the issuer's keys c"), "{body}");
    // API keys go on working meanwhile.
    assert_eq!(api.get("/v1/accounts").await.status(), 200);
    assert!(api.process.log().contains("Cannot fetch the JWT issuer's keys yet"), "{}", api.process.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn personal_data_is_shown_only_with_its_scope_and_every_such_read_is_audited() {
    let env = TestEnv::new().await;
    let canary = "Ada Canary-7c1e";
    let opened = |id: &str, owner: &str| {
        json!({"specversion": "1.0", "id": format!("open-{id}"), "source": "/bank", "type": "accounts.AccountOpened",
               "subject": id, "data": {"account_id": id, "owner": owner, "currency": "EUR"}})
    };
    env.publish("accounts.ndjson", &[opened("acc-1", canary), opened("acc-2", "Grace Hopper")]);
    let _worker = env.spawn("worker", &["worker", "account_balances"], &[]);
    wait_until("both accounts to be applied", || async { env.balances().await.len() == 2 }).await;
    let api = env.spawn_http("api", &["api"], &[]).await;
    let (_, reader) = env.create_key_with_scopes("reader", &[], &["read:account_balances"]);
    let (personal_id, personal) = env.create_key_with_scopes("support", &[], &["read:account_balances", "personal"]);
    let personal_reads = || env.psql("SELECT count(*) FROM eventline_audit WHERE action = 'personal.read'");
    let body = |response: reqwest::Response| async move { response.json::<Value>().await.unwrap() };

    // Without the scope: the personal column is null, everything else exact, nothing audited.
    let one = body(api.get_as("/v1/accounts/acc-1", Some(&reader)).await).await;
    assert_eq!((one["owner"].clone(), one["currency"].clone()), (Value::Null, json!("EUR")), "{one}");
    let row = body(api.get_as("/v1/tables/account_balances/acc-1", Some(&reader)).await).await;
    assert_eq!((row["owner"].clone(), row["balance_minor"].clone()), (Value::Null, json!(0)), "{row}");
    let page = body(api.get_as("/v1/accounts", Some(&reader)).await).await;
    assert!(page["items"].as_array().unwrap().iter().all(|a| a["owner"].is_null()), "{page}");
    assert!(!page.to_string().contains(canary));
    // Nor can a filter on it tell whose an account is.
    for path in ["/v1/accounts?owner=Ada", "/v1/tables/account_balances?owner=Ada"] {
        let (code, challenge, problem) = refusal(&api, path, Some(&reader)).await;
        assert_eq!((code, problem["scope"].as_str()), (403, Some("personal")), "{path}: {problem}");
        assert!(challenge.contains("scope=\"personal\""), "{challenge}");
    }
    assert_eq!(personal_reads(), "0");

    // With it: in clear, and each answer that showed some is one audit entry naming the rows.
    let one = body(api.get_as("/v1/accounts/acc-1", Some(&personal)).await).await;
    assert_eq!(one["owner"], canary);
    let page = body(api.get_as("/v1/tables/account_balances?limit=10", Some(&personal)).await).await;
    let owners: Vec<&str> = page["items"].as_array().unwrap().iter().map(|r| r["owner"].as_str().unwrap()).collect();
    assert_eq!(owners, [canary, "Grace Hopper"]);
    let found = body(api.get_as(&format!("/v1/accounts?owner={}", "Grace%20Hopper"), Some(&personal)).await).await;
    assert_eq!(found["items"][0]["account_id"], "acc-2", "{found}");
    // An answer without rows shows nothing, so it is not an audited read.
    assert_eq!(api.get_as("/v1/accounts/acc-9", Some(&personal)).await.status(), 404);
    let entries = env.psql(
        "SELECT actor || '|' || projection || '|' || target::text || '|' || outcome::text FROM eventline_audit \
         WHERE action = 'personal.read' ORDER BY id",
    );
    let actor = format!("key:{personal_id}");
    assert_eq!(
        entries.lines().collect::<Vec<_>>(),
        [
            format!(
                r#"{actor}|account_balances|{{"keys": ["acc-1"], "table": "account_balances", "columns": ["owner"]}}|{{"rows": 1}}"#
            ),
            format!(
                r#"{actor}|account_balances|{{"keys": ["acc-1", "acc-2"], "table": "account_balances", "columns": ["owner"]}}|{{"rows": 2}}"#
            ),
            format!(
                r#"{actor}|account_balances|{{"keys": ["acc-2"], "table": "account_balances", "columns": ["owner"]}}|{{"rows": 1}}"#
            ),
        ]
    );
    assert!(env.run(&["audit", "verify"]).status.success());

    // /openapi.json says the column may be null, and why.
    let openapi = body(api.get_as("/openapi.json", None).await).await;
    let schemas = &openapi["components"]["schemas"];
    assert_eq!(schemas["Account"]["properties"]["owner"]["type"], json!(["string", "null"]));
    let row = &openapi["paths"]["/v1/tables/account_balances/{account_id}"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"]["properties"]["owner"];
    assert_eq!(row["type"], json!(["string", "null"]), "{row}");
    assert!(row["description"].as_str().unwrap().contains("null unless the caller holds the scope `personal`"));
}
