//! `webhook`: the Lambda entry point. Wiring only.

use std::sync::Arc;

use lambda_http::{Error, Request, service_fn};
use previewd_webhook::lambda;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON logs; level from RUST_LOG, else Lambda's AWS_LAMBDA_LOG_LEVEL, else info.
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL"))
        .unwrap_or_else(|_| "info".to_owned());
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::try_new(filter.to_lowercase()).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_current_span(false)
        .flatten_event(true)
        .with_target(false)
        .without_time()
        .init();

    let sdk = lambda::aws_config().await;
    let webhook = match lambda::webhook_from_env(&sdk).await {
        Ok(webhook) => Arc::new(webhook),
        Err(err) => {
            tracing::error!(error = %err, "webhook cannot start");
            return Err(err.into());
        }
    };
    lambda_http::run(service_fn(move |req: Request| {
        let webhook = Arc::clone(&webhook);
        async move {
            let reply = webhook.handle(&lambda::delivery(&req)).await;
            Ok::<_, Error>(lambda::response(&reply))
        }
    }))
    .await
}
