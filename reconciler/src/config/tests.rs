use std::time::Duration;

use serde_json::{Value, json};

use super::types::{Bytes, Cpu};
use super::*;

const MINIMAL: &str = r#"
domain: example.com
repositories:
  - name: acme/shop
    services:
      - name: web
        chartPath: deploy/web
        resources: {requests: {cpu: 250m, memory: 512Mi}}
        expose: {port: 8080}
"#;

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = Config::from_yaml(MINIMAL).unwrap();
    assert_eq!(c.preview_zone(), "preview.example.com");
    assert_eq!(c.namespace_prefix, "preview-");
    assert_eq!(c.ttl.idle, Duration::from_secs(4 * 3600));
    assert_eq!(c.ttl.do_not_expire, Duration::from_secs(24 * 3600));
    assert_eq!(c.ttl.max, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(c.argocd.application_sets_per_minute, 10);
    assert_eq!(c.argocd.project, "previews");
    assert_eq!(c.policy.forks, ForkPolicy::RequireLabel);
    assert_eq!(c.policy.opt_out_label, "no-preview");
    assert_eq!(c.pricing.cpu_core_hour, 0.04);
    assert_eq!(c.repositories[0].slug(), "shop");
    assert_eq!(c.repositories[0].repo_url(), "https://github.com/acme/shop.git");
    assert_eq!(c.repositories[0].services[0].resources.replicas, 1);
    assert_eq!(c.repositories[0].services[0].expose.as_ref().map(|e| e.path.as_str()), Some("/"));
    assert!(c.repository("ACME/Shop").is_some());
    let egress: Vec<&str> = c.network.egress_except.iter().map(|c| c.as_str()).collect();
    assert_eq!(egress, ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"]);
    let (request, limit) = c.container_defaults.ephemeral_storage();
    assert_eq!((request.as_str(), limit.as_str()), ("100Mi", "1Gi"));
    assert_eq!(
        (c.quota.services, c.quota.secrets, c.quota.config_maps, c.quota.persistent_volume_claims),
        (20, 50, 50, 10)
    );
}

#[test]
fn built_in_quantities_are_what_they_say() {
    let (quota, defaults) = (QuotaConfig::default(), ContainerDefaults::default());
    let cpus = [quota.cpu, defaults.requests.cpu, defaults.limits.cpu];
    for cpu in cpus {
        assert_eq!(Cpu::parse(cpu.as_str()), Ok(cpu.clone()));
    }
    let mut all_bytes = vec![quota.memory, quota.storage, quota.ephemeral_storage, defaults.requests.memory];
    all_bytes.extend(defaults.requests.ephemeral_storage);
    all_bytes.extend(defaults.limits.ephemeral_storage);
    for bytes in all_bytes {
        assert_eq!(Bytes::parse(bytes.as_str()), Ok(bytes.clone()));
    }
}

#[test]
fn defaults_set_without_ephemeral_storage_still_get_it() {
    let partial = format!("{MINIMAL}containerDefaults: {{requests: {{cpu: 50m, memory: 64Mi}}}}\n");
    let c = Config::from_yaml(&partial).unwrap();
    let (request, limit) = c.container_defaults.ephemeral_storage();
    assert_eq!((request.as_str(), limit.as_str()), ("100Mi", "1Gi"));
}

/// `MINIMAL` with `value` set at the JSON pointer `at` (objects on the way are created).
fn with(at: &str, value: Value) -> String {
    let mut doc: Value = serde_norway::from_str(MINIMAL).unwrap();
    let mut target = &mut doc;
    let parts: Vec<&str> = at.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        target = match target {
            Value::Array(items) => {
                let index: usize = part.parse().unwrap();
                if index == items.len() {
                    items.push(Value::Null);
                }
                &mut items[index]
            }
            other => {
                if other.is_null() {
                    *other = json!({});
                }
                other.as_object_mut().unwrap().entry((*part).to_owned()).or_insert(Value::Null)
            }
        };
        if last {
            *target = value.clone();
        }
    }
    serde_norway::to_string(&doc).unwrap()
}

