//! Shared by the webhook's integration tests: the webhook wired to an isolated copy of the
//! front's AWS resources (`previewd_testkit::Stack`), and signed deliveries.
#![allow(dead_code, unused_imports, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

pub use previewd_testkit::{Stack, endpoint, pr_payload, sdk_config, workspace_root};
use previewd_webhook::config::Config;
use previewd_webhook::ledger::Ledger;
use previewd_webhook::queue::EventQueue;
use previewd_webhook::secrets::SecretSource;
use previewd_webhook::signature::{self, Secrets};
use previewd_webhook::{Delivery, Webhook};
use serde_json::{Value, json};

pub const SECRET: &str = "current-secret";
pub const OLD_SECRET: &str = "previous-secret";

/// The webhook wired to a test stack.
pub trait WebhookStack {
    fn env(&self, rate_limit: u32) -> Vec<(String, String)>;
    fn config(&self, rate_limit: u32) -> Config;
    /// With `sqs` (e.g. one pointed at a dead endpoint) as the queue client.
    fn webhook_with_queue_client(&self, rate_limit: u32, sqs: aws_sdk_sqs::Client) -> Webhook;
    fn webhook(&self, rate_limit: u32) -> Webhook;
}

impl WebhookStack for Stack {
    fn env(&self, rate_limit: u32) -> Vec<(String, String)> {
        vec![
            ("PREVIEWD_WEBHOOK_SECRET".into(), format!("{SECRET},{OLD_SECRET}")),
            ("PREVIEWD_QUEUE_URL".into(), self.queue_url.clone()),
            ("PREVIEWD_TABLE_NAME".into(), self.table.clone()),
            ("PREVIEWD_RATE_LIMIT_PER_MINUTE".into(), rate_limit.to_string()),
        ]
    }

    fn config(&self, rate_limit: u32) -> Config {
        let env = self.env(rate_limit);
        Config::from_lookup(|k| env.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone())).unwrap()
    }

    fn webhook_with_queue_client(&self, rate_limit: u32, sqs: aws_sdk_sqs::Client) -> Webhook {
        let config = self.config(rate_limit);
        let secrets = SecretSource::Static(Arc::new(Secrets::parse(&format!("{SECRET},{OLD_SECRET}")).unwrap()));
        let ledger = Ledger::new(self.ddb.clone(), self.table.clone(), config.claim_lease, config.dedupe_retention);
        let queue = EventQueue::new(sqs, self.queue_url.clone());
        Webhook::new(config, secrets, ledger, queue)
    }

    fn webhook(&self, rate_limit: u32) -> Webhook {
        self.webhook_with_queue_client(rate_limit, self.sqs.clone())
    }
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
