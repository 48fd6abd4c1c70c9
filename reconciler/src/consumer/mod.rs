//! The queue consumer: long-polls the SQS FIFO queue (or the in-cluster front's JetStream
//! stream, `source.rs`), hands each PR event to the intake (a PreviewEnvironment write or
//! delete), and deletes the message only once the cluster write succeeded. While a batch is being handled its messages are kept invisible (a heartbeat), so
//! a slow batch is never handed to a second consumer. Malformed messages are left to SQS's
//! redrive into the DLQ; messages that cannot be handled *yet* (a newer contract version, a
//! preview still being torn down) are delayed and never dead-lettered; stale events are
//! dropped; a batch's events for one PR collapse to the newest.

mod defer;
mod held;
pub mod jetstream;
mod source;
pub mod sqs;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use previewd_events::{Message as QueueMessage, PreviewEvent};
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
pub use defer::Backoff;
use defer::Deferral;
use held::Held;
pub use jetstream::JetStreamSource;
use source::Received;
pub use source::Source;
pub use sqs::SqsSource;

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("queue {operation}: {message}")]
    Queue { operation: &'static str, message: String },
}

#[derive(Clone)]
pub struct Consumer {
    /// SQS (the AWS front) or JetStream (the in-cluster front).
    source: Source,
    /// Where each event goes: the one event path, into the cluster.
    intake: Intake,
    metrics: Option<Metrics>,
    /// Messages per receive (1-10).
    pub batch_size: i32,
    /// Long-poll wait (0-20 s).
    pub wait_seconds: i32,
    /// How long a received message stays invisible; the heartbeat renews it every third of
    /// that while the message is being handled (the queue's `VisibilityTimeout`, 120 s).
    pub visibility: Duration,
    /// The queue's `maxReceiveCount`: a deferred message is sent again before it reaches it.
    pub max_receives: u32,
    /// Delays of messages that cannot be handled yet.
    pub backoff: Backoff,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("source", &self.source.describe()).finish_non_exhaustive()
    }
}

/// The span of one queue message: a child of the webhook's span when the message carries its
/// `traceparent`, so the delivery is one trace from the Function URL on.
fn event_span(delivery_id: &str, traceparent: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!("event", delivery_id = %delivery_id);
    if let Some(parent) = traceparent {
        crate::telemetry::continue_trace(&span, parent);
    }
    span
}

