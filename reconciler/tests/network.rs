//! Cross-preview isolation, asserted on the rendered NetworkPolicies: a small evaluator of
//! Kubernetes NetworkPolicy semantics (policy types, pod and namespace selectors, ipBlock,
//! ports; traffic passes only if the source's egress and the destination's ingress both allow
//! it) decides who may reach whom among pods of three previews, the ingress controller,
//! kube-dns, an unrelated namespace and an outside database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use previewd::config::Config;
use previewd::policy::{Decision, decide_offline};
use previewd::render::render;
use serde_json::Value;
use support::{config, event};

#[derive(Debug, Clone)]
struct Pod {
    namespace: String,
    labels: BTreeMap<String, String>,
    ip: Ipv4Addr,
}

struct Cluster {
    /// Namespace labels (the API server adds `kubernetes.io/metadata.name`).
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    policies: Vec<Value>,
}

fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default()
}

/// A LabelSelector; `{}` selects everything.
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = labels_of(&selector["matchLabels"]);
    if !match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        return false;
    }
    selector["matchExpressions"].as_array().into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap();
        let values: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let value = labels.get(key).map(String::as_str);
        match e["operator"].as_str().unwrap() {
            "In" => value.is_some_and(|v| values.contains(&v)),
            "NotIn" => value.is_none_or(|v| !values.contains(&v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("operator {other}"),
        }
    })
}

fn labels_of(value: &Value) -> BTreeMap<String, String> {
    labels(value)
}

fn in_cidr(ip: Ipv4Addr, cidr: &str) -> bool {
    let (net, bits) = cidr.split_once('/').unwrap();
    let (net, bits): (Ipv4Addr, u32) = (net.parse().unwrap(), bits.parse().unwrap());
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    u32::from(ip) & mask == u32::from(net) & mask
}

impl Cluster {
    fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let mut labels = self.namespaces.get(namespace).cloned().unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), namespace.into());
        labels
    }

    /// Does `peer` (of a policy in `policy_ns`) match `pod`?
    fn peer_matches(&self, peer: &Value, policy_ns: &str, pod: &Pod) -> bool {
        if let Some(block) = peer.get("ipBlock") {
            let except = block["except"].as_array().into_iter().flatten().any(|c| in_cidr(pod.ip, c.as_str().unwrap()));
            return in_cidr(pod.ip, block["cidr"].as_str().unwrap()) && !except;
        }
        let namespace_ok = match peer.get("namespaceSelector") {
            Some(selector) => selects(selector, &self.namespace_labels(&pod.namespace)),
            None => pod.namespace == policy_ns,
        };
        let pod_ok = peer.get("podSelector").is_none_or(|selector| selects(selector, &pod.labels));
        namespace_ok && pod_ok
    }

    /// Whether `direction` ("Ingress"/"Egress") of `subject` lets `other` through on `port`.
    fn allows(&self, direction: &str, subject: &Pod, other: &Pod, port: (u16, &str)) -> bool {
        let (rules_key, peers_key) = if direction == "Ingress" { ("ingress", "from") } else { ("egress", "to") };
        let applying: Vec<&Value> = self
            .policies
            .iter()
            .filter(|p| p["metadata"]["namespace"] == subject.namespace.as_str())
            .filter(|p| selects(&p["spec"]["podSelector"], &subject.labels))
            .filter(|p| p["spec"]["policyTypes"].as_array().unwrap().iter().any(|t| t == direction))
            .collect();
        if applying.is_empty() {
            return true; // not isolated in this direction
        }
        applying.iter().any(|policy| {
            policy["spec"][rules_key].as_array().into_iter().flatten().any(|rule| {
                let peers_ok = match rule.get(peers_key).and_then(Value::as_array) {
                    None => true,
                    Some(peers) => peers.iter().any(|peer| self.peer_matches(peer, &subject.namespace, other)),
                };
                let ports_ok = match rule.get("ports").and_then(Value::as_array) {
                    None => true,
                    Some(ports) => ports.iter().any(|p| {
                        p["port"].as_u64().is_none_or(|n| n == u64::from(port.0))
                            && p["protocol"].as_str().unwrap_or("TCP") == port.1
                    }),
                };
                peers_ok && ports_ok
            })
        })
    }

    fn can_reach(&self, from: &Pod, to: &Pod, port: (u16, &str)) -> bool {
        self.allows("Egress", from, to, port) && self.allows("Ingress", to, from, port)
    }
}

fn pod(namespace: &str, labels: &[(&str, &str)], ip: &str) -> Pod {
    Pod {
        namespace: namespace.into(),
        labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        ip: ip.parse().unwrap(),
    }
}

