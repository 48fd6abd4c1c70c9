//! From a PR event to its preview: the one path every subcommand takes (`previewd run`'s queue
//! consumer, `previewd consume`, `previewd render`), whatever store the previews live in.
//! Stale events are dropped, the policy decides (fork approvals checked with GitHub), GitHub and
//! the AI choose the services, and the preview is written or removed.

mod build;
mod command;
mod enrich;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;

use previewd_events::PreviewEvent;

use crate::ai::engine::AiEngine;
use crate::config::Config;
use crate::crd::PreviewEnvironment;
use crate::github::client::GitHubClient;
use crate::github::detect::ServiceMatcher;
use crate::github::notify::Notifier;
use crate::github::view;
use crate::names;
use crate::policy::{self, Approval, Decision, Reason};
use store::PreviewStore;

/// What happened to one event.
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
    /// A contract version newer than this build reads: returned to the queue for a newer
    /// consumer (a rolling deploy), never dead-lettered.
    NewerVersion { error: String },
    /// Cannot be handled yet (the previous preview is still being torn down): returned to the
    /// queue with a delay, never dead-lettered.
    Waiting { reason: String },
    /// The write failed: the message stays and comes back.
    Failed { error: String },
    /// A command or a check that changed no preview (answered on the PR, or for no preview).
    Noted { what: &'static str },
}

impl Outcome {
    /// Every value of [`Outcome::label`].
    pub const LABELS: [&'static str; 10] = [
        "applied",
        "removed",
        "ignored",
        "stale",
        "superseded",
        "malformed",
        "newer_version",
        "waiting",
        "failed",
        "noted",
    ];

    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "applied",
            Outcome::Removed { .. } => "removed",
            Outcome::Ignored { .. } => "ignored",
            Outcome::Stale => "stale",
            Outcome::Superseded => "superseded",
            Outcome::Malformed { .. } => "malformed",
            Outcome::NewerVersion { .. } => "newer_version",
            Outcome::Waiting { .. } => "waiting",
            Outcome::Failed { .. } => "failed",
            Outcome::Noted { .. } => "noted",
        }
    }
}

/// A writer's `/preview` (or `/preview services`) on a PR without a preview.
#[derive(Debug, Clone)]
struct Ask {
    by: String,
    services: Vec<String>,
}

/// How fork approvals are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approvals {
    /// With GitHub (push access of whoever added the label); without GitHub, none count.
    Checked,
    /// The label's sender counts as a maintainer (`previewd render`, and `previewd consume`
    /// into a folder: there is no GitHub to ask, and nothing is deployed).
    Assumed,
}

#[derive(Clone)]
pub struct Intake {
    store: PreviewStore,
    config: Arc<Config>,
    approvals: Approvals,
    /// GitHub, when credentials are configured: changed files and fork checks (read here) ...
    github: Option<Arc<GitHubClient>>,
    /// ... and the PR comment (published through the notifier).
    notifier: Option<Arc<Notifier>>,
    /// AI augmentation (service detection, test suggestions, TTL prediction), when on.
    ai: Option<Arc<AiEngine>>,
    /// Each repository's path globs.
    matchers: Arc<HashMap<String, ServiceMatcher>>,
    /// Build files read from GitHub, by blob SHA (shared by every event).
    blobs: Arc<crate::github::source::BlobCache>,
    /// Experiment arms' counts (previews, corrections, AI spend).
    metrics: Option<crate::metrics::Metrics>,
    /// The latest right-sizing proposals (`sizing`), refreshed from Prometheus.
    sizes: Option<Arc<crate::sizing::Book>>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").field("store", &self.store).finish_non_exhaustive()
    }
}

impl Intake {
    pub fn new(store: PreviewStore, config: Arc<Config>) -> Intake {
        let blob_cache_bytes = config.github.blob_cache_mib as usize * 1024 * 1024;
        let matchers = config.repositories.iter().map(|repo| (repo.name.clone(), ServiceMatcher::new(repo))).collect();
        Intake {
            store,
            config,
            approvals: Approvals::Checked,
            github: None,
            notifier: None,
            ai: None,
            matchers: Arc::new(matchers),
            blobs: Arc::new(crate::github::source::BlobCache::new(blob_cache_bytes)),
            metrics: None,
            sizes: None,
        }
    }

