//! Shared by the integration tests: an isolated copy of the front's AWS resources in the local
//! emulator (created from `infra/local-resources.json`), signed deliveries, queue inspection.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use previewd_webhook::config::Config;
use previewd_webhook::ledger::Ledger;
use previewd_webhook::queue::EventQueue;
use previewd_webhook::secrets::SecretSource;
use previewd_webhook::signature::{self, Secrets};
use previewd_webhook::{Delivery, Webhook};
use serde_json::{Value, json};

pub const SECRET: &str = "current-secret";
pub const OLD_SECRET: &str = "previous-secret";

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The emulator's endpoint. Started by `make test` / `infra/stack.sh up`; a test that needs it
/// fails with instructions rather than passing vacuously.
pub fn endpoint() -> String {
    std::env::var("PREVIEWD_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "PREVIEWD_TEST_AWS_ENDPOINT is not set: these tests need the local AWS emulator. \
             Run `make test`, or `infra/stack.sh up && . .run/stack.env` before `cargo test`."
        )
    })
}

pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .timeout_config(aws_config::timeout::TimeoutConfig::builder().operation_timeout(Duration::from_secs(5)).build())
        .load()
        .await
}

/// One isolated set of the front's resources.
#[derive(Clone)]
pub struct Stack {
    pub sdk: SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub queue_url: String,
    pub dlq_url: String,
    pub table: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_prefix(name: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("t{}-{}-{}-{}-", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos % 100_000, name)
}

pub fn resource_spec() -> Value {
    let path = workspace_root().join("infra/local-resources.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

impl Stack {
    /// Creates a queue (+DLQ with redrive) and table as `infra/create_resources.py` does.
    pub async fn new(name: &str) -> Stack {
        let sdk = sdk_config(&endpoint()).await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let spec = resource_spec();
        let prefix = unique_prefix(name);

        let attrs = |v: &Value| {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (QueueAttributeName::from(k.as_str()), v.as_str().unwrap().to_owned()))
                .collect::<std::collections::HashMap<_, _>>()
        };
        let dlq = &spec["dead_letter_queue"];
        let dlq_url = sqs
            .create_queue()
            .queue_name(format!("{prefix}{}", dlq["name"].as_str().unwrap()))
            .set_attributes(Some(attrs(&dlq["attributes"])))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()
            .remove(&QueueAttributeName::QueueArn)
            .unwrap();
        let queue = &spec["queue"];
        let mut queue_attrs = attrs(&queue["attributes"]);
        queue_attrs.insert(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": queue["max_receive_count"].to_string()})
                .to_string(),
        );
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("{prefix}{}", queue["name"].as_str().unwrap()))
            .set_attributes(Some(queue_attrs))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();

        use aws_sdk_dynamodb::types::*;
        let table_spec = &spec["table"];
        let table = format!("{prefix}{}", table_spec["name"].as_str().unwrap());
        let key = table_spec["partition_key"].as_str().unwrap();
        ddb.create_table()
            .table_name(&table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(key)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(KeySchemaElement::builder().attribute_name(key).key_type(KeyType::Hash).build().unwrap())
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
        ddb.update_time_to_live()
            .table_name(&table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(table_spec["ttl_attribute"].as_str().unwrap())
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        Stack { sdk, sqs, ddb, queue_url, dlq_url, table }
    }

    pub fn env(&self, rate_limit: u32) -> Vec<(String, String)> {
        vec![
            ("PREVIEWD_WEBHOOK_SECRET".into(), format!("{SECRET},{OLD_SECRET}")),
            ("PREVIEWD_QUEUE_URL".into(), self.queue_url.clone()),
            ("PREVIEWD_TABLE_NAME".into(), self.table.clone()),
            ("PREVIEWD_RATE_LIMIT_PER_MINUTE".into(), rate_limit.to_string()),
        ]
    }

    pub fn config(&self, rate_limit: u32) -> Config {
        let env = self.env(rate_limit);
        Config::from_lookup(|k| env.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone())).unwrap()
    }

    /// The webhook wired to this stack, with `sqs` (e.g. one pointed at a dead endpoint).
    pub fn webhook_with_queue_client(&self, rate_limit: u32, sqs: aws_sdk_sqs::Client) -> Webhook {
        let config = self.config(rate_limit);
        let secrets = SecretSource::Static(Arc::new(Secrets::parse(&format!("{SECRET},{OLD_SECRET}")).unwrap()));
        let ledger = Ledger::new(self.ddb.clone(), self.table.clone(), config.claim_lease, config.dedupe_retention);
        let queue = EventQueue::new(sqs, self.queue_url.clone());
        Webhook::new(config, secrets, ledger, queue)
    }

    pub fn webhook(&self, rate_limit: u32) -> Webhook {
        self.webhook_with_queue_client(rate_limit, self.sqs.clone())
    }

    /// Receives (and deletes) everything currently on the queue.
    pub async fn drain(&self) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .unwrap();
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                return all;
            }
            for m in &batch {
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            all.extend(batch);
        }
    }
}

/// A realistic `pull_request` payload for `repo` (`owner/name`) and PR `number`.
pub fn pr_payload(action: &str, repo: &str, number: u64) -> Value {
    let (owner, name) = repo.split_once('/').unwrap();
    json!({
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "state": if action == "closed" { "closed" } else { "open" },
            "draft": false,
            "merged": false,
            "title": "Add the cart service",
            "body": "x".repeat(8_000),
            "html_url": format!("https://github.com/{repo}/pull/{number}"),
            "updated_at": "2026-11-26T10:00:00Z",
            "author_association": "MEMBER",
            "user": {"login": "octocat"},
            "labels": [{"name": "preview"}],
            "head": {"sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "ref": "cart", "repo": {"full_name": repo}},
            "base": {"ref": "main", "repo": {"full_name": repo}}
        },
        "repository": {"id": 1296269, "full_name": repo, "name": name, "owner": {"login": owner}},
        "installation": {"id": 77},
        "sender": {"login": "octocat"}
    })
}

/// An owned, signed delivery.
pub struct Signed {
    pub event: String,
    pub id: String,
    pub signature: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Signed {
    pub fn json(event: &str, id: &str, payload: &Value) -> Signed {
        let body = payload.to_string().into_bytes();
        Signed {
            event: event.into(),
            id: id.into(),
            signature: signature::sign(SECRET.as_bytes(), &body),
            content_type: "application/json".into(),
            body,
        }
    }

    pub fn form(event: &str, id: &str, payload: &Value) -> Signed {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes();
        Signed {
            event: event.into(),
            id: id.into(),
            signature: signature::sign(SECRET.as_bytes(), &body),
            content_type: "application/x-www-form-urlencoded".into(),
            body,
        }
    }

    pub fn delivery(&self) -> Delivery<'_> {
        Delivery {
            event: Some(&self.event),
            delivery_id: Some(&self.id),
            signature: Some(&self.signature),
            content_type: Some(&self.content_type),
            body: &self.body,
        }
    }
}

pub fn secrets() -> Secrets {
    Secrets::parse(&format!("{SECRET},{OLD_SECRET}")).unwrap()
}

pub fn new_delivery_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
