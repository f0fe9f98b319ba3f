//! Logs and traces of one `plasma` process.
//!
//! - Logs go to stderr, as text, or as JSON lines with `PLASMA_LOG_FORMAT=json` (each line then
//!   carries `trace_id`, `span_id` and the request's `tenant` when there is one). `PLASMA_LOG`
//!   filters them (an `EnvFilter`).
//! - Traces are exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and are off otherwise: gRPC or HTTP/protobuf
//!   per `OTEL_EXPORTER_OTLP_PROTOCOL` (default `http/protobuf`, as the specification says);
//!   `OTEL_SERVICE_NAME` (default `plasma-<subcommand>`), `OTEL_RESOURCE_ATTRIBUTES`,
//!   `OTEL_TRACES_SAMPLER`/`_ARG` and `OTEL_SDK_DISABLED` as the SDK defines them.

use std::fmt;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;
use tracing::Subscriber;
use tracing_subscriber::fmt::format::{FmtSpan, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the trace pipeline alive; [`TelemetryGuard::shutdown`] flushes what is queued.
#[must_use = "shut it down at the end to flush the traces"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports the spans still queued and stops the exporter. Blocking work (the processor
    /// waits for its export), so off the async workers.
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(err)) = flushed {
                eprintln!("plasma: flushing traces: {err}");
            }
        }
    }
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("exporting", &self.provider.is_some())
            .finish()
    }
}

/// Installs the global subscriber: the log filter and format, and the OTLP trace exporter when
/// configured. `component` names the service (`plasma-relay`…) unless `OTEL_SERVICE_NAME` does.
pub fn init(component: &str, default_log: &str) -> TelemetryGuard {
    let filter =
        EnvFilter::try_from_env("PLASMA_LOG").unwrap_or_else(|_| EnvFilter::new(default_log));
    let json = std::env::var("PLASMA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(JsonWithTrace)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_span_events(FmtSpan::NONE)
            .with_writer(std::io::stderr)
            .boxed()
    };
    let (provider, problem) = match tracer_provider(component) {
        Ok(provider) => (provider, None),
        Err(problem) => (None, Some(problem)),
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("plasma"))
            .with_error_records_to_exceptions(true)
            // A runner's `step` span wraps every poll, idle ones included: hundreds of empty
            // traces a second. It stays in the logs; traces start at the work (`process`…).
            .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
                !(metadata.is_span() && metadata.name() == "step")
            }))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .init();
    if let Some(problem) = problem {
        tracing::warn!(%problem, "traces are off");
    }
    TelemetryGuard { provider }
}

fn tracer_provider(component: &str) -> Result<Option<SdkTracerProvider>, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    if var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".to_owned());
    // The exporters read the endpoint, headers and timeout variables themselves (the HTTP one
    // appends /v1/traces to the generic endpoint, as the specification says).
    let exporter = match protocol.as_str() {
        "grpc" => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build(),
        "http/protobuf" => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
        other => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported (grpc or http/protobuf)"
            ))
        }
    }
    .map_err(|err| format!("building the OTLP exporter: {err}"))?;
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by the default detectors; the
    // component's name is only the fallback.
    let mut resource = Resource::builder();
    if var("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(format!("plasma-{component}"));
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // The batch processor runs on the process's Tokio runtime: both exporters (tonic, async
    // reqwest) need one, which the default processor's plain thread does not have.
    let batch =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(Some(provider))
}

/// JSON log lines (tracing-subscriber's own) with the trace and span ids of the current span
/// and the tenant of the request it belongs to, so a log search can jump to the trace.
struct JsonWithTrace;

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        tracing_subscriber::fmt::format()
            .json()
            .with_span_list(true)
            .with_current_span(false)
            .format_event(ctx, Writer::new(&mut line), event)?;
        let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(&line) else {
            return writer.write_str(&line);
        };
        if let Some(span) = ctx.lookup_current() {
            let context = tracing::dispatcher::get_default(|dispatch| {
                tracing_opentelemetry::get_otel_context(&span.id(), dispatch)
            });
            if let Some(context) = context {
                let span_ref = context.span();
                let span_context = span_ref.span_context();
                if span_context.is_valid() {
                    fields.insert(
                        "trace_id".into(),
                        span_context.trace_id().to_string().into(),
                    );
                    fields.insert("span_id".into(), span_context.span_id().to_string().into());
                }
            }
        }
        let tenant = fields
            .get("spans")
            .and_then(Value::as_array)
            .and_then(|spans| {
                spans
                    .iter()
                    .rev()
                    .find_map(|s| s.get("plasma.tenant").cloned())
            });
        if let Some(tenant) = tenant {
            fields.insert("tenant".into(), tenant);
        }
        writeln!(writer, "{}", Value::Object(fields))
    }
}
