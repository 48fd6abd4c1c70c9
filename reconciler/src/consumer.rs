//! The queue consumer: long-polls the SQS FIFO queue, hands each PR event to the intake (a
//! PreviewEnvironment write or delete), and deletes the message only once the cluster write
//! succeeded. Malformed messages are left to SQS's redrive into the DLQ;
//! stale events are dropped; a batch's events for one PR collapse to the newest.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message};
use previewd_events::PreviewEvent;
use tracing::Instrument;

use crate::ai::engine::AiEngine;
use crate::config::Config;
use crate::github::notify::Notifier;
use crate::intake::Intake;
pub use crate::intake::Outcome;
pub use crate::intake::store::FIELD_MANAGER;
use crate::intake::store::PreviewStore;
use crate::metrics::Metrics;
use crate::policy;

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("SQS {operation}: {message}")]
    Sqs { operation: &'static str, message: String },
}

#[derive(Clone)]
pub struct Consumer {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    /// Where each event goes: the one event path, into the cluster.
    intake: Intake,
    metrics: Option<Metrics>,
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
        let intake = Intake::new(PreviewStore::Cluster(kube), config);
        Consumer { sqs, queue_url, intake, metrics: None, batch_size: 10, wait_seconds: 20 }
    }

    /// Asks the AI engine too (it needs GitHub for the diff).
    pub fn with_ai(mut self, engine: Arc<AiEngine>) -> Consumer {
        self.intake = self.intake.with_ai(engine);
        self
    }

    /// Counts messages by outcome and observes queue lag.
    pub fn with_metrics(mut self, metrics: Metrics) -> Consumer {
        for outcome in Outcome::LABELS {
            metrics.queue_messages.with_label_values(&[outcome]);
        }
        self.metrics = Some(metrics);
        self
    }

    /// Reads changed files, checks fork labels and explains missing previews through GitHub.
    pub fn with_github(mut self, notifier: Arc<Notifier>) -> Consumer {
        self.intake = self.intake.with_github(notifier);
        self
    }

    /// Applies one event to the cluster.
    pub async fn handle_event(&self, event: &PreviewEvent) -> Outcome {
        self.intake.handle_event(event).await
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
        if let Some(m) = &self.metrics {
            m.queue_received.inc_by(messages.len() as u64);
            m.queue_last_poll.set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        }
        let outcomes = self.handle_batch(messages).await?;
        if let Some(m) = &self.metrics {
            for outcome in &outcomes {
                m.queue_messages.with_label_values(&[outcome.label()]).inc();
            }
        }
        Ok(outcomes)
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
            if let Some(m) = &self.metrics {
                let lag = (chrono::Utc::now() - newest.received_at).num_milliseconds().max(0) as f64 / 1000.0;
                m.queue_lag.observe(lag);
            }
            // The newest event wins, but a maintainer's approval earlier in the burst is not
            // superseded: it approves the commit it was given for, so it is handled first.
            let approval =
                events[..events.len() - 1].iter().rposition(|(e, _)| policy::offers_approval(e, self.intake.config()));
            let mut handled = Vec::new();
            for (event, _) in approval.map(|i| &events[i]).into_iter().chain(events.last()) {
                let outcome = self.handle_traced(event).await;
                let failed = matches!(outcome, Outcome::Failed { .. });
                handled.push(outcome);
                if failed {
                    break;
                }
            }
            let done = !handled.iter().any(|o| matches!(o, Outcome::Failed { .. }));
            outcomes.extend(std::iter::repeat_n(Outcome::Superseded, events.len() - handled.len()));
            outcomes.extend(handled);
            if done {
                self.delete(events.iter().map(|(_, receipt)| receipt.as_str())).await?;
            }
        }
        Ok(outcomes)
    }

    /// [`Consumer::handle_event`] inside the event's span: everything logged while handling it
    /// carries its delivery id.
    async fn handle_traced(&self, event: &PreviewEvent) -> Outcome {
        let span = tracing::info_span!("event", delivery_id = %event.delivery_id);
        let outcome = self.handle_event(event).instrument(span.clone()).await;
        span.in_scope(|| tracing::info!(outcome = outcome.label(), action = %event.action, "queue event"));
        outcome
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
}
