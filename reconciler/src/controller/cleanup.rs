//! What the garbage collector cannot do for a deleted preview: delete its namespace in another
//! cluster (no owner reference reaches across clusters), tell GitHub it was destroyed, and take
//! it off the books. Its Namespace and ApplicationSet are deleted first (in Previewd's own
//! cluster they would go by garbage collection anyway), so a slow GitHub never keeps them
//! running.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta};
use kube::{Resource, ResourceExt};

use super::{Context, Error, Outcome};
use crate::argo::ApplicationSet;
use crate::clusters::Unavailable;
use crate::config::IN_CLUSTER;
use crate::crd::{PreviewEnvironment, REMOVAL_REASON};
use crate::github::view;
use crate::policy::Reason;
use crate::render::ANNOTATION_OWNER_UID;

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
    delete_remote(ctx, pe, &name).await?;
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
    ctx.clusters.forget(pe);
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

/// Deletes the namespace of a preview held by another cluster, if it is still its own (it
/// carries the preview's uid). A cluster that is down keeps the finalizer, and so the
/// PreviewEnvironment, until it is back; one no longer registered is let go with a warning.
async fn delete_remote(ctx: &Context, pe: &PreviewEnvironment, name: &str) -> Result<(), Error> {
    let Some(cluster) = ctx.clusters.holding(pe).filter(|c| c != IN_CLUSTER) else { return Ok(()) };
    let target = match ctx.clusters.reach(&cluster).await {
        Ok(target) => target,
        Err(Unavailable::Unregistered(_)) => {
            tracing::warn!(preview = %name, %cluster,
                "the preview's cluster is no longer registered; its namespace there is left as it is");
            return Ok(());
        }
        Err(why) => return Err(why.into()),
    };
    let namespaces: Api<Namespace> = Api::all(target.client);
    let ours = |ns: &Namespace| {
        ns.annotations().get(ANNOTATION_OWNER_UID) == pe.metadata.uid.as_ref()
            && ns.metadata.deletion_timestamp.is_none()
    };
    if namespaces.get_opt(name).await?.is_some_and(|ns| ours(&ns)) {
        tracing::info!(preview = %name, %cluster, "deleting the preview's namespace in its cluster");
        namespaces.delete(name, &Default::default()).await?;
    }
    Ok(())
}
