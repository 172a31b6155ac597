//! The HTTP gateway against the real broker and database: a corpus of bad requests (each with its
//! status, problem type and no effect on the topics), authentication, rate limits, every mode of
//! the CloudEvents HTTP binding, and a round trip into the accounts projection.

use serde_json::{json, Value};

use crate::helpers::{stderr, wait_until, HttpProcess, TestEnv};

const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";

fn opened(id: &str, account: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/t", "type": "accounts.AccountOpened", "subject": account,
           "data": {"account_id": account, "owner": "o", "currency": "EUR"}})
}

fn deposit(id: &str, account: &str, amount: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/t", "type": "accounts.FundsDeposited", "subject": account,
           "dataversion": 2, "data": {"account_id": account, "amount_minor": amount, "currency": "EUR", "channel": "card"}})
}

fn with(mut event: Value, pointer: &str, value: Option<Value>) -> Value {
    let (parent, name) = pointer.rsplit_once('/').unwrap();
    let object = event.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    match value {
        Some(value) => object.insert(name.to_string(), value),
        None => object.remove(name),
    };
    event
}

/// Sum of every catalog topic's end offsets.
async fn published(env: &TestEnv) -> i64 {
    let mut total = 0;
    for topic in ["accounts.events", "projects.events", "activity.events"] {
        total += env.end_offsets(topic).await.iter().sum::<i64>();
    }
    total
}

