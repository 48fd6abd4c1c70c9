//! `webhook`: the Lambda entry point. Wiring only.

use std::sync::Arc;

use lambda_http::{Error, Request, service_fn};
use previewd_webhook::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    previewd_lambda_common::init_logging();
    let sdk = previewd_lambda_common::aws_config().await;
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