impl Consumer {
    /// Reads the AWS front's SQS FIFO queue at `queue_url`.
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: String, kube: kube::Client, config: Arc<Config>) -> Consumer {
        Consumer::from_source(Source::Sqs(SqsSource::new(sqs, queue_url)), kube, config)
    }

    /// Reads the in-cluster front's JetStream stream. JetStream redelivers without a limit,
    /// so a deferred message is only ever delayed.
    pub fn jetstream(source: JetStreamSource, kube: kube::Client, config: Arc<Config>) -> Consumer {
        let mut consumer = Consumer::from_source(Source::JetStream(Box::new(source)), kube, config);
        consumer.max_receives = u32::MAX;
        consumer
    }

    fn from_source(source: Source, kube: kube::Client, config: Arc<Config>) -> Consumer {
        let intake = Intake::new(PreviewStore::Cluster(kube), config);
        Consumer {
            source,
            intake,
            metrics: None,
            batch_size: 10,
            wait_seconds: 20,
            visibility: Duration::from_secs(120),
            max_receives: 5,
            backoff: Backoff::default(),
        }
    }

    /// Asks the AI engine too (it needs GitHub for the diff).
    pub fn with_ai(mut self, engine: Arc<AiEngine>) -> Consumer {
        self.intake = self.intake.with_ai(engine);
        self
    }

    /// Sizes previews from the right-sizing proposals in `book`.
    pub fn with_sizing(mut self, book: Arc<crate::sizing::Book>) -> Consumer {
        self.intake = self.intake.with_sizing(book);
        self
    }

    /// Counts messages by outcome and observes queue lag.
    pub fn with_metrics(mut self, metrics: Metrics) -> Consumer {
        for outcome in Outcome::LABELS {
            metrics.queue_messages.with_label_values(&[outcome]);
        }
        self.intake = self.intake.with_metrics(metrics.clone());
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

    /// Re-reads the checks of every commit that waits for its build, and times out old waits
    /// (`previewd run` does this every two minutes: the safety net for missed check events).
    pub async fn resync_build_gates(&self) -> Result<usize, String> {
        self.intake.resync_build_gates().await
    }

    /// One receive and the handling of what it returned.
    pub async fn poll_once(&self) -> Result<Vec<Outcome>, ConsumerError> {
        let messages = self.source.receive(self.batch_size, self.wait_seconds, self.visibility).await?;
        if let Some(m) = &self.metrics {
            m.queue_received.inc_by(messages.len() as u64);
            m.queue_last_poll.set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        }
        let held = Held::new(messages.iter().map(|m| (m.id.as_str(), m.receipt.as_str())));
        let outcomes = tokio::select! {
            outcomes = self.handle_batch(messages, &held) => outcomes?,
            never = self.keep_invisible(&held) => match never {},
        };
        if let Some(m) = &self.metrics {
            for outcome in &outcomes {
                m.queue_messages.with_label_values(&[outcome.label()]).inc();
            }
        }
        Ok(outcomes)
    }

    /// The heartbeat: renews the visibility of every message still held, every third of the
    /// visibility timeout, so none reappears while it is being handled. Ends when the batch
    /// does (the caller drops it).
    async fn keep_invisible(&self, held: &Held) -> Infallible {
        let every = (self.visibility / 3).max(Duration::from_millis(500));
        loop {
            tokio::time::sleep(every).await;
            self.source.extend(held.held(), self.visibility).await;
        }
    }

    async fn handle_batch(&self, messages: Vec<Received>, held: &Held) -> Result<Vec<Outcome>, ConsumerError> {
        let mut outcomes = Vec::new();
        // Per FIFO group, in arrival order (FIFO already orders each group's messages): a PR's
        // events and commands, or a commit's checks.
        let mut by_group: BTreeMap<String, Vec<(QueueMessage, Received)>> = BTreeMap::new();
        for message in messages {
            match QueueMessage::from_json(&message.body) {
                Ok(decoded) => by_group.entry(decoded.message_group_id()).or_default().push((decoded, message)),
                Err(err) if err.is_newer_version() => {
                    // A newer front wrote it during a rolling deploy: a newer consumer reads it.
                    tracing::warn!(message_id = message.id, error = %err, "queue message from a newer contract version; returned to the queue");
                    self.defer(&[&message], held).await?;
                    outcomes.push(Outcome::NewerVersion { error: err.to_string() });
                }
                Err(err) => {
                    tracing::warn!(message_id = message.id, error = %err, "malformed queue message");
                    self.source.reject(&message).await;
                    held.release(&message.id);
                    outcomes.push(Outcome::Malformed { error: err.to_string() });
                }
            }
        }
        for (_, group) in by_group {
            // Consecutive PR events collapse to the newest; a command or a check is handled on
            // its own, after the events before it.
            let mut events = Vec::new();
            for (message, received) in group {
                let event = match message {
                    QueueMessage::PullRequest(event) => {
                        events.push((*event, received));
                        continue;
                    }
                    other => other,
                };
                self.handle_events(std::mem::take(&mut events), held, &mut outcomes).await?;
                let outcome = self.handle_continuing(&event, received.traceparent.as_deref()).await;
                self.settle(&[&received], std::slice::from_ref(&outcome), held).await?;
                outcomes.push(outcome);
            }
            self.handle_events(events, held, &mut outcomes).await?;
        }
        Ok(outcomes)
    }

    /// One PR's consecutive events: the newest wins.
    async fn handle_events(
        &self,
        mut events: Vec<(PreviewEvent, Received)>,
        held: &Held,
        outcomes: &mut Vec<Outcome>,
    ) -> Result<(), ConsumerError> {
        events.sort_by_key(|(e, _)| (e.pull_request.updated_at, e.received_at));
        let Some((newest, _)) = events.last() else { return Ok(()) };
        if let Some(m) = &self.metrics {
            let lag = (chrono::Utc::now() - newest.received_at).num_milliseconds().max(0) as f64 / 1000.0;
            m.queue_lag.observe(lag);
        }
        // The newest event wins, but a maintainer's approval earlier in the burst is not
        // superseded: it approves the commit it was given for, so it is handled first.
        let approval =
            events[..events.len() - 1].iter().rposition(|(e, _)| policy::offers_approval(e, self.intake.config()));
        let mut handled = Vec::new();
        for (event, received) in approval.map(|i| &events[i]).into_iter().chain(events.last()) {
            let outcome = self.handle_traced(event, received.traceparent.as_deref()).await;
            let settled = !matches!(outcome, Outcome::Failed { .. } | Outcome::Waiting { .. });
            handled.push(outcome);
            if !settled {
                break;
            }
        }
        let messages: Vec<&Received> = events.iter().map(|(_, m)| m).collect();
        self.settle(&messages, &handled, held).await?;
        outcomes.extend(std::iter::repeat_n(Outcome::Superseded, events.len() - handled.len()));
        outcomes.extend(handled);
        Ok(())
    }

    /// Applies any queue message (a PR event, a `/preview` command, a check) in its span.
    pub async fn handle_message(&self, message: &QueueMessage) -> Outcome {
        self.handle_continuing(message, None).await
    }

    /// [`Consumer::handle_message`], continuing the trace `traceparent` names.
    async fn handle_continuing(&self, message: &QueueMessage, traceparent: Option<&str>) -> Outcome {
        let span = event_span(message.delivery_id(), traceparent);
        // Boxed: each path holds the whole intake's future, and a batch's future holds them all.
        let outcome = match message {
            QueueMessage::Command(command) => {
                Box::pin(self.intake.handle_command(command).instrument(span.clone())).await
            }
            QueueMessage::Check(check) => Box::pin(self.intake.handle_check(check).instrument(span.clone())).await,
            QueueMessage::PullRequest(event) => Box::pin(self.handle_event(event).instrument(span.clone())).await,
        };
        if let Some(m) = &self.metrics {
            let lag = (chrono::Utc::now() - message.received_at()).num_milliseconds().max(0) as f64 / 1000.0;
            m.queue_lag.observe(lag);
        }
        span.in_scope(|| tracing::info!(outcome = outcome.label(), "queue message"));
        outcome
    }

    /// Deletes handled messages, returns failed ones (back after the visibility timeout, and
    /// towards the DLQ if they keep failing) and delays waiting ones.
    async fn settle(&self, messages: &[&Received], handled: &[Outcome], held: &Held) -> Result<(), ConsumerError> {
        if handled.iter().any(|o| matches!(o, Outcome::Failed { .. })) {
            for message in messages {
                held.release(&message.id);
            }
            Ok(())
        } else if handled.iter().any(|o| matches!(o, Outcome::Waiting { .. })) {
            self.defer(messages, held).await
        } else {
            self.delete(messages, held).await
        }
    }

    /// [`Consumer::handle_event`] inside the event's span: everything logged while handling it
    /// carries its delivery id.
    async fn handle_traced(&self, event: &PreviewEvent, traceparent: Option<&str>) -> Outcome {
        let span = event_span(&event.delivery_id, traceparent);
        let outcome = self.handle_event(event).instrument(span.clone()).await;
        span.in_scope(|| tracing::info!(outcome = outcome.label(), action = %event.action, "queue event"));
        outcome
    }

    /// Returns messages that cannot be handled yet to the queue, for later (`defer.rs`).
    async fn defer(&self, messages: &[&Received], held: &Held) -> Result<(), ConsumerError> {
        for message in messages {
            match self.backoff.defer(message.receives, self.max_receives) {
                Deferral::Delay(delay) => {
                    self.source.delay(message, delay).await?;
                    held.release(&message.id);
                }
                Deferral::Resend => {
                    self.source.resend(message).await?;
                    self.delete(&[message], held).await?;
                }
            }
        }
        Ok(())
    }

    /// Deletes handled messages. Entries the batch call refuses are retried twice; what still
    /// fails is counted and logged (the message comes back and is dropped as already applied).
    async fn delete(&self, messages: &[&Received], held: &Held) -> Result<(), ConsumerError> {
        let mut pending: Vec<&Received> = messages.to_vec();
        for attempt in 0..3 {
            if pending.is_empty() {
                return Ok(());
            }
            let failed = self.source.delete(&pending).await?;
            for settled in pending.iter().filter(|m| !failed.iter().any(|f| f.id == m.id)) {
                held.release(&settled.id);
            }
            if !failed.is_empty() {
                tracing::warn!(attempt, failed = failed.len(), "could not settle handled messages");
            }
            pending = failed;
        }
        if let Some(m) = &self.metrics {
            m.queue_delete_failures.inc_by(pending.len() as u64);
        }
        for message in pending {
            held.release(&message.id);
        }
        Ok(())
    }
}
