//! Server-side apply of rendered objects, whatever their kind.

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::Value;

/// The field manager of everything the controller applies.
pub const FIELD_MANAGER: &str = "previewd";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("rendered object without apiVersion/kind/name: {0}")]
    Malformed(String),
    #[error("applying {kind} {name}: {source}")]
    Kube { kind: String, name: String, source: Box<kube::Error> },
}

fn api_for(client: &Client, object: &Value) -> Result<(Api<DynamicObject>, String, String), ApplyError> {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let (Some(api_version), Some(kind), Some(name)) =
        (text(&object["apiVersion"]), text(&object["kind"]), text(&object["metadata"]["name"]))
    else {
        return Err(ApplyError::Malformed(object.to_string().chars().take(200).collect()));
    };
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version.as_str()));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &kind));
    let api = match object["metadata"]["namespace"].as_str() {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    Ok((api, kind, name))
}

/// Applies `objects` in order (namespace first), taking ownership of the fields Previewd sets.
pub async fn apply_all(client: &Client, objects: &[Value]) -> Result<(), ApplyError> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for object in objects {
        let (api, kind, name) = api_for(client, object)?;
        api.patch(&name, &params, &Patch::Apply(object)).await.map_err(|source| ApplyError::Kube {
            kind,
            name,
            source: Box::new(source),
        })?;
    }
    Ok(())
}
