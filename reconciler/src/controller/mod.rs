//! The PreviewEnvironment controller, as a pipeline:
//!
//! 1. dereference: the preview, resolved against the config and rendered once, and the live
//!    state of its objects and Applications (`observe`: the reflector caches);
//! 2. plan (pure, `plan`): what to apply, the status, Events, the PR update, when to look again;
//! 3. execute (`execute`): the writes, the status through one sink, the Events and the update.
//!
//! kube's `finalizer` helper runs it, and the cleanup of a deleted preview (`cleanup`).
//! `watch` wires the caches and the watches that trigger reconciles.

pub mod books;
mod cleanup;
mod execute;
pub use execute::FIELD_MANAGER;
pub mod observe;
mod place;
pub mod plan;
pub mod secrets;
mod seed;
pub mod status;
pub mod watch;
mod written;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as Finalizer};
use kube::{Client, ResourceExt};
use tracing::Instrument as _;

use crate::config::Config;
use crate::crd::{FINALIZER, PreviewEnvironment};
use crate::github::notify::Notifier;
use crate::limiter::RateLimiter;
use crate::metrics::Metrics;
use crate::render::{Preview, Rendered};
use books::Books;
use observe::{Caches, Observer};

/// The namespace Previewd runs in (`POD_NAMESPACE`, set by the chart; else `default`).
pub fn home_namespace() -> String {
    std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".to_owned())
}

/// Everything reconcile needs, built once in `main`.
pub struct Context {
    /// Previewd's own cluster: PreviewEnvironments, Argo CD, the Secrets copied from.
    pub client: Client,
    pub config: Arc<Config>,
    /// The clusters previews' namespaces are in.
    pub clusters: Arc<crate::clusters::Clusters>,
    /// Where the live state is read from: the caches in `previewd run`, else the API.
    pub observer: Observer,
    pub application_sets: RateLimiter,
    pub recorder: Recorder,
    /// What the PR shows, when GitHub is configured.
    pub github: Option<Arc<Notifier>>,
    /// Cost and state of every live preview (gauges, budget).
    pub books: Books,
    pub metrics: Option<Metrics>,
    /// Statuses written that the cache may not show yet.
    written: written::Written,
    /// Consecutive failed reconciles per PreviewEnvironment, for exponential backoff.
    failures: Mutex<std::collections::HashMap<String, u32>>,
    /// Schema files read for seeding, by blob SHA.
    schema_blobs: Arc<crate::github::source::BlobCache>,
    /// Value vocabularies for seeding (`ai.features.seedVocabularies`), when AI is on.
    ai: Option<Arc<crate::ai::engine::AiEngine>>,
    vocabularies: crate::ai::vocabulary::VocabularyCache,
    /// The key sleep pages' wake links are signed with (`ttl.sleepAfter` needs it).
    wake_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("application_sets", &self.application_sets).finish_non_exhaustive()
    }
}

impl Context {
    /// A context that reads the live state from the API (one-off reconciles, tests).
    pub fn new(client: Client, config: Arc<Config>) -> Context {
        let application_sets = RateLimiter::new(config.argocd.application_sets_per_minute);
        let reporter = Reporter { controller: "previewd".to_owned(), instance: std::env::var("HOSTNAME").ok() };
        let recorder = Recorder::new(client.clone(), reporter);
        let books = Books::new(config.budget.monthly_usd, None);
        let clusters = crate::clusters::Clusters::new(client.clone(), config.clone(), home_namespace());
        Context {
            observer: Observer::Api(client.clone()),
            clusters: Arc::new(clusters),
            client,
            config,
            application_sets,
            recorder,
            github: None,
            books,
            metrics: None,
            written: written::Written::default(),
            failures: Mutex::default(),
            schema_blobs: seed::blob_cache(),
            ai: None,
            vocabularies: Default::default(),
            wake_key: None,
        }
    }

