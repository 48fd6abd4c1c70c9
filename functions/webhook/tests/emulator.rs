//! The webhook against the local AWS emulator (moto) with the real AWS SDK: dedupe, rate
//! limiting, enqueue failures, concurrency, Secrets Manager.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use chrono::{TimeZone, Utc};
use previewd_events::{PrAction, PreviewEvent};
use previewd_webhook::Outcome;
use previewd_webhook::ledger::delivery_key;
use previewd_webhook::secrets::{ManagedSecrets, SecretSource};
use support::{Signed, Stack, WebhookStack, new_delivery_id, pr_payload};

#[tokio::test]
async fn first_delivery_is_enqueued_with_fifo_attributes() {
    let stack = Stack::new("first").await;
    let webhook = stack.webhook(100);
    let id = new_delivery_id();
    let signed = Signed::json("pull_request", &id, &pr_payload("opened", "acme/shop", 12));

    let reply = webhook.handle(&signed.delivery()).await;
    assert_eq!(reply.outcome, Outcome::Accepted, "{reply:?}");
    assert_eq!(reply.status(), 202);
    assert_eq!(reply.delivery.as_deref(), Some(id.as_str()));

    let messages = stack.drain().await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(reply.message_id.as_deref(), message.message_id());
    let attrs = message.attributes().unwrap();
    assert_eq!(attrs[&MessageSystemAttributeName::MessageGroupId], "acme/shop#12");
    assert_eq!(attrs[&MessageSystemAttributeName::MessageDeduplicationId], id);
    let event = PreviewEvent::from_json(message.body().unwrap()).unwrap();
    assert_eq!(event.delivery_id, id);
    assert_eq!(event.action, PrAction::Opened);
    assert_eq!(event.repository.full_name, "acme/shop");
    assert_eq!(event.pull_request.number, 12);
    assert_eq!(event.pull_request.head_sha, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    assert_eq!(event.installation_id, Some(77));
    // The message is the small contract, never the raw (here 8 KB) payload.
    assert!(message.body().unwrap().len() < 1024);

    // The ledger remembers the delivery as enqueued, with a TTL.
    let item = stack
        .ddb
        .get_item()
        .table_name(&stack.table)
        .key("pk", AttributeValue::S(delivery_key(&id)))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["state"].as_s().unwrap(), "enqueued");
    let expires_at: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    assert!(expires_at > Utc::now().timestamp() + 3 * 24 * 3600);
}

#[tokio::test]
async fn same_delivery_again_is_a_duplicate_and_nothing_is_enqueued() {
    let stack = Stack::new("dup").await;
    let webhook = stack.webhook(100);
    let signed = Signed::json("pull_request", &new_delivery_id(), &pr_payload("synchronize", "acme/shop", 3));

    assert_eq!(webhook.handle(&signed.delivery()).await.outcome, Outcome::Accepted);
    // Consume it first: the emulator's SQS dedup forgets ids once deleted, so anything that
    // reaches the queue now would be visible. Only the ledger can stop it.
    assert_eq!(stack.drain().await.len(), 1);

    let again = webhook.handle(&signed.delivery()).await;
    assert_eq!(again.outcome, Outcome::Duplicate);
    assert_eq!(again.status(), 200);
    assert!(again.body().contains("already enqueued"), "{}", again.body());
    assert!(stack.drain().await.is_empty());
}

#[tokio::test]
async fn queue_unavailable_is_503_and_the_redelivery_is_accepted() {
    let stack = Stack::new("outage").await;
    // An SQS endpoint nothing listens on: connection refused, as during an SQS outage.
    let dead_sdk = support::sdk_config("http://127.0.0.1:9").await;
    let broken = stack.webhook_with_queue_client(100, aws_sdk_sqs::Client::new(&dead_sdk));
    let signed = Signed::json("pull_request", &new_delivery_id(), &pr_payload("opened", "acme/shop", 5));

    let reply = broken.handle(&signed.delivery()).await;
    assert_eq!(reply.outcome, Outcome::Unavailable, "{reply:?}");
    assert_eq!(reply.status(), 503);
    assert!(!reply.body().contains("127.0.0.1"), "internals leaked: {}", reply.body());

    // GitHub (or the redeliver function) sends the same delivery again once SQS is back.
    let healthy = stack.webhook(100);
    let redelivered = healthy.handle(&signed.delivery()).await;
    assert_eq!(redelivered.outcome, Outcome::Accepted, "{redelivered:?}");
    assert_eq!(stack.drain().await.len(), 1);
}