/// The rendered objects of three previews (two PRs of one repository, one of another).
fn cluster(config: &Config) -> (Cluster, [String; 3]) {
    let mut namespaces = BTreeMap::new();
    let mut policies = Vec::new();
    let mut names = Vec::new();
    for (file, number) in [("opened.json", 42), ("opened.json", 43), ("synchronize-long-name.json", 7)] {
        let mut e = event(file);
        e.pull_request.number = number;
        let Decision::Upsert(spec) = decide_offline(&e, config) else { panic!("{file}: expected an upsert") };
        let pe = previewd::render::as_applied(config, *spec).unwrap();
        let objects = render(config, &pe).unwrap();
        let ns = objects.iter().find(|o| o["kind"] == "Namespace").unwrap();
        let name = ns["metadata"]["name"].as_str().unwrap().to_owned();
        namespaces.insert(name.clone(), labels(&ns["metadata"]["labels"]));
        policies.extend(objects.into_iter().filter(|o| o["kind"] == "NetworkPolicy"));
        names.push(name);
    }
    for ns in ["ingress-nginx", "kube-system", "default"] {
        namespaces.insert(ns.to_owned(), BTreeMap::new());
    }
    (Cluster { namespaces, policies }, names.try_into().unwrap())
}

const HTTP: (u16, &str) = (8080, "TCP");

#[test]
fn previews_cannot_reach_each_other_but_the_ingress_controller_reaches_each() {
    let mut config = config();
    // An outside database the previews may use; the second preview's pod IP is in that range
    // too, which must not open a path between previews.
    config.network.egress_cidrs = cidrs(&["10.20.0.0/16"]);
    let (cluster, [a, b, c]) = cluster(&config);
    assert_eq!(cluster.policies.len(), 6, "two policies per preview");
    let web = |ns: &str, ip: &str| pod(ns, &[("app", "web")], ip);
    let (pa, pa2, pb, pc) = (web(&a, "10.1.0.5"), web(&a, "10.1.0.6"), web(&b, "10.20.0.9"), web(&c, "10.3.0.5"));
    let controller = pod("ingress-nginx", &[("app.kubernetes.io/name", "ingress-nginx")], "10.9.0.2");
    let dns = pod("kube-system", &[("k8s-app", "kube-dns")], "10.9.0.10");
    let stranger = pod("default", &[("app", "debug")], "10.9.0.99");
    let database = pod("outside", &[], "10.20.5.5");

    for (from, to) in [(&pa, &pb), (&pb, &pa), (&pa, &pc), (&pc, &pa), (&pb, &pc), (&pc, &pb)] {
        assert!(!cluster.can_reach(from, to, HTTP), "{} -> {} must be blocked", from.namespace, to.namespace);
        assert!(!cluster.can_reach(from, to, (53, "UDP")), "no port is open across previews");
    }
    assert!(cluster.can_reach(&pa, &pa2, HTTP), "pods of one preview talk to each other");
    assert!(cluster.can_reach(&controller, &pa, HTTP) && cluster.can_reach(&controller, &pc, HTTP));
    assert!(!cluster.can_reach(&stranger, &pa, HTTP), "other namespaces are not admitted");
    assert!(cluster.can_reach(&pa, &dns, (53, "UDP")) && cluster.can_reach(&pa, &dns, (53, "TCP")));
    assert!(!cluster.can_reach(&pa, &dns, HTTP), "kube-system only for DNS");
    assert!(!cluster.can_reach(&pa, &stranger, HTTP), "egress is denied by default");
    assert!(cluster.can_reach(&pa, &database, (5432, "TCP")), "configured CIDRs are reachable");
    // The evaluator is not vacuous: an unpoliced namespace admits anyone.
    assert!(cluster.can_reach(&stranger, &controller, HTTP));
}

#[test]
fn without_dns_egress_a_preview_reaches_only_itself() {
    let mut config = config();
    config.network.allow_dns_egress = false;
    let (cluster, [a, b, _]) = cluster(&config);
    let dns = pod("kube-system", &[("k8s-app", "kube-dns")], "10.9.0.10");
    let (pa, pa2, pb) = (pod(&a, &[], "10.1.0.5"), pod(&a, &[], "10.1.0.6"), pod(&b, &[], "10.2.0.5"));
    assert!(!cluster.can_reach(&pa, &dns, (53, "UDP")));
    assert!(!cluster.can_reach(&pa, &pb, HTTP));
    assert!(cluster.can_reach(&pa, &pa2, HTTP));
}