    /// Reads the Secrets that register preview clusters by kubeconfig in `namespace` instead
    /// of [`home_namespace`].
    pub fn with_home_namespace(mut self, namespace: &str) -> Context {
        let clusters = crate::clusters::Clusters::new(self.client.clone(), self.config.clone(), namespace.to_owned());
        self.clusters = Arc::new(clusters);
        self
    }

    /// Reads the live state from the controller's caches instead of the API.
    pub fn with_caches(mut self, caches: Caches) -> Context {
        self.observer = Observer::Caches(Box::new(caches));
        self
    }

    /// A PreviewEnvironment as the controller's cache holds it (`None` without caches).
    pub fn cached(&self, name: &str) -> Option<PreviewEnvironment> {
        match &self.observer {
            Observer::Caches(caches) => {
                caches.previews.get(&kube::runtime::reflector::ObjectRef::new(name)).map(|pe| (*pe).clone())
            }
            Observer::Api(_) => None,
        }
    }

    /// Records durations, costs and environment counts in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Context {
        metrics.reconcile_duration.with_label_values(&[CONTROLLER]);
        for error in Error::LABELS {
            metrics.reconcile_errors.with_label_values(&[CONTROLLER, error]);
        }
        metrics.experiments.declare(&self.config);
        self.clusters.with_metrics(metrics.cluster_up.clone());
        self.books = Books::new(self.config.budget.monthly_usd, Some(metrics.clone()));
        self.metrics = Some(metrics);
        self
    }

    /// Asks the AI for seed value vocabularies (with `ai.features.seedVocabularies`).
    pub fn with_ai(mut self, engine: Arc<crate::ai::engine::AiEngine>) -> Context {
        self.ai = Some(engine);
        self
    }

    /// Lets idle previews sleep (`ttl.sleepAfter`), their pages' wake links signed with `key`.
    pub fn with_wake_key(mut self, key: Vec<u8>) -> Context {
        self.wake_key = Some(key).filter(|k| !k.is_empty());
        self
    }

    /// Shows each preview's state on its PR.
    pub fn with_github(mut self, notifier: Arc<Notifier>) -> Context {
        self.github = Some(notifier);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] Box<kube::Error>),
    #[error("applying {kind} {name}: {source}")]
    Apply { kind: String, name: String, source: Box<kube::Error> },
    #[error("PreviewEnvironment has no name")]
    Unnamed,
    /// The cluster that holds the preview cannot be reached (only its previews wait).
    #[error(transparent)]
    Cluster(#[from] crate::clusters::Unavailable),
    /// A new preview found no cluster reachable with room.
    #[error("no cluster can take the preview: {0}")]
    NoCluster(String),
    /// Not a failure: a deleted preview waits for GitHub to hear it was destroyed.
    #[error("waiting {0:?} for GitHub to show the preview destroyed")]
    AwaitingGitHub(Duration),
}

impl From<kube::Error> for Error {
    fn from(err: kube::Error) -> Error {
        Error::Kube(Box::new(err))
    }
}

impl Error {
    /// Every value of [`Error::metric_label`].
    pub const LABELS: [&'static str; 4] = ["kube", "apply", "unnamed", "cluster"];

    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) | Error::AwaitingGitHub(_) => "kube",
            Error::Apply { .. } => "apply",
            Error::Unnamed => "unnamed",
            Error::Cluster(_) | Error::NoCluster(_) => "cluster",
        }
    }
}

/// The `controller` label of the reconcile metrics.
pub const CONTROLLER: &str = "previewenvironment";

/// What one reconcile decided; returned for tests and logs.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The finalizer was added; the change brings the next reconcile.
    FinalizerAdded,
    /// Objects applied where they differed, status written where it changed; look again after
    /// this long (a safety net: changes arrive by watch).
    Applied { requeue: Duration },
    /// Waiting for the ApplicationSet rate limit.
    Throttled { retry_in: Duration },
    /// Past its expiry: the PreviewEnvironment was deleted.
    Expired,
    /// Being deleted: cleanup done, finalizer removed.
    Finalized,
    /// Being deleted: the preview's objects are gone; waiting (at most `github.destroyGrace`)
    /// for GitHub to show it destroyed.
    Finalizing { retry_in: Duration },
    /// Its spec cannot be rendered (a repository or service no longer configured): the status
    /// says why, and it still expires.
    Invalid { reason: String, requeue: Duration },
}

