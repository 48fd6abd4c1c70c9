//! Prometheus metrics of the reconciler. Names follow the brief; label values are bounded
//! (fixed sets, or the configured repositories and teams). The one exception is the brief's
//! per-preview cost gauge, labelled by repository and PR number: one series per *live* preview,
//! removed when the preview goes (docs/observability.md).

use prometheus::{
    Counter, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `previewd_queue_messages_received_total`.
    pub queue_received: IntCounter,
    /// `previewd_queue_messages_total{outcome}`: applied, removed, ignored, stale, superseded, malformed, newer_version, waiting, failed.
    pub queue_messages: IntCounterVec,
    /// `previewd_queue_delete_failures_total`: handled messages SQS would not delete (they come
    /// back, and are dropped as already applied).
    pub queue_delete_failures: IntCounter,
    /// `previewd_queue_last_poll_timestamp_seconds`: when this replica last received from the
    /// queue (0 on a standby replica).
    pub queue_last_poll: Gauge,
    /// `previewd_queue_lag_seconds`: from the webhook accepting a delivery to the consumer handling it.
    pub queue_lag: Histogram,
    /// `previewd_reconcile_duration_seconds{controller}`.
    pub reconcile_duration: HistogramVec,
    /// `previewd_reconcile_errors_total{controller,error}`.
    pub reconcile_errors: IntCounterVec,
    /// `previewd_cluster_up{cluster}`: 1 when a preview cluster's last health check passed,
    /// 0 when it failed (set from a cluster's first use).
    pub cluster_up: IntGaugeVec,
    /// `previewd_environments_total{status}`: previews now `active`, `failed` or `destroying`
    /// (a gauge, under the brief's name).
    pub environments: IntGaugeVec,
    /// `previewd_environment_creation_duration_seconds`: creation to all services first ready.
    pub creation_duration: Histogram,
    /// `previewd_environment_deletion_duration_seconds`: deletion requested to finalizer released.
    pub deletion_duration: Histogram,
    /// `previewd_webhook_to_ready_seconds`: the webhook accepting the event a preview was
    /// (re)deployed for, to all its services ready.
    pub webhook_to_ready: Histogram,
    /// `previewd_environment_cost_estimate_usd{repository,pr_number}`: monthly estimate per live preview.
    pub environment_cost: GaugeVec,
    /// `previewd_cost_hourly_usd{repository,team}`: running previews' cost per hour.
    pub cost_hourly: GaugeVec,
    /// `previewd_cost_monthly_projection_usd`: what running previews would cost over a month.
    pub cost_projection: Gauge,
    /// `previewd_cost_monthly_budget_usd` (0: no budget configured).
    pub cost_budget: Gauge,
    /// `previewd_cost_budget_exceeded`: 1 while the projection exceeds the budget.
    pub cost_budget_exceeded: IntGauge,
    /// `previewd_environment_oldest_expiry_timestamp_seconds`: the earliest expiry among live
    /// previews (0: none), for the cleanup SLO.
    pub environment_oldest_expiry: Gauge,
    /// `previewd_ai_requests_total{provider,cache_hit}`: service-detection queries (a cache hit
    /// sends nothing).
    pub ai_requests: IntCounterVec,
    /// `previewd_ai_failures_total{reason}`: timeout, rate_limited, api, malformed; each one
    /// falls back to the path globs.
    pub ai_failures: IntCounterVec,
    /// `previewd_ai_tokens_total{kind}`: input and output tokens.
    pub ai_tokens: IntCounterVec,
    /// `previewd_ai_cost_usd_total`: token usage priced per `ai.prices`.
    pub ai_cost: Counter,
    /// `previewd_github_requests_total{operation,outcome}`: operation is one of the fixed
    /// request kinds (e.g. `create deployment`), outcome `ok` or an error kind.
    pub github_requests: IntCounterVec,
    /// `previewd_github_updates_total{outcome}`: delivered, failed (retried), rejected.
    pub github_updates: IntCounterVec,
    /// `previewd_github_rate_limit_remaining`: the last `x-ratelimit-remaining` GitHub sent.
    pub github_remaining: IntGauge,
    /// `previewd_github_pending_updates`: PRs whose state GitHub does not show yet.
    pub github_pending: IntGauge,
    /// Per experiment arm (`repositories[].experiment`).
    pub experiments: ExperimentMetrics,
}

