//! Declarative projections (a folder of SQL, no Rust) on the real broker and database: the
//! tutorial's inventory domain (`examples/inventory`), applied effectively once with one `apply`
//! call per batch, a refused event dead-lettered with its key parked while other keys go on, an
//! SQL error traced to the one event that raises it, a worker killed mid-stream ending exact,
//! and every broken definition refused with its file and reason.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::helpers::{stderr, stdout, wait_until, Services, TestEnv};

fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/inventory").join(path)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// A folder of projections holding a copy of the tutorial's `stock`, changed by `edit`.
fn projections(name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let root = std::env::temp_dir().join(format!("eventline-projections-{name}-{}", rand::random::<u32>()));
    copy_tree(&example("projections"), &root);
    edit(&root.join("stock"));
    root
}

fn replace_in(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} has no `{from}`", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

async fn inventory(projections_dir: &Path) -> TestEnv {
    let schemas = example("schemas");
    TestEnv::with_app(
        Services::from_env(),
        &[
            ("EVENTLINE_SCHEMAS_DIR", schemas.to_str().unwrap()),
            ("EVENTLINE_PROJECTIONS_DIR", projections_dir.to_str().unwrap()),
        ],
    )
    .await
}

fn received(id: &str, sku: &str, quantity: i64) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/warehouse", "type": "inventory.StockReceived",
           "subject": sku, "data": {"sku": sku, "quantity": quantity}})
}

fn shipped(id: &str, sku: &str, quantity: i64) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/warehouse", "type": "inventory.ItemShipped",
           "subject": sku, "data": {"sku": sku, "quantity": quantity, "order_id": format!("o-{id}")}})
}

/// `sku|on_hand|shipped` per row, in SKU order.
fn stock(env: &TestEnv) -> Vec<String> {
    let rows = env.psql("SELECT sku || '|' || on_hand || '|' || shipped FROM stock_levels ORDER BY sku");
    rows.lines().map(String::from).collect()
}