impl Outcome {
    pub fn action(&self) -> Action {
        match self {
            Outcome::Applied { requeue } | Outcome::Invalid { requeue, .. } => Action::requeue(*requeue),
            Outcome::Throttled { retry_in } | Outcome::Finalizing { retry_in } => Action::requeue(*retry_in),
            Outcome::FinalizerAdded | Outcome::Expired | Outcome::Finalized => Action::await_change(),
        }
    }
}

/// One reconcile of one PreviewEnvironment at `now`, in its span: until the preview is Ready,
/// the span continues the trace of the event that wrote the spec (the webhook's delivery).
pub async fn reconcile_at(pe: &PreviewEnvironment, ctx: &Context, now: DateTime<Utc>) -> Result<Outcome, Error> {
    let span = tracing::info_span!(
        "reconcile",
        preview = pe.metadata.name.as_deref().unwrap_or(""),
        delivery_id = %pe.spec.last_event.delivery_id,
    );
    let ready = pe.status.as_ref().and_then(|s| s.phase) == Some(crate::crd::Phase::Ready);
    if let Some(parent) = pe.spec.last_event.traceparent.as_deref().filter(|_| !ready) {
        crate::telemetry::continue_trace(&span, parent);
    }
    reconcile_in_span(pe, ctx, now).instrument(span).await
}

async fn reconcile_in_span(pe: &PreviewEnvironment, ctx: &Context, now: DateTime<Utc>) -> Result<Outcome, Error> {
    let api: Api<PreviewEnvironment> = Api::all(ctx.client.clone());
    let deleting = pe.metadata.deletion_timestamp.is_some();
    let outcome: Mutex<Option<Outcome>> = Mutex::new(None);
    let result = finalizer::finalizer(&api, FINALIZER, Arc::new(pe.clone()), |event| async {
        let done = match event {
            Finalizer::Apply(pe) => reconcile_live(&pe, ctx, now).await?,
            Finalizer::Cleanup(pe) => cleanup::cleanup(&pe, ctx, now).await?,
        };
        let action = done.action();
        if let Ok(mut slot) = outcome.lock() {
            *slot = Some(done);
        }
        Ok::<Action, Error>(action)
    })
    .await;
    match result {
        Ok(_) => {
            let decided = outcome.lock().ok().and_then(|mut o| o.take());
            // Nothing ran: the finalizer was added, or a deleted preview was not ours to clean.
            Ok(decided.unwrap_or_else(|| {
                if deleting {
                    ctx.books.forget(&pe.name_any());
                    ctx.clusters.forget(pe);
                    ctx.written.forget(pe);
                    Outcome::Finalized
                } else {
                    Outcome::FinalizerAdded
                }
            }))
        }
        Err(finalizer::Error::CleanupFailed(Error::AwaitingGitHub(retry_in))) => Ok(Outcome::Finalizing { retry_in }),
        Err(finalizer::Error::ApplyFailed(err) | finalizer::Error::CleanupFailed(err)) => Err(err),
        Err(finalizer::Error::AddFinalizer(err) | finalizer::Error::RemoveFinalizer(err)) => Err(err.into()),
        Err(finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer) => Err(Error::Unnamed),
    }
}

/// A one-off pass over PreviewEnvironment `name` as the API holds it now (`previewd consume`):
/// reconciled, and once more right after its finalizer was added (no watch brings that pass
/// here). `None` when there is no such preview.
pub async fn reconcile_named(ctx: &Context, name: &str, now: DateTime<Utc>) -> Result<Option<Outcome>, Error> {
    let api: Api<PreviewEnvironment> = Api::all(ctx.client.clone());
    let Some(pe) = api.get_opt(name).await? else { return Ok(None) };
    match reconcile_at(&pe, ctx, now).await? {
        Outcome::FinalizerAdded => match api.get_opt(name).await? {
            Some(pe) => reconcile_at(&pe, ctx, now).await.map(Some),
            None => Ok(None),
        },
        outcome => Ok(Some(outcome)),
    }
}

