//! `eventline schemas check` passes on the repository's `schemas/` and fails, naming the file and
//! the reason, on each kind of broken copy; a broken registry also stops start-up.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::helpers::{stderr, stdout, BIN};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A temporary copy of `schemas/` to break.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&Path::new(ROOT).join("schemas"), dir.path());
        Self { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// How the check names a file of this copy.
    fn shown(&self, relative: &str) -> String {
        format!("{}/{relative}", self.dir.path().display())
    }

    fn edit_json(&self, relative: &str, edit: impl FnOnce(&mut Value)) {
        let path = self.path(relative);
        let mut value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut value);
        std::fs::write(path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    }

    fn check(&self) -> Output {
        eventline(&["schemas", "check", "--dir", self.dir.path().to_str().unwrap()], &[])
    }

    /// The check fails with exactly these problems.
    fn assert_problems(&self, expected: &[String]) {
        let output = self.check();
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let mut lines: Vec<String> = expected.iter().map(|p| format!("error: {p}")).collect();
        lines.push(format!("error: {} problem(s) in the schema registry", expected.len()));
        assert_eq!(stderr(&output), lines.join("\n") + "\n");
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn eventline(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    for (var, _) in std::env::vars() {
        if var.starts_with("EVENTLINE_") {
            command.env_remove(var);
        }
    }
    command.args(args).envs(env.iter().copied()).output().unwrap()
}

const DEPOSIT_V2: &str = "accounts/FundsDeposited.v2.schema.json";

#[test]
fn the_shipped_registry_passes() {
    for args in [&["schemas", "check"][..], &["schemas", "check", "--dir", &format!("{ROOT}/schemas")][..]] {
        let output = eventline(args, &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(
            stdout(&output),
            "schemas: 11 event types in 3 domains, 12 schemas, 1 upcaster(s); all checks passed\n"
        );
    }
}

#[test]
fn a_file_that_is_not_json_is_named() {
    let fixture = Fixture::new();
    std::fs::write(fixture.path("activity/PageViewed.v1.schema.json"), "{").unwrap();
    let output = fixture.check();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "error: {}: not JSON: EOF while parsing an object at line 1 column 1\n",
            fixture.shown("activity/PageViewed.v1.schema.json")
        )
    );
}

#[test]
fn an_invalid_json_schema_is_named() {
    let fixture = Fixture::new();
    fixture.edit_json("projects/TaskCreated.v1.schema.json", |s| s["properties"]["title"]["type"] = json!("text"));
    let output = fixture.check();
    assert_eq!(output.status.code(), Some(1));
    let expected =
        format!("error: {}: not a valid JSON Schema: ", fixture.shown("projects/TaskCreated.v1.schema.json"));
    assert!(stderr(&output).starts_with(&expected), "{}", stderr(&output));
}

#[test]
fn a_catalog_entry_without_its_schema_is_named() {
    let fixture = Fixture::new();
    std::fs::remove_file(fixture.path("accounts/AccountClosed.v1.schema.json")).unwrap();
    let output = fixture.check();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "error: {}: accounts.AccountClosed v1: no schema file {}\n",
            fixture.shown("catalog.json"),
            fixture.shown("accounts/AccountClosed.v1.schema.json")
        )
    );
}

