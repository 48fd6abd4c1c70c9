//! Latency of the full handler against the local AWS emulator, beside the raw emulator round
//! trips an accepted delivery needs (admission transaction ∥ rate window, SendMessage, settle
//! transaction: three in sequence) and the five requests of the protocol before. Goal: handler
//! p50 within 1.2x of the raw sequence's p50.
//!
//! The two are measured interleaved in one run (the machine is shared and noisy), so the ratio
//! compares like with like. Needs the emulator: `make stack-up && . .run/stack.env`, then
//! cargo bench -p previewd-webhook --bench handler_latency
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use previewd_webhook::Outcome;
use support::{Signed, Stack, WebhookStack, new_delivery_id, pr_payload};

const WARMUP: usize = 50;
const SAMPLES: usize = 500;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(name: &str, samples: &mut [Duration]) -> Duration {
    samples.sort();
    let p50 = percentile(samples, 0.5);
    println!(
        "{name:<28} p50 {:>8.3} ms   p90 {:>8.3} ms   p99 {:>8.3} ms   (n={})",
        p50.as_secs_f64() * 1e3,
        percentile(samples, 0.9).as_secs_f64() * 1e3,
        percentile(samples, 0.99).as_secs_f64() * 1e3,
        samples.len()
    );
    p50
}

#[derive(Clone, Copy)]
enum Protocol {
    /// Today's: admit (transaction) ∥ rate, send, settle (transaction).
    Transactions,
    /// Before decision 43: claim ∥ rate ∥ mark, send, confirm.
    Before,
}

