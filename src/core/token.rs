//! Consistency tokens: an opaque string a publisher gets back, naming the Kafka positions its
//! events reached, that a reader hands to the query API to wait until a projection passed them.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// For each (topic, partition), the highest offset the token covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsistencyToken {
    positions: BTreeMap<(String, i32), i64>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    /// [topic, partition, offset] triples.
    p: Vec<(String, i32, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a consistency token issued by eventline")]
pub struct BadToken;

impl ConsistencyToken {
    /// Records that an event is at `offset`; the token keeps the highest offset per partition.
    pub fn cover(&mut self, topic: &str, partition: i32, offset: i64) {
        let entry = self.positions.entry((topic.to_string(), partition)).or_insert(offset);
        *entry = (*entry).max(offset);
    }

    /// Each covered (topic, partition) and its highest offset.
    pub fn positions(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.positions.iter().map(|((topic, partition), offset)| (topic.as_str(), *partition, *offset))
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The opaque form handed to clients.
    pub fn encode(&self) -> String {
        let wire = Wire { v: 1, p: self.positions().map(|(t, p, o)| (t.to_string(), p, o)).collect() };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).expect("a token serializes"))
    }

    pub fn decode(text: &str) -> Result<Self, BadToken> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| BadToken)?;
        let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| BadToken)?;
        if wire.v != 1 || wire.p.iter().any(|(_, partition, offset)| *partition < 0 || *offset < 0) {
            return Err(BadToken);
        }
        let mut token = Self::default();
        for (topic, partition, offset) in wire.p {
            token.cover(&topic, partition, offset);
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_keeps_the_highest_offset_per_partition_and_round_trips() {
        let mut token = ConsistencyToken::default();
        token.cover("accounts.events", 3, 17);
        token.cover("accounts.events", 3, 12);
        token.cover("accounts.events", 1, 4);
        let decoded = ConsistencyToken::decode(&token.encode()).unwrap();
        assert_eq!(decoded, token);
        let positions: Vec<(&str, i32, i64)> = decoded.positions().collect();
        assert_eq!(positions, [("accounts.events", 1, 4), ("accounts.events", 3, 17)]);
    }

    #[test]
    fn the_token_of_an_empty_batch_names_no_position_and_round_trips() {
        let empty = ConsistencyToken::default();
        assert_eq!(ConsistencyToken::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "not base64!",
            "e30",
            &URL_SAFE_NO_PAD.encode(r#"{"v":2,"p":[]}"#),
            &URL_SAFE_NO_PAD.encode(r#"{"v":1,"p":[["t",-1,0]]}"#),
        ] {
            assert_eq!(ConsistencyToken::decode(bad), Err(BadToken), "{bad}");
        }
    }
}
