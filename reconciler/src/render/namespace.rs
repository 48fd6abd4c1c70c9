//! The preview's Namespace, ResourceQuota and LimitRange.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::Preview;

/// With Pod Security `restricted` enforced: previews run PR code, which must not get privileges.
pub(super) fn namespace(p: &Preview<'_>) -> Namespace {
    let mut meta = p.meta(&p.name, None);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(format!("pod-security.kubernetes.io/{mode}"), "restricted".to_owned());
        labels.insert(format!("pod-security.kubernetes.io/{mode}-version"), "latest".to_owned());
    }
    Namespace { metadata: meta, ..Namespace::default() }
}

fn q(s: &str) -> Quantity {
    Quantity(s.to_owned())
}

pub(super) fn resource_quota(p: &Preview<'_>) -> ResourceQuota {
    let quota = &p.config.quota;
    let hard = BTreeMap::from([
        ("requests.cpu".to_owned(), q(&quota.cpu)),
        ("limits.cpu".to_owned(), q(&quota.cpu)),
        ("requests.memory".to_owned(), q(&quota.memory)),
        ("limits.memory".to_owned(), q(&quota.memory)),
        ("requests.storage".to_owned(), q(&quota.storage)),
        ("pods".to_owned(), q(&quota.pods.to_string())),
        // LoadBalancers and NodePorts would bypass the ingress and cost money per preview.
        ("services.loadbalancers".to_owned(), q("0")),
        ("services.nodeports".to_owned(), q("0")),
    ]);
    ResourceQuota {
        metadata: p.meta("preview-quota", Some(&p.name)),
        spec: Some(ResourceQuotaSpec { hard: Some(hard), ..ResourceQuotaSpec::default() }),
        ..ResourceQuota::default()
    }
}

pub(super) fn limit_range(p: &Preview<'_>) -> LimitRange {
    let d = &p.config.container_defaults;
    let pair = |cpu: &str, memory: &str| BTreeMap::from([("cpu".to_owned(), q(cpu)), ("memory".to_owned(), q(memory))]);
    LimitRange {
        metadata: p.meta("preview-defaults", Some(&p.name)),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default_request: Some(pair(&d.requests.cpu, &d.requests.memory)),
                default: Some(pair(&d.limits.cpu, &d.limits.memory)),
                ..LimitRangeItem::default()
            }],
        }),
    }
}
