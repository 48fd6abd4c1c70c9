//! Every AWS request the webhook, the redeliver function and the reconciler's consumer make,
//! on every path (accepted, duplicate, in flight, rate-limited, superseded, failed enqueue,
//! both settle fallbacks; attempts and watermark; receive, delete, heartbeat, defer, resend,
//! malformed), evaluated against the IAM policies `sam-template.yaml` gives each of them.
//! Each principal's clients go through its own recording proxy in front of the emulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use previewd_testkit::fault::{Fault, FaultProxy};
use previewd_testkit::iam::{self, AwsCall, Names};
use previewd_testkit::{Stack, sdk_config, workspace_root};
use previewd_webhook::ledger::{Ledger, delivery_key, pr_key};
use previewd_webhook::queue::EventQueue;
use previewd_webhook::secrets::{ManagedSecrets, SecretSource};
use previewd_webhook::{Outcome, Webhook};
use serde_json::{Value, json};

const SECRET: &str = "contract-secret";

fn payload(number: u64, updated: chrono::DateTime<Utc>) -> Value {
    json!({
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number, "state": "open", "draft": false, "merged": false, "title": "t",
            "html_url": format!("https://github.com/acme/shop/pull/{number}"),
            "updated_at": updated.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "author_association": "MEMBER", "user": {"login": "octocat"}, "labels": [],
            "head": {"sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "ref": "f", "repo": {"full_name": "Acme/Shop"}},
            "base": {"ref": "main", "repo": {"full_name": "Acme/Shop"}}
        },
        "repository": {"id": 1, "full_name": "Acme/Shop", "name": "Shop", "owner": {"login": "Acme"}},
        "sender": {"login": "octocat"}
    })
}

struct Delivery {
    id: String,
    body: Vec<u8>,
    signature: String,
}

impl Delivery {
    fn new(number: u64, updated: chrono::DateTime<Utc>) -> Delivery {
        let body = payload(number, updated).to_string().into_bytes();
        let signature = previewd_webhook::signature::sign(SECRET.as_bytes(), &body);
        Delivery { id: uuid(), body, signature }
    }

    fn http(&self) -> previewd_webhook::handler::Delivery<'_> {
        previewd_webhook::handler::Delivery {
            event: Some("pull_request"),
            delivery_id: Some(&self.id),
            signature: Some(&self.signature),
            content_type: Some("application/json"),
            body: &self.body,
        }
    }
}

fn uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("contract-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn names(stack: &Stack, secrets: &[(&str, &str)]) -> Names {
    let template = iam::template();
    let arn = |logical: &str| iam::arn_of(&template, logical).unwrap();
    Names {
        tables: vec![(stack.table.clone(), arn("DeliveriesTable"))],
        queues: vec![
            (stack.queue_url.clone(), arn("EventsQueue")),
            (stack.dlq_url.clone(), arn("EventsDeadLetterQueue")),
        ],
        secrets: secrets.iter().map(|(id, logical)| ((*id).to_owned(), arn(logical))).collect(),
        partition_key: previewd_testkit::resource_spec()["table"]["partition_key"].as_str().unwrap().to_owned(),
    }
}

