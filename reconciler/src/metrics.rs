//! Prometheus metrics of the reconciler (names from the brief; labels bounded).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `previewd_queue_messages_total{outcome}`: applied, removed, ignored, stale, superseded, malformed, failed.
    pub queue_messages: IntCounterVec,
    /// `previewd_reconcile_duration_seconds{controller}`.
    pub reconcile_duration: HistogramVec,
    /// `previewd_reconcile_errors_total{controller,error}`.
    pub reconcile_errors: IntCounterVec,
    /// `previewd_github_requests_total{operation,outcome}`: operation is one of the fixed
    /// request kinds (e.g. `create deployment`), outcome `ok` or an error kind.
    pub github_requests: IntCounterVec,
    /// `previewd_github_updates_total{outcome}`: delivered, failed (retried), rejected.
    pub github_updates: IntCounterVec,
    /// `previewd_github_rate_limit_remaining`: the last `x-ratelimit-remaining` GitHub sent.
    pub github_remaining: IntGauge,
    /// `previewd_github_pending_updates`: PRs whose state GitHub does not show yet.
    pub github_pending: IntGauge,
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
        let github_requests = IntCounterVec::new(
            Opts::new("previewd_github_requests_total", "GitHub API requests, by operation and outcome"),
            &["operation", "outcome"],
        )?;
        let github_updates = IntCounterVec::new(
            Opts::new("previewd_github_updates_total", "PR updates (deployment status, comment), by outcome"),
            &["outcome"],
        )?;
        let github_remaining = IntGauge::new(
            "previewd_github_rate_limit_remaining",
            "GitHub API requests left in the current rate-limit window (last reported)",
        )?;
        let github_pending =
            IntGauge::new("previewd_github_pending_updates", "PRs whose state GitHub does not show yet")?;
        registry.register(Box::new(github_requests.clone()))?;
        registry.register(Box::new(github_updates.clone()))?;
        registry.register(Box::new(github_remaining.clone()))?;
        registry.register(Box::new(github_pending.clone()))?;
        registry.register(Box::new(queue_messages.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        Ok(Metrics {
            registry,
            queue_messages,
            reconcile_duration,
            reconcile_errors,
            github_requests,
            github_updates,
            github_remaining,
            github_pending,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}
