//! The registry checks behind `eventline schemas check`, beyond what loading already refuses:
//! every schema's examples are valid, every upcaster turns them into valid data of the next
//! version, every example reaches the current version in a form the code reads, and a new version
//! without an upcaster accepts everything the previous one did (backward compatible), and personal
//! data is labelled (every text field classified; personal fields' types name their data subject;
//! the key and the data subject are not personal).
//!
//! The compatibility rules cover the JSON Schema keywords the registry uses; a change to any other
//! constraining keyword is reported as unprovable, which an upcaster resolves.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use crate::classification;
use crate::registry::{upcaster_path, Registry, SchemaVersion, TypeContract};

/// A finding: the file it concerns (as users see it) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Keywords that only annotate a schema.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    classification::KEYWORD,
    classification::BLIND_INDEX,
];

pub fn check(registry: &Registry) -> Vec<Problem> {
    let mut problems = Vec::new();
    for contract in registry.contracts() {
        for version in contract.versions.values() {
            check_examples(registry, contract, version, &mut problems);
            check_classification(registry, contract, version, &mut problems);
        }
        for (&from, old) in &contract.versions {
            let Some(new) = contract.versions.get(&(from + 1)) else { continue };
            if contract.upcasters.contains_key(&from) {
                continue;
            }
            if let Some(reason) = incompatibility(&old.schema, &new.schema, from, from + 1) {
                let type_name = &contract.event_type[contract.domain.len() + 1..];
                problems.push(Problem {
                    path: registry.shown_path(&new.path),
                    reason: format!(
                        "not backward compatible with v{from}: {reason}; add an upcaster {}",
                        registry.shown_path(&upcaster_path(&contract.domain, type_name, from))
                    ),
                });
            }
        }
    }
    problems
}

fn check_examples(registry: &Registry, contract: &TypeContract, version: &SchemaVersion, problems: &mut Vec<Problem>) {
    let path = registry.shown_path(&version.path);
    let examples = version.schema.get("examples").and_then(Value::as_array).cloned().unwrap_or_default();
    if examples.is_empty() {
        problems.push(Problem {
            path,
            reason: "needs at least one entry in `examples`, so its upcasting can be checked".into(),
        });
        return;
    }
    for (index, example) in examples.iter().enumerate() {
        if !version.accepts(example) {
            problems
                .push(Problem { path: path.clone(), reason: format!("example {index} does not satisfy the schema") });
            continue;
        }
        let mut data = example.clone();
        for step in version.version..contract.current() {
            if let Some(upcaster) = contract.upcasters.get(&step) {
                upcaster.apply(&mut data);
            }
            let next = &contract.versions[&(step + 1)];
            if !next.accepts(&data) {
                problems.push(Problem {
                    path: path.clone(),
                    reason: format!(
                        "example {index}, brought up to v{}, does not satisfy {}",
                        step + 1,
                        registry.shown_path(&next.path)
                    ),
                });
                return;
            }
        }
    }
}

