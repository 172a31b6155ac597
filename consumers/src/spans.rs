//! A batch's spans: the trace an event started at the gateway goes on in the worker.
//!
//! A batch mixes events of many traces, and one transaction writes them all. Each event whose
//! `traceparent` asks to be recorded gets a consumer span, child of that context, carrying where
//! the event was read and what became of it. The span that applies the batch and writes SQL is the
//! child of the first such event's span and links the others, so every recorded event leads to
//! the write that made it visible. Spans for events nobody records are never made.

use eventline_core::telemetry;
use eventline_kafka::consumer::ConsumedRecord;

/// The spans of one batch.
pub(crate) struct BatchSpans {
    /// Applies the batch and writes SQL; entered for the whole transaction.
    pub(crate) batch: tracing::Span,
    /// The recorded events' spans, with their index in the batch.
    events: Vec<(usize, tracing::Span)>,
}

impl BatchSpans {
    pub(crate) fn open(projection: &str, records: &[ConsumedRecord]) -> Self {
        let batch = tracing::info_span!(
            parent: None,
            "eventline.batch",
            otel.name = format!("{projection} apply"),
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
            eventline.projection = projection,
            messaging.system = "kafka",
            messaging.batch.message_count = records.len(),
        );
        if !telemetry::exporting() {
            return Self { batch, events: Vec::new() };
        }
        let events: Vec<(usize, tracing::Span)> = records
            .iter()
            .enumerate()
            .filter_map(|(index, record)| {
                let traceparent = header(record, telemetry::TRACEPARENT).filter(|t| telemetry::sampled(t))?;
                let span = tracing::info_span!(
                    parent: None,
                    "eventline.event",
                    otel.name = format!("{} process", record.topic),
                    otel.kind = "consumer",
                    eventline.projection = projection,
                    eventline.outcome = tracing::field::Empty,
                    messaging.system = "kafka",
                    messaging.operation.type = "process",
                    messaging.destination.name = %record.topic,
                    messaging.destination.partition.id = record.partition,
                    messaging.kafka.offset = record.offset,
                    messaging.message.id = header(record, "ce_id").unwrap_or_default(),
                );
                telemetry::continue_trace(&span, Some(traceparent));
                Some((index, span))
            })
            .collect();
        if let Some(((_, first), others)) = events.split_first() {
            telemetry::set_parent(&batch, first);
            for (_, other) in others {
                telemetry::link(&batch, other);
            }
        }
        Self { batch, events }
    }

    /// Records on each recorded event's span what became of it, by its index in the batch.
    pub(crate) fn outcomes(&self, outcome: impl Fn(usize) -> &'static str) {
        for (index, span) in &self.events {
            span.record("eventline.outcome", outcome(*index));
        }
    }

    /// Marks the batch's span failed (the transaction rolled back; the batch will be read again).
    pub(crate) fn failed(&self, error: &dyn std::fmt::Display) {
        self.batch.record("otel.status_code", "error");
        self.batch.record("otel.status_description", error.to_string());
    }
}

fn header<'r>(record: &'r ConsumedRecord, name: &str) -> Option<&'r str> {
    record.headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| std::str::from_utf8(v).ok())
}
