//! Which cluster a preview's namespaced objects go to: the one that holds it, or, for a new
//! preview, the first of its repository's clusters that is reachable and has room. A choice
//! among several is recorded in the status before anything is applied, so a later pass never
//! builds the preview a second time elsewhere.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::plan::Note;
use super::{Context, Error};
use crate::clusters::{Target, Unavailable};
use crate::config::IN_CLUSTER;
use crate::crd::PreviewEnvironment;

pub(super) async fn target(ctx: &Context, pe: &PreviewEnvironment) -> Result<Target, Error> {
    let clusters = &ctx.clusters;
    if let Some(held) = clusters.holding(pe) {
        return match clusters.reach(&held).await {
            Ok(target) => Ok(target),
            Err(why) => {
                note(ctx, pe, "ClusterUnreachable", why.to_string()).await;
                Err(why.into())
            }
        };
    }
    // Not renderable: nothing is applied, and Previewd's own cluster answers for the rest.
    let Some(repo) = ctx.config.repository(&pe.spec.repository) else { return Ok(clusters.reach(IN_CLUSTER).await?) };
    let order = ctx.config.clusters_for(repo);
    let counted = order.iter().any(|name| ctx.config.cluster(name).is_some_and(|c| c.capacity.is_some()));
    let previews = if counted { ctx.observer.previews().await? } else { Vec::new() };
    match clusters.choose(repo, &previews).await {
        Ok(target) => {
            if order.len() > 1 {
                let patch = json!({"status": {"cluster": target.name}});
                Api::<PreviewEnvironment>::all(ctx.client.clone())
                    .patch_status(&pe.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            clusters.place(pe, &target.name);
            tracing::info!(preview = %pe.name_any(), cluster = %target.name, "placed");
            Ok(target)
        }
        Err(passed) => {
            let why = passed.iter().map(Unavailable::to_string).collect::<Vec<_>>().join("; ");
            note(ctx, pe, "NoCluster", why.clone()).await;
            Err(Error::NoCluster(why))
        }
    }
}

async fn note(ctx: &Context, pe: &PreviewEnvironment, reason: &'static str, message: String) {
    super::execute::publish(ctx, pe, &[Note { warning: true, reason, message }]).await;
}