/// Every string field says whether it is about a person; a personal field's type names the
/// field holding its person's id (`data_subject`), a plain string field of every version; and
/// neither the key nor that id is personal, since both travel and are kept in clear.
fn check_classification(
    registry: &Registry,
    contract: &TypeContract,
    version: &SchemaVersion,
    problems: &mut Vec<Problem>,
) {
    let path = registry.shown_path(&version.path);
    let mut problem = |reason: String| problems.push(Problem { path: path.clone(), reason });
    for field in classification::fields(&version.schema) {
        let name = &field.name;
        match field.classification {
            Err(value) => problem(format!(
                "`{name}` has `{}` {value}; it must be \"personal\", \"sensitive\" or \"none\"",
                classification::KEYWORD
            )),
            Ok(None) if field.holds_strings => problem(format!(
                "`{name}` holds text but has no `{}`: say whether it is \"personal\", \"sensitive\" or \"none\"",
                classification::KEYWORD
            )),
            Ok(Some(class)) if class.is_personal() => {
                if *name == contract.key {
                    problem(format!(
                        "`{name}` is the key (the event's subject and Kafka key, which travel in clear), so it cannot be {}",
                        class.as_str()
                    ));
                } else if Some(name) == contract.data_subject.as_ref() {
                    problem(format!(
                        "`{name}` is the data subject (the person's id, kept in clear to find their key), so it cannot be {}; use a pseudonymous id",
                        class.as_str()
                    ));
                } else if contract.data_subject.is_none() {
                    problem(format!(
                        "`{name}` is {}, but the catalog names no `data_subject` for {} (the field holding the id of the person it is about)",
                        class.as_str(),
                        contract.event_type
                    ));
                }
            }
            Ok(_) => {}
        }
    }
    for name in personal_inside_arrays(&version.schema, "", false) {
        problem(format!(
            "`{name}` is personal inside an array that is not: classify the array itself, which is sealed whole"
        ));
    }
    for (name, annotation, problem_with_it) in blind_indexes(&version.schema, "", Placement::Outside) {
        let reason = match problem_with_it {
            _ if !annotation.as_str().is_some_and(is_index_name) => format!(
                "`{name}` has `{}` {annotation}; it must name the index: 1 to 63 of a-z, 0-9, `.`, `_` and `-`, starting with a letter or digit",
                classification::BLIND_INDEX
            ),
            Some(placement) => format!("`{name}` has `{}` but {placement}", classification::BLIND_INDEX),
            None => continue,
        };
        problem(reason);
    }
    if let Some(subject) = &contract.data_subject {
        let required = version.schema["required"].as_array().is_some_and(|r| r.iter().any(|f| f == subject.as_str()));
        if !required || version.schema["properties"][subject]["type"] != "string" {
            problem(format!(
                "the catalog's `data_subject` of {} is `{subject}`, which this version does not require as a string",
                contract.event_type
            ));
        }
    }
}

/// Where a field sits, for a blind index: only an outermost personal field outside arrays is
/// sealed on its own, and so can have one.
#[derive(Clone, Copy)]
enum Placement {
    Outside,
    InArray,
    InPersonal,
}

/// Each field with a blind index: its name, the annotation, and why it cannot have one (if so).
fn blind_indexes(schema: &Value, name: &str, placement: Placement) -> Vec<(String, Value, Option<&'static str>)> {
    let mut found = Vec::new();
    let class = |field: &Value| field.get(classification::KEYWORD).and_then(classification::Classification::parse);
    let mut visit = |field: &Value, name: String, placement: Placement| {
        let personal = class(field).is_some_and(|c| c.is_personal());
        // A classification that names none is reported already.
        let unclassifiable = field.get(classification::KEYWORD).is_some() && class(field).is_none();
        if let Some(annotation) = field.get(classification::BLIND_INDEX).filter(|_| !unclassifiable) {
            let problem = match placement {
                Placement::InArray => Some("it is inside an array: give the array's field the index, or none"),
                Placement::InPersonal => Some("it is inside a personal field, which is sealed whole"),
                Placement::Outside if !personal => Some(
                    "it is not classified personal or sensitive: only sealed values need a blind index (filter on this field itself)",
                ),
                Placement::Outside => None,
            };
            found.push((name.clone(), annotation.clone(), problem));
        }
        let inner = match placement {
            Placement::Outside if personal => Placement::InPersonal,
            other => other,
        };
        found.extend(blind_indexes(field, &name, inner));
    };
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (property, field) in properties {
            visit(field, if name.is_empty() { property.clone() } else { format!("{name}.{property}") }, placement);
        }
    }
    if let Some(items) = schema.get("items").filter(|items| items.is_object()) {
        let inner = match placement {
            Placement::InPersonal => Placement::InPersonal,
            _ => Placement::InArray,
        };
        visit(items, format!("{name}[]"), inner);
    }
    found
}

