//! `webhook`: the Lambda entry point. Wiring only.

use std::sync::Arc;

use lambda_http::{Error, Request, service_fn};
use previewd_webhook::lambda;

// A Lambda instance serves one request at a time: one thread does all the work, with no
// wake-ups between worker threads (which were half the CPU of a delivery).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let telemetry = Arc::new(previewd_lambda_common::init_telemetry("previewd-webhook"));
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
        let telemetry = Arc::clone(&telemetry);
        async move {
            let reply = webhook.handle(&lambda::delivery(&req)).await;
            telemetry.flush(previewd_lambda_common::TRACE_FLUSH_LIMIT).await;
            Ok::<_, Error>(lambda::response(&reply))
        }
    }))
    .await
}