    /// Sizes each preview from `book`'s proposals when `sizing` (or its arm) says so.
    pub fn with_sizing(mut self, book: Arc<crate::sizing::Book>) -> Intake {
        self.sizes = Some(book);
        self
    }

    /// Counts what experiment arms show (the queue's own metrics are the consumer's).
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Intake {
        metrics.experiments.declare(&self.config);
        self.metrics = Some(metrics);
        self
    }

    /// Writes `spec` (over `read`, when it must not have changed since), counting what it
    /// shows about its experiment arm once written.
    async fn write_spec(
        &self,
        name: &str,
        read: Option<&PreviewEnvironment>,
        spec: crate::crd::PreviewEnvironmentSpec,
        precondition: bool,
    ) -> Result<(), store::StoreError> {
        let delta = crate::experiment::Delta::between(read.map(|r| &r.spec), &spec);
        match (read, precondition) {
            (Some(read), true) => self.store.update(read, spec).await?,
            _ => self.store.apply(&PreviewEnvironment::new(name, spec)).await?,
        }
        if let (Some(delta), Some(m)) = (delta, &self.metrics) {
            delta.record(&m.experiments);
        }
        Ok(())
    }

    /// Build files cached so far (tests; the cache is shared by every event).
    pub fn blob_cache(&self) -> &crate::github::source::BlobCache {
        &self.blobs
    }

    pub fn with_approvals(mut self, approvals: Approvals) -> Intake {
        self.approvals = approvals;
        self
    }

    /// Reads changed files and checks fork labels with the notifier's GitHub client, and
    /// explains missing previews on the PR through the notifier.
    pub fn with_github(mut self, notifier: Arc<Notifier>) -> Intake {
        self.github = Some(Arc::clone(notifier.github()));
        self.notifier = Some(notifier);
        self
    }

    /// Asks the AI engine too (it needs GitHub for the diff).
    pub fn with_ai(mut self, engine: Arc<AiEngine>) -> Intake {
        self.ai = Some(engine);
        self
    }