#[test]
fn every_rule_refuses_with_the_field_it_is_about() {
    let repo = |name: &str, slug: Option<&str>| {
        let mut r = json!({"name": name, "services": [{"name": "api", "chartPath": "c", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]});
        if let Some(slug) = slug {
            r["slug"] = json!(slug);
        }
        r
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        // Types: parsed at load, the error names the field.
        ("/domian", json!("x"), "domian"),
        (
            "/repositories/0/services/0/resources/requests/cpu",
            json!("lots"),
            "repositories[0].services[0].resources.requests.cpu",
        ),
        (
            "/repositories/0/services/0/resources/requests/memory",
            json!("1Gb"),
            "repositories[0].services[0].resources.requests.memory",
        ),
        (
            "/repositories/0/services/0/resources/storage",
            json!("much"),
            "repositories[0].services[0].resources.storage",
        ),
        ("/repositories/0/services/0/expose/port", json!("seventy"), "repositories[0].services[0].expose.port"),
        ("/repositories/0/services/0/paths", json!(["web/["]), "repositories[0].services[0].paths"),
        ("/ai/ignorePaths", json!(["{a"]), "ai.ignorePaths"),
        ("/ttl/idle", json!("forever"), "ttl.idle"),
        ("/github/destroyGrace", json!("soon"), "github.destroyGrace"),
        ("/ingress/tls", json!("selfSigned"), "ingress.tls"),
        ("/network/egressCidrs", json!(["10.0.0.0/33"]), "network.egressCidrs[0]"),
        ("/network/egressExcept", json!(["nowhere"]), "network.egressExcept[0]"),
        ("/quota/cpu", json!("four"), "quota.cpu"),
        ("/quota/ephemeralStorage", json!("lots"), "quota.ephemeralStorage"),
        ("/containerDefaults/limits/memory", json!("big"), "containerDefaults.limits.memory"),
        // Rules.
        ("/domain", json!("not a domain"), "domain"),
        ("/previewZone", json!("-bad-.example.com"), "previewZone"),
        ("/namespacePrefix", json!(""), "namespacePrefix"),
        ("/namespacePrefix", json!("Preview-"), "namespacePrefix"),
        ("/namespacePrefix", json!("a-very-long-prefix-indeed-"), "namespacePrefix"),
        ("/ingress/tls", json!("certManager"), "ingress.clusterIssuer"),
        ("/ingress/wildcardSecret", json!("preview-wildcard-tls"), "ingress.wildcardSecret"),
        ("/argocd/project", json!("default"), "argocd.project"),
        ("/argocd/applicationSetsPerMinute", json!(0), "argocd.applicationSetsPerMinute"),
        ("/ttl/idle", json!("48h"), "ttl"),
        ("/ttl/sweepInterval", json!("5s"), "ttl.sweepInterval"),
        ("/ttl/sweepInterval", json!("2days"), "ttl.sweepInterval"),
        ("/ttl/max", json!("400days"), "ttl.max"),
        ("/ttl/max", json!("584942417355years"), "ttl.max"),
        ("/github/destroyGrace", json!("2days"), "github.destroyGrace"),
        ("/ai/cacheTtl", json!("60days"), "ai.cacheTtl"),
        ("/quota/pods", json!(0), "quota.pods"),
        ("/quota/services", json!(0), "quota.services"),
        ("/quota/secrets", json!(0), "quota.secrets"),
        ("/quota/configMaps", json!(0), "quota.configMaps"),
        ("/quota/persistentVolumeClaims", json!(0), "quota.persistentVolumeClaims"),
        ("/network/egressCidrs", json!(["169.254.169.254/32"]), "network.egressCidrs[0]"),
        ("/pricing/cpuCoreHour", json!(-1.0), "pricing.cpuCoreHour"),
        ("/pricing/memoryGbHour", json!(-1.0), "pricing.memoryGbHour"),
        ("/pricing/storageGbMonth", json!(-1.0), "pricing.storageGbMonth"),
        ("/pricing/spotDiscount", json!(0.99), "pricing.spotDiscount"),
        ("/budget/monthlyUsd", json!(0), "budget.monthlyUsd"),
        ("/github/concurrency", json!(0), "github.concurrency"),
        ("/github/statusContext", json!(" "), "github.statusContext"),
        ("/ai/minConfidence", json!(1.5), "ai.minConfidence"),
        ("/ai/requestsPerMinute", json!(0), "ai.requestsPerMinute"),
        ("/ai/timeout", json!("10m"), "ai.timeout"),
        ("/ai/maxDiffBytes", json!(10), "ai.maxDiffBytes"),
        ("/ai/baseUrl", json!("ftp://models"), "ai.baseUrl"),
        ("/ai/prices/inputPerMillion", json!(-1.0), "ai.prices"),
        ("/repositories", json!([]), "repositories"),
        ("/repositories/0/name", json!("shop"), "repositories[0].name"),
        ("/repositories/1", repo("ACME/shop", Some("other")), "repositories[1].name"),
        ("/repositories/0/slug", json!("s".repeat(41)), "repositories[0].slug"),
        ("/repositories/1", repo("other/shop", None), "repositories[1].slug"),
        ("/repositories/0/services", json!([]), "repositories[0].services"),
        ("/repositories/0/services/0/name", json!("Web_1"), "repositories[0].services[0].name"),
        (
            "/repositories/0/services/1",
            json!({"name": "web", "chartPath": "c", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}),
            "repositories[0].services[1].name",
        ),
        ("/repositories/0/services/0/chartPath", json!("../etc"), "repositories[0].services[0].chartPath"),
        ("/repositories/0/services/0/expose/path", json!("api"), "repositories[0].services[0].expose.path"),
        ("/repositories/0/services/0/expose/port", json!(0), "repositories[0].services[0].expose.port"),
    ];
    for (at, value, field) in cases {
        let yaml = with(at, value.clone());
        match Config::from_yaml(&yaml) {
            Ok(_) => panic!("{at} = {value} was accepted"),
            Err(err) => assert!(
                err.field() == field
                    || err.field().starts_with(&format!("{field}."))
                    || err.field().starts_with(&format!("{field}[")),
                "{at} = {value}: the error names {:?}, not {field:?}: {err}",
                err.field()
            ),
        }
    }
    // The table's base is valid, and so is a repository with its own slug.
    assert!(Config::from_yaml(MINIMAL).is_ok());
    assert!(Config::from_yaml(&with("/repositories/1", repo("other/shop", Some("other-shop")))).is_ok());
}

#[test]
fn the_schema_refuses_what_the_types_refuse() {
    let schema = Config::schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let document = |yaml: &str| -> Value { serde_norway::from_str(yaml).unwrap() };
    assert!(validator.is_valid(&document(MINIMAL)));
    assert!(validator.is_valid(&document(include_str!("../../../docs/examples/config.yaml"))));
    for (at, value) in [
        ("/ttl/idle", json!("forever")),
        ("/domian", json!("x")),
        ("/repositories/0/services/0/resources/requests/cpu", json!("lots")),
        ("/ingress/tls", json!("selfSigned")),
        ("/quota/pods", json!(0)),
        ("/namespacePrefix", json!("")),
    ] {
        assert!(!validator.is_valid(&document(&with(at, value.clone()))), "{at} = {value} passed the schema");
    }
}

#[test]
fn image_tags_are_valid_for_any_branch() {
    let image: crate::config::ImageConfig =
        serde_json::from_value(json!({"repository": "r", "tag": "{branch}-{shortSha}"}))
            .unwrap_or_else(|e| panic!("{e}"));
    let tag = |branch: &str| image.tag_for(crate::config::TagInputs { sha: "abcdef0123", pr: 7, branch });
    assert_eq!(tag("feature/Cart_v2.1"), "feature-Cart_v2.1-abcdef0");
    assert_eq!(tag("--.weird"), "weird-abcdef0");
    assert_eq!(tag("émoji🙂"), "moji--abcdef0");
    assert_eq!(tag(&"b".repeat(300)).len(), 128);
}

#[test]
fn preview_clusters_are_checked_and_ordered() {
    let east = json!({"name": "east", "argocdSecret": "cluster-east"});
    let two = json!([east, {"name": "west", "kubeconfigSecret": {"name": "west-kc"}}]);
    let mut doc: Value = serde_norway::from_str(&with("/clusters", two.clone())).unwrap();
    doc["defaultClusters"] = json!(["east", "in-cluster"]);
    doc["repositories"][0]["clusters"] = json!(["west", "east"]);
    let config = Config::from_yaml(&serde_norway::to_string(&doc).unwrap()).unwrap();
    let repo = &config.repositories[0];
    assert_eq!(config.clusters_for(repo), ["west", "east"]);
    assert_eq!(config.clusters[1].kubeconfig_secret.as_ref().map(|k| k.key.as_str()), Some("kubeconfig"));
    let mut unlisted = config.clone();
    unlisted.repositories[0].clusters.clear();
    assert_eq!(unlisted.clusters_for(&unlisted.repositories[0]), ["east", "in-cluster"]);
    unlisted.default_clusters.clear();
    assert_eq!(unlisted.clusters_for(&unlisted.repositories[0]), [IN_CLUSTER]);

    let quota_sized = json!({"cpu": "4", "memory": "8Gi"});
    let too_small = json!({"cpu": "3", "memory": "64Gi"});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/clusters", json!([{"name": "in-cluster", "argocdSecret": "x"}]), "clusters[0].name"),
        ("/clusters", json!([{"name": "East", "argocdSecret": "x"}]), "clusters[0].name"),
        ("/clusters", json!([{"name": "east"}]), "clusters[0].argocdSecret"),
        (
            "/clusters",
            json!([{"name": "east", "argocdSecret": "a", "kubeconfigSecret": {"name": "b"}}]),
            "clusters[0].argocdSecret",
        ),
        ("/clusters", json!([{"name": "east", "argocdSecret": "a", "capacity": too_small}]), "clusters[0].capacity"),
        ("/clusters", json!([{"name": "east", "argocdSecret": "a", "previewZone": "-"}]), "clusters[0].previewZone"),
        (
            "/clusters",
            json!([{"name": "east", "argocdSecret": "a", "destinationServer": "east"}]),
            "clusters[0].destinationServer",
        ),
        ("/clusters", json!([east, east]), "clusters[1].name"),
        ("/repositories/0/clusters", json!(["north"]), "repositories[0].clusters[0]"),
        ("/defaultClusters", json!(["in-cluster", "in-cluster"]), "defaultClusters[1]"),
    ];
    for (at, value, field) in cases {
        let err =
            Config::from_yaml(&with(at, value.clone())).err().unwrap_or_else(|| panic!("{at} = {value} accepted"));
        assert_eq!(err.field(), field, "{at} = {value}: {err}");
    }
    let fits =
        Config::from_yaml(&with("/clusters", json!([{"name": "e", "argocdSecret": "a", "capacity": quota_sized}])));
    assert!(fits.is_ok(), "{fits:?}");
}