struct Case {
    name: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    problem: &'static str,
    /// Expected (index, pointer) of the first listed error, when the problem lists them.
    first_error: Option<(u64, &'static str)>,
}

fn case(name: &'static str, content_type: &str, body: impl Into<Vec<u8>>, status: u16, problem: &'static str) -> Case {
    Case {
        name,
        headers: vec![("content-type", content_type.to_string())],
        body: body.into(),
        status,
        problem,
        first_error: None,
    }
}

fn invalid(name: &'static str, event: Value, pointer: &'static str) -> Case {
    Case { first_error: Some((0, pointer)), ..case(name, STRUCTURED, event.to_string(), 422, "invalid-event") }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_request_gets_its_status_and_problem_and_publishes_nothing() {
    let env = TestEnv::new().await;
    let (_, token) = env.create_key("corpus", &["accounts.*"]);
    let gateway = env.spawn_http("gateway", &["gateway"], &[("EVENTLINE_GATEWAY_MAX_BATCH_EVENTS", "20")]).await;
    let good = opened("ok", "a1");
    let binary = |headers: &[(&'static str, &str)], body: &str| Case {
        headers: [("content-type", "application/json".to_string())]
            .into_iter()
            .chain(headers.iter().map(|(k, v)| (*k, v.to_string())))
            .collect(),
        ..case("binary", "application/json", body.to_string(), 422, "invalid-event")
    };
    let binary_base = [
        ("ce-specversion", "1.0"),
        ("ce-id", "b1"),
        ("ce-source", "/t"),
        ("ce-type", "accounts.AccountClosed"),
        ("ce-subject", "a1"),
    ];
    let mut cases = vec![
        case("text/plain", "text/plain", good.to_string(), 415, "unsupported-media-type"),
        case("xml", "application/xml", "<event/>", 415, "unsupported-media-type"),
        case("cloudevents xml", "application/cloudevents+xml", good.to_string(), 415, "unsupported-media-type"),
        case("form", "application/x-www-form-urlencoded", "a=b", 415, "unsupported-media-type"),
        Case { headers: vec![], ..case("no content type", "", good.to_string(), 415, "unsupported-media-type") },
        case("not JSON", STRUCTURED, "{\"id\": ", 400, "malformed-request"),
        case("array in structured mode", STRUCTURED, "[]", 400, "malformed-request"),
        case("string body", STRUCTURED, "\"event\"", 400, "malformed-request"),
        case("empty body", STRUCTURED, "", 400, "malformed-request"),
        case("batch not JSON", BATCH, "[{", 400, "malformed-request"),
        case("batch not an array", BATCH, good.to_string(), 400, "malformed-request"),
        case("batch in another format", "application/cloudevents-batch+xml", "[]", 415, "unsupported-media-type"),
        case("binary data that is not JSON", "text/plain", "hello", 415, "unsupported-media-type"),
        Case { headers: binary_base.iter().map(|(k, v)| (*k, v.to_string())).chain([("content-type", "application/json".to_string())]).collect(),
               ..case("binary body not JSON", "application/json", "{oops", 400, "malformed-request") },
        case("batch over the count limit", BATCH, Value::Array((0..21).map(|i| opened(&format!("o{i}"), "a1")).collect()).to_string(), 413, "payload-too-large"),
        case("body over the byte limit", STRUCTURED, vec![b' '; 4 * 1024 * 1024 + 1], 413, "payload-too-large"),
        case("event over the event limit", STRUCTURED, with(good.clone(), "/data/owner", Some(json!("x".repeat(600_000)))).to_string(), 413, "payload-too-large"),
        invalid("missing id", with(good.clone(), "/id", None), "/id"),
        invalid("empty id", with(good.clone(), "/id", Some(json!(""))), "/id"),
        invalid("missing source", with(good.clone(), "/source", None), "/source"),
        invalid("missing type", with(good.clone(), "/type", None), "/type"),
        invalid("specversion 0.3", with(good.clone(), "/specversion", Some(json!("0.3"))), "/specversion"),
        invalid("unknown type", with(good.clone(), "/type", Some(json!("accounts.Frozen"))), "/type"),
        invalid("unknown dataversion", with(good.clone(), "/dataversion", Some(json!(5))), "/dataversion"),
        invalid("missing data", with(good.clone(), "/data", None), "/data"),
        invalid("data not an object", with(good.clone(), "/data", Some(json!(7))), "/data"),
        invalid("missing owner", with(good.clone(), "/data/owner", None), "/data/owner"),
        invalid("extra field", with(good.clone(), "/data/nickname", Some(json!("x"))), "/data/nickname"),
        invalid("bad currency", with(good.clone(), "/data/currency", Some(json!("euro"))), "/data/currency"),
        invalid("missing subject", with(good.clone(), "/subject", None), "/subject"),
        invalid("subject mismatch", with(good.clone(), "/subject", Some(json!("a2"))), "/subject"),
        invalid("invalid time", with(good.clone(), "/time", Some(json!("yesterday"))), "/time"),
        invalid("bad extension name", with(good.clone(), "/Region", Some(json!("eu"))), "/Region"),
        invalid("negative amount", deposit("d", "a1", json!(-5)), "/data/amount_minor"),
        invalid("fractional amount", deposit("d", "a1", json!(2.5)), "/data/amount_minor"),
        invalid("amount as text", deposit("d", "a1", json!("5")), "/data/amount_minor"),
        invalid("unknown channel", with(deposit("d", "a1", json!(5)), "/data/channel", Some(json!("pigeon"))), "/data/channel"),
        invalid("v2 deposit without channel", with(deposit("d", "a1", json!(5)), "/data/channel", None), "/data/channel"),
        Case {
            first_error: Some((2, "/data/amount_minor")),
            ..case("batch with one bad event", BATCH, json!([good, opened("o2", "a2"), deposit("d", "a1", json!(0)), opened("o3", "a3")]).to_string(), 422, "invalid-event")
        },
        Case { first_error: Some((0, "/id")), ..binary(&[("ce-specversion", "1.0"), ("ce-source", "/t"), ("ce-type", "accounts.AccountClosed"), ("ce-subject", "a1")], r#"{"account_id":"a1"}"#) },
        Case { first_error: Some((0, "/dataversion")), ..binary(&[("ce-specversion", "1.0"), ("ce-id", "b"), ("ce-source", "/t"), ("ce-type", "accounts.AccountClosed"), ("ce-subject", "a1"), ("ce-dataversion", "two")], r#"{"account_id":"a1"}"#) },
        Case { first_error: Some((0, "/data/reason")), ..binary(&binary_base, r#"{"account_id":"a1","reason":"x"}"#) },
        Case { first_error: Some((0, "")), ..binary(&[binary_base.as_slice(), &[("ce-datacontenttype", "application/json")]].concat(), r#"{"account_id":"a1"}"#) },
        Case { first_error: Some((0, "/source")), ..binary(&[("ce-specversion", "1.0"), ("ce-id", "b"), ("ce-source", "not%20a%20uri"), ("ce-type", "accounts.AccountClosed"), ("ce-subject", "a1")], r#"{"account_id":"a1"}"#) },
        Case { status: 400, problem: "malformed-request", first_error: Some((0, "/region")), ..binary(&[binary_base.as_slice(), &[("ce-region", "%C0%A0")]].concat(), r#"{"account_id":"a1"}"#) },
        invalid("null id", with(good.clone(), "/id", Some(Value::Null)), "/id"),
        invalid("empty subject", with(good.clone(), "/subject", Some(json!(""))), "/subject"),
        invalid("fractional extension", with(good.clone(), "/region", Some(json!(1.5))), "/region"),
        invalid("relative dataschema", with(good.clone(), "/dataschema", Some(json!("schemas/x.json"))), "/dataschema"),
        invalid("data and data_base64", with(good.clone(), "/data_base64", Some(json!("e30="))), "/data_base64"),
        Case { first_error: Some((0, "/type")), ..case("type outside the key's scope", STRUCTURED, json!({"specversion": "1.0", "id": "p", "source": "/t", "type": "projects.ProjectCreated", "subject": "p1", "data": {"project_id": "p1", "name": "n"}}).to_string(), 403, "forbidden-event-type") },
        Case { first_error: Some((1, "/type")), ..case("batch with one out-of-scope type", BATCH, json!([good, {"specversion": "1.0", "id": "u", "source": "/t", "type": "activity.FeatureUsed", "subject": "u1", "data": {"user_id": "u1", "feature": "f"}}]).to_string(), 403, "forbidden-event-type") },
    ];
    for c in &mut cases {
        if !c.headers.iter().any(|(k, _)| *k == "authorization") {
            c.headers.push(("authorization", format!("Bearer {token}")));
        }
    }
    let unauthenticated = [
        ("no key", None),
        ("not bearer", Some("Basic YWxhZGRpbjpvcGVuc2VzYW1l".to_string())),
        ("garbage key", Some("Bearer hello".to_string())),
        ("unknown key id", Some("Bearer elk_000000000000_00".to_string())),
        ("wrong secret", Some(format!("Bearer {}x", &token[..token.len() - 1]))),
    ];
    for (name, authorization) in unauthenticated {
        let mut headers = vec![("content-type", STRUCTURED.to_string())];
        headers.extend(authorization.map(|a| ("authorization", a)));
        cases.push(Case { headers, ..case(name, STRUCTURED, good.to_string(), 401, "unauthorized") });
    }
    assert!(cases.len() >= 40, "{} cases", cases.len());

    for c in &cases {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = gateway.post(&headers, c.body.clone()).await;
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, c.status, "{}: {body}", c.name);
        assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{}", c.name);
        assert_eq!(body["type"], format!("https://eventline.dev/problems/{}", c.problem), "{}: {body}", c.name);
        assert_eq!(body["status"], c.status, "{}", c.name);
        assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}: {body}", c.name);
        if let Some((index, pointer)) = c.first_error {
            assert_eq!(
                (body["errors"][0]["index"].as_u64(), body["errors"][0]["pointer"].as_str()),
                (Some(index), Some(pointer)),
                "{}: {body}",
                c.name
            );
        }
        assert_eq!(published(&env).await, 0, "{} published something", c.name);
    }

    // Routes and methods outside the API.
    let missing = gateway.client.get(format!("{}/v1/nothing", gateway.base)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["type"], "https://eventline.dev/problems/not-found");
    let wrong_method = gateway.client.get(format!("{}/v1/events", gateway.base)).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(
        wrong_method.json::<Value>().await.unwrap()["type"],
        "https://eventline.dev/problems/method-not-allowed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_events_land_where_the_gateway_says_and_reach_the_projection() {
    let env = TestEnv::new().await;
    let (_, token) = env.create_key("round-trip", &["accounts.*"]);
    let gateway = env.spawn_http("gateway", &["gateway"], &[]).await;
    let auth = format!("Bearer {token}");
    let worker = env.spawn("worker", &["worker", "account_balances"], &[]);

    let structured =
        gateway.post(&[("authorization", &auth), ("content-type", STRUCTURED)], opened("o1", "acct").to_string()).await;
    assert_eq!(structured.status(), 202);
    let batch_body = json!([deposit("d1", "acct", json!(300)), deposit("d2", "acct", json!(200))]);
    let batch = gateway.post(&[("authorization", &auth), ("content-type", BATCH)], batch_body.to_string()).await;
    assert_eq!(batch.status(), 202);
    let binary = gateway
        .post(
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("ce-specversion", "1.0"),
                ("ce-id", "w1"),
                ("ce-source", "/t"),
                ("ce-type", "accounts.FundsWithdrawn"),
                ("ce-subject", "acct"),
                ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ],
            r#"{"account_id":"acct","amount_minor":120,"currency":"EUR"}"#,
        )
        .await;
    assert_eq!(binary.status(), 202);

    let mut answers: Vec<Value> = Vec::new();
    for response in [structured, batch, binary] {
        let body: Value = response.json().await.unwrap();
        assert!(body["consistency_token"].as_str().is_some_and(|t| !t.is_empty()));
        answers.extend(body["events"].as_array().unwrap().iter().cloned());
    }
    let ids: Vec<&str> = answers.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["o1", "d1", "d2", "w1"]);

    // Each answer names the record's real position.
    for answer in &answers {
        let topic = answer["topic"].as_str().unwrap();
        assert_eq!(topic, env.topic("accounts.events"));
        let (partition, offset) = (answer["partition"].as_i64().unwrap() as i32, answer["offset"].as_i64().unwrap());
        let start = eventline_kafka::reader::StartAt::Offset { partition, offset };
        let mut reader =
            eventline_kafka::reader::TopicReader::open(&env.kafka, topic, start, std::time::Duration::from_secs(10))
                .await
                .unwrap();
        let record = reader.next(false).await.unwrap().unwrap();
        let stored: Value = serde_json::from_slice(record.payload.as_deref().unwrap()).unwrap();
        assert_eq!((record.offset, &stored["id"]), (offset, &answer["id"]));
        assert_eq!(record.key.as_deref(), Some(&b"acct"[..]));
        if answer["id"] == "w1" {
            assert_eq!(stored["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        }
    }

    wait_until("the projection to apply the four events", || async {
        env.applied_through("account_balances").await == 4
    })
    .await;
    let rows = eventline_reference::store::account_balances::account_balances(&env.store).await.unwrap();
    assert_eq!(
        (rows[0].account_id.as_str(), rows[0].balance_minor, rows[0].events_applied),
        ("acct", 380, 4),
        "{}",
        worker.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_checked_scoped_revocable_and_never_logged() {
    let env = TestEnv::new().await;
    let (key_id, token) = env.create_key("auth", &["accounts.AccountOpened"]);
    let gateway = env.spawn_http("gateway", &["gateway"], &[("RUST_LOG", "debug")]).await;
    let post = |gateway: &HttpProcess, token: String, event: Value| {
        let headers = vec![
            ("authorization".to_string(), format!("Bearer {token}")),
            ("content-type".to_string(), STRUCTURED.to_string()),
        ];
        let client = gateway.client.clone();
        let url = format!("{}/v1/events", gateway.base);
        async move {
            let mut request = client.post(url).body(event.to_string());
            for (k, v) in headers {
                request = request.header(k, v);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(post(&gateway, token.clone(), opened("o1", "a1")).await, 202);
    assert_eq!(
        post(&gateway, token.clone(), deposit("d1", "a1", json!(5))).await,
        403,
        "deposits are outside the key's scope"
    );

    let listed = env.run(&["keys", "list"]);
    assert!(crate::helpers::stdout(&listed).contains(&key_id));
    assert!(!crate::helpers::stdout(&listed).contains(&token), "list never shows secrets");
    let revoked = env.run(&["keys", "revoke", &key_id]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let again = env.run(&["keys", "revoke", &key_id]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(stderr(&again), format!("error: no active key with id `{key_id}`\n"));
    wait_until("the revocation to bite", || async { post(&gateway, token.clone(), opened("o2", "a2")).await == 401 })
        .await;

    let bad_pattern = env.run(&["keys", "create", "--name", "x", "--types", "accounts*"]);
    assert_eq!(bad_pattern.status.code(), Some(2));
    assert_eq!(
        stderr(&bad_pattern),
        "error: `accounts*` is not an event type pattern (use *, a prefix like accounts.*, or a type name)\n"
    );

    let secret = token.rsplit('_').next().unwrap();
    let log = gateway.process.log();
    assert!(log.contains("Request refused."), "the log is at debug level: {log}");
    assert!(!log.contains(secret), "the key's secret leaked into the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_key_has_its_own_rate() {
    let env = TestEnv::new().await;
    let (_, first) = env.create_key("first", &["*"]);
    let (_, second) = env.create_key("second", &["*"]);
    let gateway = env.spawn_http("gateway", &["gateway"], &[("EVENTLINE_GATEWAY_RATE_PER_KEY", "1")]).await;
    let batch = |n: usize, prefix: &str| {
        Value::Array((0..n).map(|i| opened(&format!("{prefix}{i}"), &format!("{prefix}{i}"))).collect()).to_string()
    };
    let headers = |token: &str| {
        vec![("authorization".to_string(), format!("Bearer {token}")), ("content-type".to_string(), BATCH.to_string())]
    };
    let send = |token: &str, body: String| {
        let headers = headers(token);
        let request = gateway.client.post(format!("{}/v1/events", gateway.base)).body(body);
        let request = headers.into_iter().fold(request, |r, (k, v)| r.header(k, v));
        async move { request.send().await.unwrap() }
    };

    // One event a second: the requests below come faster than the bucket refills.
    let too_many = send(&first, batch(2, "x")).await;
    assert_eq!(too_many.status(), 429, "two at once is more than the burst of one");
    // Two requests at once, so no refill can come between them however slow the broker is: the
    // bucket of one admits exactly one.
    let (a, b) = tokio::join!(send(&first, batch(1, "a")), send(&first, batch(1, "b")));
    let (accepted, over) = if a.status() == 202 { (a, b) } else { (b, a) };
    assert_eq!(accepted.status(), 202);
    assert_eq!(over.status(), 429);
    assert!(over.headers().get("retry-after").is_some());
    assert_eq!(over.json::<Value>().await.unwrap()["type"], "https://eventline.dev/problems/rate-limited");
    assert_eq!(send(&second, batch(1, "c")).await.status(), 202, "another key has its own bucket");
    assert_eq!(env.end_offsets("accounts.events").await.iter().sum::<i64>(), 2, "refused requests published nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_authentication_the_gateway_says_so_loudly() {
    let env = TestEnv::new().await;
    let gateway = env.spawn_http("gateway", &["gateway", "--insecure-no-auth"], &[]).await;
    let response = gateway.post(&[("content-type", STRUCTURED)], opened("o1", "a1").to_string()).await;
    assert_eq!(response.status(), 202);
    assert!(gateway.process.log().contains("AUTHENTICATION IS OFF"));
    let ready = gateway.client.get(format!("{}/readyz", gateway.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_binding_to_the_letter_empty_batches_percent_encoding_and_json_media_types() {
    let env = TestEnv::new().await;
    let gateway = env.spawn_http("gateway", &["gateway", "--insecure-no-auth"], &[]).await;

    // An empty batch is a batch: nothing to publish, nothing wrong.
    let empty = gateway.post(&[("content-type", "application/cloudevents-batch+json; charset=utf-8")], "[]").await;
    assert_eq!(empty.status(), 202);
    let body: Value = empty.json().await.unwrap();
    assert_eq!(body["events"], json!([]));
    assert!(body["consistency_token"].as_str().is_some_and(|t| !t.is_empty()));

    // Binary mode: percent-encoded and double-quoted header values, a */*+json data type.
    let binary = gateway
        .post(
            &[
                ("content-type", "application/vnd.bank.account+json"),
                ("ce-specversion", "1.0"),
                ("ce-id", "pct-1"),
                ("ce-source", "/core%2Dbanking"),
                ("ce-type", "accounts.AccountOpened"),
                ("ce-subject", "acc-pct"),
                ("ce-note", "Euro%20%E2%82%AC%20%F0%9F%98%80"),
                ("ce-quoted", r#""a \"quoted\" value""#),
            ],
            r#"{"account_id":"acc-pct","owner":"Zoë","currency":"EUR"}"#,
        )
        .await;
    assert_eq!(binary.status(), 202, "{}", binary.text().await.unwrap());
    let record = env.run(&["tail", "accounts.events", "--from", "start", "--no-follow", "--format", "ndjson"]);
    let stored: Value = serde_json::from_str(crate::helpers::stdout(&record).trim()).unwrap();
    assert_eq!(stored["source"], "/core-banking");
    assert_eq!(stored["note"], "Euro € 😀");
    assert_eq!(stored["quoted"], r#"a "quoted" value"#);
    assert_eq!(stored["datacontenttype"], "application/vnd.bank.account+json");
    assert_eq!(stored["data"]["owner"], "Zoë");
}