/// The webhook on every path of its protocol; returns what it sent to AWS.
async fn webhook_calls(stack: &Stack) -> (Vec<AwsCall>, String) {
    let proxy = FaultProxy::start(&previewd_testkit::endpoint()).await;
    let sdk = sdk_config(&proxy.endpoint).await;
    let secrets_client = aws_sdk_secretsmanager::Client::new(&stack.sdk);
    let name = format!("{}-webhook-secret", stack.table);
    let secret = secrets_client.create_secret().name(&name).secret_string(SECRET).send().await.unwrap().arn.unwrap();
    let env = [
        ("PREVIEWD_WEBHOOK_SECRET_ARN", secret.clone()),
        ("PREVIEWD_QUEUE_URL", stack.queue_url.clone()),
        ("PREVIEWD_TABLE_NAME", stack.table.clone()),
        ("PREVIEWD_RATE_LIMIT_PER_MINUTE", "3".to_owned()),
    ];
    let config =
        previewd_webhook::config::Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    let managed =
        ManagedSecrets::load(aws_sdk_secretsmanager::Client::new(&sdk), secret.clone(), Duration::ZERO).await.unwrap();
    let ledger = Ledger::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        stack.table.clone(),
        config.claim_lease,
        config.dedupe_retention,
    );
    let queue = EventQueue::new(aws_sdk_sqs::Client::new(&sdk), stack.queue_url.clone());
    let webhook = Arc::new(Webhook::new(config, SecretSource::Managed(managed), ledger, queue));
    let now = Utc::now();
    let minute = move |m: i64| now + chrono::Duration::minutes(m);
    let outcome = |reply: (previewd_webhook::Reply, _)| reply.0.outcome;

    // Accepted, then the same delivery again (enqueued: a duplicate).
    let first = Delivery::new(1, now);
    assert_eq!(outcome(webhook.process(&first.http(), minute(0)).await), Outcome::Accepted);
    assert_eq!(outcome(webhook.process(&first.http(), minute(0)).await), Outcome::Duplicate);
    // Rate-limited (3 a minute; the duplicate counted too): the claim is released.
    assert_eq!(outcome(webhook.process(&Delivery::new(2, now).http(), minute(0)).await), Outcome::Accepted);
    assert_eq!(outcome(webhook.process(&Delivery::new(3, now).http(), minute(0)).await), Outcome::RateLimited);
    // Superseded: older than what PR 1 accepted.
    let older = Delivery::new(1, now - chrono::Duration::minutes(5));
    assert_eq!(outcome(webhook.process(&older.http(), minute(1)).await), Outcome::Stale);
    // In flight: another request's live claim.
    let claimed = Delivery::new(4, now);
    put(stack, &delivery_key(&claimed.id), "pending", "someone", minute(1).timestamp() + 60).await;
    assert_eq!(outcome(webhook.process(&claimed.http(), minute(1)).await), Outcome::InProgress);
    // The enqueue fails: the claim is released.
    proxy.fail("SendMessage", None, Fault::Status(503));
    assert_eq!(outcome(webhook.process(&Delivery::new(5, now).http(), minute(2)).await), Outcome::Unavailable);
    proxy.heal();
    // Settling finds a newer mark (raised while this delivery was being enqueued): confirm alone.
    // Then it finds its claim taken over: raise the mark alone.
    for (number, meddle) in [(6_u64, "mark"), (7, "claim")] {
        let delivery = Delivery::new(number, now);
        proxy.fail("SendMessage", None, Fault::Delay(400));
        let webhook = Arc::clone(&webhook);
        let handle = {
            let (id, body, signature) = (delivery.id.clone(), delivery.body.clone(), delivery.signature.clone());
            tokio::spawn(async move {
                let d = Delivery { id, body, signature };
                webhook.process(&d.http(), minute(3 + i64::try_from(number).unwrap())).await.0.outcome
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        if meddle == "mark" {
            let key = pr_key("acme/shop", number);
            stack
                .ddb
                .put_item()
                .table_name(&stack.table)
                .item("pk", AttributeValue::S(key))
                .item(
                    "updated_ms",
                    AttributeValue::N((now + chrono::Duration::hours(1)).timestamp_millis().to_string()),
                )
                .item("expires_at", AttributeValue::N((minute(60)).timestamp().to_string()))
                .send()
                .await
                .unwrap();
        } else {
            put(stack, &delivery_key(&delivery.id), "pending", "someone-else", minute(60).timestamp()).await;
        }
        assert_eq!(handle.await.unwrap(), Outcome::Accepted);
        proxy.heal();
    }
    (proxy.calls(), secret)
}

async fn put(stack: &Stack, pk: &str, state: &str, token: &str, lease_until: i64) {
    stack
        .ddb
        .put_item()
        .table_name(&stack.table)
        .item("pk", AttributeValue::S(pk.to_owned()))
        .item("state", AttributeValue::S(state.to_owned()))
        .item("token", AttributeValue::S(token.to_owned()))
        .item("lease_until", AttributeValue::N(lease_until.to_string()))
        .item("expires_at", AttributeValue::N((lease_until + 86_400).to_string()))
        .send()
        .await
        .unwrap();
}

/// The redeliver function: its credentials, attempts and watermark.
async fn redeliver_calls(stack: &Stack) -> (Vec<AwsCall>, String) {
    let proxy = FaultProxy::start(&previewd_testkit::endpoint()).await;
    let sdk = sdk_config(&proxy.endpoint).await;
    let secrets_client = aws_sdk_secretsmanager::Client::new(&stack.sdk);
    let name = format!("{}-github-credentials", stack.table);
    let secret = secrets_client
        .create_secret()
        .name(&name)
        .secret_string(r#"{"token": "ghp_contract"}"#)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let env = [
        ("PREVIEWD_TABLE_NAME", stack.table.clone()),
        ("PREVIEWD_GITHUB_HOOK", "repo:acme/shop:7".to_owned()),
        // Nothing listens there: the run reads its watermark, then fails at GitHub.
        ("PREVIEWD_GITHUB_API_URL", "http://127.0.0.1:9".to_owned()),
        ("PREVIEWD_GITHUB_CREDENTIALS_SECRET_ARN", secret.clone()),
    ];
    let config =
        previewd_redeliver::config::Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    let redeliverer = previewd_redeliver::from_config(&config, &sdk).await.unwrap();
    let _ = redeliverer.run(Utc::now(), tokio::time::Instant::now() + Duration::from_secs(5)).await;
    let state = previewd_redeliver::state::State::new(aws_sdk_dynamodb::Client::new(&sdk), stack.table.clone());
    let now = Utc::now().timestamp();
    state.take_attempt("guid-1", 3, now).await.unwrap();
    state.take_attempt("guid-1", 3, now).await.unwrap();
    state.set_watermark(&config.hook, now).await.unwrap();
    assert_eq!(state.watermark(&config.hook).await.unwrap(), Some(now));
    (proxy.calls(), secret)
}

/// The reconciler's consumer: receive, handle and delete; a malformed message; a newer
/// contract version deferred and, at its last receive, sent again; the heartbeat.
async fn reconciler_calls(stack: &Stack) -> Vec<AwsCall> {
    let proxy = FaultProxy::start(&previewd_testkit::endpoint()).await;
    let sdk = sdk_config(&proxy.endpoint).await;
    let kube = kube_memory::MemoryApi::new(kube_memory::Registry::core()).with_resource(
        kube_memory::ResourceType::new(
            "preview.previewd.io",
            "v1alpha1",
            "previewenvironments",
            "PreviewEnvironment",
            false,
        )
        .with_status(),
    );
    let client = kube::Client::new(kube.service(), "default");
    let config = Arc::new(previewd::config::Config::load(&workspace_root().join("docs/examples/config.yaml")).unwrap());
    let mut consumer =
        previewd::consumer::Consumer::new(aws_sdk_sqs::Client::new(&sdk), stack.queue_url.clone(), client, config);
    consumer.wait_seconds = 0;
    consumer.visibility = Duration::from_secs(1);
    consumer.backoff = previewd::consumer::Backoff { first: Duration::from_secs(1), max: Duration::from_secs(1) };
    let opened: previewd_events::PreviewEvent = previewd_events::PreviewEvent::from_json(
        &std::fs::read_to_string(workspace_root().join("docs/examples/events/opened.json")).unwrap(),
    )
    .unwrap();
    // What the webhook enqueued is not this part's business.
    stack.drain().await;
    stack.send_event(&opened).await;
    // A slow delete: the heartbeat renews the message meanwhile.
    proxy.fail("DeleteMessageBatch", None, Fault::Delay(1_200));
    let handled = consumer.poll_once().await.unwrap();
    assert!(matches!(&handled[..], [previewd::consumer::Outcome::Applied { .. }]), "{handled:?}");
    proxy.heal();
    for (body, group) in [(r#"{"version": 1}"#.to_owned(), "garbage"), (json!({"version": 99}).to_string(), "newer")] {
        stack
            .sqs
            .send_message()
            .queue_url(&stack.queue_url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(uuid())
            .send()
            .await
            .unwrap();
    }
    // Until the newer message has been received often enough to be sent again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !proxy.calls().iter().any(|c| c.target == "AmazonSQS.SendMessage") {
        assert!(std::time::Instant::now() < deadline, "the deferred message was never sent again");
        if consumer.poll_once().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    proxy.calls()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aws_call_is_allowed_by_the_template_policies() {
    let stack = Stack::new("iam").await;
    let (webhook, webhook_secret) = webhook_calls(&stack).await;
    let (redeliver, github_secret) = redeliver_calls(&stack).await;
    let reconciler = reconciler_calls(&stack).await;
    let names = names(&stack, &[(&webhook_secret, "WebhookSecret"), (&github_secret, "GitHubCredentials")]);

    // The recording saw what each path must have sent (the check cannot pass by seeing nothing).
    let targets = |calls: &[AwsCall]| calls.iter().map(|c| c.target.clone()).collect::<std::collections::BTreeSet<_>>();
    for (calls, expected) in [
        (
            &webhook,
            &[
                "DynamoDB_20120810.TransactWriteItems",
                "DynamoDB_20120810.UpdateItem",
                "DynamoDB_20120810.DeleteItem",
                "AmazonSQS.SendMessage",
                "secretsmanager.GetSecretValue",
            ][..],
        ),
        (
            &redeliver,
            &["DynamoDB_20120810.GetItem", "DynamoDB_20120810.UpdateItem", "secretsmanager.GetSecretValue"][..],
        ),
        (
            &reconciler,
            &[
                "AmazonSQS.ReceiveMessage",
                "AmazonSQS.DeleteMessageBatch",
                "AmazonSQS.ChangeMessageVisibility",
                "AmazonSQS.ChangeMessageVisibilityBatch",
                "AmazonSQS.SendMessage",
            ][..],
        ),
    ] {
        let seen = targets(calls);
        for target in expected {
            assert!(seen.contains(*target), "{target} was not exercised: {seen:?}");
        }
    }

    let mut denials = iam::denials("WebhookFunction", &webhook, &names);
    denials.extend(iam::denials("RedeliverFunction", &redeliver, &names));
    denials.extend(iam::denials("ReconcilerQueuePolicy", &reconciler, &names));
    assert!(denials.is_empty(), "denied on AWS:\n{}", denials.join("\n"));
}

/// The evaluator itself, on AWS's documented semantics: `ForAllValues:StringLike` on
/// `dynamodb:LeadingKeys` allows a request only when every key it touches matches a pattern,
/// and a statement for other actions or another table allows nothing.
#[test]
fn the_evaluator_follows_iams_documented_rules() {
    let table = "arn:aws:dynamodb:us-east-1:123456789012:table/t";
    let policy = json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "Keys", "Effect": "Allow", "Action": ["dynamodb:PutItem"], "Resource": table,
        "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["delivery#*"]}}
    }]});
    let request = |action: &str, resource: &str, keys: &[&str]| iam::Authorization {
        action: action.into(),
        resource: resource.into(),
        leading_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        enclosing_operation: None,
    };
    let verdicts = iam::evaluate(
        &[policy],
        &[
            request("dynamodb:PutItem", table, &["delivery#1"]),
            request("dynamodb:PutItem", table, &["pr#o/r#1"]),
            request("dynamodb:UpdateItem", table, &["delivery#1"]),
            request("dynamodb:PutItem", "arn:aws:dynamodb:us-east-1:123456789012:table/other", &["delivery#1"]),
        ],
    );
    let decisions: Vec<&str> = verdicts.iter().map(|v| v.decision.as_str()).collect();
    assert_eq!(decisions, ["Allowed", "ImplicitlyDenied", "ImplicitlyDenied", "ImplicitlyDenied"]);
    assert_eq!(verdicts[0].allowed_by, ["Keys"]);
}
