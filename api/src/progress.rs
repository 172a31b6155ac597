//! Read-your-writes: waiting until a projection has passed the positions in a consistency token.
//!
//! Workers notify `eventline_progress` (with the projection's name) in every batch's transaction,
//! so a waiter is woken when a batch commits rather than polling. While the notification
//! connection is down (a database restart), waiters look again every half second instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use eventline_core::token::ConsistencyToken;
use eventline_store::checkpoints::Checkpoint;
use eventline_store::Store;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often waiters look again when notifications are not coming through.
const FALLBACK_EVERY: Duration = Duration::from_millis(500);

/// One partition's requirement from a token, and where the projection stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Requirement {
    pub topic: String,
    pub partition: i32,
    /// The token's offset: the projection must have applied it (its next offset beyond it).
    pub offset: i64,
    /// The projection's next offset to apply in that partition (0 when it has none yet).
    pub applied_through: i64,
}

/// Wakes waiters when projections commit.
#[derive(Clone)]
pub struct Progress {
    /// A counter per projection, bumped on each notification; waiters watch it.
    bumps: Arc<HashMap<String, watch::Sender<u64>>>,
    /// Whether the notification connection is up.
    listening: watch::Sender<bool>,
}

impl Progress {
    /// Starts listening for `projections` until `shutdown`.
    pub fn start(store: Store, projections: &[&str], shutdown: CancellationToken) -> Self {
        let bumps: HashMap<String, watch::Sender<u64>> =
            projections.iter().map(|p| (p.to_string(), watch::channel(0).0)).collect();
        let progress = Self { bumps: Arc::new(bumps), listening: watch::channel(false).0 };
        let listener = progress.clone();
        tokio::spawn(async move { listener.listen(store, shutdown).await });
        progress
    }

    async fn listen(&self, store: Store, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let mut listener = match store.progress_listener().await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, "Cannot listen for projection progress; waiters poll meanwhile.");
                    self.listening.send_replace(false);
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            self.listening.send_replace(true);
            // Something may have committed while not listening.
            self.bump_all();
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    received = listener.recv() => match received {
                        Ok(projection) => {
                            if let Some(sender) = self.bumps.get(projection.as_str()) {
                                sender.send_modify(|n| *n += 1);
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "Projection progress notifications interrupted; reconnecting.");
                            self.listening.send_replace(false);
                            break;
                        }
                    },
                }
            }
        }
    }

    fn bump_all(&self) {
        for sender in self.bumps.values() {
            sender.send_modify(|n| *n += 1);
        }
    }

    /// Waits until `projection` passed every position of `token` on its `topics`, or `deadline`.
    /// Returns the stored checkpoints and, when the wait ran out, what is still missing.
    pub async fn wait(
        &self,
        store: &Store,
        projection: &str,
        topics: &[String],
        token: &ConsistencyToken,
        deadline: Instant,
    ) -> Result<(Vec<Checkpoint>, Vec<Requirement>), eventline_store::Error> {
        let mut bumps = self.bumps.get(projection).expect("a known projection").subscribe();
        loop {
            // Subscribed before reading, so a commit between the read and the wait still wakes us.
            bumps.mark_unchanged();
            let checkpoints = store.checkpoints(projection).await?;
            let missing = missing(&checkpoints, topics, token);
            if missing.is_empty() || Instant::now() >= deadline {
                return Ok((checkpoints, missing));
            }
            let poll_every = if *self.listening.borrow() { deadline - Instant::now() } else { FALLBACK_EVERY };
            tokio::select! {
                _ = bumps.changed() => {}
                () = tokio::time::sleep_until(deadline.min(Instant::now() + poll_every)) => {}
            }
        }
    }
}

/// The token's positions on `topics` that the checkpoints have not yet passed.
pub fn missing(checkpoints: &[Checkpoint], topics: &[String], token: &ConsistencyToken) -> Vec<Requirement> {
    token
        .positions()
        .filter(|(topic, _, _)| topics.iter().any(|t| t == topic))
        .filter_map(|(topic, partition, offset)| {
            let applied_through =
                checkpoints.iter().find(|c| c.topic == topic && c.partition == partition).map_or(0, |c| c.next_offset);
            (applied_through <= offset).then(|| Requirement {
                topic: topic.to_string(),
                partition,
                offset,
                applied_through,
            })
        })
        .collect()
}
