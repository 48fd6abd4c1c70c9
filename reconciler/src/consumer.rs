//! The queue consumer: long-polls the SQS FIFO queue, turns each PR event into a
//! PreviewEnvironment write (server-side apply) or delete, and deletes the message only once
//! the cluster write succeeded. Malformed messages are left to SQS's redrive into the DLQ;
//! stale events are dropped; a batch's events for one PR collapse to the newest.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message};
use kube::api::{Api, Patch, PatchParams};
use previewd_events::PreviewEvent;

use crate::config::Config;
use crate::crd::PreviewEnvironment;
use crate::names;
use crate::policy::{self, Decision, Reason};

/// The field manager of PreviewEnvironment specs (the controller owns their status).
pub const FIELD_MANAGER: &str = "previewd-consumer";

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("SQS {operation}: {message}")]
    Sqs { operation: &'static str, message: String },
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The PreviewEnvironment was created or updated.
    Applied { name: String },
    /// The PR's preview was removed (or there was none).
    Removed { name: String, reason: Reason },
    /// Not Previewd's business (e.g. a repository not in the configuration).
    Ignored { reason: Reason },
    /// Older than what the PreviewEnvironment already reflects.
    Stale,
    /// A newer event for the same PR in the same batch won.
    Superseded,
    /// Not a valid contract message: left for the dead-letter queue.
    Malformed { error: String },
    /// The cluster write failed: the message stays and comes back.
    Failed { error: String },
}

impl Outcome {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "applied",
            Outcome::Removed { .. } => "removed",
            Outcome::Ignored { .. } => "ignored",
            Outcome::Stale => "stale",
            Outcome::Superseded => "superseded",
            Outcome::Malformed { .. } => "malformed",
            Outcome::Failed { .. } => "failed",
        }
    }
}

#[derive(Clone)]
pub struct Consumer {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    kube: kube::Client,
    config: Arc<Config>,
    /// Messages per receive (1-10).
    pub batch_size: i32,
    /// Long-poll wait (0-20 s).
    pub wait_seconds: i32,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("queue_url", &self.queue_url).finish_non_exhaustive()
    }
}

fn sqs_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    err: &aws_sdk_sqs::error::SdkError<E, R>,
) -> ConsumerError {
    ConsumerError::Sqs { operation, message: DisplayErrorContext(err).to_string() }
}

impl Consumer {
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: String, kube: kube::Client, config: Arc<Config>) -> Consumer {
        Consumer { sqs, queue_url, kube, config, batch_size: 10, wait_seconds: 20 }
    }

    /// One receive and the handling of what it returned.
    pub async fn poll_once(&self) -> Result<Vec<Outcome>, ConsumerError> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size.clamp(1, 10))
            .wait_time_seconds(self.wait_seconds.clamp(0, 20))
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", &e))?;
        let messages = received.messages.unwrap_or_default();
        self.handle_batch(messages).await
    }

    async fn handle_batch(&self, messages: Vec<Message>) -> Result<Vec<Outcome>, ConsumerError> {
        let mut outcomes = Vec::new();
        // Per PR, in arrival order; FIFO already orders each PR's messages.
        let mut by_pr: BTreeMap<(String, u64), Vec<(PreviewEvent, String)>> = BTreeMap::new();
        for message in messages {
            let receipt = message.receipt_handle().unwrap_or_default().to_owned();
            match PreviewEvent::from_json(message.body().unwrap_or_default()) {
                Ok(event) => {
                    let key = (event.repository.full_name.to_ascii_lowercase(), event.pull_request.number);
                    by_pr.entry(key).or_default().push((event, receipt));
                }
                Err(err) => {
                    tracing::warn!(message_id = message.message_id().unwrap_or_default(), error = %err, "malformed queue message");
                    // Visible again at once, so it reaches maxReceiveCount and the DLQ quickly.
                    let _ = self
                        .sqs
                        .change_message_visibility()
                        .queue_url(&self.queue_url)
                        .receipt_handle(&receipt)
                        .visibility_timeout(0)
                        .send()
                        .await;
                    outcomes.push(Outcome::Malformed { error: err.to_string() });
                }
            }
        }
        for (_, mut events) in by_pr {
            events.sort_by_key(|(e, _)| (e.pull_request.updated_at, e.received_at));
            let Some((newest, _)) = events.last() else { continue };
            let outcome = self.handle_event(newest).await;
            let span = tracing::info_span!("event", delivery_id = %newest.delivery_id);
            span.in_scope(|| tracing::info!(outcome = outcome.label(), action = %newest.action, "queue event"));
            let done = !matches!(outcome, Outcome::Failed { .. });
            outcomes.extend(std::iter::repeat_n(Outcome::Superseded, events.len() - 1));
            outcomes.push(outcome);
            if done {
                self.delete(events.iter().map(|(_, receipt)| receipt.as_str())).await?;
            }
        }
        Ok(outcomes)
    }

    async fn delete<'a>(&self, receipts: impl Iterator<Item = &'a str>) -> Result<(), ConsumerError> {
        let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
            .enumerate()
            .filter_map(|(i, receipt)| {
                DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(receipt).build().ok()
            })
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        self.sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sqs_error("DeleteMessageBatch", &e))
    }

    /// Applies one event to the cluster.
    pub async fn handle_event(&self, event: &PreviewEvent) -> Outcome {
        let api: Api<PreviewEnvironment> = Api::all(self.kube.clone());
        let name = |reason_repo: &str| {
            self.config
                .repository(reason_repo)
                .map(|repo| names::preview_name(&self.config.namespace_prefix, &repo.slug(), event.pull_request.number))
        };
        match policy::decide(event, &self.config) {
            Decision::Ignore { reason } => Outcome::Ignored { reason },
            Decision::Remove { reason } => {
                let Some(name) = name(&event.repository.full_name) else { return Outcome::Ignored { reason } };
                match api.get_opt(&name).await {
                    Ok(Some(existing)) if policy::is_stale(event, &existing.spec.last_event) => Outcome::Stale,
                    Ok(Some(_)) => match api.delete(&name, &Default::default()).await {
                        Ok(_) => Outcome::Removed { name, reason },
                        Err(kube::Error::Api(e)) if e.code == 404 => Outcome::Removed { name, reason },
                        Err(err) => Outcome::Failed { error: err.to_string() },
                    },
                    Ok(None) => Outcome::Removed { name, reason },
                    Err(err) => Outcome::Failed { error: err.to_string() },
                }
            }
            Decision::Upsert(spec) => {
                let Some(name) = name(&spec.repository) else {
                    return Outcome::Ignored { reason: Reason::RepositoryNotConfigured };
                };
                match api.get_opt(&name).await {
                    Ok(Some(existing)) if policy::is_stale(event, &existing.spec.last_event) => return Outcome::Stale,
                    Ok(_) => {}
                    Err(err) => return Outcome::Failed { error: err.to_string() },
                }
                let resource = PreviewEnvironment::new(&name, *spec);
                let params = PatchParams::apply(FIELD_MANAGER).force();
                match api.patch(&name, &params, &Patch::Apply(&resource)).await {
                    Ok(_) => Outcome::Applied { name },
                    Err(err) => Outcome::Failed { error: err.to_string() },
                }
            }
        }
    }
}