/// Dereference, plan, execute: one reconcile of a preview that is not being deleted.
async fn reconcile_live(pe: &PreviewEnvironment, ctx: &Context, now: DateTime<Utc>) -> Result<Outcome, Error> {
    let config = &ctx.config;
    // The cache may not show this controller's last status write yet: plan from that write.
    let fresher;
    let pe = match ctx.written.newer_than(pe, std::time::Instant::now()) {
        Some(status) => {
            fresher = PreviewEnvironment { status: Some(status), ..pe.clone() };
            &fresher
        }
        None => pe,
    };
    let target = place::target(ctx, pe).await?;
    let mut resolved =
        Preview::resolve(config, pe).map(|p| p.placed_in(&target.name, &target.server, target.zone.as_deref()));
    if let (Ok(preview), Some(key)) = (resolved.as_mut(), ctx.wake_key.as_deref())
        && crate::sleep::asleep_since(config, &pe.spec, now).is_some()
    {
        preview.asleep = crate::sleep::page_url(config, key, &preview.name);
    }
    let rendered = resolved.as_ref().ok().map(Rendered::of);
    let desired = rendered.as_ref().map(Rendered::desired).unwrap_or_default();
    let withdrawn = rendered.as_ref().map(Rendered::withdrawn).unwrap_or_default();
    let name = pe.name_any();
    let watched: Vec<_> = desired.iter().chain(&withdrawn).cloned().collect();
    let remote = (!target.is_local()).then_some(&target.client);
    let observed = ctx.observer.observe(&watched, &name, &config.argocd.namespace, remote).await?;
    // New ApplicationSets are rate-limited; existing ones are updated freely.
    let throttle = desired
        .iter()
        .find(|d| d.kind == crate::render::Kind::ApplicationSet && observed.object(d).is_none())
        .and_then(|_| ctx.application_sets.try_acquire(std::time::Instant::now()).err());
    let seeded = match &resolved {
        Ok(preview) => seed::step(ctx, &target.client, pe, preview, &observed).await?,
        Err(_) => None,
    };
    let mut plan = plan::plan(plan::Inputs {
        pe,
        config,
        preview: resolved.as_ref(),
        desired: &desired,
        withdrawn: &withdrawn,
        observed: &observed,
        throttle,
        seed: seeded,
        now,
    });
    if let (Some(status), Ok(_)) = (plan.status.as_mut(), &resolved) {
        status.cluster = Some(target.name.clone());
    }
    execute::execute(ctx, &target.client, pe, resolved.as_ref().ok(), plan, now).await
}

/// The kube-runtime entry point.
pub async fn reconcile(pe: Arc<PreviewEnvironment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_at(&pe, &ctx, Utc::now()).await;
    if let Some(m) = &ctx.metrics {
        m.reconcile_duration.with_label_values(&[CONTROLLER]).observe(started.elapsed().as_secs_f64());
        if let Err(err) = &result {
            m.reconcile_errors.with_label_values(&[CONTROLLER, err.metric_label()]).inc();
        }
    }
    let outcome = result?;
    if let Ok(mut failures) = ctx.failures.lock() {
        failures.remove(&pe.name_any());
    }
    tracing::debug!(preview = %pe.name_any(), ?outcome, "reconciled");
    Ok(outcome.action())
}

/// Retry delay after `failures` consecutive failures: 5 s doubling up to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << failures.saturating_sub(1).min(6)).min(300))
}

/// Transient errors (API server, apply) are retried with exponential backoff per object.
pub fn error_policy(pe: Arc<PreviewEnvironment>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = match ctx.failures.lock() {
        Ok(mut failures) => {
            let n = failures.entry(pe.name_any()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        }
        Err(_) => 1,
    };
    let delay = backoff(failures);
    tracing::warn!(preview = %pe.name_any(), error = %error, kind = error.metric_label(), failures,
        retry_in_seconds = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
