//! Prometheus metrics of the reconciler (names from the brief; labels bounded).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `previewd_queue_messages_total{outcome}`: applied, removed, ignored, stale, superseded, malformed, failed.
    pub queue_messages: IntCounterVec,
    /// `previewd_reconcile_duration_seconds{controller}`.
    pub reconcile_duration: HistogramVec,
    /// `previewd_reconcile_errors_total{controller,error}`.
    pub reconcile_errors: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let queue_messages = IntCounterVec::new(
            Opts::new("previewd_queue_messages_total", "Queue messages handled, by outcome"),
            &["outcome"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new("previewd_reconcile_duration_seconds", "Time per reconcile")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new("previewd_reconcile_errors_total", "Failed reconciles, by error kind"),
            &["controller", "error"],
        )?;
        registry.register(Box::new(queue_messages.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        Ok(Metrics { registry, queue_messages, reconcile_duration, reconcile_errors })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}
