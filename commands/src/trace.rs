//! The W3C trace context an event carries from the request that caused it to the workers that
//! react to it: recorded with the event, injected into the log record by the relay, picked up
//! by consumers. Without a tracing pipeline (no OTLP endpoint) spans have no context and
//! nothing is recorded.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The `traceparent` of the current span, if it is being traced.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// The `traceparent` of `span`, if it is being traced.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_ref = context.span();
    let span_context = span_ref.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// The remote context a `traceparent` names; `None` when it is malformed.
pub fn context_of(traceparent: &str) -> Option<opentelemetry::Context> {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    context.span().span_context().is_valid().then_some(context)
}

/// Makes `span` a child of the context `traceparent` names (when valid and tracing is on).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if let Some(context) = context_of(traceparent) {
        // Fails only when the span is not traced: nothing to join then.
        let _ = span.set_parent(context);
    }
}

/// Links `span` to the context `traceparent` names (when valid and tracing is on).
pub fn add_link(span: &tracing::Span, traceparent: &str) {
    if let Some(context) = context_of(traceparent) {
        span.add_link(context.span().span_context().clone());
    }
}

/// Most links one consumer span carries (a 10,000-event batch would otherwise carry 10,000).
const MAX_LINKS: usize = 128;

/// The span of a consumer handling `events` (OpenTelemetry's `process` operation): a child of
/// the events' trace when they all belong to one (one command's events), else linked to each
/// trace. Disabled — no cost — when none of the events is traced.
pub fn process_span(consumer: &str, events: &[crate::RecordedEvent]) -> tracing::Span {
    let mut traced = events.iter().filter_map(|e| e.trace_parent.as_deref());
    let Some(first) = traced.next() else {
        return tracing::Span::none();
    };
    let span = tracing::info_span!(
        parent: None,
        "process",
        otel.name = format!("process {consumer}"),
        otel.kind = "consumer",
        messaging.operation.type = "process",
        messaging.consumer.group.name = consumer,
        messaging.batch.message_count = events.len(),
    );
    // traceparent: 00-<32 hex trace id>-<16 hex span id>-<flags>
    let trace_id = |traceparent: &str| traceparent.get(3..35).map(str::to_owned);
    let others: Vec<&str> = traced.collect();
    if others.iter().all(|t| trace_id(t) == trace_id(first)) {
        set_parent(&span, first);
    } else {
        let mut linked = std::collections::HashSet::new();
        for traceparent in std::iter::once(first).chain(others) {
            if linked.len() == MAX_LINKS {
                break;
            }
            if linked.insert(trace_id(traceparent)) {
                add_link(&span, traceparent);
            }
        }
    }
    span
}
