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
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use previewd_webhook::backing::{DeliveryLedger, DeliveryQueue};
use previewd_webhook::config::{Backing, Config, SecretConfig};
use previewd_webhook::nats::Jetstream;
use previewd_webhook::secrets::SecretSource;
use previewd_webhook::signature::Secrets;
use previewd_webhook::{Delivery, Reply, Webhook};

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
}

/// The routes: `POST /` (and `/webhook`) take deliveries; `/healthz` answers while the process
/// runs. A body over the configured limit still gets the pipeline's own 413 answer.
pub fn router<L, Q>(webhook: Arc<Webhook<L, Q>>, max_body_bytes: usize) -> axum::Router
where
    L: DeliveryLedger + 'static,
    Q: DeliveryQueue + 'static,
{
    axum::Router::new()
        .route("/", axum::routing::post(deliver::<L, Q>))
        .route("/webhook", axum::routing::post(deliver::<L, Q>))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(max_body_bytes.saturating_add(1)))
        .with_state(webhook)
}

async fn deliver<L: DeliveryLedger, Q: DeliveryQueue>(
    State(webhook): State<Arc<Webhook<L, Q>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = Delivery {
        event: header("x-github-event"),
        delivery_id: header("x-github-delivery"),
        signature: header("x-hub-signature-256"),
        content_type: header("content-type"),
        body: &body,
    };
    answer(&webhook.handle(&delivery).await)
}

fn answer(reply: &Reply) -> Response {
    let status = StatusCode::from_u16(reply.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, [("content-type", "application/json")], reply.body()).into_response();
    if let Some(seconds) = reply.retry_after
        && let Ok(value) = seconds.to_string().parse()
    {
        response.headers_mut().insert("retry-after", value);
    }
    response
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
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::Serve { addr: addr.to_string(), message: e.to_string() })?;
    tracing::info!(%addr, "webhook server listening");
    axum::serve(listener, router(Arc::new(webhook), max_body))
        .with_graceful_shutdown(super::run::shutdown_signal())
        .await
        .map_err(|e| ServerError::Serve { addr: addr.to_string(), message: e.to_string() })
}