/// A blind index's name: short, and safe to show and log.
fn is_index_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// The fields classified personal below an array's items whose array is not (only whole fields
/// outside arrays are sealed).
fn personal_inside_arrays(schema: &Value, name: &str, in_array: bool) -> Vec<String> {
    let mut found = Vec::new();
    let personal = |field: &Value| {
        field
            .get(classification::KEYWORD)
            .and_then(classification::Classification::parse)
            .is_some_and(|c| c.is_personal())
    };
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (property, field) in properties {
            let name = if name.is_empty() { property.clone() } else { format!("{name}.{property}") };
            if personal(field) {
                if in_array {
                    found.push(name);
                }
            } else {
                found.extend(personal_inside_arrays(field, &name, in_array));
            }
        }
    }
    if let Some(items) = schema.get("items").filter(|items| items.is_object()) {
        let name = format!("{name}[]");
        if personal(items) {
            found.push(name);
        } else {
            found.extend(personal_inside_arrays(items, &name, true));
        }
    }
    found
}

/// Why data valid under `old` might be refused by `new`, if it might.
pub fn incompatibility(old: &Value, new: &Value, old_version: u32, new_version: u32) -> Option<String> {
    let empty = Map::new();
    let properties =
        |schema: &Value| schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_else(|| empty.clone());
    let required = |schema: &Value| -> BTreeSet<String> {
        schema["required"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect()
    };
    let (old_properties, new_properties) = (properties(old), properties(new));
    if let Some(added) = required(new).difference(&required(old)).next() {
        return Some(format!("`{added}` is required in v{new_version} but not in v{old_version}"));
    }
    if new.get("additionalProperties") == Some(&Value::Bool(false)) {
        if let Some(dropped) = old_properties.keys().find(|k| !new_properties.contains_key(*k)) {
            return Some(format!("`{dropped}` is allowed in v{old_version} but not in v{new_version}"));
        }
    }
    for (name, old_field) in &old_properties {
        if let Some(new_field) = new_properties.get(name) {
            if let Some(reason) = field_narrowing(old_field, new_field) {
                return Some(format!("`{name}` {reason}"));
            }
        }
    }
    let structural = ["type", "properties", "required", "additionalProperties"];
    unprovable_change(old, new, &structural)
        .map(|keyword| format!("the schema's `{keyword}` changes, which the check cannot prove compatible"))
}

fn field_narrowing(old: &Value, new: &Value) -> Option<String> {
    let types = |field: &Value| -> BTreeSet<String> {
        match &field["type"] {
            Value::String(t) => BTreeSet::from([t.clone()]),
            Value::Array(list) => list.iter().filter_map(|t| t.as_str().map(String::from)).collect(),
            _ => BTreeSet::new(),
        }
    };
    let (old_types, new_types) = (types(old), types(new));
    let widened = |t: &String| new_types.contains(t) || (t == "integer" && new_types.contains("number"));
    if !new_types.is_empty() && !old_types.iter().all(widened) {
        return Some(format!("changes type from {old_types:?} to {new_types:?}"));
    }
    let number = |field: &Value, key: &str| field.get(key).and_then(Value::as_f64);
    let rises = |key: &str| match (number(old, key), number(new, key)) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(o), Some(n)) => n > o,
    };
    let falls = |key: &str| match (number(old, key), number(new, key)) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(o), Some(n)) => n < o,
    };
    for key in ["minimum", "exclusiveMinimum", "minLength"] {
        if rises(key) {
            return Some(format!("has a stricter `{key}`"));
        }
    }
    for key in ["maximum", "exclusiveMaximum", "maxLength"] {
        if falls(key) {
            return Some(format!("has a stricter `{key}`"));
        }
    }
    if let Some(new_pattern) = new.get("pattern") {
        if old.get("pattern") != Some(new_pattern) {
            return Some("has a new `pattern`".into());
        }
    }
    if let Some(new_values) = new.get("enum").and_then(Value::as_array) {
        let old_values = old.get("enum").and_then(Value::as_array);
        let kept = old_values.is_some_and(|old| old.iter().all(|v| new_values.contains(v)));
        if !kept {
            return Some("allows fewer values (`enum`)".into());
        }
    }
    let compared = [
        "type",
        "minimum",
        "exclusiveMinimum",
        "minLength",
        "maximum",
        "exclusiveMaximum",
        "maxLength",
        "pattern",
        "enum",
    ];
    unprovable_change(old, new, &compared)
        .map(|keyword| format!("changes `{keyword}`, which the check cannot prove compatible"))
}

