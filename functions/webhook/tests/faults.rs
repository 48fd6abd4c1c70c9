//! Faults at the front's boundaries, injected by a proxy between the real AWS SDK and the
//! local emulator (`previewd_testkit::fault`): which failures refuse a delivery (and let its
//! redelivery in), which let it through, and what a cold start does without Secrets Manager.
//! The runbook lines for each are in docs/operations.md ("Faults and what Previewd does").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use previewd_testkit::fault::{Fault, FaultProxy};
use previewd_webhook::ledger::{Ledger, delivery_key};
use previewd_webhook::queue::EventQueue;
use previewd_webhook::secrets::{ManagedSecrets, SecretSource};
use previewd_webhook::signature::Secrets;
use previewd_webhook::{Outcome, Webhook};
use serde_json::Value;
use support::{SECRET, Signed, Stack, WebhookStack, new_delivery_id, pr_payload};

/// Which client goes through the proxy.
enum Through {
    DynamoDb,
    Sqs,
}

async fn webhook_through(stack: &Stack, proxy: &FaultProxy, through: Through) -> Webhook {
    let faulty = support::sdk_config(&proxy.endpoint).await;
    let config = stack.config(100);
    let (ddb, sqs) = match through {
        Through::DynamoDb => (aws_sdk_dynamodb::Client::new(&faulty), stack.sqs.clone()),
        Through::Sqs => (stack.ddb.clone(), aws_sdk_sqs::Client::new(&faulty)),
    };
    let secrets = SecretSource::Static(Arc::new(Secrets::parse(SECRET).unwrap()));
    let ledger = Ledger::new(ddb, stack.table.clone(), config.claim_lease, config.dedupe_retention);
    Webhook::new(config, secrets, ledger, EventQueue::new(sqs, stack.queue_url.clone()))
}

