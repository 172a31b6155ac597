//! The event catalog (`schemas/catalog.json`): for each domain, its topic, the data field that is the
//! Kafka key, and the event types with their data versions. It is data, embedded at build time, so
//! the binary and the contracts it was built against cannot drift apart.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

const CATALOG_JSON: &str = include_str!("../../schemas/catalog.json");

static BUILTIN: LazyLock<Catalog> =
    LazyLock::new(|| Catalog::from_json(CATALOG_JSON).expect("schemas/catalog.json is checked by the unit tests"));

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
    /// The catalog compiled into this binary.
    pub fn builtin() -> &'static Catalog {
        &BUILTIN
    }

    /// Parses a catalog document.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let file: CatalogFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let domains: Vec<Domain> = file.domains.into_iter().map(|(name, domain)| Domain { name, ..domain }).collect();
        for domain in &domains {
            for (event_type, entry) in &domain.types {
                if !event_type.starts_with(&format!("{}.", domain.name)) {
                    return Err(format!("type `{event_type}` does not belong to domain `{}`", domain.name));
                }
                if entry.versions.is_empty() || entry.versions.contains(&0) {
                    return Err(format!("type `{event_type}` needs versions of 1 or more"));
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
    fn the_builtin_catalog_has_the_three_reference_domains() {
        let catalog = Catalog::builtin();
        let topics: Vec<&str> = catalog.domains().iter().map(|d| d.topic.as_str()).collect();
        assert_eq!(topics, ["accounts.events", "activity.events", "projects.events"]);
        let (domain, entry) = catalog.lookup("accounts.FundsDeposited").unwrap();
        assert_eq!((domain.topic.as_str(), domain.key.as_str()), ("accounts.events", "account_id"));
        assert_eq!(entry.versions, [1]);
        assert_eq!(catalog.lookup("projects.TaskReopened").unwrap().0.key, "project_id");
        assert_eq!(catalog.lookup("activity.FeatureUsed").unwrap().0.key, "user_id");
        assert!(catalog.lookup("accounts.Nope").is_none());
    }

    #[test]
    fn a_type_outside_its_domain_is_refused() {
        let err = Catalog::from_json(
            r#"{"domains": {"a": {"topic": "a.events", "key": "id", "types": {"b.X": {"versions": [1]}}}}}"#,
        )
        .unwrap_err();
        assert_eq!(err, "type `b.X` does not belong to domain `a`");
    }
}