#[test]
fn a_file_the_catalog_does_not_list_is_named() {
    let fixture = Fixture::new();
    std::fs::write(fixture.path("accounts/AccountFrozen.v1.schema.json"), "{}").unwrap();
    let output = fixture.check();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with(&format!(
            "error: {}: not in the catalog",
            fixture.shown("accounts/AccountFrozen.v1.schema.json")
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_incompatible_version_without_an_upcaster_is_named() {
    let fixture = Fixture::new();
    std::fs::remove_file(fixture.path("accounts/FundsDeposited.v1-to-v2.upcast.json")).unwrap();
    fixture.assert_problems(&[
        format!(
            "{}: example 0, brought up to v2, does not satisfy {}",
            fixture.shown("accounts/FundsDeposited.v1.schema.json"),
            fixture.shown(DEPOSIT_V2)
        ),
        format!(
            "{}: not backward compatible with v1: `channel` is required in v2 but not in v1; add an upcaster {}",
            fixture.shown(DEPOSIT_V2),
            fixture.shown("accounts/FundsDeposited.v1-to-v2.upcast.json")
        ),
    ]);
}

#[test]
fn an_upcaster_whose_output_breaks_the_next_version_is_named() {
    let fixture = Fixture::new();
    fixture
        .edit_json("accounts/FundsDeposited.v1-to-v2.upcast.json", |u| u["operations"][0]["value"] = json!("pigeon"));
    fixture.assert_problems(&[format!(
        "{}: example 0, brought up to v2, does not satisfy {}",
        fixture.shown("accounts/FundsDeposited.v1.schema.json"),
        fixture.shown(DEPOSIT_V2)
    )]);
}

#[test]
fn an_example_its_schema_refuses_is_named() {
    let fixture = Fixture::new();
    fixture.edit_json("activity/FeatureUsed.v1.schema.json", |s| s["examples"][0]["feature"] = json!(""));
    fixture.assert_problems(&[format!(
        "{}: example 0 does not satisfy the schema",
        fixture.shown("activity/FeatureUsed.v1.schema.json")
    )]);
}

#[test]
fn each_way_of_mislabelling_personal_data_is_named() {
    let fixture = Fixture::new();
    let opened = "accounts/AccountOpened.v1.schema.json";
    let viewed = "activity/PageViewed.v1.schema.json";
    let assigned = "projects/TaskAssigned.v1.schema.json";
    let created = "projects/ProjectCreated.v1.schema.json";
    fixture.edit_json(opened, |s| {
        // Text without a classification, one it does not know, and a personal key.
        s["properties"]["currency"].as_object_mut().unwrap().remove("x-classification");
        s["properties"]["owner"]["x-classification"] = json!("secret");
        s["properties"]["account_id"]["x-classification"] = json!("personal");
    });
    // A personal data subject.
    fixture.edit_json(viewed, |s| s["properties"]["user_id"]["x-classification"] = json!("sensitive"));
    // A data subject the schema does not require.
    fixture.edit_json(assigned, |s| s["required"] = json!(["project_id", "task_id"]));
    // A personal field in a type without a data subject.
    fixture.edit_json(created, |s| s["properties"]["name"]["x-classification"] = json!("personal"));
    fixture.assert_problems(&[
        format!("{}: `account_id` is the key (the event's subject and Kafka key, which travel in clear), so it cannot be personal", fixture.shown(opened)),
        format!("{}: `owner` has `x-classification` \"secret\"; it must be \"personal\", \"sensitive\" or \"none\"", fixture.shown(opened)),
        format!("{}: `currency` holds text but has no `x-classification`: say whether it is \"personal\", \"sensitive\" or \"none\"", fixture.shown(opened)),
        format!("{}: `user_id` is the key (the event's subject and Kafka key, which travel in clear), so it cannot be sensitive", fixture.shown(viewed)),
        format!("{}: `name` is personal, but the catalog names no `data_subject` for projects.ProjectCreated (the field holding the id of the person it is about)", fixture.shown(created)),
        format!("{}: the catalog's `data_subject` of projects.TaskAssigned is `assignee`, which this version does not require as a string", fixture.shown(assigned)),
    ]);
}

#[test]
fn each_misplaced_blind_index_is_named() {
    let fixture = Fixture::new();
    let opened = "accounts/AccountOpened.v1.schema.json";
    fixture.edit_json(opened, |s| {
        // A field that is not personal, a name that is not one, and fields inside an array and
        // inside a personal field.
        s["properties"]["currency"]["x-blind-index"] = json!("currency");
        s["properties"]["owner"]["x-blind-index"] = json!("Account Owner");
        s["properties"]["aliases"] = json!({"type": "array", "x-classification": "personal",
            "items": {"type": "string", "x-classification": "personal", "x-blind-index": "alias"}});
        s["properties"]["address"] = json!({"type": "object", "x-classification": "personal",
            "properties": {"city": {"type": "string", "x-classification": "personal", "x-blind-index": "city"}}});
    });
    fixture.assert_problems(&[
        format!("{}: `owner` has `x-blind-index` \"Account Owner\"; it must name the index: 1 to 63 of a-z, 0-9, `.`, `_` and `-`, starting with a letter or digit", fixture.shown(opened)),
        format!("{}: `currency` has `x-blind-index` but it is not classified personal or sensitive: only sealed values need a blind index (filter on this field itself)", fixture.shown(opened)),
        format!("{}: `aliases[]` has `x-blind-index` but it is inside a personal field, which is sealed whole", fixture.shown(opened)),
        format!("{}: `address.city` has `x-blind-index` but it is inside a personal field, which is sealed whole", fixture.shown(opened)),
    ]);
}

#[test]
fn a_personal_field_inside_an_array_is_named() {
    let fixture = Fixture::new();
    let opened = "accounts/AccountOpened.v1.schema.json";
    fixture.edit_json(opened, |s| {
        s["properties"]["aliases"] = json!({"type": "array", "x-classification": "none",
            "items": {"type": "string", "x-classification": "personal"}});
    });
    fixture.assert_problems(&[format!(
        "{}: `aliases[]` is personal inside an array that is not: classify the array itself, which is sealed whole",
        fixture.shown(opened)
    )]);
}

#[test]
fn a_personal_data_subject_is_named() {
    let fixture = Fixture::new();
    let assigned = "projects/TaskAssigned.v1.schema.json";
    fixture.edit_json(assigned, |s| s["properties"]["assignee"]["x-classification"] = json!("personal"));
    fixture.assert_problems(&[format!(
        "{}: `assignee` is the data subject (the person's id, kept in clear to find their key), so it cannot be personal; use a pseudonymous id",
        fixture.shown(assigned)
    )]);
}

#[test]
fn a_version_a_projection_does_not_declare_is_named() {
    let fixture = Fixture::new();
    // A compatible v2 of AccountClosed (an optional reason): nothing is wrong with the schemas,
    // but account_balances reads accounts.events and has not declared it handles v2, and this
    // build's code reads v1.
    fixture.edit_json("catalog.json", |c| {
        c["domains"]["accounts"]["types"]["accounts.AccountClosed"]["versions"] = json!([1, 2])
    });
    let mut v2: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.path("accounts/AccountClosed.v1.schema.json")).unwrap())
            .unwrap();
    v2["properties"]["reason"] = json!({"type": "string", "x-classification": "none"});
    std::fs::write(fixture.path("accounts/AccountClosed.v2.schema.json"), v2.to_string()).unwrap();
    fixture.assert_problems(&[format!(
            "{}: projection account_balances reads accounts.events but does not declare that it handles accounts.AccountClosed v2",
            fixture.shown("accounts/AccountClosed.v2.schema.json")
    )]);
    // A worker refuses to start on it; the gateway's commands do not mind.
    let dir = fixture.dir.path().to_str().unwrap();
    let output = eventline(&["worker", "account_balances"], &[("EVENTLINE_SCHEMAS_DIR", dir)]);
    assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        format!(
            "error: invalid schema registry: {}: projection account_balances reads accounts.events but does not declare that it handles accounts.AccountClosed v2\n",
            fixture.shown("accounts/AccountClosed.v2.schema.json")
        )
    );
}

#[test]
fn a_broken_registry_stops_start_up_with_the_file_and_reason() {
    let fixture = Fixture::new();
    std::fs::remove_file(fixture.path(DEPOSIT_V2)).unwrap();
    let dir = fixture.dir.path().to_str().unwrap();
    let output = eventline(&["publish", "/dev/null"], &[("EVENTLINE_SCHEMAS_DIR", dir)]);
    assert_eq!(output.status.code(), Some(78));
    assert_eq!(
        stderr(&output),
        format!(
            "error: invalid schema registry: {}: accounts.FundsDeposited v2: no schema file {}\n",
            fixture.shown("catalog.json"),
            fixture.shown(DEPOSIT_V2)
        )
    );
}