#[tokio::test]
async fn rate_window_exceeded_is_429_with_retry_after() {
    let stack = Stack::new("rate").await;
    let webhook = stack.webhook(3);
    // A fixed clock 15 s into a minute: the window cannot roll over during the test.
    let now = Utc.timestamp_opt(1_795_000_815, 0).unwrap();
    let payload = pr_payload("synchronize", "acme/busy", 1);
    for _ in 0..3 {
        let signed = Signed::json("pull_request", &new_delivery_id(), &payload);
        let (reply, _) = webhook.process(&signed.delivery(), now).await;
        assert_eq!(reply.outcome, Outcome::Accepted, "{reply:?}");
    }
    let limited = Signed::json("pull_request", &new_delivery_id(), &payload);
    let (reply, _) = webhook.process(&limited.delivery(), now).await;
    assert_eq!(reply.outcome, Outcome::RateLimited);
    assert_eq!(reply.status(), 429);
    assert_eq!(reply.retry_after, Some(45));

    // Other repositories have their own window.
    let other = Signed::json("pull_request", &new_delivery_id(), &pr_payload("opened", "acme/quiet", 1));
    assert_eq!(webhook.process(&other.delivery(), now).await.0.outcome, Outcome::Accepted);

    // The refused delivery left no claim behind: in the next window its redelivery goes through.
    let next_window = now + chrono::Duration::seconds(60);
    let (reply, _) = webhook.process(&limited.delivery(), next_window).await;
    assert_eq!(reply.outcome, Outcome::Accepted, "{reply:?}");
    assert_eq!(stack.drain().await.len(), 5);
}

#[tokio::test]
async fn concurrent_identical_deliveries_enqueue_exactly_one_message() {
    let stack = Stack::new("race").await;
    let webhook = Arc::new(stack.webhook(1000));
    let signed = Arc::new(Signed::json("pull_request", &new_delivery_id(), &pr_payload("opened", "acme/shop", 9)));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (webhook, signed) = (Arc::clone(&webhook), Arc::clone(&signed));
            tokio::spawn(async move { webhook.handle(&signed.delivery()).await.outcome })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    // One is accepted; the others met its claim (in flight: retry later) or its record.
    let accepted = outcomes.iter().filter(|o| **o == Outcome::Accepted).count();
    let others = outcomes.iter().filter(|o| matches!(o, Outcome::Duplicate | Outcome::InProgress)).count();
    assert_eq!((accepted, others), (1, 15), "{outcomes:?}");
    assert_eq!(stack.drain().await.len(), 1);
}

#[tokio::test]
async fn abandoned_claims_and_expired_records_do_not_swallow_deliveries() {
    let stack = Stack::new("lease").await;
    let webhook = stack.webhook(100);
    let now = Utc::now().timestamp();
    let put = |id: &str, state: &str, lease_until: i64, expires_at: i64| {
        stack
            .ddb
            .put_item()
            .table_name(&stack.table)
            .item("pk", AttributeValue::S(delivery_key(id)))
            .item("state", AttributeValue::S(state.into()))
            .item("token", AttributeValue::S("someone-else".into()))
            .item("lease_until", AttributeValue::N(lease_until.to_string()))
            .item("expires_at", AttributeValue::N(expires_at.to_string()))
            .send()
    };
    // A container died after claiming, long ago: its lease is over.
    let crashed = new_delivery_id();
    put(&crashed, "pending", now - 10, now + 86_400).await.unwrap();
    // An enqueued record past its TTL that DynamoDB has not deleted yet.
    let expired = new_delivery_id();
    put(&expired, "enqueued", 0, now - 1).await.unwrap();
    // A live claim held by a request still in flight.
    let in_flight = new_delivery_id();
    put(&in_flight, "pending", now + 60, now + 86_400).await.unwrap();

    for id in [&crashed, &expired] {
        let signed = Signed::json("pull_request", id, &pr_payload("opened", "acme/shop", 2));
        assert_eq!(webhook.handle(&signed.delivery()).await.outcome, Outcome::Accepted, "{id}");
    }
    let signed = Signed::json("pull_request", &in_flight, &pr_payload("opened", "acme/shop", 2));
    let reply = webhook.handle(&signed.delivery()).await;
    assert_eq!(reply.outcome, Outcome::InProgress);
    assert!(reply.reason.contains("being processed"), "{}", reply.reason);
    assert_eq!(stack.drain().await.len(), 2);
}

