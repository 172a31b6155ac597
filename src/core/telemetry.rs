//! All tracing set-up in one place: `RUST_LOG` filters, the format is human or JSON, log lines go
//! to standard error so standard output stays free for command results, and, when a collector is
//! configured, spans go to it over OTLP/HTTP.
//!
//! A trace crosses processes as a W3C `traceparent`: the gateway continues the caller's (or starts
//! one), stamps it on each event it publishes, and the worker continues it from the Kafka record.
//! The helpers here are the only code that knows OpenTelemetry; the layers speak `tracing` spans.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TracingSettings};

/// What the filter is when `RUST_LOG` is unset: our own progress at info, the libraries' chatter
/// only when it is a warning.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,rdkafka=warn";

/// The W3C trace context header, in HTTP requests and Kafka records alike.
pub const TRACEPARENT: &str = "traceparent";

/// Whether spans are exported: per-event spans are only made when someone will see them.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Keeps the span exporter alive; [`Telemetry::shutdown`] sends what is still queued.
#[must_use = "dropping it without shutdown loses the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued (bounded by the exporter's timeout) and stops exporting.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(error) = provider.shutdown() {
                eprintln!("warning: the last spans may not have reached the collector: {error}");
            }
        }
    }
}

/// Installs the global subscriber. Call once, early in `main`; a second call installs nothing.
/// Fails only when the span exporter cannot be built.
pub fn init(format: LogFormat, tracing: &TracingSettings) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let provider = tracing.otlp_endpoint.as_ref().map(|endpoint| tracer_provider(endpoint, tracing.sample_ratio));
    let provider = provider.transpose()?;
    let installed = match &provider {
        // Without export, one global filter: the simplest stack.
        None => tracing_subscriber::registry().with(filter).with(log_lines(format)).try_init(),
        // Spans are exported whatever RUST_LOG lets through to the logs: eventline's own, at info.
        // Spans only: with events let through to it as well, log lines RUST_LOG asked for were lost.
        Some(provider) => {
            let spans = tracing_opentelemetry::layer().with_tracer(provider.tracer("eventline")).with_filter(
                tracing_subscriber::filter::filter_fn(|meta| {
                    meta.is_span() && meta.target().starts_with("eventline") && *meta.level() <= Level::INFO
                }),
            );
            tracing_subscriber::registry().with(log_lines(format).with_filter(filter)).with(spans).try_init()
        }
    };
    // Already installed (e.g. by a test harness): keep the first one.
    if installed.is_ok() && provider.is_some() {
        EXPORTING.store(true, Ordering::Relaxed);
    }
    Ok(Telemetry { provider })
}

/// The log lines on standard error, in `format`.
fn log_lines<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Human => logs.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).boxed(),
    }
}

fn tracer_provider(endpoint: &url::Url, sample_ratio: f64) -> Result<SdkTracerProvider, String> {
    let traces = format!("{}/v1/traces", endpoint.as_str().trim_end_matches('/'));
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(traces.clone())
        .build()
        .map_err(|e| format!("cannot export spans to {traces}: {e}"))?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("eventline");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        // A caller's sampling decision is kept; traces started here are kept at the ratio.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(sample_ratio))))
        .with_resource(resource.build())
        .build())
}

/// Whether spans are exported (a collector is configured and the subscriber is ours).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Makes `span` a child of the trace a `traceparent` names; a missing or malformed one leaves
/// the span a root. Call before the span is first entered.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else { return };
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        // Fails only without our subscriber, where there is no trace to continue.
        let _ = span.set_parent(parent);
    }
}

/// The `traceparent` naming `span`, to stamp on what it sends; `None` when spans are not
/// exported.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Whether a `traceparent` is well formed and asks for the trace to be recorded. Asked of every
/// record a worker reads, so it reads the text in place instead of building a context.
pub fn sampled(traceparent: &str) -> bool {
    let hex = |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_hexdigit());
    let nonzero = |part: &str| part.bytes().any(|b| b != b'0');
    let mut parts = traceparent.trim().split('-');
    let (Some(version), Some(trace), Some(parent), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    // Version 00 has exactly four parts; later versions may append more.
    let well_formed = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace, 32)
        && nonzero(trace)
        && hex(parent, 16)
        && nonzero(parent)
        && hex(flags, 2);
    well_formed && u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1)
}

/// Links `span` to the trace `other` is in (for work done for many traces at once).
pub fn link(span: &tracing::Span, other: &tracing::Span) {
    let context: SpanContext = other.context().span().span_context().clone();
    if context.is_valid() {
        span.add_link(context);
    }
}

/// Makes `span` a child of `parent` across the boundary of a `tracing` scope (the parent is not
/// the current span).
pub fn set_parent(span: &tracing::Span, parent: &tracing::Span) {
    let _ = span.set_parent(parent.context());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_sampled_traceparent_counts_as_sampled() {
        assert!(sampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        assert!(!sampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"));
        assert!(!sampled("00-00000000000000000000000000000000-b7ad6b7169203331-01"));
        assert!(!sampled("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"));
        assert!(!sampled("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        assert!(!sampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"));
        assert!(!sampled("00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01"));
        assert!(sampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03"));
        assert!(!sampled("not a traceparent"));
    }

    #[test]
    fn without_export_no_traceparent_is_made_up() {
        assert_eq!(traceparent(&tracing::Span::none()), None);
    }
}
