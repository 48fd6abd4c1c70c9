//! `previewd webhook-server`: the in-cluster front, for installs without AWS (GitHub
//! Enterprise Server, air-gapped networks). The Lambda's pipeline (signature, dedupe, rate
//! limit, per-PR order, the same answers) served over HTTP, with NATS JetStream as its ledger
//! and queue (`docs/in-cluster-front.md`). It needs neither the cluster's API nor the
//! reconciler: it runs as its own Deployment with several replicas, all equal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use previewd_webhook::backing::{DeliveryLedger, DeliveryQueue};
use previewd_webhook::config::{Backing, Config, SecretConfig};
use previewd_webhook::nats::Jetstream;
use previewd_webhook::secrets::SecretSource;
use previewd_webhook::signature::Secrets;
use previewd_webhook::{Delivery, Webhook};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] previewd_webhook::config::ConfigError),
    #[error("PREVIEWD_NATS_URL is not set: the in-cluster front keeps its queue and ledger in NATS JetStream")]
    NoNats,
    #[error(
        "PREVIEWD_WEBHOOK_SECRET_ARN is a Secrets Manager secret; in the cluster, mount the secret as PREVIEWD_WEBHOOK_SECRET"
    )]
    SecretArn,
    #[error("webhook secret: {0}")]
    Secret(String),
    #[error("PREVIEWD_LISTEN = {0:?} is not an address")]
    Listen(String),
    #[error("serving {addr}: {message}")]
    Serve { addr: String, message: String },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// What the server counts, for `/metrics` (the Lambda's counterpart is its EMF line).
#[derive(Debug, Clone)]
pub struct FrontMetrics {
    registry: Registry,
    /// `previewd_webhook_requests_total{outcome}`: one per delivery, by the pipeline's outcome.
    requests: IntCounterVec,
    /// `previewd_webhook_request_duration_seconds`: from the request to the answer.
    duration: Histogram,
}

impl FrontMetrics {
    pub fn new() -> Result<FrontMetrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("previewd_webhook_requests_total", "Webhook deliveries answered, by outcome."),
            &["outcome"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new("previewd_webhook_request_duration_seconds", "Time from a delivery to its answer.")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(FrontMetrics { registry, requests, duration })
    }

    /// One answered delivery.
    pub fn count(&self, outcome: &str, took: Duration) {
        self.requests.with_label_values(&[outcome]).inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

/// The server's shared state.
struct Front<L, Q> {
    webhook: Webhook<L, Q>,
    metrics: FrontMetrics,
}

/// The routes: `POST /` (and `/webhook`) take deliveries; `/healthz` answers while the process
/// runs; `/metrics` for Prometheus. A body over the configured limit still gets the pipeline's
/// own 413 answer.
pub fn router<L, Q>(webhook: Webhook<L, Q>, metrics: FrontMetrics, max_body_bytes: usize) -> axum::Router
where
    L: DeliveryLedger + 'static,
    Q: DeliveryQueue + 'static,
{
    axum::Router::new()
        .route("/", axum::routing::post(deliver::<L, Q>))
        .route("/webhook", axum::routing::post(deliver::<L, Q>))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/metrics",
            axum::routing::get(|State(front): State<Arc<Front<L, Q>>>| async move {
                ([("content-type", "text/plain; version=0.0.4")], front.metrics.render())
            }),
        )
        .layer(DefaultBodyLimit::max(max_body_bytes.saturating_add(1)))
        .with_state(Arc::new(Front { webhook, metrics }))
}

async fn deliver<L: DeliveryLedger, Q: DeliveryQueue>(
    State(front): State<Arc<Front<L, Q>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let reply = front.webhook.handle(&Delivery::from_http(&headers, &body)).await;
    front.metrics.count(reply.outcome.as_str(), started.elapsed());
    reply.http_response().map(axum::body::Body::from).into_response()
}

/// Connects to JetStream (retrying while NATS is not there yet), then serves until SIGTERM.
pub async fn serve() -> Result<(), ServerError> {
    let config = Config::from_env()?;
    let Backing::Nats { url } = &config.backing else { return Err(ServerError::NoNats) };
    let secrets = match &config.secret {
        SecretConfig::Inline(list) => Secrets::parse(list).map_err(|e| ServerError::Secret(e.to_string()))?,
        SecretConfig::Arn(_) => return Err(ServerError::SecretArn),
    };
    let listen = std::env::var("PREVIEWD_LISTEN").unwrap_or_else(|_| "0.0.0.0:8080".to_owned());
    let addr: SocketAddr = listen.parse().map_err(|_| ServerError::Listen(listen.clone()))?;
    let mut wait = Duration::from_millis(500);
    let backing = loop {
        match Jetstream::connect(url, config.claim_lease, config.dedupe_retention).await {
            Ok(backing) => break backing,
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "JetStream not ready");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    };
    let max_body = config.max_body_bytes;
    let webhook = Webhook::new(config, SecretSource::Static(Arc::new(secrets)), backing.clone(), backing);
    let metrics = FrontMetrics::new()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::Serve { addr: addr.to_string(), message: e.to_string() })?;
    tracing::info!(%addr, "webhook server listening");
    axum::serve(listener, router(webhook, metrics, max_body))
        .with_graceful_shutdown(super::run::shutdown_signal())
        .await
        .map_err(|e| ServerError::Serve { addr: addr.to_string(), message: e.to_string() })
}
