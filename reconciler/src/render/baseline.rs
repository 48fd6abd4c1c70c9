//! `unchangedServices: baseline`: each configured service the PR does not deploy gets, in the
//! preview namespace, a Service of type ExternalName under its own name that resolves to the
//! same service in the baseline namespace. The preview's pods call `api` as they always do,
//! and reach the shared `api`. The NetworkPolicy lets them reach that namespace and no other.

use k8s_openapi::api::core::v1::{Service, ServiceSpec};

use super::Preview;
use crate::config::ServiceConfig;

/// Marks the Services Previewd owns in a preview (a chart's own Services never carry it).
pub const LABEL_BASELINE: &str = "preview.previewd.io/baseline";

/// The in-cluster name of `service` in `namespace`.
pub fn target(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.svc.cluster.local")
}

/// The configured services the preview does not deploy, when they come from the baseline.
pub fn from_baseline<'a>(p: &Preview<'a>) -> Vec<&'a ServiceConfig> {
    if p.repo.baseline().is_none() {
        return Vec::new();
    }
    // Nothing deployed yet (a first commit waiting for its build): everything is the PR's.
    if p.resource.spec.head_sha.is_empty() {
        return Vec::new();
    }
    p.repo.services.iter().filter(|s| !p.services.iter().any(|d| d.name == s.name)).collect()
}

/// The baseline namespace and the services a preview takes from it, from its spec alone (the
/// PR comment and `previewd consume`'s table say so).
pub fn unchanged<'a>(
    config: &'a crate::config::Config,
    spec: &'a crate::crd::PreviewEnvironmentSpec,
) -> Option<(&'a str, Vec<&'a str>)> {
    let repo = config.repository(&spec.repository)?;
    let namespace = repo.baseline().filter(|_| !spec.head_sha.is_empty())?;
    let unchanged: Vec<&str> =
        repo.services.iter().map(|s| s.name.as_str()).filter(|s| !spec.services.iter().any(|d| d == s)).collect();
    (!unchanged.is_empty()).then_some((namespace, unchanged))
}

pub(super) fn services(p: &Preview<'_>) -> Vec<Service> {
    let Some(namespace) = p.repo.baseline() else { return Vec::new() };
    from_baseline(p)
        .into_iter()
        .map(|service| {
            let mut meta = p.meta(&service.name, Some(&p.name));
            meta.labels.get_or_insert_with(Default::default).insert(LABEL_BASELINE.to_owned(), namespace.to_owned());
            Service {
                metadata: meta,
                spec: Some(ServiceSpec {
                    type_: Some("ExternalName".to_owned()),
                    external_name: Some(target(&service.name, namespace)),
                    ..ServiceSpec::default()
                }),
                status: None,
            }
        })
        .collect()
}

/// The configured services whose baseline Service must not exist (they are deployed by the
/// PR now, or the repository no longer routes to a baseline).
pub(super) fn withdrawn(p: &Preview<'_>) -> Vec<String> {
    let routed = from_baseline(p);
    p.repo.services.iter().filter(|s| !routed.iter().any(|r| r.name == s.name)).map(|s| s.name.clone()).collect()
}
