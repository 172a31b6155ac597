//! All tracing set-up in one place: `RUST_LOG` filters, the format is human or JSON, and log
//! lines go to standard error so standard output stays free for command results.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// What the filter is when `RUST_LOG` is unset: our own progress at info, the libraries' chatter
/// only when it is a warning.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,rdkafka=warn";

/// Installs the global subscriber. Call once, early in `main`; a second call is a no-op.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    // Already installed (e.g. by a test harness): keep the first one.
    drop(result);
}