/// Dead letters of `stock` as (key, kind, reason), in offset order.
fn dead_letters(env: &TestEnv) -> Vec<(String, String, String)> {
    let output = env.run(&["dlq", "list", "--projection", "stock", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| {
            let letter: Value = serde_json::from_str(line).unwrap();
            let text = |k: &str| letter[k].as_str().unwrap_or_default().to_string();
            (text("key"), text("kind"), text("reason"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declarative_projection_refuses_parks_and_applies_other_keys_with_one_call_per_batch() {
    let dir = projections("refuse", |_| {});
    let env = inventory(&dir).await;
    // Count the calls of each PL/pgSQL function in this test's database.
    env.psql(&format!("ALTER DATABASE \"eventline_test_{}\" SET track_functions = 'pl'", env.id));
    env.publish(
        "inventory.ndjson",
        &[
            received("r1", "bolt", 10),
            shipped("s1", "bolt", 4),
            // Beyond the stock: refused, and bolt waits behind it.
            shipped("s2", "bolt", 40),
            received("r2", "bolt", 100),
            received("r3", "nut", 5),
            shipped("s3", "nut", 5),
        ],
    );
    let worker = env.spawn("worker", &["worker", "stock"], &[("EVENTLINE_BATCH_MAX_EVENTS", "1000")]);
    wait_until("the worker to pass every event", || async { env.applied_through("stock").await == 6 }).await;
    assert_eq!(stock(&env), ["bolt|6|4", "nut|0|5"], "bolt's later receipt waits behind its refused shipment");
    assert_eq!(
        dead_letters(&env),
        [
            ("bolt".into(), "rejected".into(), "cannot ship 40 of bolt: 6 on hand".into()),
            ("bolt".into(), "parked".into(), "key bolt is parked behind an earlier dead letter".into()),
        ]
    );
    worker.terminate();
    // One call per batch, and one more for the batch with the refusal (again without s2 and r2).
    let calls = env.psql(
        "SELECT calls FROM pg_stat_user_functions WHERE schemaname = 'eventline_apply_stock_v1' AND funcname = 'apply'",
    );
    let log = std::fs::read_to_string(env.file("worker.log")).unwrap();
    let batches = log.matches("Batch written.").count();
    assert_eq!(calls, (batches + 1).to_string(), "{log}");

    // The operator skips the refused shipment: bolt's receipt applies, through the function.
    let id = env.psql("SELECT min(id) FROM eventline_dead_letters WHERE projection = 'stock'");
    let skipped = env.run(&["dlq", "skip", "stock", "--id", &id, "--reason", "order cancelled"]);
    assert!(skipped.status.success(), "{}", stderr(&skipped));
    assert_eq!(stock(&env), ["bolt|106|4", "nut|0|5"]);
    assert_eq!(dead_letters(&env), []);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_numbered_like_one_of_the_runtimes_is_run() {
    // Timestamp-numbered migrations can take the very number of one of eventline's own: it is the
    // projection's all the same (only an earlier eventline's reference migrations count as run).
    let dir = projections("numbered", |stock| {
        std::fs::rename(
            stock.join("migrations/1_stock_levels.sql"),
            stock.join("migrations/20261128000001_stock_levels.sql"),
        )
        .unwrap();
    });
    let env = inventory(&dir).await;
    assert_eq!(env.psql("SELECT to_regclass('public.stock_levels') IS NOT NULL"), "t");
    assert_eq!(
        env.psql(
            "SELECT string_agg(version::text, ',') FROM eventline_projection_migrations WHERE projection = 'stock'"
        ),
        "20261128000001"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sql_error_is_traced_to_the_event_that_raises_it() {
    let dir = projections("raise", |stock| {
        replace_in(
            &stock.join("apply.sql"),
            "        wanted := (event->'data'->>'quantity')::bigint;\n",
            "        wanted := (event->'data'->>'quantity')::bigint;\n        IF wanted = 13 THEN\n            RAISE EXCEPTION 'unlucky quantity %', wanted;\n        END IF;\n",
        );
    });
    let env = inventory(&dir).await;
    let mut events: Vec<Value> = (0..40).map(|i| received(&format!("r{i}"), &format!("sku-{}", i % 4), 1)).collect();
    events.insert(21, received("bad", "sku-1", 13));
    events.push(received("after", "sku-1", 1));
    env.publish("inventory.ndjson", &events);
    let worker = env.spawn("worker", &["worker", "stock"], &[("EVENTLINE_BATCH_MAX_EVENTS", "1000")]);
    wait_until("the worker to pass every event", || async { env.applied_through("stock").await == 42 }).await;
    // sku-1 stops at the raising event: 5 of its 10 receipts came before it.
    assert_eq!(stock(&env), ["sku-0|10|0", "sku-1|5|0", "sku-2|10|0", "sku-3|10|0"]);
    let letters = dead_letters(&env);
    assert_eq!(letters.len(), 7, "the raising event and sku-1's 6 later events: {letters:?}");
    assert_eq!(
        letters[0],
        ("sku-1".into(), "rejected".into(), "apply failed on this event: unlucky quantity 13 [SQLSTATE P0001]".into())
    );
    assert!(letters[1..].iter().all(|(key, kind, _)| key == "sku-1" && kind == "parked"), "{letters:?}");
    assert!(worker.running(), "an event's error does not stop the worker: {}", worker.log());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declarative_worker_killed_mid_stream_ends_exact() {
    let dir = projections("kill", |_| {});
    let env = inventory(&dir).await;
    // Shipments (1 unit) never outrun receipts (2 units): each SKU starts with a receipt.
    let is_shipment = |i: usize| i >= 30 && i % 7 == 6;
    let events: Vec<Value> = (0..6_000)
        .map(|i| {
            let sku = format!("sku-{}", i % 30);
            if is_shipment(i) {
                shipped(&format!("e{i}"), &sku, 1)
            } else {
                received(&format!("e{i}"), &sku, 2)
            }
        })
        .collect();
    env.publish("inventory.ndjson", &events);
    let first = env.spawn("worker-1", &["worker", "stock"], &[("EVENTLINE_BATCH_MAX_EVENTS", "50")]);
    wait_until("the first worker to pass 1,000 events", || async { env.applied_through("stock").await >= 1_000 }).await;
    first.kill_hard();
    let passed = env.applied_through("stock").await;
    assert!(passed < 6_000, "killed too late to prove anything");
    let _second = env.spawn("worker-2", &["worker", "stock"], &[("EVENTLINE_BATCH_MAX_EVENTS", "50")]);
    wait_until("the second worker to pass every event", || async { env.applied_through("stock").await == 6_000 }).await;
    let expected: Vec<String> = {
        let mut skus: Vec<String> = (0..30).map(|i| format!("sku-{i}")).collect();
        skus.sort();
        skus.into_iter()
            .map(|sku| {
                let n: usize = sku[4..].parse().unwrap();
                let (mut on_hand, mut out) = (0, 0);
                for i in (n..6_000).step_by(30) {
                    if is_shipment(i) {
                        on_hand -= 1;
                        out += 1;
                    } else {
                        on_hand += 2;
                    }
                }
                format!("{sku}|{on_hand}|{out}")
            })
            .collect()
    };
    assert_eq!(stock(&env), expected);
    assert_eq!(dead_letters(&env), []);
    assert_eq!(env.psql("SELECT count(*) FROM eventline_applied_events WHERE projection = 'stock'"), "6000");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The `error:` lines of a command's standard error (its logs left out).
fn errors(output: &std::process::Output) -> String {
    stderr(output).lines().filter(|l| l.starts_with("error: ")).map(|l| format!("{l}\n")).collect()
}

/// What `eventline projections check --dir DIR` says about a broken copy of `stock`.
fn check(env: &TestEnv, dir: &Path) -> (Option<i32>, String) {
    let output = env.run(&["projections", "check", "--dir", dir.to_str().unwrap()]);
    (output.status.code(), errors(&output))
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_definitions_are_refused_with_the_file_and_reason() {
    let good = projections("good", |_| {});
    let env = inventory(&good).await;
    let checked = env.run(&["projections", "check", "--dir", good.to_str().unwrap()]);
    assert!(checked.status.success(), "{}", stderr(&checked));
    assert_eq!(stdout(&checked), "1 projection(s) checked: stock\n");

    type Edit = Box<dyn FnOnce(&Path)>;
    let cases: Vec<(&str, Edit, String)> = vec![
        (
            "unknown-type",
            Box::new(|s: &Path| replace_in(&s.join("projection.toml"), "\"inventory.ItemShipped\"", "\"inventory.ItemLost\"")),
            "projection.toml: projection stock handles inventory.ItemLost, which the registry does not know".into(),
        ),
        (
            "missing-version",
            Box::new(|s: &Path| replace_in(&s.join("projection.toml"), "\"inventory.StockReceived\" = [1]", "\"inventory.StockReceived\" = [1, 2]")),
            "projection.toml: projection stock handles inventory.StockReceived v2, which the registry does not have".into(),
        ),
        (
            "no-primary-key",
            Box::new(|s: &Path| replace_in(&s.join("migrations/1_stock_levels.sql"), "sku text PRIMARY KEY", "sku text NOT NULL")),
            "projection.toml: table `stock_levels` has no primary key (rebuilds compare and API reads look up rows by it)".into(),
        ),
        (
            "undeclared-table",
            Box::new(|s: &Path| replace_in(&s.join("projection.toml"), "tables = [\"stock_levels\"]", "tables = [\"stock_levels\", \"reservations\"]")),
            "projection.toml: table `reservations` is declared but its migrations do not create it".into(),
        ),
        (
            "personal-column-of-no-table",
            Box::new(|s: &Path| replace_in(&s.join("projection.toml"), "tables = [\"stock_levels\"]", "tables = [\"stock_levels\"]\npersonal_columns = [\"orders.customer\"]")),
            "projection.toml: personal_columns: `orders.customer` must be `<table>.<column>` of a table in `tables` (stock_levels)".into(),
        ),
        (
            "personal-column-not-in-table",
            Box::new(|s: &Path| replace_in(&s.join("projection.toml"), "tables = [\"stock_levels\"]", "tables = [\"stock_levels\"]\npersonal_columns = [\"stock_levels.customer\"]")),
            "projection.toml: table `stock_levels` has no column `customer`, which personal_columns names".into(),
        ),
        (
            "subject-column-of-no-table",
            Box::new(|s: &Path| replace_in(&s.join("projection.toml"), "tables = [\"stock_levels\"]", "tables = [\"stock_levels\"]\nsubject_columns = [\"buyer\"]")),
            "projection.toml: subject_columns: `buyer` must be `<table>.<column>` of a table in `tables` (stock_levels)".into(),
        ),
        (
            "subject-column-not-in-table",
            Box::new(|s: &Path| replace_in(&s.join("projection.toml"), "tables = [\"stock_levels\"]", "tables = [\"stock_levels\"]\nsubject_columns = [\"stock_levels.buyer\"]")),
            "projection.toml: table `stock_levels` has no column `buyer`, which subject_columns names".into(),
        ),
        (
            "bad-sql",
            Box::new(|s: &Path| replace_in(&s.join("apply.sql"), "END IF;\n    END LOOP;", "END IF\n    END LOOP;")),
            "apply.sql: line 28: syntax error at or near \"END\" [SQLSTATE 42601]".into(),
        ),
        (
            "wrong-signature",
            Box::new(|s: &Path| replace_in(&s.join("apply.sql"), "RETURNS TABLE(ord int, reason text)", "RETURNS TABLE(ord bigint, reason text)")),
            "apply.sql: must define a function apply(batch jsonb) RETURNS TABLE(ord int, reason text); it returns TABLE(ord bigint, reason text)".into(),
        ),
        (
            "bad-manifest",
            Box::new(|s: &Path| replace_in(&s.join("projection.toml"), "version = 1", "version = \"one\"")),
            "projection.toml: TOML parse error at line 4, column 11".into(),
        ),
        (
            "bad-migration-name",
            Box::new(|s: &Path| std::fs::write(s.join("migrations/later.sql"), "SELECT 1;").unwrap()),
            "migrations/later.sql: a migration is named <version>_<description>.sql, the version a whole number from 1".into(),
        ),
        (
            "no-apply",
            Box::new(|s: &Path| std::fs::remove_file(s.join("apply.sql")).unwrap()),
            "apply.sql: cannot be read: No such file or directory (os error 2)".into(),
        ),
    ];
    for (name, edit, expected) in cases {
        let dir = projections(name, edit);
        let (code, err) = check(&env, &dir);
        assert_eq!(code, Some(1), "{name}: {err}");
        let shown = format!("error: {}/stock/{expected}", dir.display());
        assert!(err.starts_with(&shown), "{name}: expected `{shown}`, got: {err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
    assert_eq!(env.applied_through("stock").await, 0);
    std::fs::remove_dir_all(good).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_migration_or_apply_is_refused_and_changes_nothing() {
    let dir = projections("edits", |_| {});
    let env = inventory(&dir).await;
    let stock_dir = dir.join("stock");
    let shown = |file: &str| format!("{}/{file}", stock_dir.display());

    // An applied migration edited: `migrate` refuses, naming the file.
    let migration = stock_dir.join("migrations/1_stock_levels.sql");
    let original = std::fs::read_to_string(&migration).unwrap();
    std::fs::write(&migration, original.replace("DEFAULT 0", "DEFAULT 1")).unwrap();
    let migrate = env.run(&["migrate"]);
    assert_eq!(migrate.status.code(), Some(78), "{}", stderr(&migrate));
    assert_eq!(
        errors(&migrate),
        format!(
            "error: projection stock: {}: this migration of stock was applied with other contents; applied migrations are append-only: add a new file instead\n",
            shown("migrations/1_stock_levels.sql")
        )
    );
    let worker = env.run(&["worker", "stock"]);
    assert_eq!(worker.status.code(), Some(78), "{}", stderr(&worker));
    assert!(stderr(&worker).contains("this migration of stock was applied with other contents"), "{}", stderr(&worker));
    std::fs::write(&migration, &original).unwrap();

    // apply.sql changed without a new version: refused at start.
    let apply = stock_dir.join("apply.sql");
    let original_apply = std::fs::read_to_string(&apply).unwrap();
    std::fs::write(&apply, original_apply.replace("cannot ship", "will not ship")).unwrap();
    let worker = env.run(&["worker", "stock"]);
    assert_eq!(worker.status.code(), Some(78), "{}", stderr(&worker));
    assert!(
        errors(&worker).ends_with(&format!(
            "{}: version 1 of stock was installed with another apply.sql; a changed apply.sql needs a new version (and a rebuild)\n",
            shown("apply.sql")
        )),
        "{}",
        stderr(&worker)
    );

    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_answering_what_it_must_not_stops_the_worker_with_nothing_written() {
    // An ord outside the batch, or a refusal without a reason.
    for (liar, body, expected) in [
        ("ord", "ord := 99; reason := 'no'; RETURN NEXT;", "returned ord 99, which is not in the batch (1..=2)"),
        (
            "reason",
            "ord := 1; reason := ' '; RETURN NEXT;",
            "refused the event at ord 1 without a reason (reason must be a non-empty text)",
        ),
    ] {
        let dir = projections(&format!("liar-{liar}"), |stock| {
            std::fs::write(
                stock.join("apply.sql"),
                format!(
                    "CREATE FUNCTION apply(batch jsonb) RETURNS TABLE(ord int, reason text) LANGUAGE plpgsql AS $$ BEGIN {body} END $$;"
                ),
            )
            .unwrap()
        });
        let env = inventory(&dir).await;
        env.publish("inventory.ndjson", &[received("r1", "bolt", 10), shipped("s1", "bolt", 1)]);
        let worker = env.spawn(&format!("liar-{liar}"), &["worker", "stock"], &[]);
        wait_until("the worker to stop", || async { !worker.running() }).await;
        let log = worker.log();
        let apply = format!("{}/stock/apply.sql", dir.display());
        assert!(log.contains(&format!("worker stock failed: projection stock: {apply} {expected}")), "{log}");
        assert_eq!(env.applied_through("stock").await, 0, "no offset moved");
        assert_eq!(stock(&env), Vec::<String>::new(), "nothing written");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_is_built_beside_the_live_one_and_its_function_follows_its_tables() {
    let v1 = projections("versions-v1", |_| {});
    let v2 = projections("versions-v2", |stock| {
        std::fs::copy(example("v2/2_last_order.sql"), stock.join("migrations/2_last_order.sql")).unwrap();
        std::fs::copy(example("v2/apply.sql"), stock.join("apply.sql")).unwrap();
        replace_in(&stock.join("projection.toml"), "version = 1", "version = 2");
    });
    let env = inventory(&v1).await;
    let with = |dir: &Path, args: &[&str]| {
        env.command(args).env("EVENTLINE_PROJECTIONS_DIR", dir).output().expect("eventline runs")
    };
    let has_last_order = || {
        env.psql(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = 'stock_levels' AND column_name = 'last_order_id'",
        ) == "1"
    };
    // This worker loaded version 1 and runs through everything below.
    let _live = env.spawn("live-v1", &["worker", "stock"], &[]);
    env.publish("first.ndjson", &[received("r1", "bolt", 10), shipped("s1", "bolt", 4)]);
    wait_until("the first events", || async { env.applied_through("stock").await == 2 }).await;

    // Version 2 deployed: `migrate` leaves the live tables alone, the live worker goes on.
    let migrate = with(&v2, &["migrate"]);
    assert!(migrate.status.success(), "{}", stderr(&migrate));
    assert!(
        stdout(&migrate).contains("projection stock: the live generation is version 1; this version is built beside it by `eventline rebuild start stock` (its migrations run there, not on the live tables)"),
        "{}",
        stdout(&migrate)
    );
    assert!(!has_last_order(), "version 2's migration did not run on the live table");
    let _live_v2 = env.spawn("live-v2", &["worker", "stock"], &[("EVENTLINE_PROJECTIONS_DIR", v2.to_str().unwrap())]);
    env.publish("second.ndjson", &[received("r2", "bolt", 1)]);
    wait_until("the receipt", || async { env.applied_through("stock").await == 3 }).await;
    assert_eq!(stock(&env), ["bolt|7|4"]);
    let status = with(&v2, &["status"]);
    assert!(stdout(&status).contains("stock  generation 1 (version 1)"), "{}", stdout(&status));

    // The rebuild builds version 2 from all its migrations in its own schema, then switches.
    let start = with(&v2, &["rebuild", "start", "stock"]);
    assert!(start.status.success(), "{}", stderr(&start));
    let started: Value = serde_json::from_str(stdout(&start).lines().next().unwrap()).unwrap();
    assert_eq!((started["generation"].as_i64(), started["version"].as_i64()), (Some(2), Some(2)));
    assert_eq!(
        env.psql("SELECT version FROM eventline_projection_migrations WHERE projection = 'stock' AND generation = 2 ORDER BY version"),
        "1\n2"
    );
    let cutover = with(&v2, &["rebuild", "cutover", "stock"]);
    assert!(cutover.status.success(), "{}", stderr(&cutover));
    assert!(has_last_order());

    // The version 1 process now runs version 2's function: it came with the tables.
    env.publish("third.ndjson", &[shipped("s2", "bolt", 2)]);
    wait_until("the shipment", || async {
        env.psql("SELECT coalesce(last_order_id, '-') FROM stock_levels WHERE sku = 'bolt'") == "o-s2"
    })
    .await;
    assert_eq!(stock(&env), ["bolt|5|6"]);

    // Version 1 deployed again while version 2 is live: refused.
    let behind = with(&v1, &["migrate"]);
    assert_eq!(behind.status.code(), Some(78), "{}", stderr(&behind));
    assert_eq!(
        errors(&behind),
        "error: projection stock: this definition is version 1, but the live generation was built by version 2; deploy version 2 or later (or `eventline rebuild rollback stock`)\n"
    );

    // A rollback brings generation 1 back with version 1's function: it applies what it missed.
    let rollback = with(&v2, &["rebuild", "rollback", "stock"]);
    assert!(rollback.status.success(), "{}", stderr(&rollback));
    assert!(!has_last_order());
    env.publish("fourth.ndjson", &[received("r3", "bolt", 1)]);
    wait_until("the rolled-back generation to catch up", || async { stock(&env) == ["bolt|6|6"] }).await;
    let migrate = with(&v1, &["migrate"]);
    assert!(migrate.status.success(), "version 1 is live again: {}", stderr(&migrate));
    std::fs::remove_dir_all(v1).unwrap();
    std::fs::remove_dir_all(v2).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_that_adds_a_table_and_drops_a_column_is_switched_whole() {
    let v1 = projections("shape-v1", |_| {});
    // Version 2 keeps shipments in a table of their own instead of a running total.
    let v2 = projections("shape-v2", |stock| {
        std::fs::write(
            stock.join("migrations/2_orders.sql"),
            "ALTER TABLE stock_levels DROP COLUMN shipped;
             CREATE TABLE stock_orders (order_id text PRIMARY KEY, sku text NOT NULL, quantity bigint NOT NULL);",
        )
        .unwrap();
        let apply = std::fs::read_to_string(example("v2/apply.sql")).unwrap().replace(
            "SET on_hand = s.on_hand - wanted, shipped = s.shipped + wanted, last_order_id = event->'data'->>'order_id',",
            "SET on_hand = s.on_hand - wanted,",
        );
        let apply = apply.replace(
            "WHERE s.sku = event->>'key';",
            "WHERE s.sku = event->>'key';
                INSERT INTO stock_orders VALUES (event->'data'->>'order_id', event->>'key', wanted);",
        );
        std::fs::write(stock.join("apply.sql"), apply).unwrap();
        replace_in(&stock.join("projection.toml"), "version = 1", "version = 2");
        replace_in(
            &stock.join("projection.toml"),
            r#"tables = ["stock_levels"]"#,
            r#"tables = ["stock_levels", "stock_orders"]"#,
        );
    });
    let env = inventory(&v1).await;
    let with = |dir: &Path, args: &[&str]| {
        env.command(args).env("EVENTLINE_PROJECTIONS_DIR", dir).output().expect("eventline runs")
    };
    let tables = || {
        env.psql(
            "SELECT string_agg(table_name || '.' || column_name, ',' ORDER BY table_name, ordinal_position)
             FROM information_schema.columns WHERE table_schema = 'public' AND table_name LIKE 'stock_%'",
        )
    };
    env.publish("first.ndjson", &[received("r1", "bolt", 10), shipped("s1", "bolt", 4)]);
    // A worker of each version on the live (version 1) generation: version 2's declares a table
    // that generation does not have, and still applies through version 1's function.
    let _v1 = env.spawn("v1", &["worker", "stock"], &[]);
    let _v2 = env.spawn("v2", &["worker", "stock"], &[("EVENTLINE_PROJECTIONS_DIR", v2.to_str().unwrap())]);
    wait_until("the first events", || async { env.applied_through("stock").await == 2 }).await;
    let v1_shape = "stock_levels.sku,stock_levels.on_hand,stock_levels.shipped,stock_levels.updated_at";
    assert_eq!(tables(), v1_shape);

    let start = with(&v2, &["rebuild", "start", "stock"]);
    assert!(start.status.success(), "{}", stderr(&start));
    let diff = with(&v2, &["rebuild", "diff", "stock"]);
    let diffs: Vec<Value> = stdout(&diff).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let orders = diffs.iter().find(|d| d["table"] == "stock_orders").unwrap();
    assert_eq!((orders["live"]["checksum"].as_str(), orders["rebuilt"]["rows"].as_i64()), (Some("absent"), Some(1)));
    let cutover = with(&v2, &["rebuild", "cutover", "stock"]);
    assert!(cutover.status.success(), "{}", stderr(&cutover));
    assert_eq!(
        tables(),
        "stock_levels.sku,stock_levels.on_hand,stock_levels.updated_at,stock_orders.order_id,stock_orders.sku,stock_orders.quantity"
    );
    env.publish("second.ndjson", &[shipped("s2", "bolt", 1)]);
    wait_until("the new order", || async { env.psql("SELECT count(*) FROM stock_orders") == "2" }).await;
    assert_eq!(stock_on_hand(&env), "bolt|5");

    // And back: version 1's table, with its column, and no orders table.
    let replay = with(&v2, &["replay", "stock", "--from", "earliest"]);
    assert!(replay.status.success(), "a replay empties what exists: {}", stderr(&replay));
    wait_until("the replay", || async { env.psql("SELECT count(*) FROM stock_orders") == "2" }).await;
    let rollback = with(&v2, &["rebuild", "rollback", "stock"]);
    assert!(rollback.status.success(), "{}", stderr(&rollback));
    assert_eq!(tables(), v1_shape);
    wait_until("the rolled-back generation to catch up", || async { stock(&env) == ["bolt|5|5"] }).await;
    std::fs::remove_dir_all(v1).unwrap();
    std::fs::remove_dir_all(v2).unwrap();
}

fn stock_on_hand(env: &TestEnv) -> String {
    env.psql("SELECT sku || '|' || on_hand FROM stock_levels ORDER BY sku")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_new_version_is_refused_by_rebuild_start_and_creates_nothing() {
    let v1 = projections("broken-v1", |_| {});
    let env = inventory(&v1).await;
    for (broken, edit, expected) in [
        (
            "sql",
            "ALTER TABLE stock_levels ADD COLUMN last_order_id texte;",
            "migrations/2_last_order.sql: line 1: type \"texte\" does not exist [SQLSTATE 42704]",
        ),
        (
            "table",
            "ALTER TABLE stock_levels RENAME TO stock;",
            "projection.toml: table `stock_levels` is declared but its migrations do not create it",
        ),
    ] {
        let v2 = projections(&format!("broken-{broken}"), |stock| {
            std::fs::write(stock.join("migrations/2_last_order.sql"), edit).unwrap();
            replace_in(&stock.join("projection.toml"), "version = 1", "version = 2");
            // Each attempt's apply.sql differs: a version no generation was built by yet may
            // still change.
            let apply = std::fs::read_to_string(stock.join("apply.sql")).unwrap();
            std::fs::write(stock.join("apply.sql"), format!("{apply}\n-- draft {broken}\n")).unwrap();
        });
        let start = env.command(&["rebuild", "start", "stock"]).env("EVENTLINE_PROJECTIONS_DIR", &v2).output().unwrap();
        assert_eq!(start.status.code(), Some(78), "{}", stderr(&start));
        assert_eq!(errors(&start), format!("error: {}/stock/{expected}\n", v2.display()));
        assert_eq!(
            env.psql("SELECT count(*) FROM eventline_generations WHERE projection = 'stock' AND generation > 1"),
            "0"
        );
        assert_eq!(env.psql("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'eventline_gen_stock_%'"), "0");
        std::fs::remove_dir_all(v2).unwrap();
    }
    std::fs::remove_dir_all(v1).unwrap();
}

#[test]
fn a_missing_or_broken_projections_folder_stops_every_command() {
    let output = std::process::Command::new(crate::helpers::BIN)
        .args(["status"])
        .env("EVENTLINE_PROJECTIONS_DIR", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert_eq!(stderr(&output), "error: invalid EVENTLINE_PROJECTIONS_DIR: /nonexistent is not a directory\n");

    let dir = projections("folder", |stock| {
        replace_in(&stock.join("projection.toml"), "name = \"stock\"", "name = \"stocks\"")
    });
    let output = std::process::Command::new(crate::helpers::BIN)
        .args(["status"])
        .env("EVENTLINE_PROJECTIONS_DIR", &dir)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert_eq!(
        stderr(&output),
        format!(
            "error: invalid projection definition: {}/stock/projection.toml: the projection is named `stocks` but its folder `stock`\n",
            dir.display()
        )
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_table_is_read_over_http_by_key_filter_and_page() {
    let dir = projections("http", |_| {});
    let env = inventory(&dir).await;
    env.publish(
        "inventory.ndjson",
        &[received("r1", "bolt", 10), received("r2", "nut", 10), received("r3", "washer", 3), shipped("s1", "nut", 7)],
    );
    let _worker = env.spawn("worker", &["worker", "stock"], &[]);
    wait_until("the worker to pass every event", || async { env.applied_through("stock").await == 4 }).await;
    let api = env.spawn_http("api", &["api"], &[]).await;
    let json = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap())
    };

    let (status, nut) = json(api.get("/v1/tables/stock_levels/nut").await).await;
    assert_eq!(status, 200);
    assert_eq!((nut["on_hand"].as_i64(), nut["shipped"].as_i64()), (Some(3), Some(7)));
    let (_, filtered) = json(api.get("/v1/tables/stock_levels?on_hand=10").await).await;
    let skus: Vec<&str> = filtered["items"].as_array().unwrap().iter().map(|r| r["sku"].as_str().unwrap()).collect();
    assert_eq!(skus, ["bolt"]);
    // Any time RFC 3339 allows is a filter, offsets PostgreSQL would not take (±16:00 and beyond)
    // and times before year 1 in UTC included: none matches, none is refused.
    for time in ["1539-10-27T14:01:07.1%2B23:51", "0001-01-01T03:00:00%2B05:00"] {
        let (status, page) = json(api.get(&format!("/v1/tables/stock_levels?updated_at={time}")).await).await;
        assert_eq!((status, page["items"].as_array().map(Vec::len)), (200, Some(0)), "{time}: {page}");
    }
    // No row holds a NUL (PostgreSQL takes none in text): nothing matches, nothing is refused.
    let (status, page) = json(api.get("/v1/tables/stock_levels?sku=bo%00lt").await).await;
    assert_eq!((status, page["items"].as_array().map(Vec::len)), (200, Some(0)), "{page}");
    assert_eq!(api.get("/v1/tables/stock_levels/bo%00lt").await.status(), 404);

    // Keyset pages of one row, in key order, until no cursor comes back.
    let (mut seen, mut path) = (Vec::new(), "/v1/tables/stock_levels?limit=1".to_string());
    loop {
        let response = api.get(&path).await;
        assert!(response.headers().contains_key("eventline-positions"), "freshness headers");
        let (_, page) = json(response).await;
        seen.extend(page["items"].as_array().unwrap().iter().map(|r| r["sku"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/tables/stock_levels?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["bolt", "nut", "washer"]);

    let (_, openapi) = json(api.get("/openapi.json").await).await;
    let row = &openapi["paths"]["/v1/tables/stock_levels/{sku}"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"];
    assert_eq!(row["properties"]["on_hand"]["type"], "integer", "{row}");
    assert_eq!(row["properties"]["updated_at"]["format"], "date-time", "{row}");
    // The schema admits exactly what the server takes: a filter value that fits the column's
    // type, non-empty text, a page size in range; the last page's cursor is null.
    let list = &openapi["paths"]["/v1/tables/stock_levels"]["get"];
    let parameter = |name: &str| {
        list["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["schema"].clone()
    };
    assert_eq!(parameter("shipped"), json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}));
    assert_eq!(parameter("sku"), json!({"type": "string", "minLength": 1, "maxLength": 256}));
    assert_eq!(parameter("updated_at"), json!({"type": "string", "format": "date-time"}));
    assert_eq!(parameter("limit"), json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": 1000}));
    assert_eq!(parameter("cursor"), json!({"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_-]+$"}));
    let next = &list["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["next_cursor"];
    assert_eq!(next["type"], json!(["string", "null"]), "{next}");

    let refusals: [(&str, u16, &str); 7] = [
        ("/v1/tables/stock_levels/ghost", 404, "no row `ghost` in `stock_levels`"),
        ("/v1/tables/nope", 404, "no projection serves a table `nope`"),
        (
            "/v1/tables/stock_levels?colour=red",
            400,
            "unknown parameter `colour`; this endpoint takes consistency_token, wait_ms, sku, on_hand, shipped, updated_at, limit, cursor",
        ),
        (
            "/v1/tables/stock_levels?on_hand=many",
            400,
            "a value does not fit its column's type: invalid input syntax for type bigint: \"many\" [SQLSTATE 22P02]",
        ),
        ("/v1/tables/stock_levels/bolt/extra", 400, "`stock_levels` is looked up by 1 key part(s) (sku), not 2"),
        // A NUL matches nothing, but the other filters are still checked against their columns.
        (
            "/v1/tables/stock_levels?sku=bo%00lt&on_hand=many",
            400,
            "a value does not fit its column's type: invalid input syntax for type bigint: \"many\" [SQLSTATE 22P02]",
        ),
        (
            "/v1/tables/stock_levels?on_hand=1%002",
            400,
            "a value does not fit its column's type: invalid input syntax for type bigint: \"1\u{FFFD}2\" [SQLSTATE 22P02]",
        ),
    ];
    for (path, status, detail) in refusals {
        let (got, problem) = json(api.get(path).await).await;
        assert_eq!((got, problem["detail"].as_str()), (status, Some(detail)), "{path}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Rows of `table` (these columns) that `other` lacks, counted.
fn missing(env: &TestEnv, columns: &str, table: &str, other: &str) -> String {
    env.psql(&format!("SELECT count(*) FROM (SELECT {columns} FROM {table} EXCEPT SELECT {columns} FROM {other}) AS x"))
}

/// Every row of `table` (its `columns`) in `database`, as one digest and a count.
fn digest(database: &eventline_core::config::DatabaseUrl, columns: &str, table: &str) -> String {
    let sql = format!("SELECT count(*) || ' ' || md5(coalesce(string_agg(r::text, ';' ORDER BY r::text), '')) FROM (SELECT {columns} FROM {table}) AS r");
    let output = std::process::Command::new("psql").args([database.expose(), "-XAtq", "-c", &sql]).output().unwrap();
    assert!(output.status.success(), "{sql}: {}", stderr(&output));
    stdout(&output).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reference_projections_written_in_sql_equal_the_rust_ones() {
    use eventline_consumers::projections::rust;
    use eventline_reference::{daily_activity::DailyActivity, feature_usage_daily::FeatureUsageDaily};

    // The shipped daily_activity and feature_usage_daily are SQL (reference/projections); the
    // accounts' state machine in SQL is an example (examples/reference-sql).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reference-sql/projections");
    let env = TestEnv::with_app(Services::from_env(), &[("EVENTLINE_PROJECTIONS_DIR", dir.to_str().unwrap())]).await;
    for (domain, keys, events) in [("activity", "2000", "50000"), ("accounts", "500", "20000")] {
        let output = env.run(&["loadgen", "--domain", domain, "--keys", keys, "--events", events, "--seed", "7"]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    // Every rule of the accounts' state machine refuses something.
    let account = |id: &str, kind: &str, data: Value| {
        json!({"specversion": "1.0", "id": id, "source": "/bank", "type": format!("accounts.{kind}"),
               "subject": data["account_id"], "dataversion": if kind == "FundsDeposited" { 2 } else { 1 }, "data": data})
    };
    let deposit = |id: &str, account_id: &str, currency: &str| {
        account(
            id,
            "FundsDeposited",
            json!({"account_id": account_id, "amount_minor": 5, "currency": currency, "channel": "card"}),
        )
    };
    env.publish(
        "refusals.ndjson",
        &[
            account("x1", "AccountOpened", json!({"account_id": "x-1", "owner": "o", "currency": "EUR"})),
            account("x2", "AccountOpened", json!({"account_id": "x-1", "owner": "o", "currency": "EUR"})),
            deposit("x3", "x-1", "USD"),
            account("x4", "AccountClosed", json!({"account_id": "x-2"})),
            deposit("x5", "ghost", "EUR"),
            account("x6", "AccountOpened", json!({"account_id": "x-3", "owner": "o", "currency": "EUR"})),
            account("x7", "AccountClosed", json!({"account_id": "x-3"})),
            deposit("x8", "x-3", "EUR"),
        ],
    );
    let projections = ["daily_activity", "feature_usage_daily", "account_balances", "account_balances_sql"];
    let mut args = vec!["worker"];
    args.extend(projections);
    let _worker = env.spawn("worker", &args, &[("EVENTLINE_BATCH_MAX_EVENTS", "1000")]);
    for projection in projections {
        let total = if projection.starts_with("account") { 20_008 } else { 50_000 };
        wait_until(&format!("{projection} to pass every event"), || async {
            env.applied_through(projection).await == total
        })
        .await;
    }

    // The former Rust versions of the activity projections, on the same topic in a database of
    // their own (the tables have the same names), in consumer groups of their own.
    let twin = env.database_url.with_database(&format!("eventline_test_{}_rust", env.id));
    eventline_store::create_database_if_missing(&twin, std::time::Duration::from_secs(10)).await.unwrap();
    let twin_store = eventline_store::Store::connect(&twin, 4, std::time::Duration::from_secs(10)).await.unwrap();
    twin_store.migrate().await.unwrap();
    let settings = eventline_core::config::Settings::load_from(
        None,
        &std::collections::HashMap::from([
            ("DATABASE_URL".to_string(), twin.expose().to_string()),
            ("EVENTLINE_KAFKA_BROKERS".to_string(), env.kafka.bootstrap_servers().to_string()),
            ("EVENTLINE_NAMESPACE".to_string(), env.id.clone()),
            ("EVENTLINE_BATCH_MAX_EVENTS".to_string(), "1000".to_string()),
        ]),
    )
    .unwrap();
    let registry = std::sync::Arc::new(eventline_reference::registry().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let mut twins = Vec::new();
    for projection in [rust::<DailyActivity>(), rust::<FeatureUsageDaily>()] {
        projection.migrate(&twin_store).await.unwrap();
        let (settings, registry, store, stop) = (settings.clone(), registry.clone(), twin_store.clone(), stop.clone());
        let group = format!("{}.rust-twin.{}", env.id, projection.name());
        twins.push(tokio::spawn(async move { projection.run_in_group(&settings, registry, store, group, stop).await }));
    }
    for projection in ["daily_activity", "feature_usage_daily"] {
        wait_until(&format!("the Rust {projection} to pass every event"), || async {
            twin_store.checkpoints(projection).await.unwrap().iter().map(|c| c.next_offset).sum::<i64>() == 50_000
        })
        .await;
    }
    stop.cancel();
    for twin in twins {
        twin.await.unwrap().unwrap();
    }
    for (columns, table) in [
        ("day, active_users, page_views", "daily_activity"),
        ("day, user_id", "daily_activity_users"),
        ("day, feature, uses, unique_users", "feature_usage_daily"),
        ("day, feature, user_id", "feature_usage_daily_users"),
    ] {
        let shipped = digest(&env.database_url, columns, table);
        assert!(!shipped.starts_with("0 "), "{table} is empty");
        assert_eq!(shipped, digest(&twin, columns, table), "{table}: SQL and Rust rows (count and digest)");
    }
    twin_store.close().await;
    eventline_store::drop_database(&twin).await.unwrap();

    // The accounts' state machine: Rust and SQL side by side in the shipped database.
    let columns =
        "account_id, owner, currency, balance_minor, status::text, events_applied, last_event_id, last_event_time";
    let rows = env.psql("SELECT count(*) FROM account_balances");
    assert!(rows.parse::<i64>().unwrap() > 0, "account_balances is empty");
    assert_eq!(rows, env.psql("SELECT count(*) FROM account_balances_sql"), "row counts");
    assert_eq!(missing(&env, columns, "account_balances", "account_balances_sql"), "0");
    assert_eq!(missing(&env, columns, "account_balances_sql", "account_balances"), "0");
    // The same events refused, for the same reasons.
    let letters = |projection: &str| {
        env.psql(&format!(
            "SELECT count(*) || ' ' || count(*) FILTER (WHERE reason_kind = 'rejected') FROM eventline_dead_letters WHERE projection = '{projection}'"
        ))
    };
    assert_eq!(letters("account_balances"), letters("account_balances_sql"));
    assert!(letters("account_balances").starts_with('5'), "each rule refused: {}", letters("account_balances"));
    assert_eq!(
        env.psql("SELECT count(*) FROM (SELECT event_id, reason FROM eventline_dead_letters WHERE projection = 'account_balances' EXCEPT SELECT event_id, reason FROM eventline_dead_letters WHERE projection = 'account_balances_sql') AS x"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn loadgen_makes_traffic_for_a_users_registry_from_its_examples() {
    let dir = projections("loadgen", |_| {});
    let env = inventory(&dir).await;
    let output = env.run(&["loadgen", "--events", "200", "--keys", "5", "--prefix", "lg", "--seed", "3", "--ndjson"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let events: Vec<Value> = stdout(&output).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 200);
    let types: std::collections::BTreeSet<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.into_iter().collect::<Vec<_>>(), ["inventory.ItemShipped", "inventory.StockReceived"]);
    let keys: std::collections::BTreeSet<&str> = events.iter().map(|e| e["subject"].as_str().unwrap()).collect();
    assert_eq!(keys.into_iter().collect::<Vec<_>>(), ["lg-0", "lg-1", "lg-2", "lg-3", "lg-4"]);
    assert!(events.iter().all(|e| e["data"]["sku"] == e["subject"]), "the key field is the subject");

    // Published and applied by the user's projection (its rule refuses what outruns the stock).
    let published = env.run(&["loadgen", "--domain", "inventory", "--events", "100", "--keys", "5"]);
    assert!(published.status.success(), "{}", stderr(&published));
    let _worker = env.spawn("worker", &["worker", "stock"], &[]);
    wait_until("the worker to pass every event", || async { env.applied_through("stock").await == 100 }).await;

    let unknown = env.run(&["loadgen", "--domain", "accounts"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(errors(&unknown), "error: unknown domain `accounts` (the registry has: inventory, all)\n");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn loadgen_makes_traffic_from_a_users_sample_events() {
    let dir = projections("samples", |_| {});
    let env = inventory(&dir).await;
    let samples = env.write_ndjson("samples.ndjson", &[received("a", "x", 7), received("b", "y", 9)]);
    let samples = samples.to_str().unwrap();
    let output = env.run(&[
        "loadgen", "--from", samples, "--events", "50", "--keys", "3", "--prefix", "s", "--seed", "1", "--ndjson",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let events: Vec<Value> = stdout(&output).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 50);
    assert!(events.iter().all(|e| e["type"] == "inventory.StockReceived" && e["data"]["sku"] == e["subject"]));
    let quantities: std::collections::BTreeSet<i64> =
        events.iter().map(|e| e["data"]["quantity"].as_i64().unwrap()).collect();
    assert_eq!(quantities.into_iter().collect::<Vec<_>>(), [7, 9], "each event is one of the samples' data");
    let keys: std::collections::BTreeSet<&str> = events.iter().map(|e| e["subject"].as_str().unwrap()).collect();
    assert_eq!(keys.into_iter().collect::<Vec<_>>(), ["s-0", "s-1", "s-2"]);

    // Bad samples: refused, naming the file, and nothing published.
    let bad = env.write_ndjson("bad.ndjson", &[received("a", "x", 7), json!({"specversion": "1.0"})]);
    let refused = env.run(&["loadgen", "--from", bad.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(65), "{}", stderr(&refused));
    assert!(
        errors(&refused)
            .ends_with(&format!("error: {}: 1 invalid sample event(s); nothing was published\n", bad.display())),
        "{}",
        stderr(&refused)
    );
    let empty = env.write_ndjson("empty.ndjson", &[]);
    let refused = env.run(&["loadgen", "--from", empty.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(65));
    assert_eq!(errors(&refused), format!("error: {}: the sample file holds no event\n", empty.display()));
    let missing = env.run(&["loadgen", "--from", "/nonexistent.ndjson"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(errors(&missing).starts_with("error: cannot read /nonexistent.ndjson: "), "{}", stderr(&missing));
    let both = env.run(&["loadgen", "--from", samples, "--domain", "inventory"]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    let published: i64 = env.end_offsets("inventory.events").await.iter().sum();
    assert_eq!(published, 0, "nothing was published");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outbox_relay_and_tail_work_on_a_users_registry() {
    let dir = projections("outbox", |_| {});
    let env = inventory(&dir).await;
    let outbox_db = env.database_url.expose().to_string();
    let relay_env = [("EVENTLINE_OUTBOX_DATABASE_URL", outbox_db.as_str())];
    let relay = env.spawn("relay", &["outbox-relay", "--install"], &relay_env);
    wait_until("the relay to install the outbox", || async { relay.log().contains("Outbox relay started.") }).await;
    let rows: Vec<String> =
        [received("o1", "bolt", 10), shipped("o2", "bolt", 3)].iter().map(|event| format!("('{event}')")).collect();
    env.psql(&format!("INSERT INTO eventline_outbox (event) VALUES {}", rows.join(", ")));
    let _worker = env.spawn("worker", &["worker", "stock"], &[]);
    wait_until("the projection to apply the relayed events", || async { env.applied_through("stock").await == 2 })
        .await;
    assert_eq!(stock(&env), ["bolt|7|3"]);

    let tail = env.run(&["tail", "inventory.events", "--from", "start", "--no-follow", "--format", "ndjson"]);
    assert!(tail.status.success(), "{}", stderr(&tail));
    let ids: Vec<String> = stdout(&tail)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["o1", "o2"]);
    std::fs::remove_dir_all(dir).unwrap();
}
