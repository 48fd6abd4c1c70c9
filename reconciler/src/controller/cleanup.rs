//! What the garbage collector cannot do for a deleted preview: tell GitHub it was destroyed,
//! and take it off the books. Its Namespace and ApplicationSet are deleted first (they would go
//! by garbage collection anyway), so a slow GitHub never keeps them running.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta};
use kube::{Resource, ResourceExt};

use super::{Context, Error, Outcome};
use crate::argo::ApplicationSet;
use crate::crd::{PreviewEnvironment, REMOVAL_REASON};
use crate::github::view;
use crate::policy::Reason;

/// How soon a deleted preview looks again whether GitHub heard.
const RECHECK: Duration = Duration::from_secs(2);

/// Cleans up after `pe`. `Err(AwaitingGitHub)` keeps the finalizer (and looks again soon)
/// while GitHub has not heard, within `github.destroyGrace`.
pub(super) async fn cleanup(pe: &PreviewEnvironment, ctx: &Context, now: DateTime<Utc>) -> Result<Outcome, Error> {
    let name = pe.name_any();
    let deleted_at = pe
        .meta()
        .deletion_timestamp
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.0.as_second(), u32::try_from(t.0.subsec_nanosecond()).unwrap_or(0)))
        .unwrap_or(now);
    ctx.books.destroying(&name);
    if let Some(notifier) = &ctx.github {
        delete_owned(ctx, pe, &name).await?;
        let reason = pe.annotations().get(REMOVAL_REASON).and_then(|r| Reason::parse(r));
        let update = view::destroyed(&ctx.config, pe, reason, deleted_at);
        notifier.publish(update.clone());
        let waited = (now - deleted_at).to_std().unwrap_or(Duration::ZERO);
        if !notifier.is_synced(&update) {
            if waited < ctx.config.github.destroy_grace {
                return Err(Error::AwaitingGitHub(RECHECK));
            }
            tracing::warn!(preview = %name, waited_seconds = waited.as_secs(),
                "GitHub did not hear that the preview is destroyed in time; removing it anyway");
        }
    }
    ctx.books.forget(&name);
    if let Some(m) = &ctx.metrics {
        m.deletion_duration.observe(super::execute::elapsed(deleted_at, now));
    }
    Ok(Outcome::Finalized)
}

/// Deletes the preview's Namespace and ApplicationSet, if they are still its own.
async fn delete_owned(ctx: &Context, pe: &PreviewEnvironment, name: &str) -> Result<(), Error> {
    let owned = |meta: &ObjectMeta| {
        meta.owner_references.iter().flatten().any(|o| Some(&o.uid) == pe.metadata.uid.as_ref())
            && meta.deletion_timestamp.is_none()
    };
    let app_sets: Api<ApplicationSet> = Api::namespaced(ctx.client.clone(), &ctx.config.argocd.namespace);
    if app_sets.get_opt(name).await?.is_some_and(|a| owned(&a.metadata)) {
        app_sets.delete(name, &Default::default()).await?;
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    if namespaces.get_opt(name).await?.is_some_and(|n| owned(&n.metadata)) {
        namespaces.delete(name, &Default::default()).await?;
    }
    Ok(())
}
