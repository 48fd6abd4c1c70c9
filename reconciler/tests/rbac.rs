//! The chart's RBAC covers every Kubernetes API call the reconciler makes, and no more than
//! it needs where it matters (no Secrets). The calls are recorded below the code under test
//! while a preview goes through its whole life (consumer, controller, Events, the finalizer's
//! cleanup, leader election), plus the watch the controller runtime opens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;

use serde_json::Value;

use support::{Access, access_of, accesses, recording};

/// Every access the reconciler needs, recorded from a preview's life, and from the watches
/// `previewd run` keeps (started for a moment on the recorded client).
async fn recorded() -> BTreeSet<Access> {
    // The recorder sits between the code under test and the API; the test's own writes
    // (standing in for Argo CD) go around it.
    let unrecorded = support::fake_cluster().await;
    let (kube, calls) = recording(unrecorded.clone());
    support::a_preview_life(kube.clone(), unrecorded).await;
    let config = support::whole_app_config();
    let (caches, controller) = previewd::controller::watch::controller(&kube, &config);
    let ctx = std::sync::Arc::new(
        previewd::controller::Context::new(kube.clone(), std::sync::Arc::new(config)).with_caches(caches),
    );
    let running = tokio::spawn(futures::StreamExt::for_each(
        controller.run(previewd::controller::reconcile, previewd::controller::error_policy, ctx),
        |_| futures::future::ready(()),
    ));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    running.abort();
    accesses(&calls.lock().unwrap())
}

/// The rules of the chart's ClusterRole and leader Role: (kind, group, resource, verb).
fn chart_rules() -> Vec<(String, String, String, String)> {
    let objects = support::chart::template_config(&support::whole_app_config_value(), &[]);
    let mut rules = Vec::new();
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or("").to_owned();
        if kind != "ClusterRole" && kind != "Role" {
            continue;
        }
        for rule in object["rules"].as_array().unwrap() {
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        rules.push((
                            kind.clone(),
                            group.as_str().unwrap().to_owned(),
                            resource.as_str().unwrap().to_owned(),
                            verb.as_str().unwrap().to_owned(),
                        ));
                    }
                }
            }
        }
    }
    rules
}

#[test]
fn requests_map_to_rbac_access() {
    let access = |m, p, q| access_of(m, p, q).unwrap();
    let a = |g: &str, r: &str, v: &str| (g.to_owned(), r.to_owned(), v.to_owned());
    assert_eq!(access("GET", "/api/v1/namespaces/preview-x", ""), a("", "namespaces", "get"));
    assert_eq!(access("PATCH", "/api/v1/namespaces/preview-x/resourcequotas/q", ""), a("", "resourcequotas", "patch"));
    assert_eq!(
        access("GET", "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications", "labelSelector=x"),
        a("argoproj.io", "applications", "list")
    );
    assert_eq!(
        access("PATCH", "/apis/preview.previewd.io/v1alpha1/previewenvironments/p/status", ""),
        a("preview.previewd.io", "previewenvironments/status", "patch")
    );
    assert_eq!(
        access("GET", "/apis/preview.previewd.io/v1alpha1/previewenvironments", "watch=true"),
        a("preview.previewd.io", "previewenvironments", "watch")
    );
    assert_eq!(
        access("DELETE", "/apis/argoproj.io/v1alpha1/namespaces/argocd/applicationsets/p", ""),
        a("argoproj.io", "applicationsets", "delete")
    );
}

#[tokio::test]
async fn the_chart_grants_every_call_and_reads_secrets_only_at_their_source() {
    let used = recorded().await;
    let rules = chart_rules();
    // Sanity: the recording saw the whole life.
    for must in [
        ("", "namespaces", "patch"),
        ("", "namespaces", "delete"),
        ("argoproj.io", "applicationsets", "patch"),
        ("argoproj.io", "applications", "list"),
        ("preview.previewd.io", "previewenvironments/status", "patch"),
        ("preview.previewd.io", "previewenvironments", "delete"),
        ("events.k8s.io", "events", "create"),
        ("coordination.k8s.io", "leases", "create"),
    ] {
        let must = (must.0.to_owned(), must.1.to_owned(), must.2.to_owned());
        assert!(used.contains(&must), "{must:?} not recorded: {used:#?}");
    }
    let missing: Vec<&Access> = used
        .iter()
        .filter(|(group, resource, verb)| {
            !rules.iter().any(|(_, g, r, v)| g == group && r == resource && (v == verb || v == "*"))
        })
        .collect();
    assert!(missing.is_empty(), "the chart's RBAC lacks {missing:#?}");
    // Leases only in the release namespace (a Role), never cluster-wide.
    assert!(rules.iter().all(|(kind, _, r, _)| r != "leases" || kind == "Role"));
    // Secrets: read only in the allow-listed source namespaces (a Role there); written
    // cluster-wide only by create and patch, which the admission policy confines to previews.
    for (kind, _, resource, verb) in &rules {
        if resource == "secrets" {
            let allowed = if kind == "Role" { ["get", "list", "watch"] } else { ["create", "patch", "patch"] };
            assert!(allowed.contains(&verb.as_str()), "{kind} secrets {verb}");
        }
    }
    let objects = support::chart::template_config(&support::whole_app_config_value(), &[]);
    let readers: Vec<&Value> =
        objects.iter().filter(|o| o["kind"] == "Role" && o["rules"].to_string().contains("secrets")).collect();
    assert_eq!(readers.len(), 1);
    assert_eq!(readers[0]["metadata"]["namespace"], "preview-secrets");
    assert!(rules.iter().all(|(_, g, r, v)| g != "*" && r != "*" && v != "*"), "{rules:?}");
    // Least privilege: every grant is used, or is needed for a reason no request shows.
    let needed_without_a_request = [
        // Owner references with blockOwnerDeletion (OwnerReferencesPermissionEnforcement).
        ("preview.previewd.io", "previewenvironments/finalizers", "update"),
        // The event recorder patches an Event when the same one repeats (a series).
        ("events.k8s.io", "events", "patch"),
    ];
    let unused: Vec<String> = rules
        .iter()
        .filter(|(_, g, r, v)| !used.contains(&(g.clone(), r.clone(), v.clone())))
        .filter(|(_, g, r, v)| !needed_without_a_request.contains(&(g.as_str(), r.as_str(), v.as_str())))
        .map(|(k, g, r, v)| format!("{k} {g}/{r} {v}"))
        .collect();
    assert!(unused.is_empty(), "granted but never used: {unused:#?}");
}
