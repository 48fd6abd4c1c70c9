//! The PreviewEnvironment controller, as a pipeline: finalizer -> TTL -> render (pure) ->
//! apply (server-side) -> observe Argo CD -> status (one patch) -> requeue at the next moment
//! that matters (expiry, or a readiness re-check).

pub mod apply;
pub mod books;
pub mod limiter;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use crate::argo::{Application, ApplicationSet};
use crate::config::Config;
use crate::cost;
use crate::crd::{FINALIZER, Phase, PreviewEnvironment, PreviewEnvironmentStatus, REMOVAL_REASON};
use crate::github::notify::Notifier;
use crate::github::view;
use crate::metrics::Metrics;
use crate::policy::Reason;
use crate::render::{self, LABEL_PREVIEW, Preview};
use crate::ttl;
use books::{Books, Standing};
use k8s_openapi::api::core::v1::Namespace;
use limiter::RateLimiter;

/// Everything reconcile needs, built once in `main`.
pub struct Context {
    pub client: Client,
    pub config: Arc<Config>,
    pub application_sets: RateLimiter,
    pub recorder: Recorder,
    /// What the PR shows, when GitHub is configured.
    pub github: Option<Arc<Notifier>>,
    /// Cost and state of every live preview (gauges, budget).
    pub books: Books,
    pub metrics: Option<Metrics>,
    /// Consecutive failed reconciles per PreviewEnvironment, for exponential backoff.
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("application_sets", &self.application_sets).finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(client: Client, config: Arc<Config>) -> Context {
        let application_sets = RateLimiter::new(config.argocd.application_sets_per_minute);
        let reporter = Reporter { controller: "previewd".to_owned(), instance: std::env::var("HOSTNAME").ok() };
        let recorder = Recorder::new(client.clone(), reporter);
        let books = Books::new(config.budget.monthly_usd, None);
        Context {
            client,
            config,
            application_sets,
            recorder,
            github: None,
            books,
            metrics: None,
            failures: Default::default(),
        }
    }

    /// Records durations, costs and environment counts in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Context {
        self.books = Books::new(self.config.budget.monthly_usd, Some(metrics.clone()));
        self.metrics = Some(metrics);
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
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error("PreviewEnvironment has no name")]
    Unnamed,
}

impl From<kube::Error> for Error {
    fn from(err: kube::Error) -> Error {
        Error::Kube(Box::new(err))
    }
}

impl Error {
    /// Every value of [`Error::metric_label`].
    pub const LABELS: [&'static str; 3] = ["kube", "apply", "unnamed"];

    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Apply(_) => "apply",
            Error::Unnamed => "unnamed",
        }
    }
}

/// The `controller` label of the reconcile metrics.
pub const CONTROLLER: &str = "previewenvironment";

/// How soon to look again while services are still coming up.
const READINESS_RECHECK: Duration = Duration::from_secs(30);

/// What one reconcile decided; returned for tests and logs.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Objects applied, status written; look again after this long.
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
    /// Configuration problem (unknown repository or service): waits for a change.
    Invalid(String),
}

impl Outcome {
    pub fn action(&self) -> Action {
        match self {
            Outcome::Applied { requeue } => Action::requeue(*requeue),
            Outcome::Throttled { retry_in } | Outcome::Finalizing { retry_in } => Action::requeue(*retry_in),
            Outcome::Expired | Outcome::Finalized | Outcome::Invalid(_) => Action::await_change(),
        }
    }
}

fn chrono_time(time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.0.as_second(), u32::try_from(time.0.subsec_nanosecond()).unwrap_or(0))
}

/// Publishes a Kubernetes Event about `pe`; events are best effort and never fail a reconcile.
async fn event(ctx: &Context, pe: &PreviewEnvironment, warning: bool, reason: &str, note: String) {
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &pe.object_ref(&())).await {
        tracing::debug!(error = %err, reason, "could not publish event");
    }
}