fn opened_at(number: u64, minutes_ago: i64) -> Value {
    let mut payload = pr_payload("opened", "acme/shop", number);
    let at = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    payload["pull_request"]["updated_at"] = Value::from(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    payload
}

async fn claim_exists(stack: &Stack, id: &str) -> bool {
    let item = stack
        .ddb
        .get_item()
        .table_name(&stack.table)
        .key("pk", AttributeValue::S(delivery_key(id)))
        .send()
        .await
        .unwrap();
    item.item.is_some()
}

#[tokio::test]
async fn dynamodb_down_fails_closed_and_the_redelivery_is_accepted() {
    let stack = Stack::new("ddb-down").await;
    let proxy = FaultProxy::start(&support::endpoint()).await;
    let webhook = webhook_through(&stack, &proxy, Through::DynamoDb).await;
    let signed = Signed::json("pull_request", &new_delivery_id(), &pr_payload("opened", "acme/shop", 11));

    proxy.fail("*", None, Fault::Status(503));
    let reply = webhook.handle(&signed.delivery()).await;
    assert_eq!((reply.outcome, reply.status()), (Outcome::Unavailable, 503), "{reply:?}");
    assert!(proxy.injected() >= 1);
    assert!(stack.drain().await.is_empty(), "nothing is enqueued without the dedupe ledger");

    proxy.heal();
    let again = webhook.handle(&signed.delivery()).await;
    assert_eq!(again.outcome, Outcome::Accepted, "{again:?}");
    assert_eq!(stack.drain().await.len(), 1);
}

#[tokio::test]
async fn an_unwritable_rate_window_or_settle_lets_the_delivery_through() {
    let stack = Stack::new("rate-down").await;
    let proxy = FaultProxy::start(&support::endpoint()).await;
    let webhook = webhook_through(&stack, &proxy, Through::DynamoDb).await;

    proxy.fail("UpdateItem", Some("rate#"), Fault::Status(500));
    let signed = Signed::json("pull_request", &new_delivery_id(), &pr_payload("opened", "acme/shop", 12));
    let reply = webhook.handle(&signed.delivery()).await;
    assert_eq!(reply.outcome, Outcome::Accepted, "the rate limit fails open: {reply:?}");
    assert_eq!(proxy.injected(), 1, "exactly the rate-window write failed");
    proxy.heal();

    // The settle transaction (confirm + raise the mark) after the enqueue: the message is on
    // the queue, so the delivery is accepted; its claim blocks duplicates for its lease.
    proxy.fail("TransactWriteItems", Some("pr#"), Fault::Status(503));
    proxy.fail("UpdateItem", Some("pr#"), Fault::Status(503));
    let signed = Signed::json("pull_request", &new_delivery_id(), &pr_payload("synchronize", "acme/shop", 12));
    let reply = webhook.handle(&signed.delivery()).await;
    // The admission transaction also names the mark (its condition check): it fails closed.
    assert_eq!(reply.outcome, Outcome::Unavailable, "{reply:?}");
    proxy.heal();
    proxy.fail("TransactWriteItems", Some("enqueued"), Fault::Status(503));
    let reply = webhook.handle(&signed.delivery()).await;
    assert_eq!(reply.outcome, Outcome::Accepted, "settling fails open: {reply:?}");
    assert_eq!(stack.drain().await.len(), 2);
}

#[tokio::test]
async fn sqs_down_releases_the_claim_so_the_redelivery_is_accepted() {
    let stack = Stack::new("sqs-down").await;
    let proxy = FaultProxy::start(&support::endpoint()).await;
    let webhook = webhook_through(&stack, &proxy, Through::Sqs).await;
    let id = new_delivery_id();
    let signed = Signed::json("pull_request", &id, &pr_payload("opened", "acme/shop", 13));

    proxy.fail("SendMessage", None, Fault::Status(503));
    let reply = webhook.handle(&signed.delivery()).await;
    assert_eq!((reply.outcome, reply.status()), (Outcome::Unavailable, 503), "{reply:?}");
    assert!(!claim_exists(&stack, &id).await, "the failed attempt's claim is released");
    // A timeout is an outage too (the test SDK gives up after 5 s).
    proxy.heal();
    proxy.fail("SendMessage", None, Fault::Delay(6_000));
    let reply = webhook.handle(&signed.delivery()).await;
    assert_eq!(reply.outcome, Outcome::Unavailable, "{reply:?}");

    proxy.heal();
    let again = webhook.handle(&signed.delivery()).await;
    assert_eq!(again.outcome, Outcome::Accepted, "{again:?}");
    // The timed-out send may or may not have reached the emulator: SQS's own deduplication on
    // the delivery id keeps it one message either way.
    assert_eq!(stack.drain().await.len(), 1);
}

#[tokio::test]
async fn a_redelivery_older_than_what_was_accepted_is_stale_and_never_enqueued() {
    let stack = Stack::new("order").await;
    let proxy = FaultProxy::start(&support::endpoint()).await;
    let webhook = webhook_through(&stack, &proxy, Through::Sqs).await;
    let opened = Signed::json("pull_request", &new_delivery_id(), &opened_at(14, 10));
    let mut closed_payload = pr_payload("closed", "acme/shop", 14);
    closed_payload["pull_request"]["updated_at"] =
        Value::from(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
    let closed = Signed::json("pull_request", &new_delivery_id(), &closed_payload);

    // `opened` fails (queue down), `closed` goes through, then `opened` is redelivered.
    proxy.fail("SendMessage", None, Fault::Status(503));
    assert_eq!(webhook.handle(&opened.delivery()).await.outcome, Outcome::Unavailable);
    proxy.heal();
    assert_eq!(webhook.handle(&closed.delivery()).await.outcome, Outcome::Accepted);
    let late = webhook.handle(&opened.delivery()).await;
    assert_eq!((late.outcome, late.status()), (Outcome::Stale, 200), "{late:?}");

    // A captured delivery replayed: same id -> duplicate; a new id (the header is unsigned)
    // -> stale; the PR's newest event under a new id changes nothing and is let through.
    assert_eq!(webhook.handle(&closed.delivery()).await.outcome, Outcome::Duplicate);
    let mut replay = Signed::json("pull_request", &new_delivery_id(), &opened_at(14, 10));
    replay.body.clone_from(&opened.body);
    replay.signature.clone_from(&opened.signature);
    assert_eq!(webhook.handle(&replay.delivery()).await.outcome, Outcome::Stale);
    // Older than the replay window (96 h): stale whatever the ledger holds.
    let ancient = Signed::json("pull_request", &new_delivery_id(), &opened_at(15, 97 * 60));
    assert_eq!(webhook.handle(&ancient.delivery()).await.outcome, Outcome::Stale);

    let queued = stack.drain().await;
    assert_eq!(queued.len(), 1, "only `closed` reached the queue");
    assert!(queued[0].body().unwrap().contains(r#""action":"closed""#));
}

#[tokio::test]
async fn secrets_manager_down_at_cold_start_stops_the_start_and_never_shows_the_secret() {
    let stack = Stack::new("sm-down").await;
    let proxy = FaultProxy::start(&support::endpoint()).await;
    let direct = aws_sdk_secretsmanager::Client::new(&stack.sdk);
    let canary = format!("canary-{}", new_delivery_id());
    let arn = direct
        .create_secret()
        .name(format!("{}-cold-start", stack.table))
        .secret_string(&canary)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let through = aws_sdk_secretsmanager::Client::new(&support::sdk_config(&proxy.endpoint).await);

    proxy.fail("GetSecretValue", None, Fault::Status(503));
    let err = ManagedSecrets::load(through.clone(), arn.clone(), Duration::from_secs(300)).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&arn) && message.contains("503"), "{message}");
    assert!(!message.contains(&canary), "the secret value leaked into the error");

    // Lambda starts a new container on the next request: once Secrets Manager answers, it
    // starts and verifies; a later refresh failing keeps the cached secret.
    proxy.heal();
    let managed = ManagedSecrets::load(through, arn, Duration::ZERO).await.unwrap();
    let source = SecretSource::Managed(managed);
    proxy.fail("GetSecretValue", None, Fault::Status(503));
    let body = b"{}";
    let signature = previewd_webhook::signature::sign(canary.as_bytes(), body);
    let secrets = source.current().await;
    assert_eq!(previewd_webhook::signature::verify(&secrets, Some(&signature), body), Ok(0));
    assert!(proxy.injected() >= 2, "the refresh was attempted and failed");
}