/// A redelivery that meets another request's live claim must not be answered 2xx: that request
/// can still die before it enqueues, and GitHub (and the redeliver function) only try a failed
/// delivery again.
#[tokio::test]
async fn an_in_flight_duplicate_is_answered_with_a_retryable_status() {
    let stack = Stack::new("in-flight").await;
    let webhook = stack.webhook(100);
    let id = new_delivery_id();
    let now = Utc::now().timestamp();
    // A request that claimed the delivery a moment ago and has not enqueued it (yet, or ever).
    stack
        .ddb
        .put_item()
        .table_name(&stack.table)
        .item("pk", AttributeValue::S(delivery_key(&id)))
        .item("state", AttributeValue::S("pending".into()))
        .item("token", AttributeValue::S("another-request".into()))
        .item("lease_until", AttributeValue::N((now + 60).to_string()))
        .item("expires_at", AttributeValue::N((now + 86_400).to_string()))
        .send()
        .await
        .unwrap();
    let signed = Signed::json("pull_request", &id, &pr_payload("synchronize", "acme/shop", 3));
    let reply = webhook.handle(&signed.delivery()).await;
    assert_eq!(reply.outcome, Outcome::InProgress, "{reply:?}");
    assert!(!(200..300).contains(&reply.status()), "{}", reply.status());
    assert_eq!(
        reply.status(),
        409,
        "retried by the redeliver function (redeliver's `an_in_flight_duplicate_is_redelivered`)"
    );
    assert!(reply.retry_after.is_some());
    assert!(stack.drain().await.is_empty());

    // The other request died; once its lease is over, the redelivery goes through.
    let later = Utc::now() + chrono::Duration::seconds(61);
    let (reply, _) = webhook.process(&signed.delivery(), later).await;
    assert_eq!(reply.outcome, Outcome::Accepted, "{reply:?}");
    assert_eq!(stack.drain().await.len(), 1);
}

/// Only an accepted delivery raises its PR's order mark: a refused one (rate limit, failed
/// enqueue) leaves it where it was, so an older event it would have superseded still goes in.
#[tokio::test]
async fn a_refused_delivery_does_not_raise_the_order_mark() {
    let stack = Stack::new("refused-mark").await;
    let webhook = stack.webhook(1);
    let now = Utc.timestamp_opt(1_795_000_815, 0).unwrap();
    let at = |minutes_ago: i64| {
        (Utc::now() - chrono::Duration::minutes(minutes_ago)).format("%Y-%m-%dT%H:%M:%SZ").to_string()
    };
    let with_time = |number: u64, updated: String| {
        let mut payload = pr_payload("synchronize", "acme/busy", number);
        payload["pull_request"]["updated_at"] = serde_json::json!(updated);
        Signed::json("pull_request", &new_delivery_id(), &payload)
    };
    // The minute's one delivery goes to PR 1; PR 2's newer event is refused for the rate.
    assert_eq!(webhook.process(&with_time(1, at(0)).delivery(), now).await.0.outcome, Outcome::Accepted);
    let refused = with_time(2, at(1));
    assert_eq!(webhook.process(&refused.delivery(), now).await.0.outcome, Outcome::RateLimited);
    // A delivery whose enqueue fails is refused too (503).
    let dead = support::sdk_config("http://127.0.0.1:9").await;
    let no_queue = stack.webhook_with_queue_client(100, aws_sdk_sqs::Client::new(&dead));
    let unqueued = with_time(3, at(1));
    assert_eq!(no_queue.process(&unqueued.delivery(), now).await.0.outcome, Outcome::Unavailable);

    // PR 2's and 3's older events, in the next window, are not stale: nothing newer was accepted.
    let next_minute = now + chrono::Duration::seconds(60);
    for number in [2_i64, 3] {
        let older = with_time(number.cast_unsigned(), at(10));
        let (reply, _) = webhook.process(&older.delivery(), next_minute + chrono::Duration::minutes(number)).await;
        assert_eq!(reply.outcome, Outcome::Accepted, "PR {number}: {reply:?}");
    }
    // And an accepted event does raise it: PR 1's older event is stale.
    let (reply, _) =
        webhook.process(&with_time(1, at(10)).delivery(), next_minute + chrono::Duration::minutes(10)).await;
    assert_eq!(reply.outcome, Outcome::Stale, "{reply:?}");
}

