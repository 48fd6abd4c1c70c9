//! Test-only helpers shared by the crates' integration tests: the local AWS emulator's
//! endpoint and isolated copies of the front's resources, created from
//! `infra/local-resources.json` exactly as `infra/create_resources.py` creates them.
//!
//! A test that needs the emulator fails with instructions when it is not running; it never
//! passes vacuously.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod fault;
pub mod github_api;
pub mod iam;
pub mod load;
pub mod mutate;
pub mod otlp;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Value, json};

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An RSA key pair made fresh for the test run (PKCS#1 PEM, as GitHub hands out App keys).
#[derive(Debug, Clone)]
pub struct AppKey {
    pub private_pem: String,
    pub public_pem: String,
}

/// Generates a GitHub App-style key with the system's `openssl`.
pub fn github_app_key() -> AppKey {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let out = Command::new("openssl").args(["genrsa", "-traditional", "2048"]).output().expect("openssl is needed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let private_pem = String::from_utf8(out.stdout).unwrap();
    let mut child = Command::new("openssl")
        .args(["rsa", "-pubout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(private_pem.as_bytes()).unwrap();
    let public_pem = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    AppKey { private_pem, public_pem }
}

/// The emulator's endpoint. Started by `make test` / `infra/stack.sh up`.
pub fn endpoint() -> String {
    std::env::var("PREVIEWD_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "PREVIEWD_TEST_AWS_ENDPOINT is not set: these tests need the local AWS emulator. \
             Run `make test`, or `infra/stack.sh up && . .run/stack.env` before `cargo test`."
        )
    })
}

/// SDK settings for tests: static credentials, one attempt, short timeouts.
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

/// The resource description both the scripts and the tests read.
pub fn resource_spec() -> Value {
    let path = workspace_root().join("infra/local-resources.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_prefix(name: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("t{}-{}-{}-{}-", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos % 100_000, name)
}

/// An emulator process of a test's own, on a free port: for tests heavy enough that sharing the
/// one emulator would serialise them behind each other (it is a single Python process).
#[derive(Debug)]
pub struct PrivateEmulator {
    pub endpoint: String,
    child: std::process::Child,
}

impl PrivateEmulator {
    pub async fn start() -> PrivateEmulator {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // moto with DynamoDB requests isolated from each other (infra/emulator.py says why).
        let program = workspace_root().join(".venv/bin/python");
        let child = std::process::Command::new(&program)
            .arg(workspace_root().join("infra/emulator.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (infra/setup.sh installs it)", program.display()));
        // Owned at once, so the process is stopped (by Drop) on every path.
        let emulator = PrivateEmulator { endpoint: format!("http://127.0.0.1:{port}"), child };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return emulator;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the private emulator did not start on port {port}");
    }
}

impl Drop for PrivateEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One isolated set of the front's resources.
#[derive(Debug, Clone)]
pub struct Stack {
    pub sdk: SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub queue_url: String,
    pub dlq_url: String,
    pub table: String,
}

impl Stack {
    /// Creates a queue (+DLQ with redrive) and the table, named uniquely for this test.
    pub async fn new(name: &str) -> Stack {
        Stack::new_at(&endpoint(), name).await
    }

    /// As [`Stack::new`], on the emulator at `endpoint` (e.g. a private one from
    /// [`PrivateEmulator`]).
    pub async fn new_at(endpoint: &str, name: &str) -> Stack {
        let sdk = sdk_config(endpoint).await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let spec = resource_spec();
        let prefix = unique_prefix(name);

        let attrs = |v: &Value| {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (QueueAttributeName::from(k.as_str()), v.as_str().unwrap().to_owned()))
                .collect::<HashMap<_, _>>()
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

    /// Sends a contract message the way the webhook does (group per PR, dedup by delivery).
    pub async fn send_event(&self, event: &previewd_events::PreviewEvent) {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(event.to_json().unwrap())
            .message_group_id(event.message_group_id())
            .message_deduplication_id(&event.delivery_id)
            .send()
            .await
            .unwrap();
    }

    /// (visible, in flight) messages on the queue at `url` (the queue or its DLQ).
    pub async fn queued(&self, url: &str) -> (i64, i64) {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        let n = |a: QueueAttributeName| attrs.get(&a).map_or(0, |v| v.parse().unwrap());
        (
            n(QueueAttributeName::ApproximateNumberOfMessages),
            n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
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
    serde_json::json!({
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
            // Now: older events are refused as replays (outside the dedupe retention).
            "updated_at": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
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
