//! The event catalog (`schemas/catalog.json`): for each domain, its topic, the data field that is the
//! Kafka key, and the event types with their data versions.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One domain: a topic, a key field, and the event types published on that topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    #[serde(skip)]
    pub name: String,
    /// Topic name before any namespace prefix.
    pub topic: String,
    /// Field of `data` holding the entity id; it is the CloudEvent `subject` and the Kafka key.
    pub key: String,
    pub types: BTreeMap<String, EventTypeEntry>,
}

/// What the catalog knows of one event type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTypeEntry {
    /// Data versions that may be published, oldest first.
    pub versions: Vec<u32>,
    /// The data field holding the id of the person the type's personal fields are about.
    #[serde(default)]
    pub data_subject: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CatalogFile {
    #[serde(rename = "$comment", default)]
    _comment: Option<String>,
    domains: BTreeMap<String, Domain>,
}

/// All domains, looked up by event type or topic.
#[derive(Debug, Clone)]
pub struct Catalog {
    domains: Vec<Domain>,
}

impl Catalog {
    /// Parses a catalog document.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let file: CatalogFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let domains: Vec<Domain> = file.domains.into_iter().map(|(name, domain)| Domain { name, ..domain }).collect();
        for domain in &domains {
            for (event_type, entry) in &domain.types {
                if !event_type.starts_with(&format!("{}.", domain.name)) {
                    return Err(format!("type `{event_type}` does not belong to domain `{}`", domain.name));
                }
                let consecutive =
                    !entry.versions.is_empty() && entry.versions.iter().copied().eq(1..=entry.versions.len() as u32);
                if !consecutive {
                    return Err(format!("type `{event_type}` must list its versions as 1, 2, 3… in order"));
                }
            }
        }
        Ok(Self { domains })
    }

    pub fn domains(&self) -> &[Domain] {
        &self.domains
    }

    /// The domain an event type belongs to, with the type's entry.
    pub fn lookup(&self, event_type: &str) -> Option<(&Domain, &EventTypeEntry)> {
        self.domains.iter().find_map(|d| d.types.get(event_type).map(|entry| (d, entry)))
    }

    /// The domain whose events travel on `topic` (un-namespaced).
    pub fn domain_for_topic(&self, topic: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.topic == topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_outside_its_domain_is_refused() {
        let err = Catalog::from_json(
            r#"{"domains": {"a": {"topic": "a.events", "key": "id", "types": {"b.X": {"versions": [1]}}}}}"#,
        )
        .unwrap_err();
        assert_eq!(err, "type `b.X` does not belong to domain `a`");
    }

    #[test]
    fn versions_start_at_one_without_gaps() {
        for versions in ["[]", "[0]", "[1, 3]", "[2, 1]"] {
            let text = format!(
                r#"{{"domains": {{"a": {{"topic": "a.events", "key": "id", "types": {{"a.X": {{"versions": {versions}}}}}}}}}}}"#
            );
            assert_eq!(
                Catalog::from_json(&text).unwrap_err(),
                "type `a.X` must list its versions as 1, 2, 3… in order",
                "{versions}"
            );
        }
    }
}
