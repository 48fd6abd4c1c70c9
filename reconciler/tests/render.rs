//! Rendered objects for representative PRs: snapshots of every object, every ApplicationSet
//! validated against Argo CD's real CRD schema, and core objects against Kubernetes' OpenAPI
//! schemas (kubernetes-validate).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Stdio};

use chrono::{DateTime, Utc};
use previewd::config::Config;
use previewd::crd::PreviewEnvironment;
use previewd::policy::{Decision, Reason, decide_offline};
use previewd::render::{render, to_yaml};
use previewd_events::PreviewEvent;
use serde_json::Value;
use support::{config, event, root};

/// The PreviewEnvironment as it exists in the cluster (with a uid, so owner references render).
fn resource(config: &Config, event: &PreviewEvent) -> PreviewEnvironment {
    let Decision::Upsert(spec) = decide_offline(event, config) else { panic!("expected an upsert") };
    let mut resource = previewd::render::as_applied(config, *spec).unwrap();
    resource.metadata.uid = Some("0b5f8f8e-5a4e-4c1e-9d43-2f7c2a1f0001".to_owned());
    resource
}

fn rendered(name: &str) -> Vec<Value> {
    rendered_with(&config(), name)
}

fn rendered_with(config: &Config, name: &str) -> Vec<Value> {
    render(config, &resource(config, &event(name))).unwrap()
}

fn kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

#[test]
fn multi_service_pr_snapshot() {
    insta::assert_snapshot!("opened", to_yaml(&rendered("opened.json")).unwrap());
}

#[test]
fn long_repository_name_snapshot() {
    let objects = rendered("synchronize-long-name.json");
    insta::assert_snapshot!("long_name", to_yaml(&objects).unwrap());
    for object in &objects {
        let name = object["metadata"]["name"].as_str().unwrap();
        assert!(name.len() <= 63, "{name}");
    }
}

#[test]
fn fork_with_opt_in_label_snapshot() {
    insta::assert_snapshot!("fork_labeled", to_yaml(&rendered("fork-labeled.json")).unwrap());
}

#[test]
fn policy_removes_or_ignores() {
    let config = config();
    assert_eq!(
        decide_offline(&event("fork-unlabeled.json"), &config),
        Decision::Remove { reason: Reason::ForkAwaitingLabel }
    );
    assert_eq!(decide_offline(&event("closed-merged.json"), &config), Decision::Remove { reason: Reason::Merged });
    let mut other = event("opened.json");
    other.repository.full_name = "someone/else".into();
    assert_eq!(decide_offline(&other, &config), Decision::Ignore { reason: Reason::RepositoryNotConfigured });
    let mut draft = event("opened.json");
    draft.pull_request.draft = true;
    assert_eq!(decide_offline(&draft, &config), Decision::Remove { reason: Reason::Draft });
    let mut opted_out = event("opened.json");
    opted_out.pull_request.labels.push("No-Preview".into());
    assert_eq!(decide_offline(&opted_out, &config), Decision::Remove { reason: Reason::OptedOut });
}

#[test]
fn stale_events_are_recognised() {
    let config = config();
    let newer = event("opened.json");
    let Decision::Upsert(spec) = decide_offline(&newer, &config) else { panic!() };
    let mut older = newer.clone();
    older.pull_request.updated_at = "2026-11-26T09:00:00Z".parse::<DateTime<Utc>>().unwrap();
    assert!(previewd::policy::is_stale(&older, &spec.last_event));
    assert!(!previewd::policy::is_stale(&newer, &spec.last_event));
    let mut same_time_later = newer.clone();
    same_time_later.received_at += chrono::Duration::seconds(1);
    assert!(!previewd::policy::is_stale(&same_time_later, &spec.last_event));
}

#[test]
fn owner_references_point_at_the_preview_environment() {
    for object in rendered("opened.json") {
        let owners = object["metadata"]["ownerReferences"].as_array().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0]["kind"], "PreviewEnvironment");
        assert_eq!(owners[0]["controller"], true);
    }
}