/// One reconcile of one PreviewEnvironment at `now`.
#[tracing::instrument(name = "reconcile", skip_all, fields(
    preview = pe.metadata.name.as_deref().unwrap_or(""),
    delivery_id = %pe.spec.last_event.delivery_id,
))]
pub async fn reconcile_at(pe: &PreviewEnvironment, ctx: &Context, now: DateTime<Utc>) -> Result<Outcome, Error> {
    let name = pe.metadata.name.clone().ok_or(Error::Unnamed)?;
    let api: Api<PreviewEnvironment> = Api::all(ctx.client.clone());

    if let Some(deleted) = &pe.metadata.deletion_timestamp {
        if !pe.finalizers().iter().any(|f| f == FINALIZER) {
            ctx.books.forget(&name);
            return Ok(Outcome::Finalized);
        }
        let deleted_at = chrono_time(deleted).unwrap_or(now);
        ctx.books.destroying(&name);
        if let Some(wait) = finalize(ctx, pe, &name, deleted_at, now).await? {
            return Ok(Outcome::Finalizing { retry_in: wait });
        }
        let remaining: Vec<&String> = pe.finalizers().iter().filter(|f| *f != FINALIZER).collect();
        let patch = json!({"metadata": {"finalizers": remaining, "resourceVersion": pe.resource_version()}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        ctx.books.forget(&name);
        if let Some(m) = &ctx.metrics {
            m.deletion_duration.observe(seconds_between(deleted_at, now));
        }
        return Ok(Outcome::Finalized);
    }

    if !pe.finalizers().iter().any(|f| f == FINALIZER) {
        let mut finalizers = pe.finalizers().to_vec();
        finalizers.push(FINALIZER.to_owned());
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": pe.resource_version()}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }

    let config = &ctx.config;
    let previous = pe.status.as_ref();
    let created_at = previous
        .and_then(|s| s.created_at)
        .or_else(|| pe.metadata.creation_timestamp.as_ref().and_then(chrono_time))
        .unwrap_or(now);
    let do_not_expire = pe.spec.labels.iter().any(|l| l.eq_ignore_ascii_case(&config.policy.do_not_expire_label));
    let predicted = pe.spec.ttl_prediction.as_ref().map(|p| Duration::from_secs(p.idle_seconds));
    let expires_at = ttl::expires_at(&config.ttl, pe.spec.last_activity, created_at, do_not_expire, predicted);
    if now >= expires_at {
        tracing::info!(preview = %name, %expires_at, "preview expired; deleting");
        let note = json!({"metadata": {"annotations": {REMOVAL_REASON: Reason::Expired.as_str()}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&note)).await?;
        api.delete(&name, &Default::default()).await?;
        event(ctx, pe, false, "PreviewExpired", format!("Expired at {expires_at}; deleted")).await;
        return Ok(Outcome::Expired);
    }

    let preview = match Preview::resolve(config, pe) {
        Ok(preview) => preview,
        Err(err) => {
            let status = status::failed(previous, "InvalidSpec", err.to_string(), pe.metadata.generation, now);
            patch_status(&api, &name, &status).await?;
            event(ctx, pe, true, "InvalidSpec", err.to_string()).await;
            return Ok(Outcome::Invalid(err.to_string()));
        }
    };
    let objects = match render::render(config, pe) {
        Ok(objects) => objects,
        Err(err) => return Ok(Outcome::Invalid(err.to_string())),
    };

    // New ApplicationSets are rate-limited; updates of existing ones are not.
    let app_sets: Api<ApplicationSet> = Api::namespaced(ctx.client.clone(), &config.argocd.namespace);
    let exists = app_sets.get_opt(&preview.name).await?.is_some();
    let throttle = if exists { None } else { ctx.application_sets.try_acquire(std::time::Instant::now()).err() };
    let to_apply: Vec<_> = match throttle {
        Some(_) => objects.into_iter().filter(|o| o["kind"] != "ApplicationSet").collect(),
        None => objects,
    };
    if previous.is_none() {
        let note = format!("Creating preview environment for {}#{}", pe.spec.repository, pe.spec.pr_number);
        event(ctx, pe, false, "PreviewCreating", note).await;
    }
    if exists || throttle.is_some() {
        apply::apply_all(&ctx.client, &to_apply).await?;
    } else {
        apply::apply_all(&ctx.client, &to_apply)
            .instrument(tracing::info_span!("argocd.create_applicationset", application_set = %preview.name))
            .await?;
    }
    match throttle {
        Some(wait) => {
            let note = format!("ApplicationSet creation rate limit reached; retrying in {} s", wait.as_secs());
            event(ctx, pe, false, "ApplicationSetRateLimited", note).await;
        }
        None if !exists => {
            event(ctx, pe, false, "ApplicationSetCreated", format!("Created ApplicationSet {}", preview.name)).await
        }
        None => {}
    }

    let services = observe_services(ctx, &preview).await?;
    let observed = status::Observed {
        services,
        url: preview.url(),
        namespace: preview.name.clone(),
        created_at,
        expires_at,
        generation: pe.metadata.generation,
        last_event: pe.spec.last_event.received_at,
        throttled: throttle.is_some(),
        cost: Some(cost::for_services(config, preview.services.iter().copied(), created_at, now)),
    };
    let mut status = status::compute(previous, observed, now);
    status.selection = pe.spec.selection.clone();
    let all_ready = status.phase == Some(crate::crd::Phase::Ready);
    if let Some(notifier) = &ctx.github {
        notifier.publish(view::live(config, pe, &status));
    }
    record(ctx, pe, &name, &preview, previous, &status, now).await;
    if previous != Some(&status) {
        patch_status(&api, &name, &status).await?;
        let was = previous.and_then(|p| p.phase);
        match status.phase {
            Some(crate::crd::Phase::Ready) if was != status.phase => {
                event(ctx, pe, false, "PreviewReady", format!("Preview environment ready at {}", preview.url())).await;
            }
            Some(crate::crd::Phase::Failed) if was != status.phase => {
                let note = status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Failed")
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                event(ctx, pe, true, "PreviewFailed", note).await;
            }
            _ => {}
        }
    }

    let until_expiry = (expires_at - now).to_std().unwrap_or(Duration::ZERO) + Duration::from_secs(1);
    if let Some(retry_in) = throttle {
        return Ok(Outcome::Throttled { retry_in: retry_in.min(until_expiry) });
    }
    let requeue = if all_ready { config.ttl.sweep_interval } else { READINESS_RECHECK };
    Ok(Outcome::Applied { requeue: requeue.min(until_expiry) })
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}

/// Books the preview's cost and standing (alerting once when the budget is crossed) and
/// observes how long it took to become ready.
async fn record(
    ctx: &Context,
    pe: &PreviewEnvironment,
    name: &str,
    preview: &Preview<'_>,
    previous: Option<&PreviewEnvironmentStatus>,
    status: &PreviewEnvironmentStatus,
    now: DateTime<Utc>,
) {
    if let Some(estimate) = &status.cost_estimate {
        let line = cost::Line {
            repository: preview.repo.name.clone(),
            team: preview.repo.team.clone(),
            hourly_usd: estimate.hourly_usd,
        };
        let standing = if status.phase == Some(Phase::Failed) { Standing::Failed } else { Standing::Active };
        if let Some(crossed) = ctx.books.record(name, line, pe.spec.pr_number, estimate.monthly_usd, standing) {
            let note = format!(
                "Running previews project ${:.2}/month, over the ${:.2} budget",
                crossed.projection_usd, crossed.budget_usd
            );
            tracing::warn!(preview = %name, "{note}");
            event(ctx, pe, true, "BudgetExceeded", note).await;
        }
    }
    let Some(m) = &ctx.metrics else { return };
    let became_ready = status.phase == Some(Phase::Ready) && previous.and_then(|p| p.phase) != Some(Phase::Ready);
    if became_ready {
        m.webhook_to_ready.observe(seconds_between(pe.spec.last_event.received_at, now));
        if previous.and_then(|p| p.ready_at).is_none()
            && let Some(created) = status.created_at
        {
            m.creation_duration.observe(seconds_between(created, now));
        }
    }
}

/// What the garbage collector cannot do for a deleted preview: tell GitHub. The preview's
/// Namespace and ApplicationSet are deleted first, so a slow GitHub never keeps them running.
/// Returns how soon to look again while GitHub has not heard yet (within `destroyGrace`).
async fn finalize(
    ctx: &Context,
    pe: &PreviewEnvironment,
    name: &str,
    deleted_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<Duration>, Error> {
    let Some(notifier) = &ctx.github else { return Ok(None) };
    let owned = |meta: &kube::api::ObjectMeta| {
        meta.owner_references.iter().flatten().any(|o| Some(&o.uid) == pe.metadata.uid.as_ref())
    };
    let app_sets: Api<ApplicationSet> = Api::namespaced(ctx.client.clone(), &ctx.config.argocd.namespace);
    if let Some(app_set) = app_sets.get_opt(name).await?
        && owned(&app_set.metadata)
        && app_set.metadata.deletion_timestamp.is_none()
    {
        app_sets.delete(name, &Default::default()).await?;
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    if let Some(namespace) = namespaces.get_opt(name).await?
        && owned(&namespace.metadata)
        && namespace.metadata.deletion_timestamp.is_none()
    {
        namespaces.delete(name, &Default::default()).await?;
    }
    let reason = pe.annotations().get(REMOVAL_REASON).and_then(|r| Reason::parse(r));
    let update = view::destroyed(&ctx.config, pe, reason, deleted_at);
    notifier.publish(update.clone());
    if notifier.is_synced(&update) {
        return Ok(None);
    }
    let waited = (now - deleted_at).to_std().unwrap_or(Duration::ZERO);
    if waited >= ctx.config.github.destroy_grace {
        tracing::warn!(preview = %name, waited_seconds = waited.as_secs(),
            "GitHub did not hear that the preview is destroyed in time; removing it anyway");
        return Ok(None);
    }
    Ok(Some(FINALIZE_RECHECK))
}

/// How soon a deleted preview looks again whether GitHub heard.
const FINALIZE_RECHECK: Duration = Duration::from_secs(2);

async fn patch_status(
    api: &Api<PreviewEnvironment>,
    name: &str,
    status: &crate::crd::PreviewEnvironmentStatus,
) -> Result<(), Error> {
    let patch = json!({"status": status});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Per-service readiness from the Applications the ApplicationSet generated.
async fn observe_services(ctx: &Context, preview: &Preview<'_>) -> Result<Vec<crate::crd::ServiceStatus>, Error> {
    let apps: Api<Application> = Api::namespaced(ctx.client.clone(), &ctx.config.argocd.namespace);
    let listed = apps.list(&ListParams::default().labels(&format!("{LABEL_PREVIEW}={}", preview.name))).await?;
    Ok(preview
        .services
        .iter()
        .map(|service| {
            let app_name = crate::names::application_name(&preview.name, &service.name);
            let app = listed.items.iter().find(|a| a.metadata.name.as_deref() == Some(app_name.as_str()));
            let status = app.and_then(|a| a.status.as_ref());
            status::service_status(
                &service.name,
                status.and_then(|s| s.health.as_ref()).and_then(|h| h.status.as_deref()),
                status.and_then(|s| s.sync.as_ref()).and_then(|s| s.status.as_deref()),
            )
        })
        .collect())
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
