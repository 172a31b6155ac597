//! Waiting out a database that is briefly unavailable: a dropped connection, a restart, a
//! failover. Start-up steps and background reads use it so a blip does not stop a process.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Longest pause between attempts while the database is unavailable.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// The first pause; each later one doubles, up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);

/// A database failure that may pass if tried again.
pub trait MaybeTransient {
    fn is_transient(&self) -> bool;
}

impl MaybeTransient for crate::Error {
    fn is_transient(&self) -> bool {
        crate::Error::is_transient(self)
    }
}

impl MaybeTransient for crate::declarative::DefinitionError {
    fn is_transient(&self) -> bool {
        crate::declarative::DefinitionError::is_transient(self)
    }
}

/// Runs one read or set-up step, waiting out a dropped connection or a restarting database with
/// capped backoff; any other failure is returned at once. `Ok(None)`: `shutdown` came first.
pub async fn wait_out_unavailable<T, E, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    mut attempt: impl FnMut() -> Fut,
) -> Result<Option<T>, E>
where
    E: MaybeTransient + std::fmt::Display,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut delay = FIRST_RETRY_DELAY;
    loop {
        match attempt().await {
            Ok(value) => return Ok(Some(value)),
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "Database unavailable while {what}; retrying.");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            Err(error) => return Err(error),
        }
    }
}