fn application_set_schema() -> Value {
    let path = root().join("../shared/fixtures/argocd/applicationset-crd.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let crd: Value = serde_norway::from_str(&text).unwrap();
    let version = crd["spec"]["versions"].as_array().unwrap().iter().find(|v| v["name"] == "v1alpha1").unwrap();
    version["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn application_sets_validate_against_the_argo_cd_crd() {
    let validator = jsonschema::validator_for(&application_set_schema()).unwrap();
    for name in ["opened.json", "synchronize-long-name.json", "fork-labeled.json"] {
        let objects = rendered(name);
        let app_set = objects.iter().find(|o| o["kind"] == "ApplicationSet").unwrap();
        let errors: Vec<String> =
            validator.iter_errors(app_set).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
    // The validator does reject what Argo CD would: a non-string targetRevision.
    let mut broken = rendered("opened.json").into_iter().find(|o| o["kind"] == "ApplicationSet").unwrap();
    broken["spec"]["template"]["spec"]["source"]["targetRevision"] = Value::from(42);
    assert!(!validator.is_valid(&broken));
}

#[test]
fn core_objects_validate_against_the_kubernetes_schemas() {
    let validate = root().join(".venv/bin/kubernetes-validate");
    assert!(validate.exists(), "{} missing: run infra/setup.sh", validate.display());
    // Every option that changes the core objects, on: egress CIDRs with exceptions, cert-manager.
    let mut all_on = config();
    all_on.network.egress_cidrs = cidrs(&["0.0.0.0/0", "::/0", "10.20.0.0/16"]);
    all_on.ingress.tls = previewd::config::TlsMode::CertManager;
    all_on.ingress.cluster_issuer = Some("letsencrypt".into());
    let cases = [("opened.json", config()), ("synchronize-long-name.json", config()), ("fork-labeled.json", all_on)];
    for (name, config) in cases {
        let core: Vec<Value> =
            rendered_with(&config, name).into_iter().filter(|o| o["kind"] != "ApplicationSet").collect();
        let mut child = Command::new(&validate)
            .args(["-k", "1.33.0", "--strict", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), to_yaml(&core).unwrap().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{name}: {text}");
        assert_eq!(text.matches("INFO").count(), core.len(), "{name}: every object validated: {text}");
    }
}

#[test]
fn every_egress_ip_block_excludes_the_metadata_ranges() {
    let mut config = config();
    config.network.egress_cidrs = cidrs(&["0.0.0.0/0", "::/0", "10.20.0.0/16", "fd00::/8"]);
    let objects = rendered_with(&config, "opened.json");
    let blocks: Vec<&Value> = kind(&objects, "NetworkPolicy")
        .into_iter()
        .flat_map(|p| p["spec"]["egress"].as_array().into_iter().flatten())
        .flat_map(|rule| rule["to"].as_array().into_iter().flatten())
        .filter_map(|peer| peer.get("ipBlock"))
        .collect();
    let except = |cidr: &str| {
        let block = blocks.iter().find(|b| b["cidr"] == cidr).unwrap_or_else(|| panic!("{cidr}: {blocks:?}"));
        block["except"].as_array().map(|e| e.iter().map(|v| v.as_str().unwrap().to_owned()).collect::<Vec<_>>())
    };
    assert_eq!(except("0.0.0.0/0"), Some(vec!["169.254.0.0/16".to_owned()]));
    assert_eq!(except("::/0"), Some(vec!["fe80::/10".to_owned(), "fd00:ec2::254/128".to_owned()]));
    assert_eq!(except("fd00::/8"), Some(vec!["fd00:ec2::254/128".to_owned()]));
    assert_eq!(except("10.20.0.0/16"), None, "no exception lies inside it");
    // Operators add their node ranges the same way.
    config.network.egress_except.extend(cidrs(&["10.20.0.0/24"]));
    let objects = rendered_with(&config, "opened.json");
    assert!(serde_json::to_string(&kind(&objects, "NetworkPolicy")).unwrap().contains("10.20.0.0/24"));
}

#[test]
fn the_quota_bounds_disk_and_object_counts() {
    let objects = rendered("opened.json");
    let quota = &kind(&objects, "ResourceQuota")[0]["spec"]["hard"];
    for (key, value) in [
        ("requests.ephemeral-storage", "10Gi"),
        ("limits.ephemeral-storage", "10Gi"),
        ("pods", "30"),
        ("services", "20"),
        ("secrets", "50"),
        ("configmaps", "50"),
        ("persistentvolumeclaims", "10"),
        ("services.loadbalancers", "0"),
        ("services.nodeports", "0"),
    ] {
        assert_eq!(quota[key], value, "{key}: {quota}");
    }
    // Containers that set no scratch space get some, or the quota would refuse their pods.
    let limits = &kind(&objects, "LimitRange")[0]["spec"]["limits"][0];
    assert_eq!(
        (limits["defaultRequest"]["ephemeral-storage"].as_str(), limits["default"]["ephemeral-storage"].as_str()),
        (Some("100Mi"), Some("1Gi"))
    );
}

#[test]
fn no_preview_namespace_holds_a_certificate_key_but_its_own() {
    // Wildcard TLS: the ingress controller's default certificate; the Ingress names no Secret.
    let objects = rendered("opened.json");
    let tls = &kind(&objects, "Ingress")[0]["spec"]["tls"][0];
    assert_eq!(tls["hosts"][0], "shop-pr-42.preview.example.com");
    assert!(tls.get("secretName").is_none(), "{tls}");
    // cert-manager: a certificate for the preview's own host, issued into its namespace.
    let mut config = config();
    config.ingress.tls = previewd::config::TlsMode::CertManager;
    config.ingress.cluster_issuer = Some("letsencrypt".into());
    let objects = rendered_with(&config, "opened.json");
    let ingress = kind(&objects, "Ingress")[0];
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "preview-tls");
    assert_eq!(ingress["spec"]["tls"][0]["hosts"], serde_json::json!(["shop-pr-42.preview.example.com"]));
}

fn cidrs(list: &[&str]) -> Vec<previewd::config::types::Cidr> {
    list.iter().map(|c| previewd::config::types::Cidr::parse(c).unwrap()).collect()
}

/// The ApplicationSet's Helm values for one service of a rendered preview.
fn service_values(objects: &[Value], service: &str) -> Value {
    let set = kind(objects, "ApplicationSet")[0];
    let elements = set["spec"]["generators"][0]["list"]["elements"].as_array().unwrap();
    elements.iter().find(|e| e["service"] == service).unwrap()["values"].clone()
}

#[test]
fn the_image_tag_follows_the_head_commit() {
    let mut config = config();
    let web = &mut config.repositories[0].services[0];
    web.image = Some(
        serde_json::from_value(serde_json::json!({
            "repository": "ghcr.io/acme/shop-web",
            "tag": "{shortSha}-pr{pr}-{branch}",
        }))
        .unwrap(),
    );
    let api = &mut config.repositories[0].services[1];
    api.image = Some(
        serde_json::from_value(serde_json::json!({
            "repository": "ghcr.io/acme/shop-api",
            "values": {"repository": "app.image.name", "tag": "app.image.version"},
        }))
        .unwrap(),
    );
    let mut opened = event("opened.json");
    let values = service_values(&render(&config, &resource(&config, &opened)).unwrap(), "web");
    assert_eq!(values["image"]["repository"], "ghcr.io/acme/shop-web");
    // The branch `feature/cart` made a valid tag.
    assert_eq!(values["image"]["tag"], "ec26c3e-pr42-feature-cart");
    let values = service_values(&render(&config, &resource(&config, &opened)).unwrap(), "api");
    assert_eq!(values["app"]["image"]["name"], "ghcr.io/acme/shop-api");
    assert_eq!(values["app"]["image"]["version"], opened.pull_request.head_sha, "{{sha}} by default");

    // A push: the tag moves with the head commit.
    opened.pull_request.head_sha = "0123456789abcdef0123456789abcdef01234567".into();
    let values = service_values(&render(&config, &resource(&config, &opened)).unwrap(), "web");
    assert_eq!(values["image"]["tag"], "0123456-pr42-feature-cart");
}

#[test]
fn bad_image_settings_are_named_at_config_load() {
    for (image, expected) in [
        (r#"{repository: ghcr.io/acme/web, tag: "{commit}"}"#, "placeholders are"),
        (r#"{repository: ghcr.io/acme/web, tag: "v 1"}"#, "a tag is letters"),
        (r#"{repository: "", tag: "{sha}"}"#, "an image repository"),
        (r#"{repository: ghcr.io/acme/web, values: {tag: "image..tag"}}"#, "dotted Helm value path"),
    ] {
        let yaml = format!(
            "domain: example.com\nrepositories:\n  - name: acme/shop\n    services:\n      - name: web\n        chartPath: c\n        resources: {{requests: {{cpu: 100m, memory: 128Mi}}}}\n        image: {image}\n"
        );
        let err = Config::from_yaml(&yaml).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("repositories[0].services[0].image") && err.contains(expected), "{image}: {err}");
    }
}

#[test]
fn opt_in_repositories_need_the_label() {
    let mut config = config();
    config.policy.mode = previewd::config::PolicyMode::OptIn;
    let mut unlabelled = event("opened.json");
    unlabelled.pull_request.labels.clear();
    assert_eq!(decide_offline(&unlabelled, &config), Decision::Remove { reason: Reason::NotOptedIn });
    let mut labelled = unlabelled.clone();
    labelled.pull_request.labels.push("Preview".into());
    assert!(matches!(decide_offline(&labelled, &config), Decision::Upsert(_)), "labels match case-insensitively");
    // The opt-out label still wins, and a repository can say otherwise than the policy.
    labelled.pull_request.labels.push("no-preview".into());
    assert_eq!(decide_offline(&labelled, &config), Decision::Remove { reason: Reason::OptedOut });
    config.repositories[0].mode = Some(previewd::config::PolicyMode::OptOut);
    assert!(matches!(decide_offline(&unlabelled, &config), Decision::Upsert(_)));
}

#[test]
fn a_protected_preview_asks_the_auth_endpoint_first() {
    let mut config = config();
    config.repositories[0].protect = Some(
        serde_json::from_value(serde_json::json!({"externalAuth": {
            "url": "https://oauth2.example.com/oauth2/auth",
            "signin": "https://oauth2.example.com/oauth2/start?rd=$scheme://$host$escaped_request_uri",
            "responseHeaders": ["X-Auth-Request-Email"],
        }}))
        .unwrap(),
    );
    let objects = rendered_with(&config, "opened.json");
    let ingress = kind(&objects, "Ingress")[0];
    let annotations = &ingress["metadata"]["annotations"];
    assert_eq!(annotations["nginx.ingress.kubernetes.io/auth-url"], "https://oauth2.example.com/oauth2/auth");
    assert!(annotations["nginx.ingress.kubernetes.io/auth-signin"].as_str().unwrap().ends_with("$escaped_request_uri"));
    assert_eq!(annotations["nginx.ingress.kubernetes.io/auth-response-headers"], "X-Auth-Request-Email");
    // Unprotected repositories stay open.
    let open = rendered("opened.json");
    assert!(kind(&open, "Ingress")[0]["metadata"]["annotations"].get("nginx.ingress.kubernetes.io/auth-url").is_none());
}

#[test]
fn a_preview_can_ask_for_basic_auth_from_a_copied_secret() {
    let text = std::fs::read_to_string(root().join("docs/examples/config.yaml")).unwrap();
    let with = |protect: &str, sources: &str| {
        let text = text.replacen("    team: checkout\n", &format!("    team: checkout\n    protect: {protect}\n"), 1);
        format!("{text}\nsecrets: {{sourceNamespaces: {sources}}}\n")
    };
    let basic = "{basicAuth: {secret: {name: preview-htpasswd, from: preview-secrets}, realm: Shop previews}}";
    let config = previewd::config::Config::from_yaml(&with(basic, "[preview-secrets]")).unwrap();
    let objects = rendered_with(&config, "opened.json");
    let annotations = &kind(&objects, "Ingress")[0]["metadata"]["annotations"];
    assert_eq!(annotations["nginx.ingress.kubernetes.io/auth-type"], "basic");
    assert_eq!(annotations["nginx.ingress.kubernetes.io/auth-secret"], "preview-htpasswd");
    assert_eq!(annotations["nginx.ingress.kubernetes.io/auth-secret-type"], "auth-file");
    assert_eq!(annotations["nginx.ingress.kubernetes.io/auth-realm"], "Shop previews");
    assert!(annotations.get("nginx.ingress.kubernetes.io/auth-url").is_none());
    // The Secret must come from an allow-listed namespace; one of the two kinds only; a realm
    // that could end the annotation's value is refused.
    for (protect, sources, field) in [
        (basic, "[]", "repositories[0].protect.basicAuth.secret.from"),
        ("{}", "[preview-secrets]", "repositories[0].protect"),
        (
            "{basicAuth: {secret: {name: h, from: preview-secrets}}, externalAuth: {url: 'https://a.example.com/auth'}}",
            "[preview-secrets]",
            "repositories[0].protect",
        ),
        (
            "{basicAuth: {secret: {name: h, from: preview-secrets}, realm: 'a\"; evil'}}",
            "[preview-secrets]",
            "repositories[0].protect.basicAuth.realm",
        ),
    ] {
        let err = previewd::config::Config::from_yaml(&with(protect, sources)).unwrap_err();
        assert_eq!(err.field(), field, "{protect}: {err}");
    }
}

#[test]
fn protection_settings_that_could_inject_or_be_ignored_are_refused() {
    let text = std::fs::read_to_string(root().join("docs/examples/config.yaml")).unwrap();
    for (protect, expected) in [
        (r#"{externalAuth: {url: "https://a.example/auth; more_set_headers x"}}"#, "without spaces"),
        (r#"{externalAuth: {url: "https://a.example/$host"}}"#, "no nginx variables"),
        (r#"{externalAuth: {url: "ftp://a.example/auth"}}"#, "an http(s) URL"),
        (r#"{externalAuth: {url: "https://a.example/auth", responseHeaders: ["X Bad"]}}"#, "a header name"),
    ] {
        let yaml = text.replacen("    team: checkout\n", &format!("    team: checkout\n    protect: {protect}\n"), 1);
        let err = Config::from_yaml(&yaml).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("repositories[0].protect") && err.contains(expected), "{protect}: {err}");
    }
    let yaml = text
        .replacen(
            "    team: checkout\n",
            "    team: checkout\n    protect: {externalAuth: {url: \"https://a.example/auth\"}}\n",
            1,
        )
        .replacen("className: nginx", "className: traefik", 1);
    let err = Config::from_yaml(&yaml).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("needs ingress-nginx"), "{err}");
}
