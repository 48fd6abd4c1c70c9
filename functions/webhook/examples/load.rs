//! Load on the locally running webhook: signed deliveries at a rising rate, a table of what
//! each stage sustained (deliveries/s, p50/p99 latency, errors). Stops after the first stage
//! that fell behind or saw an error. Run through `make load` (infra/load.sh), which starts the
//! emulator and the release webhook behind cargo-lambda without a rate limit.
//!
//! Environment: `LOAD_URL` (default http://127.0.0.1:9100/lambda-url/webhook/),
//! `PREVIEWD_WEBHOOK_SECRET`, `LOAD_RATES` (default 25,50,100,200,400,800), `LOAD_SECONDS`
//! (per stage, default 10), and `PREVIEWD_QUEUE_URL` to empty the queue between stages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use previewd_testkit::load::{row, run_stage};

async fn drain(sqs: &aws_sdk_sqs::Client, queue: &str) {
    loop {
        let out = sqs.receive_message().queue_url(queue).max_number_of_messages(10).send().await.unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return;
        }
        let entries = messages.iter().enumerate().filter_map(|(i, m)| {
            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .build()
                .ok()
        });
        sqs.delete_message_batch().queue_url(queue).set_entries(Some(entries.collect())).send().await.unwrap();
    }
}

#[tokio::main]
async fn main() {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let url = var("LOAD_URL", "http://127.0.0.1:9100/lambda-url/webhook/");
    let secret = std::env::var("PREVIEWD_WEBHOOK_SECRET").expect("PREVIEWD_WEBHOOK_SECRET is required");
    let rates: Vec<u32> =
        var("LOAD_RATES", "25,50,100,200,400,800").split(',').map(|r| r.trim().parse().unwrap()).collect();
    let seconds: f64 = var("LOAD_SECONDS", "10").parse().unwrap();
    let queue = std::env::var("PREVIEWD_QUEUE_URL").ok();
    let sqs = aws_sdk_sqs::Client::new(&aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await);

    println!("| target/s | sent | accepted | errors | achieved/s | p50 ms | p99 ms | max ms | sustained |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut best = None;
    for rate in rates {
        if let Some(queue) = &queue {
            // An emptied queue per stage: the emulator's cost grows with the queue's length.
            // (PurgeQueue is allowed once a minute, so the queue is drained instead.)
            drain(&sqs, queue).await;
        }
        let stage = run_stage(&url, &secret, rate, Duration::from_secs_f64(seconds)).await;
        println!("{}", row(&stage));
        if !stage.sustained() {
            break;
        }
        best = Some(stage);
    }
    match best {
        Some(stage) => println!(
            "\nsustained: {:.1} deliveries/s with zero errors (p50 {:.1} ms, p99 {:.1} ms)",
            stage.achieved_per_second, stage.p50_ms, stage.p99_ms
        ),
        None => println!("\nno stage was sustained"),
    }
}
