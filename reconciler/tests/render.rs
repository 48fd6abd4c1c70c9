//! Rendered objects for representative PRs: snapshots of every object, every ApplicationSet
//! validated against Argo CD's real CRD schema, and core objects against Kubernetes' OpenAPI
//! schemas (kubernetes-validate).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Stdio};

use chrono::{DateTime, Utc};
use previewd::config::Config;
use previewd::crd::PreviewEnvironment;
use previewd::policy::{Decision, Reason, decide};
use previewd::render::{render, to_yaml};
use previewd_events::PreviewEvent;
use serde_json::Value;
use support::{config, event, root};

/// The PreviewEnvironment as it exists in the cluster (with a uid, so owner references render).
fn resource(config: &Config, event: &PreviewEvent) -> PreviewEnvironment {
    let Decision::Upsert(spec) = decide(event, config) else { panic!("expected an upsert") };
    let mut resource = previewd::offline::preview_resource(config, *spec).unwrap();
    resource.metadata.uid = Some("0b5f8f8e-5a4e-4c1e-9d43-2f7c2a1f0001".to_owned());
    resource
}

fn rendered(name: &str) -> Vec<Value> {
    let config = config();
    render(&config, &resource(&config, &event(name))).unwrap()
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
    assert_eq!(decide(&event("fork-unlabeled.json"), &config), Decision::Remove { reason: Reason::ForkAwaitingLabel });
    assert_eq!(decide(&event("closed-merged.json"), &config), Decision::Remove { reason: Reason::Merged });
    let mut other = event("opened.json");
    other.repository.full_name = "someone/else".into();
    assert_eq!(decide(&other, &config), Decision::Ignore { reason: Reason::RepositoryNotConfigured });
    let mut draft = event("opened.json");
    draft.pull_request.draft = true;
    assert_eq!(decide(&draft, &config), Decision::Remove { reason: Reason::Draft });
    let mut opted_out = event("opened.json");
    opted_out.pull_request.labels.push("No-Preview".into());
    assert_eq!(decide(&opted_out, &config), Decision::Remove { reason: Reason::OptedOut });
}

#[test]
fn stale_events_are_recognised() {
    let config = config();
    let newer = event("opened.json");
    let Decision::Upsert(spec) = decide(&newer, &config) else { panic!() };
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
    for name in ["opened.json", "synchronize-long-name.json", "fork-labeled.json"] {
        let core: Vec<Value> = rendered(name).into_iter().filter(|o| o["kind"] != "ApplicationSet").collect();
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
