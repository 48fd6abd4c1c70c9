//! The preview's Namespace, ResourceQuota and LimitRange.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::Preview;
use crate::config::Resources;
use crate::config::types::Bytes;

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
    let count = |n: u32| q(&n.to_string());
    let hard = BTreeMap::from([
        ("requests.cpu".to_owned(), q(quota.cpu.as_str())),
        ("limits.cpu".to_owned(), q(quota.cpu.as_str())),
        ("requests.memory".to_owned(), q(quota.memory.as_str())),
        ("limits.memory".to_owned(), q(quota.memory.as_str())),
        ("requests.storage".to_owned(), q(quota.storage.as_str())),
        // A node's disk is shared: without these, one preview's emptyDir or logs can fill it.
        ("requests.ephemeral-storage".to_owned(), q(quota.ephemeral_storage.as_str())),
        ("limits.ephemeral-storage".to_owned(), q(quota.ephemeral_storage.as_str())),
        // Every object costs the API server and etcd, whatever it holds.
        ("pods".to_owned(), count(quota.pods)),
        ("services".to_owned(), count(quota.services)),
        ("secrets".to_owned(), count(quota.secrets)),
        ("configmaps".to_owned(), count(quota.config_maps)),
        ("persistentvolumeclaims".to_owned(), count(quota.persistent_volume_claims)),
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
    // The quota limits each of these, so a container that sets none must get all of them.
    let (scratch_request, scratch_limit) = d.ephemeral_storage();
    let set = |r: &Resources, scratch: &Bytes| {
        BTreeMap::from([
            ("cpu".to_owned(), q(r.cpu.as_str())),
            ("memory".to_owned(), q(r.memory.as_str())),
            ("ephemeral-storage".to_owned(), q(scratch.as_str())),
        ])
    };
    LimitRange {
        metadata: p.meta("preview-defaults", Some(&p.name)),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default_request: Some(set(&d.requests, &scratch_request)),
                default: Some(set(&d.limits, &scratch_limit)),
                ..LimitRangeItem::default()
            }],
        }),
    }
}