    pub fn store(&self) -> &PreviewStore {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The name of the preview `event` is about (`None`: its repository is not configured).
    pub fn preview_name(&self, event: &PreviewEvent) -> Option<String> {
        let repo = self.config.repository(&event.repository.full_name)?;
        Some(names::preview_name(&self.config.namespace_prefix, &repo.slug(), event.pull_request.number))
    }

    /// The name of the preview of PR `number` of `repo`.
    fn name_of(&self, repo: &crate::config::RepositoryConfig, number: u64) -> String {
        names::preview_name(&self.config.namespace_prefix, &repo.slug(), number)
    }

    async fn approval(&self, event: &PreviewEvent) -> Result<Approval, String> {
        if !policy::offers_approval(event, &self.config) {
            return Ok(Approval::None);
        }
        match self.approvals {
            Approvals::Assumed => Ok(policy::assumed_approval(event, &self.config)),
            // Fail closed: an unverified fork stays undeployed, and the message comes back.
            Approvals::Checked => {
                self.verify_approval(event).await.map_err(|e| format!("checking the fork label: {e}"))
            }
        }
    }

    /// Applies one event to the store.
    pub async fn handle_event(&self, event: &PreviewEvent) -> Outcome {
        self.handle_pr(event, None).await
    }

    /// [`Intake::handle_event`], for a PR a writer just asked a preview for with `/preview`
    /// (`ask`, checked with GitHub by the caller).
    async fn handle_pr(&self, event: &PreviewEvent, ask: Option<&Ask>) -> Outcome {
        let (Some(repo), Some(name)) = (self.config.repository(&event.repository.full_name), self.preview_name(event))
        else {
            return Outcome::Ignored { reason: Reason::RepositoryNotConfigured };
        };
        let existing = match self.store.get(&name).await {
            Ok(Some(existing)) if policy::is_stale(event, &existing.spec.last_event) => return Outcome::Stale,
            Ok(existing) => existing,
            Err(err) => return Outcome::Failed { error: err.to_string() },
        };
        let deleting = existing.as_ref().is_some_and(|e| e.metadata.deletion_timestamp.is_some());
        // `/preview` does not approve a fork's code: the comment names no commit, and the head
        // may move between the comment and now. A fork deploys once the label approved it.
        let approval = match self.approval(event).await {
            Ok(approval) => approval,
            Err(error) => return Outcome::Failed { error },
        };
        // A preview being torn down approves nothing any more.
        let previous = existing.as_ref().filter(|_| !deleting).map(|e| &e.spec);
        let asked_by = ask.map(|a| a.by.as_str());
        let mut spec = match policy::decide_requested(event, &self.config, previous, approval, asked_by) {
            Decision::Upsert(spec) => *spec,
            Decision::Remove { reason } => return self.remove(name, existing, event, reason).await,
            Decision::Ignore { reason } => return Outcome::Ignored { reason },
        };
        // The reconciles up to Ready continue this event's trace (a child of the webhook's).
        spec.last_event.traceparent = crate::telemetry::traceparent(&tracing::Span::current());
        if deleting {
            // The previous preview is still being torn down: the event waits for the teardown
            // rather than write into an object that is about to disappear.
            return Outcome::Waiting { reason: format!("{name} is still being deleted") };
        }
        if let Some(services) = ask.map(|a| &a.services).filter(|s| !s.is_empty()) {
            spec.requested.get_or_insert_with(Default::default).services = services.clone();
        }
        // A fork's unapproved push keeps the approved commit, and with it the services chosen
        // for that commit (the PR's files now describe the unapproved head).
        if spec.awaiting_approval.is_none() {
            self.select_services(repo, event, existing.as_ref(), &mut spec).await;
            deploy_unchanged(repo, &mut spec);
            if let Some(gate) = &repo.build_gate
                && crate::gate::hold(previous, &mut spec, event.pull_request.updated_at)
            {
                self.read_checks(gate, &mut spec).await;
            }
        }
        self.predict_ttl(event, &mut spec).await;
        if let Some(book) = &self.sizes {
            let arm = crate::experiment::arm_of(repo, spec.experiment.as_ref());
            let mode = crate::sizing::mode_for(&self.config, arm);
            spec.sizing = crate::sizing::for_preview(&self.config, repo, mode, &book.get(), &spec.services);
        }
        if spec.services.is_empty() {
            return self.remove(name, existing, event, Reason::NoServicesAffected).await;
        }
        match self.write_spec(&name, existing.as_ref(), spec, false).await {
            Ok(()) => Outcome::Applied { name },
            Err(err) => Outcome::Failed { error: err.to_string() },
        }
    }

    /// No preview for this PR: delete one that exists, or tell the PR why none was created.
    async fn remove(
        &self,
        name: String,
        existing: Option<PreviewEnvironment>,
        event: &PreviewEvent,
        reason: Reason,
    ) -> Outcome {
        let Some(existing) = existing else {
            if let Some(notifier) = &self.notifier {
                notifier.publish(view::not_created(&self.config, event, reason));
            }
            return Outcome::Removed { name, reason };
        };
        match self.store.remove(&existing, reason).await {
            Ok(()) => Outcome::Removed { name, reason },
            Err(err) => Outcome::Failed { error: err.to_string() },
        }
    }
}

/// `unchangedServices: deploy`: once the change reaches a service, the preview is the whole
/// app; the selection keeps which services the change reached.
fn deploy_unchanged(repo: &crate::config::RepositoryConfig, spec: &mut crate::crd::PreviewEnvironmentSpec) {
    if repo.unchanged_services != crate::config::UnchangedServices::Deploy || spec.services.is_empty() {
        return;
    }
    let all: Vec<String> = repo.services.iter().map(|s| s.name.clone()).collect();
    if let Some(selection) = &mut spec.selection
        && selection.changed.is_empty()
        && spec.services != all
    {
        selection.changed = std::mem::take(&mut spec.services);
    }
    spec.services = all;
}
