//! Synthetic, valid traffic for any registry, from its schemas' examples; and the helpers
//! every generator shares (an application's own generators, such as the reference one, use them).

use std::sync::Arc;

use chrono::Utc;
use eventline_core::contract::ValidatedEvent;
use eventline_core::registry::Registry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// A generated event, validated: generators write only valid ones.
pub fn validated(registry: &Registry, value: serde_json::Value) -> ValidatedEvent {
    let envelope =
        eventline_core::envelope::CloudEvent::from_value(value).expect("the generator writes valid envelopes");
    registry.validate(envelope).expect("the generator writes valid events")
}

/// A generated event's envelope, timed now.
pub fn envelope(id: String, event_type: &str, subject: &str, data: serde_json::Value) -> serde_json::Value {
    json!({
        "specversion": "1.0", "id": id, "source": "/eventline/loadgen", "type": event_type, "subject": subject,
        "time": Utc::now().to_rfc3339(), "datacontenttype": "application/json", "data": data,
    })
}

/// Traffic for any registry, made of its schemas' examples: each event a random example of a
/// random type of `domains` at its current version, keyed by one of `keys` entities
/// (`<prefix>-<n>`, in the domain's key field and `subject`). The events are valid but follow no
/// domain rule, so a projection's rules may refuse some.
pub struct ExamplesTraffic {
    registry: Arc<Registry>,
    rng: StdRng,
    prefix: String,
    keys: usize,
    /// (type, key field, current version, its examples) of every type with an example.
    choices: Vec<(String, String, u32, Vec<serde_json::Value>)>,
    sequence: u64,
}

impl ExamplesTraffic {
    /// Fails, naming them, when no type of `domains` has an example.
    pub fn new(
        registry: Arc<Registry>,
        domains: &[&str],
        prefix: &str,
        keys: usize,
        seed: u64,
    ) -> Result<Self, String> {
        let choices: Vec<_> = registry
            .contracts()
            .filter(|c| domains.contains(&c.domain.as_str()))
            .filter_map(|c| {
                let current = &c.versions[&c.current()];
                let examples = current.schema.get("examples")?.as_array()?.clone();
                (!examples.is_empty()).then(|| (c.event_type.clone(), c.key.clone(), c.current(), examples))
            })
            .collect();
        if choices.is_empty() {
            return Err(format!("no event type of {} has an example in its current schema", domains.join(", ")));
        }
        Ok(Self { registry, rng: StdRng::seed_from_u64(seed), prefix: prefix.to_string(), keys, choices, sequence: 0 })
    }

    /// Traffic made of a user's sample events instead of the schemas' examples: each event the
    /// data of a random sample (at its current version), with a fresh id and a generated key, as
    /// [`ExamplesTraffic::new`] makes them. Fails when there is no sample.
    pub fn from_samples(
        registry: Arc<Registry>,
        samples: &[ValidatedEvent],
        prefix: &str,
        keys: usize,
        seed: u64,
    ) -> Result<Self, String> {
        let mut choices: Vec<(String, String, u32, Vec<serde_json::Value>)> = Vec::new();
        for sample in samples {
            let event_type = &sample.envelope().event_type;
            match choices.iter_mut().find(|(t, ..)| t == event_type) {
                Some((.., data)) => data.push(sample.data().clone()),
                None => {
                    let contract = registry.contract(event_type).expect("validated by this registry");
                    let current = sample.current_version();
                    choices.push((event_type.clone(), contract.key.clone(), current, vec![sample.data().clone()]));
                }
            }
        }
        if choices.is_empty() {
            return Err("the sample file holds no event".into());
        }
        Ok(Self { registry, rng: StdRng::seed_from_u64(seed), prefix: prefix.to_string(), keys, choices, sequence: 0 })
    }
}

impl Iterator for ExamplesTraffic {
    type Item = ValidatedEvent;

    fn next(&mut self) -> Option<ValidatedEvent> {
        let (event_type, key_field, version, examples) = &self.choices[self.rng.random_range(0..self.choices.len())];
        let example = &examples[self.rng.random_range(0..examples.len())];
        self.sequence += 1;
        let id = format!("{}-{}", self.prefix, self.sequence);
        let key = format!("{}-{}", self.prefix, self.rng.random_range(0..self.keys));
        let mut data = example.clone();
        data[key_field.as_str()] = key.clone().into();
        let mut event = envelope(id.clone(), event_type, &key, data);
        event["dataversion"] = (*version).into();
        let generated = eventline_core::envelope::CloudEvent::from_value(event).expect("a valid envelope");
        match self.registry.validate(generated) {
            Ok(event) => Some(event),
            // The key field's own rules (a pattern, a length) refuse the generated key: keep the
            // example's.
            Err(_) => {
                let subject = example[key_field.as_str()].as_str().unwrap_or_default().to_string();
                let mut event = envelope(id, event_type, &subject, example.clone());
                event["dataversion"] = (*version).into();
                Some(validated(&self.registry, event))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_traffic_varies_the_key_of_each_types_examples() {
        let registry =
            Arc::new(Registry::from_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")).unwrap());
        let events: Vec<ValidatedEvent> =
            ExamplesTraffic::new(registry.clone(), &["activity"], "x", 3, 1).unwrap().take(200).collect();
        let keys: std::collections::BTreeSet<&str> = events.iter().map(|e| e.key()).collect();
        assert_eq!(keys.into_iter().collect::<Vec<_>>(), ["x-0", "x-1", "x-2"]);
        let types: std::collections::BTreeSet<&str> = events.iter().map(|e| e.envelope().event_type.as_str()).collect();
        assert_eq!(types.len(), 2, "{types:?}");
        assert_eq!(
            ExamplesTraffic::new(registry, &["nothing"], "x", 3, 1).err(),
            Some("no event type of nothing has an example in its current schema".to_string())
        );
    }
}