#[test]
fn a_wide_egress_cidr_keeps_the_metadata_endpoint_out() {
    let mut config = config();
    config.network.egress_cidrs = cidrs(&["0.0.0.0/0"]);
    let (cluster, [a, _, _]) = cluster(&config);
    let pa = pod(&a, &[], "10.1.0.5");
    let metadata = pod("outside", &[], "169.254.169.254");
    let internet = pod("outside", &[], "93.184.216.34");
    assert!(cluster.can_reach(&pa, &internet, (443, "TCP")), "the CIDR is open");
    assert!(!cluster.can_reach(&pa, &metadata, (80, "TCP")), "but never the cloud metadata endpoint");
}

fn cidrs(list: &[&str]) -> Vec<previewd::config::types::Cidr> {
    list.iter().map(|c| previewd::config::types::Cidr::parse(c).unwrap()).collect()
}

/// `unchangedServices: baseline`: a PR that changes only `web` deploys `web`, and `api` and
/// `worker` resolve inside the preview to the baseline namespace's Services (ExternalName under
/// their own names); the NetworkPolicy lets the preview reach that namespace and nothing else
/// new, and the baseline cannot reach into the preview.
#[test]
fn unchanged_services_resolve_to_the_baseline() {
    let mut config = config();
    config.repositories[0].unchanged_services = previewd::config::UnchangedServices::Baseline;
    config.repositories[0].baseline_namespace = Some("shop-staging".into());
    let mut e = event("opened.json");
    e.pull_request.number = 44;
    let Decision::Upsert(mut spec) = decide_offline(&e, &config) else { panic!("expected an upsert") };
    spec.services = vec!["web".into()];
    let pe = previewd::render::as_applied(&config, *spec).unwrap();
    let objects = render(&config, &pe).unwrap();
    let preview = "preview-shop-pr-44";

    // The stand-ins, and nothing for the service the PR deploys.
    let services: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Service").collect();
    let stand_ins: Vec<(&str, &str, &str)> = services
        .iter()
        .map(|s| {
            assert_eq!(s["metadata"]["namespace"], preview);
            assert_eq!(s["metadata"]["labels"]["app.kubernetes.io/managed-by"], "previewd");
            (
                s["metadata"]["name"].as_str().unwrap(),
                s["spec"]["type"].as_str().unwrap(),
                s["spec"]["externalName"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stand_ins,
        [
            ("api", "ExternalName", "api.shop-staging.svc.cluster.local"),
            ("worker", "ExternalName", "worker.shop-staging.svc.cluster.local")
        ]
    );
    let app_set = objects.iter().find(|o| o["kind"] == "ApplicationSet").unwrap();
    let deployed: Vec<&str> = app_set["spec"]["generators"][0]["list"]["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["service"].as_str().unwrap())
        .collect();
    assert_eq!(deployed, ["web"]);

    // Who reaches whom.
    let mut namespaces = BTreeMap::new();
    let ns = objects.iter().find(|o| o["kind"] == "Namespace").unwrap();
    namespaces.insert(preview.to_owned(), labels(&ns["metadata"]["labels"]));
    for other in ["shop-staging", "shop-prod", "kube-system", "ingress-nginx"] {
        namespaces.insert(other.to_owned(), BTreeMap::new());
    }
    let policies = objects.into_iter().filter(|o| o["kind"] == "NetworkPolicy").collect();
    let cluster = Cluster { namespaces, policies };
    let web = pod(preview, &[("app", "web")], "10.1.0.5");
    let staging_api = pod("shop-staging", &[("app", "api")], "10.7.0.5");
    let prod_api = pod("shop-prod", &[("app", "api")], "10.8.0.5");
    assert!(cluster.can_reach(&web, &staging_api, HTTP), "the preview reaches the baseline's api");
    assert!(!cluster.can_reach(&web, &prod_api, HTTP), "and no other namespace");
    assert!(!cluster.can_reach(&staging_api, &web, HTTP), "the baseline cannot reach into the preview");

    // Without a baseline the same preview reaches nothing outside itself.
    let mut omit = config.clone();
    omit.repositories[0].unchanged_services = previewd::config::UnchangedServices::Omit;
    omit.repositories[0].baseline_namespace = None;
    let objects = render(&omit, &pe).unwrap();
    assert!(!objects.iter().any(|o| o["kind"] == "Service"));
    let cluster = Cluster {
        namespaces: cluster.namespaces.clone(),
        policies: objects.into_iter().filter(|o| o["kind"] == "NetworkPolicy").collect(),
    };
    assert!(!cluster.can_reach(&web, &staging_api, HTTP));

    // A setting without its namespace, or a namespace without the setting, is refused at load.
    let text = std::fs::read_to_string(support::root().join("docs/examples/config.yaml")).unwrap();
    let without = text.replacen("unchangedServices: omit", "unchangedServices: baseline", 1);
    let err = Config::from_yaml(&without).unwrap_err().to_string();
    assert!(err.contains("repositories[0].baselineNamespace"), "{err}");
}
