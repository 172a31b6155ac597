//! The README's tutorial ("Your own domain in ten minutes") is `examples/inventory/tutorial.sh`,
//! shown in the README verbatim; this runs it as a user would, against the real services, and
//! checks what each step prints.

use crate::helpers::{stderr, stdout, Services, TestEnv};

const SCRIPT: &str = "examples/inventory/tutorial.sh";

#[test]
fn the_readme_shows_the_tutorial_script_verbatim() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let script = std::fs::read_to_string(root.join(SCRIPT)).unwrap();
    let body: String =
        script.lines().skip_while(|l| l.starts_with('#') || l.starts_with("set ")).collect::<Vec<_>>().join("\n");
    assert!(readme.contains(body.trim()), "README.md must show {SCRIPT} from its first step on");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tutorial_runs_from_the_readme_files() {
    // Only the test's own database and topics come from the harness; the script does the rest.
    let schemas = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/inventory/schemas");
    let env = TestEnv::with_app(Services::from_env(), &[("EVENTLINE_SCHEMAS_DIR", schemas.to_str().unwrap())]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let output = env.script(SCRIPT, &[("EVENTLINE_HTTP_ADDR", &addr)]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(output.status.success(), "the tutorial failed:\n{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    let read = |prefix: &str| -> serde_json::Value {
        let line = lines.iter().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in:\n{out}"));
        serde_json::from_str(line).unwrap()
    };
    let first = read("{\"sku\":\"bolt\",\"on_hand\":6,");
    assert_eq!((first["on_hand"].as_i64(), first["shipped"].as_i64()), (Some(6), Some(4)));
    assert!(first.get("last_order_id").is_none(), "version 1 has no last order");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stock") && l.contains("rejected") && l.ends_with("cannot ship 40 of bolt: 6 on hand")),
        "{out}"
    );
    assert_eq!(read("{\"event\":\"cutover\"")["live_generation"], 2);
    let last = lines.last().unwrap();
    let after: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(
        (after["on_hand"].as_i64(), after["last_order_id"].as_str()),
        (Some(6), Some("o-1")),
        "version 2, rebuilt from the topic, remembers the last order: {out}"
    );

    // And back: a rollback makes version 1's generation live again (its table never had the
    // last order's column).
    let projections = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/inventory/projections");
    let rollback = env
        .command(&["rebuild", "rollback", "stock"])
        .env("EVENTLINE_PROJECTIONS_DIR", &projections)
        .output()
        .expect("eventline runs");
    assert!(rollback.status.success(), "{}", stderr(&rollback));
    assert_eq!(
        env.psql("SELECT generation FROM eventline_generations WHERE projection = 'stock' AND state = 'live'"),
        "1"
    );
    assert_eq!(env.psql("SELECT on_hand FROM stock_levels"), "6");
    assert_eq!(
        env.psql("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'last_order_id'"),
        "0",
        "version 2's migration only ever ran in generation 2's schema"
    );
}
