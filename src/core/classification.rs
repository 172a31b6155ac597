//! Which data fields are about a person. A schema says so field by field with the annotation
//! `"x-classification"`: `personal` (identifies or describes a person: a name, an address, a
//! session), `sensitive` (personal data of a special kind: health, beliefs, financial detail) or
//! `none`. The catalog names, per type, the data field holding the id of the person its personal
//! fields are about (`data_subject`). `schemas check` holds a registry to the rules; contract
//! errors never repeat a personal field's value.

use serde_json::Value;

/// The annotation a field's schema carries.
pub const KEYWORD: &str = "x-classification";

/// The annotation that gives a personal field a blind index, by name (`"x-blind-index":
/// "account-owner"`): its values can then be found by equality once sealed. Fields of several
/// types (or versions) that hold the same thing share one name.
pub const BLIND_INDEX: &str = "x-blind-index";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    Personal,
    Sensitive,
    None,
}

impl Classification {
    pub fn parse(value: &Value) -> Option<Self> {
        match value.as_str()? {
            "personal" => Some(Self::Personal),
            "sensitive" => Some(Self::Sensitive),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    /// Whether values so classified are about a person (and so never shown where they do not belong).
    pub fn is_personal(self) -> bool {
        matches!(self, Self::Personal | Self::Sensitive)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Personal => "personal",
            Self::Sensitive => "sensitive",
            Self::None => "none",
        }
    }
}

/// One field of a data schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Where it sits in `data`, as people read it: `owner`, `address.city`, `phones[]`.
    pub name: String,
    /// What it says, its own or an enclosing field's; `Err` holds an annotation that names no
    /// classification.
    pub classification: Result<Option<Classification>, Value>,
    /// Whether its values may be strings.
    pub holds_strings: bool,
}

/// Every field of `schema` (an object schema), nested objects' and arrays' items included,
/// each with the classification that governs it (an enclosing field's covers what it holds).
pub fn fields(schema: &Value) -> Vec<Field> {
    let mut found = Vec::new();
    walk(schema, "", None, &mut found);
    found
}

fn walk(schema: &Value, name: &str, inherited: Option<Classification>, found: &mut Vec<Field>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (property, field) in properties {
            let name = if name.is_empty() { property.clone() } else { format!("{name}.{property}") };
            visit(field, name, inherited, found);
        }
    }
    if let Some(items) = schema.get("items").filter(|items| items.is_object()) {
        visit(items, format!("{name}[]"), inherited, found);
    }
}

fn visit(field: &Value, name: String, inherited: Option<Classification>, found: &mut Vec<Field>) {
    let classification = match field.get(KEYWORD) {
        None => Ok(inherited),
        Some(value) => Classification::parse(value).map(Some).ok_or_else(|| value.clone()),
    };
    let holds_strings = match field.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
        _ => false,
    };
    let governing = classification.clone().unwrap_or(inherited);
    found.push(Field { name: name.clone(), classification, holds_strings });
    walk(field, &name, governing, found);
}

/// The classification governing the value at `pointer` (a JSON pointer into `data`): its own
/// field's, or the nearest enclosing field's.
pub fn at(schema: &Value, pointer: &str) -> Option<Classification> {
    let mut current = schema;
    let mut governing = None;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        let next = match current.get("properties").and_then(|p| p.get(&token)) {
            Some(field) => field,
            None => match current.get("items") {
                Some(items) if token.parse::<usize>().is_ok() => items,
                _ => break,
            },
        };
        if let Some(classification) = next.get(KEYWORD).and_then(Classification::parse) {
            governing = Some(classification);
        }
        current = next;
    }
    governing
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "id": {"type": "string", "x-classification": "none"},
                "name": {"type": "string", "x-classification": "personal"},
                "count": {"type": "integer"},
                "address": {
                    "type": "object",
                    "x-classification": "sensitive",
                    "properties": {"city": {"type": ["string", "null"]}}
                },
                "tags": {"type": "array", "items": {"type": "string"}},
                "odd": {"type": "string", "x-classification": "secret"}
            }
        })
    }

    #[test]
    fn every_field_is_listed_with_what_governs_it() {
        let fields = fields(&schema());
        type Listed<'a> = (&'a str, Result<Option<&'a str>, &'a Value>, bool);
        let listed: Vec<Listed> = fields
            .iter()
            .map(|f| {
                (f.name.as_str(), f.classification.as_ref().map(|c| c.map(Classification::as_str)), f.holds_strings)
            })
            .collect();
        let secret = json!("secret");
        assert_eq!(
            listed,
            [
                ("id", Ok(Some("none")), true),
                ("name", Ok(Some("personal")), true),
                ("count", Ok(None), false),
                ("address", Ok(Some("sensitive")), false),
                ("address.city", Ok(Some("sensitive")), true),
                ("tags", Ok(None), false),
                ("tags[]", Ok(None), true),
                ("odd", Err(&secret), true),
            ]
        );
    }

    #[test]
    fn a_value_is_governed_by_its_field_or_the_nearest_enclosing_one() {
        let schema = schema();
        assert_eq!(at(&schema, "/name"), Some(Classification::Personal));
        assert_eq!(at(&schema, "/address/city"), Some(Classification::Sensitive));
        assert_eq!(at(&schema, "/id"), Some(Classification::None));
        assert_eq!(at(&schema, "/count"), None);
        assert_eq!(at(&schema, "/tags/3"), None);
        assert_eq!(at(&schema, "/unknown"), None);
        assert_eq!(at(&schema, ""), None);
    }
}
