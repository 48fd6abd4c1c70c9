//! `redeliver`: the scheduled Lambda entry point. Wiring only.

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use previewd_redeliver::config::Config;
use serde_json::Value;
use tracing::Instrument;

/// Stop starting new work this long before Lambda's own timeout.
const SAFETY_MARGIN: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = Arc::new(previewd_lambda_common::init_telemetry("previewd-redeliver"));
    let sdk = previewd_lambda_common::aws_config().await;
    let built = match Config::from_env() {
        Ok(config) => previewd_redeliver::from_config(&config, &sdk).await,
        Err(err) => Err(err.into()),
    };
    let redeliverer = match built {
        Ok(r) => Arc::new(r),
        Err(err) => {
            tracing::error!(error = %err, "redeliver cannot start");
            return Err(err.into());
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let redeliverer = Arc::clone(&redeliverer);
        let telemetry = Arc::clone(&telemetry);
        async move {
            let now = chrono::Utc::now();
            let remaining_ms =
                u64::try_from(i64::try_from(event.context.deadline).unwrap_or(i64::MAX) - now.timestamp_millis())
                    .unwrap_or(0);
            let deadline =
                tokio::time::Instant::now() + Duration::from_millis(remaining_ms).saturating_sub(SAFETY_MARGIN);
            let report = redeliverer.run(now, deadline).instrument(tracing::info_span!("redeliver.run")).await;
            telemetry.flush(previewd_lambda_common::TRACE_FLUSH_LIMIT).await;
            println!("{}", report.emf_line(now.timestamp_millis()));
            tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "redeliver run");
            if report.failed {
                // Surfaces in the function's Errors metric and alarm.
                return Err(Error::from(report.stopped.unwrap_or_default()));
            }
            Ok::<_, Error>(report)
        }
    }))
    .await
}