/// A constraining keyword, other than those compared, that differs between the two schemas.
fn unprovable_change<'a>(old: &'a Value, new: &'a Value, compared: &[&str]) -> Option<&'a String> {
    let keys: BTreeSet<&String> = old.as_object().into_iter().chain(new.as_object()).flat_map(|o| o.keys()).collect();
    keys.into_iter()
        .filter(|k| !compared.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()))
        .find(|k| old.get(k.as_str()) != new.get(k.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(properties: Value, required: &[&str]) -> Value {
        json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
    }

    #[test]
    fn adding_an_optional_field_is_compatible() {
        let old = schema(json!({"id": {"type": "string"}}), &["id"]);
        let new = schema(json!({"id": {"type": "string"}, "note": {"type": "string"}}), &["id"]);
        assert_eq!(incompatibility(&old, &new, 1, 2), None);
    }

    #[test]
    fn each_narrowing_is_named() {
        let base = || json!({"id": {"type": "string"}, "n": {"type": "integer", "minimum": 1}, "c": {"type": "string", "enum": ["a", "b"]}});
        let old = schema(base(), &["id"]);
        let cases: Vec<(Value, Vec<&str>, &str)> = vec![
            (base(), vec!["id", "n"], "`n` is required in v2 but not in v1"),
            (
                json!({"id": {"type": "string"}, "c": {"type": "string", "enum": ["a", "b"]}}),
                vec!["id"],
                "`n` is allowed in v1 but not in v2",
            ),
            (
                {
                    let mut p = base();
                    p["n"]["type"] = json!("string");
                    p
                },
                vec!["id"],
                "`n` changes type from {\"integer\"} to {\"string\"}",
            ),
            (
                {
                    let mut p = base();
                    p["n"]["minimum"] = json!(5);
                    p
                },
                vec!["id"],
                "`n` has a stricter `minimum`",
            ),
            (
                {
                    let mut p = base();
                    p["id"]["maxLength"] = json!(5);
                    p
                },
                vec!["id"],
                "`id` has a stricter `maxLength`",
            ),
            (
                {
                    let mut p = base();
                    p["id"]["pattern"] = json!("^x");
                    p
                },
                vec!["id"],
                "`id` has a new `pattern`",
            ),
            (
                {
                    let mut p = base();
                    p["c"]["enum"] = json!(["a"]);
                    p
                },
                vec!["id"],
                "`c` allows fewer values (`enum`)",
            ),
            (
                {
                    let mut p = base();
                    p["id"]["format"] = json!("email");
                    p
                },
                vec!["id"],
                "`id` changes `format`, which the check cannot prove compatible",
            ),
        ];
        for (properties, required, expected) in cases {
            let new = schema(properties, &required);
            assert_eq!(incompatibility(&old, &new, 1, 2).as_deref(), Some(expected));
        }
    }

    #[test]
    fn widening_is_compatible() {
        let old = schema(json!({"n": {"type": "integer", "minimum": 1, "enum": [1, 2]}}), &["n"]);
        let new = schema(json!({"n": {"type": "number", "minimum": 0, "enum": [1, 2, 3]}}), &[]);
        assert_eq!(incompatibility(&old, &new, 1, 2), None);
    }
}
