//! Upcasters: declarative steps that turn a type's data of version N into version N+1.
//!
//! They are data, kept beside the schemas they bridge (`<Type>.vN-to-vN+1.upcast.json`), so a
//! schema change and its migration are reviewed together and need no code:
//!
//! ```json
//! {"from": 1, "to": 2, "operations": [{"op": "add", "path": "/channel", "value": "unknown"}]}
//! ```
//!
//! Operations, applied in order, with RFC 6901 JSON pointers into `data`:
//! - `add`: set `path` to `value` when it is absent;
//! - `set`: set `path` to `value` in any case;
//! - `rename`: move the value at `from` to `path` (nothing happens when `from` is absent);
//! - `remove`: drop `path` if present.

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operation {
    Add { path: String, value: Value },
    Set { path: String, value: Value },
    Rename { from: String, path: String },
    Remove { path: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpcasterFile {
    #[serde(rename = "$comment", default)]
    _comment: Option<String>,
    from: u32,
    to: u32,
    operations: Vec<Operation>,
}

/// One step from version `from` to `from + 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Upcaster {
    /// The file it came from, relative to the registry folder.
    pub path: String,
    pub from: u32,
    pub to: u32,
    operations: Vec<Operation>,
}

impl Upcaster {
    pub fn parse(path: &str, text: &str) -> Result<Self, String> {
        let file: UpcasterFile = serde_json::from_str(text).map_err(|e| format!("not a valid upcaster: {e}"))?;
        if file.to != file.from + 1 {
            return Err(format!("an upcaster goes one version up, not from {} to {}", file.from, file.to));
        }
        if file.operations.is_empty() {
            return Err("an upcaster needs at least one operation".into());
        }
        for operation in &file.operations {
            let pointers: Vec<&String> = match operation {
                Operation::Add { path, .. } | Operation::Set { path, .. } | Operation::Remove { path } => vec![path],
                Operation::Rename { from, path } => vec![from, path],
            };
            for pointer in pointers {
                if !pointer.starts_with('/') || pointer.len() < 2 {
                    return Err(format!("`{pointer}` is not a JSON pointer to a field (like /channel)"));
                }
            }
        }
        Ok(Self { path: path.to_string(), from: file.from, to: file.to, operations: file.operations })
    }

    /// Applies the operations to `data` in place. A pointer whose parent is not an object is
    /// passed over: the result is checked against the target version's schema by
    /// `eventline schemas check`, not here.
    pub fn apply(&self, data: &mut Value) {
        for operation in &self.operations {
            match operation {
                Operation::Add { path, value } => {
                    if let Some((parent, name)) = parent_of(data, path) {
                        parent.entry(name).or_insert_with(|| value.clone());
                    }
                }
                Operation::Set { path, value } => {
                    if let Some((parent, name)) = parent_of(data, path) {
                        parent.insert(name, value.clone());
                    }
                }
                Operation::Rename { from, path } => {
                    let moved = parent_of(data, from).and_then(|(parent, name)| parent.remove(&name));
                    if let (Some(value), Some((parent, name))) = (moved, parent_of(data, path)) {
                        parent.insert(name, value);
                    }
                }
                Operation::Remove { path } => {
                    if let Some((parent, name)) = parent_of(data, path) {
                        parent.remove(&name);
                    }
                }
            }
        }
    }
}

/// The object holding the last segment of `pointer`, and that segment unescaped.
fn parent_of<'a>(data: &'a mut Value, pointer: &str) -> Option<(&'a mut Map<String, Value>, String)> {
    let (parent, last) = pointer.rsplit_once('/')?;
    let name = last.replace("~1", "/").replace("~0", "~");
    data.pointer_mut(parent)?.as_object_mut().map(|object| (object, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn upcaster(operations: Value) -> Upcaster {
        let text = json!({"from": 1, "to": 2, "operations": operations}).to_string();
        Upcaster::parse("x.v1-to-v2.upcast.json", &text).unwrap()
    }

    #[test]
    fn operations_apply_in_order() {
        let step = upcaster(json!([
            {"op": "add", "path": "/channel", "value": "unknown"},
            {"op": "add", "path": "/kept", "value": "not used"},
            {"op": "rename", "from": "/amount", "path": "/amount_minor"},
            {"op": "remove", "path": "/legacy"},
            {"op": "set", "path": "/meta/source", "value": "upcast"},
            {"op": "rename", "from": "/absent", "path": "/never"},
        ]));
        let mut data = json!({"amount": 5, "legacy": true, "kept": "mine", "meta": {}});
        step.apply(&mut data);
        assert_eq!(
            data,
            json!({"amount_minor": 5, "channel": "unknown", "kept": "mine", "meta": {"source": "upcast"}})
        );
    }

    #[test]
    fn bad_upcasters_are_refused_with_the_reason() {
        let parse = |value: Value| Upcaster::parse("f", &value.to_string()).unwrap_err();
        assert_eq!(
            parse(json!({"from": 1, "to": 3, "operations": [{"op": "remove", "path": "/a"}]})),
            "an upcaster goes one version up, not from 1 to 3"
        );
        assert_eq!(parse(json!({"from": 1, "to": 2, "operations": []})), "an upcaster needs at least one operation");
        assert_eq!(
            parse(json!({"from": 1, "to": 2, "operations": [{"op": "remove", "path": "a"}]})),
            "`a` is not a JSON pointer to a field (like /channel)"
        );
        assert!(parse(json!({"from": 1, "to": 2, "operations": [{"op": "copy", "path": "/a"}]}))
            .starts_with("not a valid upcaster: unknown variant `copy`"));
    }
}
