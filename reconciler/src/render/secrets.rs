//! ExternalSecrets (External Secrets Operator): references with a `remoteKey` become one
//! ExternalSecret each in the preview namespace; the operator writes the Secret. Copies of
//! existing Secrets are made by the controller (`controller::secrets`), which must read them.

use serde_json::{Value, json};

use super::Preview;

/// The API version Previewd writes (External Secrets Operator 0.16 and later serve it).
pub const API_VERSION: &str = "external-secrets.io/v1";

/// Whether this preview gets secrets at all: a fork's only when the repository says so.
pub fn allowed(p: &Preview<'_>) -> bool {
    !p.resource.spec.fork || p.repo.secrets_for_forks
}

pub(super) fn external_secrets(p: &Preview<'_>) -> Vec<Value> {
    let Some(eso) = &p.config.secrets.external_secrets else { return Vec::new() };
    if !allowed(p) {
        return Vec::new();
    }
    p.repo
        .secrets_for(&p.resource.spec.services)
        .into_iter()
        .filter_map(|secret| {
            let key = secret.remote_key.as_ref()?;
            let mut meta = serde_json::to_value(p.meta(&secret.name, Some(&p.name))).unwrap_or_default();
            if let Some(map) = meta.as_object_mut() {
                map.retain(|_, v| !v.is_null());
            }
            Some(json!({
                "apiVersion": API_VERSION,
                "kind": "ExternalSecret",
                "metadata": meta,
                "spec": {
                    "refreshInterval": eso.refresh_interval,
                    "secretStoreRef": {"kind": eso.store_kind, "name": eso.store_name},
                    "target": {"name": secret.name, "creationPolicy": "Owner"},
                    "dataFrom": [{"extract": {"key": key}}],
                }
            }))
        })
        .collect()
}