/// What each arm of an experiment shows, labelled `{experiment,arm}` (configured names only).
#[derive(Debug, Clone)]
pub struct ExperimentMetrics {
    /// `previewd_experiment_previews_total`: previews created.
    pub previews: IntCounterVec,
    /// `previewd_experiment_corrections_total`: selections corrected (a `/preview services`
    /// override, or a push that added services the selection missed).
    pub corrections: IntCounterVec,
    /// `previewd_experiment_ai_spend_usd_total`: what the arm's AI questions cost.
    pub ai_spend: prometheus::CounterVec,
    /// `previewd_experiment_services_deployed`: services per preview, when first ready.
    pub services: HistogramVec,
    /// `previewd_experiment_preview_hourly_usd`: cost per preview-hour, when first ready.
    pub hourly_usd: HistogramVec,
    /// `previewd_experiment_time_to_ready_seconds`: creation to first ready.
    pub time_to_ready: HistogramVec,
}

impl ExperimentMetrics {
    /// Creates every configured arm's series at zero.
    pub fn declare(&self, config: &crate::config::Config) {
        for repo in &config.repositories {
            let Some(experiment) = &repo.experiment else { continue };
            for arm in &experiment.arms {
                let labels = [experiment.name.as_str(), arm.name.as_str()];
                self.previews.with_label_values(&labels);
                self.corrections.with_label_values(&labels);
                self.ai_spend.with_label_values(&labels);
            }
        }
    }
}

