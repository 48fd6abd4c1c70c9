//! Copies of existing Secrets into a preview: read from an allow-listed source namespace,
//! server-side applied into the preview namespace under the same name, on every pass (a no-op
//! when nothing changed), and again whenever a source Secret changes (`watch.rs`). The values
//! pass through memory only: never logged, never in an Event, a status or the PR comment.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};

use super::{Context, Error};
use crate::render::Preview;

/// Marks a copy with where it came from (`<namespace>.<name>`); the values stay out of it.
pub const LABEL_SOURCE: &str = "preview.previewd.io/secret-from";

/// What a pass copied: how many Secrets, and the references whose source was missing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub copied: usize,
    pub missing: Vec<String>,
}

/// Copies every `from` Secret the preview gets (none for a fork unless the repository allows),
/// and the htpasswd Secret of basic auth (always: it guards the preview). They are read in
/// Previewd's own cluster and written to `here`, the cluster of the preview's namespace.
pub async fn copy(ctx: &Context, here: &kube::Client, preview: &Preview<'_>) -> Result<Copied, Error> {
    let mut outcome = Copied::default();
    let mut wanted = if crate::render::secrets::allowed(preview) {
        preview.repo.secrets_for(&preview.resource.spec.services)
    } else {
        Vec::new()
    };
    wanted.extend(preview.repo.basic_auth_secret());
    let params = PatchParams::apply(super::execute::FIELD_MANAGER).force();
    let target: Api<Secret> = Api::namespaced(here.clone(), &preview.name);
    for reference in wanted {
        let Some(from) = &reference.from else { continue };
        let source: Api<Secret> = Api::namespaced(ctx.client.clone(), from);
        let Some(original) = source.get_opt(&reference.name).await? else {
            outcome.missing.push(format!("{from}/{}", reference.name));
            continue;
        };
        let mut meta = preview.meta(&reference.name, Some(&preview.name));
        meta.labels.get_or_insert_with(Default::default).insert(
            LABEL_SOURCE.to_owned(),
            crate::names::fit(&format!("{from}.{}", reference.name), crate::names::MAX_LABEL),
        );
        let copy =
            Secret { metadata: meta, type_: original.type_, data: original.data, string_data: None, immutable: None };
        target.patch(&reference.name, &params, &Patch::Apply(&copy)).await.map_err(|source| Error::Apply {
            kind: "Secret".to_owned(),
            name: reference.name.clone(),
            source: Box::new(source),
        })?;
        outcome.copied += 1;
    }
    Ok(outcome)
}
