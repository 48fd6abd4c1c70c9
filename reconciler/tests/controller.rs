//! The controller against an in-memory Kubernetes API (kube-memory: real `kube::Api`
//! requests, server-side apply, status subresource, owner-reference garbage collection).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use previewd::argo::ApplicationSet;
use previewd::config::Config;
use previewd::controller::{Context, Outcome, reconcile_at};
use previewd::crd::{FINALIZER, Phase, PreviewEnvironment};
use previewd::policy::{Decision, decide_offline};
use support::{config, event};

async fn client() -> Client {
    support::fake_cluster().await
}

/// Creates the PreviewEnvironment the consumer would for `event`, with activity at `active`.
async fn create(client: &Client, config: &Config, event_name: &str, active: DateTime<Utc>) -> PreviewEnvironment {
    let mut event = event(event_name);
    event.pull_request.updated_at = active;
    let Decision::Upsert(spec) = decide_offline(&event, config) else { panic!("expected an upsert") };
    let mut pe = previewd::offline::preview_resource(config, *spec).unwrap();
    pe.status = None;
    let api: Api<PreviewEnvironment> = Api::all(client.clone());
    api.create(&PostParams::default(), &pe).await.unwrap()
}

async fn fetch(client: &Client, name: &str) -> PreviewEnvironment {
    Api::<PreviewEnvironment>::all(client.clone()).get(name).await.unwrap()
}

fn context(client: &Client, config: Config) -> Context {
    Context::new(client.clone(), Arc::new(config))
}

#[tokio::test]
async fn creates_every_object_and_reports_deploying() {
    let (client, config) = (client().await, config());
    let now = Utc::now();
    let pe = create(&client, &config, "opened.json", now).await;
    let ctx = context(&client, config);

    let outcome = reconcile_at(&pe, &ctx, now).await.unwrap();
    assert_eq!(outcome, Outcome::Applied { requeue: Duration::from_secs(30) });

    let ns = "preview-shop-pr-42";
    let namespace = Api::<Namespace>::all(client.clone()).get(ns).await.unwrap();
    assert_eq!(namespace.labels()["pod-security.kubernetes.io/enforce"], "restricted");
    let owner = &namespace.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("PreviewEnvironment", pe.uid().unwrap().as_str()));
    Api::<ResourceQuota>::namespaced(client.clone(), ns).get("preview-quota").await.unwrap();
    Api::<LimitRange>::namespaced(client.clone(), ns).get("preview-defaults").await.unwrap();
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), ns).list(&Default::default()).await.unwrap();
    assert_eq!(policies.items.len(), 2);
    let ingress = Api::<Ingress>::namespaced(client.clone(), ns).get("preview").await.unwrap();
    assert_eq!(ingress.spec.unwrap().rules.unwrap()[0].host.as_deref(), Some("shop-pr-42.preview.example.com"));
    let app_set = Api::<ApplicationSet>::namespaced(client.clone(), "argocd").get(ns).await.unwrap();
    assert_eq!(app_set.spec.fields["template"]["spec"]["source"]["targetRevision"], pe.spec.head_sha.as_str());

    let pe = fetch(&client, ns).await;
    assert!(pe.finalizers().iter().any(|f| f == FINALIZER));
    let status = pe.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Deploying));
    assert_eq!(status.url.as_deref(), Some("https://shop-pr-42.preview.example.com"));
    assert_eq!(status.services.len(), 3);
    assert!(status.services.iter().all(|s| !s.ready));
    assert_eq!(status.expires_at, Some(now + chrono::Duration::hours(4)));
}

#[tokio::test]
async fn reconciling_again_changes_nothing() {
    let (client, config) = (client().await, config());
    let now = Utc::now();
    create(&client, &config, "opened.json", now).await;
    let ctx = context(&client, config);
    let name = "preview-shop-pr-42";
    reconcile_at(&fetch(&client, name).await, &ctx, now).await.unwrap();
    // The in-memory API bumps `generation` for the finalizer (metadata) patch, which Kubernetes
    // does not do for CRDs with a status subresource; one more pass records that generation.
    reconcile_at(&fetch(&client, name).await, &ctx, now).await.unwrap();
    let before = fetch(&client, name).await;
    let app_set_before = Api::<ApplicationSet>::namespaced(client.clone(), "argocd").get(name).await.unwrap();

    reconcile_at(&before, &ctx, now + chrono::Duration::seconds(30)).await.unwrap();
    let after = fetch(&client, name).await;
    let app_set_after = Api::<ApplicationSet>::namespaced(client.clone(), "argocd").get(name).await.unwrap();
    assert_eq!(before.status, after.status, "status unchanged, transition times kept");
    assert_eq!(before.resource_version(), after.resource_version(), "no write to the PreviewEnvironment");
    assert_eq!(app_set_before.spec, app_set_after.spec);
}

#[tokio::test]
async fn healthy_applications_make_the_preview_ready() {
    let (client, config) = (client().await, config());
    let now = Utc::now();
    let pe = create(&client, &config, "opened.json", now).await;
    let ctx = context(&client, config);
    reconcile_at(&pe, &ctx, now).await.unwrap();
    // What Argo CD's ApplicationSet controller and application controller would produce.
    for service in ["web", "api", "worker"] {
        support::healthy_application(&client, "preview-shop-pr-42", service).await;
    }
    let pe = fetch(&client, "preview-shop-pr-42").await;
    let outcome = reconcile_at(&pe, &ctx, now).await.unwrap();
    assert_eq!(outcome, Outcome::Applied { requeue: Duration::from_secs(300) }, "sweep interval once ready");
    let status = fetch(&client, "preview-shop-pr-42").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Ready));
    assert!(status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    // Each step was reported as a Kubernetes Event on the PreviewEnvironment.
    let events =
        Api::<k8s_openapi::api::events::v1::Event>::all(client.clone()).list(&Default::default()).await.unwrap();
    let reasons: Vec<&str> = events.items.iter().filter_map(|e| e.reason.as_deref()).collect();
    for reason in ["PreviewCreating", "ApplicationSetCreated", "PreviewReady"] {
        assert!(reasons.contains(&reason), "{reason} missing from {reasons:?}");
    }
}

