//! What every Previewd Lambda shares: JSON logs and OTLP traces, CloudWatch Embedded Metric Format lines and
//! AWS SDK settings with bounded timeouts.
#![forbid(unsafe_code)]

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
pub use previewd_telemetry::Telemetry;
use serde_json::{Map, Value, json};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How long a Lambda waits for its spans to leave before it answers: spans are a diagnostic,
/// the answer is not held up by a slow collector.
pub const TRACE_FLUSH_LIMIT: Duration = Duration::from_millis(500);

/// JSON logs on stdout (level from `RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else
/// info), and OTLP traces when the standard `OTEL_*` variables ask for them. A Lambda calls
/// [`Telemetry::flush`] before each answer: the environment may be frozen right after it.
pub fn init_telemetry(default_service: &'static str) -> Telemetry {
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL"))
        .unwrap_or_else(|_| "info".to_owned());
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .flatten_event(true)
        .with_target(false)
        .without_time();
    // A broken exporter setting must not stop the function: it logs and runs without traces.
    let (telemetry, problem) = match Telemetry::from_lookup(&|name| std::env::var(name).ok(), default_service) {
        Ok(telemetry) => (telemetry, None),
        Err(err) => (Telemetry::default(), Some(err)),
    };
    let _ = tracing_subscriber::registry()
        .with(EnvFilter::try_new(filter.to_lowercase()).unwrap_or_else(|_| EnvFilter::new("info")))
        .with(logs)
        .with(telemetry.layer(default_service))
        .try_init();
    if let Some(err) = problem {
        tracing::error!(error = %err, "traces are not exported");
    }
    telemetry
}

/// SDK settings for Lambdas that must answer within seconds: short attempts, a bounded total,
/// a few retries. `AWS_ENDPOINT_URL` / `AWS_REGION` are honoured as usual.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}

/// The unit of an EMF metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One CloudWatch Embedded Metric Format document: CloudWatch Logs turns the line into metrics
/// without any API call from the function.
#[derive(Debug, Clone)]
pub struct Emf {
    namespace: &'static str,
    dimension_sets: Vec<Vec<&'static str>>,
    metrics: Vec<(&'static str, Unit, f64)>,
    members: Map<String, Value>,
}

impl Emf {
    pub fn new(namespace: &'static str) -> Emf {
        Emf { namespace, dimension_sets: Vec::new(), metrics: Vec::new(), members: Map::new() }
    }

    /// A dimension (bounded values only: each distinct value is a metric series).
    pub fn dimension(mut self, name: &'static str, value: &str) -> Emf {
        self.members.insert(name.to_owned(), Value::from(value));
        self
    }

    /// Which combinations of the dimensions to aggregate by.
    pub fn dimension_set(mut self, names: &[&'static str]) -> Emf {
        self.dimension_sets.push(names.to_vec());
        self
    }

    pub fn metric(mut self, name: &'static str, unit: Unit, value: f64) -> Emf {
        self.metrics.push((name, unit, value));
        self
    }

    /// A searchable member that is not a dimension (e.g. a delivery id).
    pub fn property(mut self, name: &'static str, value: impl Into<Value>) -> Emf {
        self.members.insert(name.to_owned(), value.into());
        self
    }

    /// The single-line JSON document.
    pub fn line(&self, timestamp_ms: i64) -> String {
        let mut doc = self.members.clone();
        for (name, _, value) in &self.metrics {
            doc.insert((*name).to_owned(), json!(value));
        }
        let metrics: Vec<Value> =
            self.metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()})).collect();
        doc.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": self.dimension_sets,
                    "Metrics": metrics,
                }]
            }),
        );
        Value::Object(doc).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_names_only_members_it_has() -> Result<(), serde_json::Error> {
        let line = Emf::new("Previewd/Test")
            .dimension("Outcome", "accepted")
            .dimension("Event", "pull_request")
            .dimension_set(&["Event", "Outcome"])
            .dimension_set(&["Outcome"])
            .metric("Requests", Unit::Count, 1.0)
            .metric("Latency", Unit::Milliseconds, 12.5)
            .property("DeliveryId", "d-1")
            .line(1_700_000_000_000);
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line)?;
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Previewd/Test");
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        for set in directive["Dimensions"].as_array().into_iter().flatten() {
            for name in set.as_array().into_iter().flatten() {
                assert!(v[name.as_str().unwrap_or("?")].is_string(), "{name}");
            }
        }
        for metric in directive["Metrics"].as_array().into_iter().flatten() {
            assert!(v[metric["Name"].as_str().unwrap_or("?")].is_number(), "{metric}");
        }
        assert_eq!(v["DeliveryId"], "d-1");
        Ok(())
    }
}
