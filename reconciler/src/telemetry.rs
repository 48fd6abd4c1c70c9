//! Logs and traces. Logs are JSON lines on stdout, each with the fields of its spans (the
//! delivery id among them). Traces are exported over OTLP/HTTP only when the standard
//! OpenTelemetry variables ask for it (`previewd-telemetry`); a delivery's trace continues from
//! the webhook's span through the queue message's `traceparent`.

use previewd_telemetry::TelemetryError;
pub use previewd_telemetry::{Telemetry, continue_trace, otlp_requested, traceparent};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber from the process environment (inside a Tokio runtime: the
/// exporter runs on it).
pub fn init() -> Result<Telemetry, String> {
    init_with(|name| std::env::var(name).ok())
}

/// [`init`] with the OpenTelemetry variables read from `lookup`.
pub fn init_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().json().flatten_event(true);
    let telemetry = Telemetry::from_lookup(&lookup, "previewd").map_err(|e: TelemetryError| e.to_string())?;
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(telemetry.layer("previewd"))
        .try_init()
        .map_err(|e| format!("installing the log subscriber: {e}"))?;
    Ok(telemetry)
}