#[tokio::test]
async fn expired_previews_are_deleted_with_everything_they_own() {
    let (client, config) = (client().await, config());
    let now = Utc::now();
    let pe = create(&client, &config, "opened.json", now).await;
    let ctx = context(&client, config);
    reconcile_at(&pe, &ctx, now).await.unwrap();

    // Requeued exactly at expiry: 4 h after the last activity.
    let pe = fetch(&client, "preview-shop-pr-42").await;
    let later = now + chrono::Duration::hours(4) - chrono::Duration::minutes(10);
    let Outcome::Applied { requeue } = reconcile_at(&pe, &ctx, later).await.unwrap() else { panic!() };
    assert!(requeue <= Duration::from_secs(601), "{requeue:?}");

    // Each top-level object is owned by the PreviewEnvironment, so garbage collection takes it.
    let uid = pe.uid().unwrap();
    let namespace = Api::<Namespace>::all(client.clone()).get("preview-shop-pr-42").await.unwrap();
    assert_eq!(namespace.owner_references()[0].uid, uid);
    let app_set = Api::<ApplicationSet>::namespaced(client.clone(), "argocd").get("preview-shop-pr-42").await.unwrap();
    assert_eq!(app_set.owner_references()[0].uid, uid);

    let outcome = reconcile_at(&pe, &ctx, now + chrono::Duration::hours(4)).await.unwrap();
    assert_eq!(outcome, Outcome::Expired);
    // Deleted: the finalizer's cleanup runs, then it is gone, and everything it owned with it.
    let deleting = fetch(&client, "preview-shop-pr-42").await;
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(reconcile_at(&deleting, &ctx, now + chrono::Duration::hours(4)).await.unwrap(), Outcome::Finalized);
    assert!(Api::<PreviewEnvironment>::all(client.clone()).get_opt("preview-shop-pr-42").await.unwrap().is_none());
    assert!(Api::<Namespace>::all(client.clone()).get_opt("preview-shop-pr-42").await.unwrap().is_none());
    let app_sets = Api::<ApplicationSet>::namespaced(client.clone(), "argocd");
    assert!(app_sets.get_opt("preview-shop-pr-42").await.unwrap().is_none());
}

#[tokio::test]
async fn deletion_runs_the_finalizer() {
    let config = config();
    let now = Utc::now();
    let mut event = event("opened.json");
    event.pull_request.updated_at = now;
    let Decision::Upsert(spec) = decide_offline(&event, &config) else { panic!() };
    let mut pe = previewd::offline::preview_resource(&config, *spec).unwrap();
    pe.status = None;
    pe.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    let api = support::memory_api();
    api.put(serde_json::to_value(&pe).unwrap()).unwrap();
    api.remove("preview.previewd.io", "previewenvironments", None, "preview-shop-pr-42").unwrap();
    let client = support::client_of(&api);
    let ctx = context(&client, config);
    let pe = fetch(&client, "preview-shop-pr-42").await;
    assert_eq!(reconcile_at(&pe, &ctx, now).await.unwrap(), Outcome::Finalized);
    let gone_or_released = Api::<PreviewEnvironment>::all(client.clone()).get_opt("preview-shop-pr-42").await.unwrap();
    assert!(gone_or_released.is_none_or(|pe| pe.finalizers().is_empty()));
}

#[tokio::test]
async fn unknown_services_fail_without_retrying() {
    let (client, config) = (client().await, config());
    let now = Utc::now();
    let mut pe = create(&client, &config, "opened.json", now).await;
    pe.spec.services.push("billing".into());
    let ctx = context(&client, config);
    let outcome = reconcile_at(&pe, &ctx, now).await.unwrap();
    assert!(matches!(&outcome, Outcome::Invalid(m) if m.contains("billing")), "{outcome:?}");
    let status = fetch(&client, "preview-shop-pr-42").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed));
}

#[tokio::test]
async fn application_set_creation_is_rate_limited() {
    let (client, mut config) = (client().await, config());
    config.argocd.application_sets_per_minute = 1;
    let now = Utc::now();
    let first = create(&client, &config, "opened.json", now).await;
    let second = create(&client, &config, "fork-labeled.json", now).await;
    let ctx = context(&client, config);
    assert!(matches!(reconcile_at(&first, &ctx, now).await.unwrap(), Outcome::Applied { .. }));
    let outcome = reconcile_at(&second, &ctx, now).await.unwrap();
    assert!(matches!(outcome, Outcome::Throttled { retry_in } if retry_in > Duration::from_secs(50)), "{outcome:?}");
    let app_sets = Api::<ApplicationSet>::namespaced(client.clone(), "argocd");
    assert!(app_sets.get_opt("preview-shop-pr-77").await.unwrap().is_none());
    // The rest of the preview is there already, and the status says why it waits.
    Api::<Namespace>::all(client.clone()).get("preview-shop-pr-77").await.unwrap();
    assert_eq!(fetch(&client, "preview-shop-pr-77").await.status.unwrap().phase, Some(Phase::Pending));
    // Updating an existing ApplicationSet is not limited.
    let first = fetch(&client, "preview-shop-pr-42").await;
    assert!(matches!(reconcile_at(&first, &ctx, now).await.unwrap(), Outcome::Applied { .. }));
}
