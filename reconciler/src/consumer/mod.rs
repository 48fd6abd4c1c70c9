//! The queue consumer: long-polls the SQS FIFO queue, turns each PR event into a
//! PreviewEnvironment write (server-side apply) or delete, and deletes the message only once
//! the cluster write succeeded. Malformed messages are left to SQS's redrive into the DLQ;
//! stale events are dropped; a batch's events for one PR collapse to the newest.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message};
use kube::api::{Api, Patch, PatchParams};
use previewd_events::PreviewEvent;
use serde_json::json;
use tracing::Instrument;

mod enrich;

use crate::ai::engine::AiEngine;
use crate::config::Config;
use crate::crd::{PreviewEnvironment, REMOVAL_REASON};
use crate::github::detect::ServiceMatcher;
use crate::github::notify::Notifier;
use crate::github::view;
use crate::metrics::Metrics;
use crate::names;
use crate::policy::{self, Approval, Decision, Reason};

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
    /// Every value of [`Outcome::label`].
    pub const LABELS: [&'static str; 7] =
        ["applied", "removed", "ignored", "stale", "superseded", "malformed", "failed"];

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
    /// GitHub, when credentials are configured: changed files, fork checks, the PR comment.
    github: Option<Arc<Notifier>>,
    metrics: Option<Metrics>,
    /// AI augmentation (service detection, test suggestions, TTL prediction), when on.
    ai: Option<Arc<AiEngine>>,
    /// Each repository's path globs, compiled once.
    matchers: Arc<HashMap<String, ServiceMatcher>>,
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
        let matchers = config.repositories.iter().map(|repo| (repo.name.clone(), ServiceMatcher::new(repo))).collect();
        Consumer {
            sqs,
            queue_url,
            kube,
            config,
            github: None,
            metrics: None,
            ai: None,
            matchers: Arc::new(matchers),
            batch_size: 10,
            wait_seconds: 20,
        }
    }

    /// Asks the AI engine too (it needs GitHub for the diff).
    pub fn with_ai(mut self, engine: Arc<AiEngine>) -> Consumer {
        self.ai = Some(engine);
        self
    }

    /// Counts messages by outcome and observes queue lag.
    pub fn with_metrics(mut self, metrics: Metrics) -> Consumer {
        self.metrics = Some(metrics);
        self
    }

    /// Reads changed files, checks fork labels and explains missing previews through GitHub.
    pub fn with_github(mut self, notifier: Arc<Notifier>) -> Consumer {
        self.github = Some(notifier);
        self
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
                events[..events.len() - 1].iter().rposition(|(e, _)| policy::offers_approval(e, &self.config));
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

    /// Applies one event to the cluster.
    pub async fn handle_event(&self, event: &PreviewEvent) -> Outcome {
        let api: Api<PreviewEnvironment> = Api::all(self.kube.clone());
        let Some(repo) = self.config.repository(&event.repository.full_name) else {
            return Outcome::Ignored { reason: Reason::RepositoryNotConfigured };
        };
        let name = names::preview_name(&self.config.namespace_prefix, &repo.slug(), event.pull_request.number);
        let existing = match api.get_opt(&name).await {
            Ok(Some(existing)) if policy::is_stale(event, &existing.spec.last_event) => return Outcome::Stale,
            Ok(existing) => existing,
            Err(err) => return Outcome::Failed { error: err.to_string() },
        };
        let deleting = existing.as_ref().is_some_and(|e| e.metadata.deletion_timestamp.is_some());
        let approval = if policy::offers_approval(event, &self.config) {
            match self.verify_approval(event).await {
                Ok(approval) => approval,
                // Fail closed: an unverified fork stays undeployed, and the message comes back.
                Err(err) => return Outcome::Failed { error: format!("checking the fork label: {err}") },
            }
        } else {
            Approval::None
        };
        // A preview being torn down approves nothing any more.
        let previous = existing.as_ref().filter(|_| !deleting).map(|e| &e.spec);
        let mut spec = match policy::decide(event, &self.config, previous, approval) {
            Decision::Upsert(spec) => *spec,
            Decision::Remove { reason } => return self.remove(&api, name, existing, event, reason).await,
            Decision::Ignore { reason } => return Outcome::Ignored { reason },
        };
        if deleting {
            // The previous preview is still being torn down: keep the message for a retry
            // rather than write into an object that is about to disappear.
            return Outcome::Failed { error: format!("{name} is still being deleted; retrying later") };
        }
        // A fork's unapproved push keeps the approved commit, and with it the services chosen
        // for that commit (the PR's files now describe the unapproved head).
        if spec.awaiting_approval.is_none() {
            self.select_services(repo, event, existing.as_ref(), &mut spec).await;
        }
        self.predict_ttl(event, &mut spec).await;
        if spec.services.is_empty() {
            return self.remove(&api, name, existing, event, Reason::NoServicesAffected).await;
        }
        let resource = PreviewEnvironment::new(&name, spec);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch(&name, &params, &Patch::Apply(&resource)).await {
            Ok(_) => Outcome::Applied { name },
            Err(err) => Outcome::Failed { error: err.to_string() },
        }
    }

    /// No preview for this PR: delete one that exists (noting why, for the PR comment the
    /// controller's finalizer writes), or tell the PR why none was created.
    async fn remove(
        &self,
        api: &Api<PreviewEnvironment>,
        name: String,
        existing: Option<PreviewEnvironment>,
        event: &PreviewEvent,
        reason: Reason,
    ) -> Outcome {
        let Some(existing) = existing else {
            if let Some(notifier) = &self.github {
                notifier.publish(view::not_created(&self.config, event, reason));
            }
            return Outcome::Removed { name, reason };
        };
        if existing.metadata.deletion_timestamp.is_none() {
            let note = json!({"metadata": {"annotations": {REMOVAL_REASON: reason.as_str()}}});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&note)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Outcome::Removed { name, reason },
                Err(err) => return Outcome::Failed { error: err.to_string() },
            }
        }
        match api.delete(&name, &Default::default()).await {
            Ok(_) => Outcome::Removed { name, reason },
            Err(kube::Error::Api(e)) if e.code == 404 => Outcome::Removed { name, reason },
            Err(err) => Outcome::Failed { error: err.to_string() },
        }
    }
}