#[tokio::test]
async fn ignored_and_rejected_requests_never_touch_aws() {
    let stack = Stack::new("noaws").await;
    // Every AWS call would fail: a reply other than 503 proves none was made.
    let dead_sdk = support::sdk_config("http://127.0.0.1:9").await;
    let mut webhook_stack = stack.clone();
    webhook_stack.ddb = aws_sdk_dynamodb::Client::new(&dead_sdk);
    let webhook = webhook_stack.webhook_with_queue_client(100, aws_sdk_sqs::Client::new(&dead_sdk));

    let cases = [
        (Signed::json("ping", "p-1", &serde_json::json!({"zen": "Design for failure."})), Outcome::Pong),
        (Signed::json("issues", "i-1", &serde_json::json!({"action": "opened"})), Outcome::Ignored),
        (Signed::json("pull_request", "a-1", &pr_payload("assigned", "acme/shop", 1)), Outcome::Ignored),
        (Signed::json("pull_request", "m-1", &serde_json::json!({"action": "opened"})), Outcome::Malformed),
    ];
    for (signed, expected) in &cases {
        let reply = webhook.handle(&signed.delivery()).await;
        assert_eq!(reply.outcome, *expected, "{reply:?}");
    }
    let mut unsigned = Signed::json("pull_request", "u-1", &pr_payload("opened", "acme/shop", 1));
    unsigned.signature = "sha256=".to_owned() + &"0".repeat(64);
    assert_eq!(webhook.handle(&unsigned.delivery()).await.outcome, Outcome::Unauthorized);
}

#[tokio::test]
async fn secrets_manager_secret_is_loaded_and_refreshed() {
    let stack = Stack::new("secrets").await;
    let client = aws_sdk_secretsmanager::Client::new(&stack.sdk);
    let name = format!("{}-webhook-secret", stack.table);
    let arn = client.create_secret().name(&name).secret_string("first-secret").send().await.unwrap().arn.unwrap();

    let managed = ManagedSecrets::load(client.clone(), arn.clone(), Duration::ZERO).await.unwrap();
    let source = SecretSource::Managed(managed);
    let body = b"{}";
    let sig = |secret: &str| previewd_webhook::signature::sign(secret.as_bytes(), body);
    let verify = |secrets: &previewd_webhook::signature::Secrets, s: &str| {
        previewd_webhook::signature::verify(secrets, Some(s), body)
    };
    assert_eq!(verify(&*source.current().await, &sig("first-secret")), Ok(0));

    // Rotation: the new secret first, the old one kept until GitHub uses the new one.
    client.put_secret_value().secret_id(&arn).secret_string("second-secret,first-secret").send().await.unwrap();
    let rotated = source.current().await;
    assert_eq!(verify(&rotated, &sig("second-secret")), Ok(0));
    assert_eq!(verify(&rotated, &sig("first-secret")), Ok(1));

    // A secret that cannot be read stops the container from starting, with the ARN named.
    let missing = format!("{arn}-missing");
    let err = ManagedSecrets::load(client, missing.clone(), Duration::from_secs(300)).await.unwrap_err();
    assert!(err.to_string().contains(&missing), "{err}");
}
