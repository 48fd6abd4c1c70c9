//! Network isolation: deny everything, then admit the ingress controller and traffic inside
//! the preview, and let pods resolve names (configurable) and reach configured CIDRs, minus the
//! cloud metadata ranges and whatever else `network.egressExcept` lists.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Preview;

fn namespace_named(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), name.to_owned())])),
        ..LabelSelector::default()
    }
}

fn all_pods() -> LabelSelector {
    LabelSelector::default()
}

fn same_namespace() -> NetworkPolicyPeer {
    NetworkPolicyPeer { pod_selector: Some(all_pods()), ..NetworkPolicyPeer::default() }
}

pub(super) fn network_policies(p: &Preview<'_>) -> Vec<NetworkPolicy> {
    let deny_all = NetworkPolicy {
        metadata: p.meta("default-deny-all", Some(&p.name)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(all_pods()),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ..NetworkPolicySpec::default()
        }),
    };

    let ingress = vec![NetworkPolicyIngressRule {
        from: Some(vec![
            same_namespace(),
            NetworkPolicyPeer {
                namespace_selector: Some(namespace_named(&p.config.ingress.controller_namespace)),
                ..NetworkPolicyPeer::default()
            },
        ]),
        ..NetworkPolicyIngressRule::default()
    }];
    let mut egress =
        vec![NetworkPolicyEgressRule { to: Some(vec![same_namespace()]), ..NetworkPolicyEgressRule::default() }];
    if p.config.network.allow_dns_egress {
        let dns_port = |protocol: &str| NetworkPolicyPort {
            port: Some(IntOrString::Int(53)),
            protocol: Some(protocol.to_owned()),
            ..NetworkPolicyPort::default()
        };
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(namespace_named("kube-system")),
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([("k8s-app".to_owned(), "kube-dns".to_owned())])),
                    ..LabelSelector::default()
                }),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![dns_port("UDP"), dns_port("TCP")]),
        });
    }
    // The baseline's Services answer for the services this preview does not run: its pods,
    // and nothing else outside the preview.
    if let Some(baseline) = p.repo.baseline().filter(|_| !super::baseline::from_baseline(p).is_empty()) {
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(namespace_named(baseline)),
                pod_selector: Some(all_pods()),
                ..NetworkPolicyPeer::default()
            }]),
            ..NetworkPolicyEgressRule::default()
        });
    }
    let network = &p.config.network;
    if !network.egress_cidrs.is_empty() {
        egress.push(NetworkPolicyEgressRule {
            to: Some(
                network
                    .egress_cidrs
                    .iter()
                    .map(|cidr| {
                        // Validated at load: a CIDR inside an exception never gets here.
                        let except: Vec<String> = network
                            .exceptions_within(cidr)
                            .unwrap_or_default()
                            .into_iter()
                            .map(|e| e.as_str().to_owned())
                            .collect();
                        NetworkPolicyPeer {
                            ip_block: Some(IPBlock {
                                cidr: cidr.as_str().to_owned(),
                                except: (!except.is_empty()).then_some(except),
                            }),
                            ..NetworkPolicyPeer::default()
                        }
                    })
                    .collect(),
            ),
            ..NetworkPolicyEgressRule::default()
        });
    }
    let allow = NetworkPolicy {
        metadata: p.meta("allow-preview-traffic", Some(&p.name)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(all_pods()),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    };
    vec![deny_all, allow]
}