/// Seconds, from a second to two hours: deployments, deletions, queue lag.
fn slow_buckets() -> Vec<f64> {
    vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0, 7200.0]
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        macro_rules! register {
            ($metric:expr) => {{
                let metric = $metric;
                registry.register(Box::new(metric.clone()))?;
                metric
            }};
        }
        let histogram =
            |name: &str, help: &str| Histogram::with_opts(HistogramOpts::new(name, help).buckets(slow_buckets()));
        let metrics = Metrics {
            queue_received: register!(IntCounter::new(
                "previewd_queue_messages_received_total",
                "Queue messages received"
            )?),
            queue_messages: register!(IntCounterVec::new(
                Opts::new("previewd_queue_messages_total", "Queue messages handled, by outcome"),
                &["outcome"],
            )?),
            queue_delete_failures: register!(IntCounter::new(
                "previewd_queue_delete_failures_total",
                "Handled queue messages that could not be deleted"
            )?),
            queue_last_poll: register!(Gauge::new(
                "previewd_queue_last_poll_timestamp_seconds",
                "Unix time of this replica's last successful queue receive"
            )?),
            queue_lag: register!(histogram(
                "previewd_queue_lag_seconds",
                "From the webhook accepting a delivery to the consumer handling it"
            )?),
            reconcile_duration: register!(HistogramVec::new(
                HistogramOpts::new("previewd_reconcile_duration_seconds", "Time per reconcile")
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                &["controller"],
            )?),
            reconcile_errors: register!(IntCounterVec::new(
                Opts::new("previewd_reconcile_errors_total", "Failed reconciles, by error kind"),
                &["controller", "error"],
            )?),
            cluster_up: register!(IntGaugeVec::new(
                Opts::new("previewd_cluster_up", "Whether a preview cluster's last health check passed"),
                &["cluster"],
            )?),
            environments: register!(IntGaugeVec::new(
                Opts::new(
                    "previewd_environments_total",
                    "Preview environments, by status (active, failed, destroying)"
                ),
                &["status"],
            )?),
            creation_duration: register!(histogram(
                "previewd_environment_creation_duration_seconds",
                "From creation to all services first ready"
            )?),
            deletion_duration: register!(histogram(
                "previewd_environment_deletion_duration_seconds",
                "From deletion requested to cleanup done"
            )?),
            webhook_to_ready: register!(histogram(
                "previewd_webhook_to_ready_seconds",
                "From the webhook accepting the deployed event to all services ready"
            )?),
            environment_cost: register!(GaugeVec::new(
                Opts::new("previewd_environment_cost_estimate_usd", "Monthly cost estimate per live preview"),
                &["repository", "pr_number"],
            )?),
            cost_hourly: register!(GaugeVec::new(
                Opts::new("previewd_cost_hourly_usd", "Running previews' cost per hour, by repository and team"),
                &["repository", "team"],
            )?),
            cost_projection: register!(Gauge::new(
                "previewd_cost_monthly_projection_usd",
                "What the running previews would cost over a month"
            )?),
            cost_budget: register!(Gauge::new(
                "previewd_cost_monthly_budget_usd",
                "The configured monthly budget (0: none)"
            )?),
            environment_oldest_expiry: register!(Gauge::new(
                "previewd_environment_oldest_expiry_timestamp_seconds",
                "Unix time of the earliest expiry among live previews (0: none)"
            )?),
            cost_budget_exceeded: register!(IntGauge::new(
                "previewd_cost_budget_exceeded",
                "1 while the monthly projection exceeds the budget"
            )?),
            ai_requests: register!(IntCounterVec::new(
                Opts::new("previewd_ai_requests_total", "AI service-detection queries, by provider and cache hit"),
                &["provider", "cache_hit"],
            )?),
            ai_failures: register!(IntCounterVec::new(
                Opts::new("previewd_ai_failures_total", "AI queries that fell back to the path globs, by reason"),
                &["reason"],
            )?),
            ai_tokens: register!(IntCounterVec::new(
                Opts::new("previewd_ai_tokens_total", "Tokens used by AI queries (input, output)"),
                &["kind"],
            )?),
            ai_cost: register!(Counter::new("previewd_ai_cost_usd_total", "What AI queries cost, in USD")?),
            github_requests: register!(IntCounterVec::new(
                Opts::new("previewd_github_requests_total", "GitHub API requests, by operation and outcome"),
                &["operation", "outcome"],
            )?),
            github_updates: register!(IntCounterVec::new(
                Opts::new("previewd_github_updates_total", "PR updates (deployment status, comment), by outcome"),
                &["outcome"],
            )?),
            github_remaining: register!(IntGauge::new(
                "previewd_github_rate_limit_remaining",
                "GitHub API requests left in the current rate-limit window (last reported)",
            )?),
            github_pending: register!(IntGauge::new(
                "previewd_github_pending_updates",
                "PRs whose state GitHub does not show yet"
            )?),
            experiments: ExperimentMetrics {
                previews: register!(IntCounterVec::new(
                    Opts::new("previewd_experiment_previews_total", "Previews created, by experiment arm"),
                    &["experiment", "arm"],
                )?),
                corrections: register!(IntCounterVec::new(
                    Opts::new(
                        "previewd_experiment_corrections_total",
                        "Service selections corrected by a command or a later push, by experiment arm"
                    ),
                    &["experiment", "arm"],
                )?),
                ai_spend: register!(prometheus::CounterVec::new(
                    Opts::new("previewd_experiment_ai_spend_usd_total", "AI spend, by experiment arm"),
                    &["experiment", "arm"],
                )?),
                services: register!(HistogramVec::new(
                    HistogramOpts::new(
                        "previewd_experiment_services_deployed",
                        "Services deployed per preview when first ready, by experiment arm"
                    )
                    .buckets(vec![1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0]),
                    &["experiment", "arm"],
                )?),
                hourly_usd: register!(HistogramVec::new(
                    HistogramOpts::new(
                        "previewd_experiment_preview_hourly_usd",
                        "Cost per preview-hour when first ready, by experiment arm"
                    )
                    .buckets(vec![0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]),
                    &["experiment", "arm"],
                )?),
                time_to_ready: register!(HistogramVec::new(
                    HistogramOpts::new(
                        "previewd_experiment_time_to_ready_seconds",
                        "From creation to first ready, by experiment arm"
                    )
                    .buckets(slow_buckets()),
                    &["experiment", "arm"],
                )?),
            },
            registry,
        };
        // Every series of a bounded label set exists from the start, at zero, so `rate()` and
        // `increase()` see the first occurrence and dashboards show 0 rather than nothing.
        // (The queue's, the controller's and the AI's label sets are their modules' to know: each
        // creates its series when it is given the metrics.)
        for status in ["active", "failed", "destroying"] {
            metrics.environments.with_label_values(&[status]);
        }
        for kind in ["input", "output"] {
            metrics.ai_tokens.with_label_values(&[kind]);
        }
        for outcome in ["delivered", "failed", "rejected"] {
            metrics.github_updates.with_label_values(&[outcome]);
        }
        Ok(metrics)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}