fn main() {
    if std::env::var("PREVIEWD_TEST_AWS_ENDPOINT").is_err() {
        eprintln!("handler_latency: skipped — start the emulator first: make stack-up && . .run/stack.env");
        return;
    }
    // `cargo test --benches` runs benches with --test/--bench flags: only measure under bench.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("handler_latency: run with `cargo bench` to measure");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let stack = Stack::new("bench").await;
        let webhook = stack.webhook(1_000_000);
        let payload = pr_payload("synchronize", "acme/shop", 1);

        let handler_once = || async {
            let signed = Signed::json("pull_request", &new_delivery_id(), &payload);
            let started = Instant::now();
            // `process` is `handle` without its log and EMF lines (microseconds, and noise here).
            let (reply, _) = webhook.process(&signed.delivery(), chrono::Utc::now()).await;
            let elapsed = started.elapsed();
            assert_eq!(reply.outcome, Outcome::Accepted);
            elapsed
        };
        // The requests the handler makes for an accepted delivery (same expressions, same
        // message body), issued straight through the SDK: the admission transaction (claim +
        // the PR's order check) beside the rate-window update, then SendMessage, then the
        // settle transaction (confirm + raise the order mark). Three sequential round trips.
        // Beside it, the protocol before (five requests: claim, rate and mark together, send,
        // confirm), which also took three round trips but raised the mark for refused deliveries.
        let body = {
            let signed = Signed::json("pull_request", "x", &payload);
            match previewd_webhook::prepare(
                &stack.config(1_000_000),
                &support::secrets(),
                &signed.delivery(),
                chrono::Utc::now(),
            )
            .0
            {
                previewd_webhook::Prepared::Enqueue(event) => event.to_json().unwrap(),
                other => panic!("{other:?}"),
            }
        };
        let raw_once = |protocol: Protocol| {
            let body = body.clone();
            let stack = &stack;
            async move {
                use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem, Update};
                let id = new_delivery_id();
                let now = chrono::Utc::now().timestamp();
                let key = AttributeValue::S(format!("delivery#{id}"));
                // Another PR than the handler series' (whose payload keeps one `updated_at`).
                let mark = AttributeValue::S("pr#acme/shop#2".to_owned());
                let n = |v: i64| AttributeValue::N(v.to_string());
                let s = |v: &str| AttributeValue::S(v.to_owned());
                let not_newer = "attribute_not_exists(updated_ms) OR updated_ms <= :u OR expires_at < :now";
                let claim = Put::builder()
                    .table_name(&stack.table)
                    .item("pk", key.clone())
                    .item("state", s("pending"))
                    .item("token", s(&id))
                    .item("lease_until", n(now + 60))
                    .item("expires_at", n(now + 345_600))
                    .condition_expression(
                        "attribute_not_exists(pk) OR expires_at < :now OR (#state = :pending AND lease_until < :now)",
                    )
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_values(":now", n(now))
                    .expression_attribute_values(":pending", s("pending"))
                    .return_values_on_condition_check_failure(
                        aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
                    .unwrap();
                let confirm = Update::builder()
                    .table_name(&stack.table)
                    .key("pk", key.clone())
                    .update_expression("SET #state = :enqueued, expires_at = :exp REMOVE lease_until")
                    .condition_expression("#token = :token")
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_names("#token", "token")
                    .expression_attribute_values(":enqueued", s("enqueued"))
                    .expression_attribute_values(":exp", n(now + 345_600))
                    .expression_attribute_values(":token", s(&id))
                    .build()
                    .unwrap();
                let raise = Update::builder()
                    .table_name(&stack.table)
                    .key("pk", mark.clone())
                    .update_expression("SET updated_ms = :u, expires_at = :exp")
                    .condition_expression(not_newer)
                    .expression_attribute_values(":u", n(now * 1000))
                    .expression_attribute_values(":now", n(now))
                    .expression_attribute_values(":exp", n(now + 345_600))
                    .build()
                    .unwrap();
                let rate = stack
                    .ddb
                    .update_item()
                    .table_name(&stack.table)
                    .key("pk", s(&format!("rate#acme/shop#{}", now - now % 60)))
                    .update_expression("ADD hits :one SET expires_at = :exp")
                    .condition_expression("attribute_not_exists(hits) OR hits < :limit")
                    .expression_attribute_values(":one", n(1))
                    .expression_attribute_values(":limit", n(1_000_000))
                    .expression_attribute_values(":exp", n(now + 120));
                let send = stack
                    .sqs
                    .send_message()
                    .queue_url(&stack.queue_url)
                    .message_body(body)
                    .message_group_id("acme/shop#1")
                    .message_deduplication_id(&id);
                let started = Instant::now();
                match protocol {
                    Protocol::Transactions => {
                        let check = ConditionCheck::builder()
                            .table_name(&stack.table)
                            .key("pk", mark)
                            .condition_expression(not_newer)
                            .expression_attribute_values(":u", n(now * 1000))
                            .expression_attribute_values(":now", n(now))
                            .build()
                            .unwrap();
                        let admit = stack
                            .ddb
                            .transact_write_items()
                            .transact_items(TransactWriteItem::builder().put(claim).build())
                            .transact_items(TransactWriteItem::builder().condition_check(check).build())
                            .send();
                        let (admit, rate) = tokio::join!(admit, rate.send());
                        admit.unwrap();
                        rate.unwrap();
                        send.send().await.unwrap();
                        stack
                            .ddb
                            .transact_write_items()
                            .transact_items(TransactWriteItem::builder().update(confirm).build())
                            .transact_items(TransactWriteItem::builder().update(raise).build())
                            .send()
                            .await
                            .unwrap();
                    }
                    Protocol::Before => {
                        let claim = stack
                            .ddb
                            .put_item()
                            .table_name(&stack.table)
                            .set_item(Some(claim.item().clone()))
                            .set_condition_expression(claim.condition_expression().map(str::to_owned))
                            .set_expression_attribute_names(claim.expression_attribute_names().cloned())
                            .set_expression_attribute_values(claim.expression_attribute_values().cloned())
                            .send();
                        let raise_alone = stack
                            .ddb
                            .update_item()
                            .table_name(&stack.table)
                            .set_key(Some(raise.key().clone()))
                            .update_expression(raise.update_expression())
                            .set_condition_expression(raise.condition_expression().map(str::to_owned))
                            .set_expression_attribute_values(raise.expression_attribute_values().cloned())
                            .send();
                        let (claim, rate, raised) = tokio::join!(claim, rate.send(), raise_alone);
                        claim.unwrap();
                        rate.unwrap();
                        raised.unwrap();
                        send.send().await.unwrap();
                        stack
                            .ddb
                            .update_item()
                            .table_name(&stack.table)
                            .set_key(Some(confirm.key().clone()))
                            .update_expression(confirm.update_expression())
                            .set_condition_expression(confirm.condition_expression().map(str::to_owned))
                            .set_expression_attribute_names(confirm.expression_attribute_names().cloned())
                            .set_expression_attribute_values(confirm.expression_attribute_values().cloned())
                            .send()
                            .await
                            .unwrap();
                    }
                }
                started.elapsed()
            }
        };

        for _ in 0..WARMUP {
            handler_once().await;
            raw_once(Protocol::Transactions).await;
            raw_once(Protocol::Before).await;
        }
        let mut handler = Vec::with_capacity(SAMPLES);
        let mut raw = Vec::with_capacity(SAMPLES);
        let mut before = Vec::with_capacity(SAMPLES);
        for i in 0..SAMPLES {
            // Rotate the order so none always follows another.
            for step in 0..3 {
                match (i + step) % 3 {
                    0 => handler.push(handler_once().await),
                    1 => raw.push(raw_once(Protocol::Transactions).await),
                    _ => before.push(raw_once(Protocol::Before).await),
                }
            }
            if i % 100 == 99 {
                stack.drain().await;
            }
        }
        let h = report("handler (accepted delivery)", &mut handler);
        let r = report("raw round trips (same calls)", &mut raw);
        let b = report("raw, the protocol before (5 requests)", &mut before);
        println!("ratio handler / raw round trips at p50: {:.3} (goal <= 1.2)", h.as_secs_f64() / r.as_secs_f64());
        println!("ratio raw transactions / raw protocol before at p50: {:.3}", r.as_secs_f64() / b.as_secs_f64());
    });
}
