//! Performs a plan: the object writes (server-side apply, only what differs), an expiry, the
//! status through one sink, the Events, the PR update, and the books and metrics.

use chrono::{DateTime, Utc};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use super::plan::{Note, Plan};
use super::{Context, Error, Outcome};
use crate::cost;
use crate::crd::{Phase, PreviewEnvironment, PreviewEnvironmentStatus, REMOVAL_REASON};
use crate::policy::Reason;
use crate::render::{Kind, Preview};

/// The field manager of everything the controller applies.
pub const FIELD_MANAGER: &str = "previewd";

/// `here` is a client of the cluster that holds the preview's namespace.
pub(super) async fn execute(
    ctx: &Context,
    here: &kube::Client,
    pe: &PreviewEnvironment,
    preview: Option<&Preview<'_>>,
    plan: Plan,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let name = pe.name_any();
    let api: Api<PreviewEnvironment> = Api::all(ctx.client.clone());
    if plan.expire {
        tracing::info!(preview = %name, "preview expired; deleting");
        let note = json!({"metadata": {"annotations": {REMOVAL_REASON: Reason::Expired.as_str()}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&note)).await?;
        api.delete(&name, &Default::default()).await?;
        publish(ctx, pe, &plan.events).await;
        return Ok(plan.outcome);
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    // Secrets go in after the namespace and before the ApplicationSet (its pods mount them).
    let mut secrets = None;
    for desired in &plan.apply {
        if desired.kind == Kind::ApplicationSet
            && secrets.is_none()
            && let Some(preview) = preview
        {
            secrets = Some(super::secrets::copy(ctx, here, preview).await?);
        }
        let api = super::observe::api_for(if desired.kind.is_argocd() { &ctx.client } else { here }, desired);
        let patch = Patch::Apply(&desired.object);
        let write = api.patch(&desired.name, &params, &patch);
        let result = if desired.kind == Kind::ApplicationSet {
            write.instrument(tracing::info_span!("argocd.create_applicationset", application_set = %desired.name)).await
        } else {
            write.await
        };
        result.map_err(|source| Error::Apply {
            kind: format!("{:?}", desired.kind),
            name: desired.name.clone(),
            source: Box::new(source),
        })?;
    }
    if let (None, Some(preview)) = (&secrets, preview) {
        secrets = Some(super::secrets::copy(ctx, here, preview).await?);
    }
    if let Some(missing) = secrets.map(|s| s.missing).filter(|m| !m.is_empty()) {
        // Names only: which Secret is missing where, never anything of its content.
        let note = Note {
            warning: true,
            reason: "SecretMissing",
            message: format!("not found, not copied: {}", missing.join(", ")),
        };
        publish(ctx, pe, std::slice::from_ref(&note)).await;
    }
    for gone in &plan.delete {
        tracing::info!(preview = %name, kind = ?gone.kind, object = %gone.name, "removing what the preview no longer needs");
        match super::observe::api_for(if gone.kind.is_argocd() { &ctx.client } else { here }, gone)
            .delete(&gone.name, &Default::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(Error::Apply {
                    kind: format!("{:?}", gone.kind),
                    name: gone.name.clone(),
                    source: Box::new(source),
                });
            }
        }
    }
    let previous = pe.status.clone();
    if let Some(status) = &plan.status {
        write_status(&api, &name, status).await?;
        ctx.written.remember(pe, status, std::time::Instant::now());
    }
    publish(ctx, pe, &plan.events).await;
    if let (Some(notifier), Some(update)) = (&ctx.github, plan.update) {
        notifier.publish(update);
    }
    if let (Some(preview), Some(status)) = (preview, plan.status.as_ref().or(previous.as_ref())) {
        record(ctx, pe, preview, previous.as_ref(), status, now).await;
    }
    Ok(plan.outcome)
}

/// The one place a PreviewEnvironment's status is written.
async fn write_status(
    api: &Api<PreviewEnvironment>,
    name: &str,
    status: &PreviewEnvironmentStatus,
) -> Result<(), Error> {
    let patch = json!({"status": status});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Publishes Kubernetes Events about `pe`; events are best effort and never fail a reconcile.
pub(super) async fn publish(ctx: &Context, pe: &PreviewEnvironment, notes: &[Note]) {
    for note in notes {
        let event = Event {
            type_: if note.warning { EventType::Warning } else { EventType::Normal },
            reason: note.reason.to_owned(),
            note: Some(note.message.clone()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(err) = ctx.recorder.publish(&event, &pe.object_ref(&())).await {
            tracing::debug!(error = %err, reason = note.reason, "could not publish event");
        }
    }
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}

/// Books the preview's cost and standing (alerting once when the budget is crossed) and
/// observes how long it took to become ready.
async fn record(
    ctx: &Context,
    pe: &PreviewEnvironment,
    preview: &Preview<'_>,
    previous: Option<&PreviewEnvironmentStatus>,
    status: &PreviewEnvironmentStatus,
    now: DateTime<Utc>,
) {
    ctx.books.expires(&pe.name_any(), status.expires_at);
    if let Some(estimate) = &status.cost_estimate {
        let line = cost::Line {
            repository: preview.repo.name.clone(),
            team: preview.repo.team.clone(),
            hourly_usd: estimate.hourly_usd,
        };
        let standing = if status.phase == Some(Phase::Failed) {
            super::books::Standing::Failed
        } else {
            super::books::Standing::Active
        };
        if let Some(crossed) = ctx.books.record(&pe.name_any(), line, pe.spec.pr_number, estimate.monthly_usd, standing)
        {
            let message = format!(
                "Running previews project ${:.2}/month, over the ${:.2} budget",
                crossed.projection_usd, crossed.budget_usd
            );
            tracing::warn!(preview = %pe.name_any(), "{message}");
            publish(ctx, pe, &[Note { warning: true, reason: "BudgetExceeded", message }]).await;
        }
    }
    let became_ready = status.phase == Some(Phase::Ready) && previous.and_then(|p| p.phase) != Some(Phase::Ready);
    if !became_ready {
        return;
    }
    let seconds = seconds_between(pe.spec.last_event.received_at, now);
    // The end of the delivery's trace: a child of this reconcile's span.
    tracing::info_span!("preview.ready", preview = %pe.name_any(), webhook_to_ready_seconds = seconds)
        .in_scope(|| tracing::info!(webhook_to_ready_seconds = seconds, "preview ready"));
    let Some(m) = &ctx.metrics else { return };
    m.webhook_to_ready.observe(seconds);
    if previous.and_then(|p| p.ready_at).is_none()
        && let Some(created) = status.created_at
    {
        m.creation_duration.observe(seconds_between(created, now));
        if let Some(arm) = &pe.spec.experiment {
            let labels = [arm.experiment.as_str(), arm.arm.as_str()];
            let e = &m.experiments;
            e.time_to_ready.with_label_values(&labels).observe(seconds_between(created, now));
            e.services.with_label_values(&labels).observe(pe.spec.services.len() as f64);
            if let Some(cost) = &status.cost_estimate {
                e.hourly_usd.with_label_values(&labels).observe(cost.hourly_usd);
            }
        }
    }
}

/// How long between two moments, for the deletion metric.
pub(super) fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    seconds_between(from, to)
}
