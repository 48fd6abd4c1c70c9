//! Traces for every Previewd process (the Lambdas and the reconciler).
//!
//! - Export: OTLP/HTTP, only when the standard OpenTelemetry variables ask for it
//!   (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, with
//!   `OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`, `OTEL_SERVICE_NAME` and
//!   `OTEL_RESOURCE_ATTRIBUTES` honoured; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`
//!   turn it off).
//! - Context across the queue: a W3C `traceparent` string, read from a span and given to
//!   another as its parent (`docs/observability.md#traces`).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};

/// The W3C header (and SQS message attribute, and NATS header) that carries the context.
pub const TRACEPARENT: &str = "traceparent";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP trace exporter: {0}")]
    Exporter(String),
}

/// The trace exporter of a process, if it exports. Flushes what is buffered when dropped, which
/// blocks until the runtime has run the export: drop it (or call [`Telemetry::shutdown`]) off
/// the runtime's threads.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Builds the exporter the variables in `lookup` ask for (none when they do not). Call
    /// inside a Tokio runtime: the exporter runs on it.
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
        default_service: &str,
    ) -> Result<Telemetry, TelemetryError> {
        if !otlp_requested(lookup) {
            return Ok(Telemetry::default());
        }
        // As the specification says: the signal's endpoint as given, or the base + /v1/traces.
        let endpoint = lookup("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").filter(|v| !v.trim().is_empty()).or_else(|| {
            lookup("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| format!("{}/v1/traces", base.trim().trim_end_matches('/')))
        });
        let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let exporter = builder.build().map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let processor = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
        // The resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; this is the default.
        let resource = match lookup("OTEL_SERVICE_NAME").filter(|v| !v.trim().is_empty()) {
            Some(name) => Resource::builder().with_service_name(name).build(),
            None => Resource::builder().with_service_name(default_service.to_owned()).build(),
        };
        let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build();
        Ok(Telemetry { provider: Some(provider) })
    }

    /// Whether traces are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans (none without export).
    pub fn layer<S>(&self, scope: &'static str) -> Option<OpenTelemetryLayer<S, SdkTracer>>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        self.provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(scope)))
    }

    /// Sends what is buffered, waiting at most `limit` (a Lambda flushes before it answers:
    /// the environment may be frozen right after). The flush blocks a thread of its own, so
    /// the runtime (even a current-thread one) keeps driving the export meanwhile.
    pub async fn flush(&self, limit: Duration) {
        let Some(provider) = self.provider.clone() else { return };
        let flushed = tokio::task::spawn_blocking(move || provider.force_flush());
        match tokio::time::timeout(limit, flushed).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::warn!(error = %err, "flushing traces failed"),
            Ok(Err(err)) => tracing::warn!(error = %err, "flushing traces failed"),
            Err(_) => tracing::warn!(limit_ms = limit.as_millis() as u64, "flushing traces took too long"),
        }
    }

    /// Sends what is buffered and stops the exporter (blocks: call it off the runtime's
    /// threads, or from `spawn_blocking`).
    pub fn shutdown(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "flushing traces failed");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Whether the OpenTelemetry variables in `lookup` ask for trace export.
pub fn otlp_requested(lookup: &impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| lookup(name).is_some_and(|v| !v.trim().is_empty());
    let disabled = lookup("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || lookup("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The W3C `traceparent` of `span`, when it is part of an exported trace.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the span `traceparent` names. Returns false (and changes nothing)
/// when the value is not a valid W3C `traceparent`, or traces are not exported, or the span
/// has started already.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) -> bool {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.trim().to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    context.span().span_context().is_valid() && span.set_parent(context).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn export_follows_the_standard_variables() {
        assert!(!otlp_requested(&env(&[])));
        assert!(otlp_requested(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")])));
        assert!(otlp_requested(&env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")])));
        assert!(!otlp_requested(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(!otlp_requested(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true")
        ])));
        assert!(!otlp_requested(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "none")
        ])));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_traceparent_carries_the_trace_to_a_new_span() -> Result<(), TelemetryError> {
        // Nothing listens there: spans are only buffered, never sent, in this test.
        let telemetry = Telemetry::from_lookup(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")]), "test")?;
        let subscriber = tracing_subscriber::registry().with(telemetry.layer("test"));
        tracing::subscriber::with_default(subscriber, || {
            let front = tracing::info_span!("front");
            let Some(parent) = traceparent(&front) else { panic!("no traceparent for an exported span") };
            let fields: Vec<&str> = parent.split('-').collect();
            assert_eq!(fields.len(), 4, "{parent}");
            assert_eq!((fields[0], fields[1].len(), fields[2].len()), ("00", 32, 16), "{parent}");

            let back = tracing::info_span!("back");
            assert!(continue_trace(&back, &parent));
            let Some(child) = traceparent(&back) else { panic!("no traceparent for the child") };
            assert_eq!(child.split('-').nth(1), Some(fields[1]), "the child keeps the trace id");
            assert_ne!(child.split('-').nth(2), Some(fields[2]), "the child is a span of its own");

            for garbage in ["", "00-xyz", "00-00000000000000000000000000000000-0000000000000000-01", "\u{0}"] {
                assert!(!continue_trace(&tracing::info_span!("other"), garbage), "{garbage:?}");
            }
        });
        // Dropping flushes, which blocks until the runtime has run the export: off its threads.
        let _ = tokio::task::spawn_blocking(move || drop(telemetry)).await;
        Ok(())
    }

    #[test]
    fn without_export_there_is_no_context_to_pass_on() {
        let telemetry = Telemetry::default();
        assert!(!telemetry.exporting());
        let subscriber = tracing_subscriber::registry().with(telemetry.layer("test"));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("front");
            assert_eq!(traceparent(&span), None);
            assert!(!continue_trace(&span, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        });
    }
}
