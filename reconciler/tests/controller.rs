//! The controller against the in-memory Kubernetes API (kube-memory: real `kube::Api`
//! requests and watches, server-side apply, status subresource, finalizers, garbage
//! collection). Most tests drive `reconcile_at` directly (reading the live state from the API);
//! the watch tests run the controller as `previewd run` wires it, on its caches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use kube_memory::MemoryApi;
use previewd::argo::ApplicationSet;
use previewd::config::Config;
use previewd::controller::{Context, Outcome, reconcile, reconcile_at};
use previewd::crd::{FINALIZER, Phase, PreviewEnvironment};
use previewd::github::notify::Notifier;
use previewd::policy::{Decision, decide_offline};
use support::github::FakeGitHub;
use support::{config, event, eventually};

const NAME: &str = "preview-shop-pr-42";

/// Creates the PreviewEnvironment the consumer would for `event`, with activity at `active`,
/// and the controller's finalizer already added.
async fn create(client: &Client, config: &Config, event_name: &str, active: DateTime<Utc>) -> PreviewEnvironment {
    let mut event = event(event_name);
    event.pull_request.updated_at = active;
    let Decision::Upsert(spec) = decide_offline(&event, config) else { panic!("expected an upsert") };
    let mut pe = previewd::render::as_applied(config, *spec).unwrap();
    pe.status = None;
    pe.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    let api: Api<PreviewEnvironment> = Api::all(client.clone());
    api.create(&PostParams::default(), &pe).await.unwrap()
}

async fn fetch(client: &Client, name: &str) -> PreviewEnvironment {
    Api::<PreviewEnvironment>::all(client.clone()).get(name).await.unwrap()
}

fn context(client: &Client, config: Config) -> Context {
    Context::new(client.clone(), Arc::new(config))
}

/// A fresh in-memory API and a client of it.
fn cluster() -> (MemoryApi, Client) {
    let api = support::memory_api();
    let client = support::client_of(&api);
    (api, client)
}

#[tokio::test]
async fn the_first_pass_adds_the_finalizer_then_the_preview_is_built() {
    let (_, client) = cluster();
    let config = config();
    let mut event = event("opened.json");
    event.pull_request.updated_at = Utc::now();
    let Decision::Upsert(spec) = decide_offline(&event, &config) else { panic!() };
    let mut pe = previewd::render::as_applied(&config, *spec).unwrap();
    pe.status = None;
    let pe = Api::<PreviewEnvironment>::all(client.clone()).create(&PostParams::default(), &pe).await.unwrap();
    let ctx = context(&client, config);
    assert_eq!(reconcile_at(&pe, &ctx, Utc::now()).await.unwrap(), Outcome::FinalizerAdded);
    let pe = fetch(&client, NAME).await;
    assert!(pe.finalizers().iter().any(|f| f == FINALIZER));
    assert!(Api::<Namespace>::all(client.clone()).get_opt(NAME).await.unwrap().is_none(), "nothing built yet");
    assert!(matches!(reconcile_at(&pe, &ctx, Utc::now()).await.unwrap(), Outcome::Applied { .. }));
    assert!(Api::<Namespace>::all(client.clone()).get_opt(NAME).await.unwrap().is_some());
}

#[tokio::test]
async fn creates_every_object_and_reports_deploying() {
    let (_, client) = cluster();
    let config = config();
    let now = Utc::now();
    let pe = create(&client, &config, "opened.json", now).await;
    let ctx = context(&client, config);

    let outcome = reconcile_at(&pe, &ctx, now).await.unwrap();
    assert_eq!(outcome, Outcome::Applied { requeue: Duration::from_secs(300) }, "the sweep is only a safety net");

    let namespace = Api::<Namespace>::all(client.clone()).get(NAME).await.unwrap();
    assert_eq!(namespace.labels()["pod-security.kubernetes.io/enforce"], "restricted");
    let owner = &namespace.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("PreviewEnvironment", pe.uid().unwrap().as_str()));
    Api::<ResourceQuota>::namespaced(client.clone(), NAME).get("preview-quota").await.unwrap();
    Api::<LimitRange>::namespaced(client.clone(), NAME).get("preview-defaults").await.unwrap();
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), NAME).list(&Default::default()).await.unwrap();
    assert_eq!(policies.items.len(), 2);
    let ingress = Api::<Ingress>::namespaced(client.clone(), NAME).get("preview").await.unwrap();
    assert_eq!(ingress.spec.unwrap().rules.unwrap()[0].host.as_deref(), Some("shop-pr-42.preview.example.com"));
    let app_set = Api::<ApplicationSet>::namespaced(client.clone(), "argocd").get(NAME).await.unwrap();
    assert_eq!(app_set.spec.fields["template"]["spec"]["source"]["targetRevision"], pe.spec.head_sha.as_str());

    let status = fetch(&client, NAME).await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Deploying));
    assert_eq!(status.url.as_deref(), Some("https://shop-pr-42.preview.example.com"));
    assert_eq!(status.services.len(), 3);
    assert!(status.services.iter().all(|s| !s.ready));
    assert_eq!(status.expires_at, Some(now + chrono::Duration::hours(4)));
}

#[tokio::test]
async fn reconciling_again_writes_nothing() {
    let (api, client) = cluster();
    let config = config();
    let now = Utc::now();
    create(&client, &config, "opened.json", now).await;
    let ctx = context(&client, config);
    reconcile_at(&fetch(&client, NAME).await, &ctx, now).await.unwrap();
    let before = fetch(&client, NAME).await;
    api.clear_requests();
    reconcile_at(&before, &ctx, now + chrono::Duration::seconds(30)).await.unwrap();
    let writes: Vec<String> =
        api.requests().iter().filter(|r| r.is_write()).map(|r| format!("{} {}", r.verb, r.path)).collect();
    assert!(writes.is_empty(), "a second pass wrote {writes:#?}");
    assert_eq!(before.resource_version(), fetch(&client, NAME).await.resource_version());
}

#[tokio::test]
async fn healthy_applications_at_the_head_commit_make_the_preview_ready() {
    let (_, client) = cluster();
    let config = config();
    let now = Utc::now();
    let pe = create(&client, &config, "opened.json", now).await;
    let ctx = context(&client, config);
    reconcile_at(&pe, &ctx, now).await.unwrap();
    // What Argo CD's ApplicationSet controller and application controller would produce.
    for service in ["web", "api", "worker"] {
        support::healthy_application(&client, NAME, service, &pe.spec.head_sha).await;
    }
    let outcome = reconcile_at(&fetch(&client, NAME).await, &ctx, now).await.unwrap();
    assert_eq!(outcome, Outcome::Applied { requeue: Duration::from_secs(300) });
    let status = fetch(&client, NAME).await.status.unwrap();
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
async fn a_new_commit_is_ready_only_when_argo_cd_synced_it() {
    let (_, client) = cluster();
    let config = config();
    let github = FakeGitHub::start().await;
    let notifier = Arc::new(Notifier::new(Arc::new(github.client()), config.github.clone()));
    let now = Utc::now();
    let pe = create(&client, &config, "opened.json", now).await;
    let ctx = context(&client, config).with_github(Arc::clone(&notifier));
    let (old, new) = (pe.spec.head_sha.clone(), "1111111111111111111111111111111111111111".to_owned());
    reconcile_at(&pe, &ctx, now).await.unwrap();
    for service in ["web", "api", "worker"] {
        support::healthy_application(&client, NAME, service, &old).await;
    }
    reconcile_at(&fetch(&client, NAME).await, &ctx, now).await.unwrap();
    notifier.flush(false).await;
    assert_eq!(fetch(&client, NAME).await.status.unwrap().phase, Some(Phase::Ready));

    // A push: the consumer moves the spec to the new commit. Argo CD still runs the old one.
    let mut pushed = fetch(&client, NAME).await;
    pushed.spec.head_sha = new.clone();
    pushed.metadata.managed_fields = None;
    let params = kube::api::PatchParams::apply("previewd-consumer").force();
    let pushed = Api::<PreviewEnvironment>::all(client.clone())
        .patch(NAME, &params, &kube::api::Patch::Apply(&pushed))
        .await
        .unwrap();
    reconcile_at(&pushed, &ctx, now).await.unwrap();
    notifier.flush(false).await;
    let status = fetch(&client, NAME).await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Deploying), "the old commit running is not the new one ready");
    assert!(status.services.iter().all(|s| !s.ready && s.revision.as_deref() == Some(old.as_str())));
    {
        let gh = github.lock();
        let new_deployment = gh.deployments.iter().find(|d| d.sha == new).expect("the new commit's deployment");
        let states: Vec<&str> = new_deployment.statuses.iter().filter_map(|s| s["state"].as_str()).collect();
        assert_eq!(states, ["in_progress"], "no success for a commit that does not run yet");
    }

    // Argo CD syncs the new commit: now it is ready, and GitHub hears success.
    for service in ["web", "api", "worker"] {
        support::healthy_application(&client, NAME, service, &new).await;
    }
    reconcile_at(&fetch(&client, NAME).await, &ctx, now).await.unwrap();
    notifier.flush(false).await;
    assert_eq!(fetch(&client, NAME).await.status.unwrap().phase, Some(Phase::Ready));
    let gh = github.lock();
    let new_deployment = gh.deployments.iter().find(|d| d.sha == new).unwrap();
    assert_eq!(new_deployment.statuses.last().unwrap()["state"], "success");
}

#[tokio::test]
async fn expired_previews_are_deleted_with_everything_they_own() {
    let (_, client) = cluster();
    let config = config();
    let now = Utc::now();
    let pe = create(&client, &config, "opened.json", now).await;
    let ctx = context(&client, config);
    reconcile_at(&pe, &ctx, now).await.unwrap();

    // Requeued exactly at expiry: 4 h after the last activity.
    let pe = fetch(&client, NAME).await;
    let later = now + chrono::Duration::hours(4) - chrono::Duration::minutes(3);
    let Outcome::Applied { requeue } = reconcile_at(&pe, &ctx, later).await.unwrap() else { panic!() };
    assert!(requeue <= Duration::from_secs(181), "{requeue:?}");

    // Each top-level object is owned by the PreviewEnvironment, so garbage collection takes it.
    let uid = pe.uid().unwrap();
    let namespace = Api::<Namespace>::all(client.clone()).get(NAME).await.unwrap();
    assert_eq!(namespace.owner_references()[0].uid, uid);
    let app_set = Api::<ApplicationSet>::namespaced(client.clone(), "argocd").get(NAME).await.unwrap();
    assert_eq!(app_set.owner_references()[0].uid, uid);

    let outcome = reconcile_at(&pe, &ctx, now + chrono::Duration::hours(4)).await.unwrap();
    assert_eq!(outcome, Outcome::Expired);
    // Deleted: the finalizer's cleanup runs, then it is gone, and everything it owned with it.
    let deleting = fetch(&client, NAME).await;
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(reconcile_at(&deleting, &ctx, now + chrono::Duration::hours(4)).await.unwrap(), Outcome::Finalized);
    assert!(Api::<PreviewEnvironment>::all(client.clone()).get_opt(NAME).await.unwrap().is_none());
    assert!(Api::<Namespace>::all(client.clone()).get_opt(NAME).await.unwrap().is_none());
    assert!(Api::<ApplicationSet>::namespaced(client.clone(), "argocd").get_opt(NAME).await.unwrap().is_none());
}

#[tokio::test]
async fn an_invalid_preview_still_expires() {
    let (_, client) = cluster();
    let config = config();
    let now = Utc::now();
    let mut pe = create(&client, &config, "opened.json", now).await;
    let ctx = context(&client, config);
    reconcile_at(&pe, &ctx, now).await.unwrap();
    // A service removed from the configuration.
    pe.spec.services.push("billing".into());
    let outcome = reconcile_at(&pe, &ctx, now).await.unwrap();
    let Outcome::Invalid { reason, requeue } = &outcome else { panic!("{outcome:?}") };
    assert!(reason.contains("billing"), "{reason}");
    assert!(*requeue <= Duration::from_secs(4 * 3600 + 1), "it looks again at its expiry: {requeue:?}");
    let status = fetch(&client, NAME).await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed));
    assert!(status.conditions.iter().any(|c| c.reason == "InvalidSpec" && c.message.contains("billing")));
    // At its expiry it is deleted, and cleaned up like any other.
    assert_eq!(reconcile_at(&pe, &ctx, now + chrono::Duration::hours(4)).await.unwrap(), Outcome::Expired);
    let deleting = fetch(&client, NAME).await;
    assert_eq!(reconcile_at(&deleting, &ctx, now + chrono::Duration::hours(4)).await.unwrap(), Outcome::Finalized);
    assert!(Api::<PreviewEnvironment>::all(client.clone()).get_opt(NAME).await.unwrap().is_none());
    assert!(Api::<Namespace>::all(client.clone()).get_opt(NAME).await.unwrap().is_none());
}

#[tokio::test]
async fn a_preview_of_an_unconfigured_repository_is_cleaned_up() {
    let (_, client) = cluster();
    let now = Utc::now();
    create(&client, &config(), "opened.json", now).await;
    // The repository is taken out of the configuration while its preview lives.
    let mut without = config();
    without.repositories.retain(|r| r.name != "acme/shop");
    let ctx = context(&client, without);
    let outcome = reconcile_at(&fetch(&client, NAME).await, &ctx, now).await.unwrap();
    assert!(matches!(&outcome, Outcome::Invalid { reason, .. } if reason.contains("acme/shop")), "{outcome:?}");
    // The periodic resync reaches it at its expiry: deleted, then cleaned up.
    let at_expiry = now + chrono::Duration::hours(4);
    assert_eq!(reconcile_at(&fetch(&client, NAME).await, &ctx, at_expiry).await.unwrap(), Outcome::Expired);
    assert_eq!(reconcile_at(&fetch(&client, NAME).await, &ctx, at_expiry).await.unwrap(), Outcome::Finalized);
    assert!(Api::<PreviewEnvironment>::all(client.clone()).get_opt(NAME).await.unwrap().is_none());
}

#[tokio::test]
async fn application_set_creation_is_rate_limited() {
    let (_, client) = cluster();
    let mut config = config();
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
    let first = fetch(&client, NAME).await;
    assert!(matches!(reconcile_at(&first, &ctx, now).await.unwrap(), Outcome::Applied { .. }));
}

/// The controller as `previewd run` wires it (caches, watches, resync), on `client`.
fn run_controller(client: &Client, config: Config) -> (Arc<Context>, tokio::task::JoinHandle<()>) {
    use futures::StreamExt;
    let (caches, controller) = previewd::controller::watch::controller(client, &config);
    let ctx = Arc::new(context(client, config).with_caches(caches));
    let running = tokio::spawn(
        controller
            .run(reconcile, previewd::controller::error_policy, Arc::clone(&ctx))
            .for_each(|_| futures::future::ready(())),
    );
    (ctx, running)
}

#[tokio::test]
async fn an_application_change_reconciles_its_preview() {
    let (_, client) = cluster();
    let mut config = config();
    // An hour between resyncs: anything sooner is the watch.
    config.ttl.sweep_interval = Duration::from_secs(3600);
    let pe = create(&client, &config, "opened.json", Utc::now()).await;
    let (_ctx, running) = run_controller(&client, config);
    let phase = async |client: &Client| fetch(client, NAME).await.status.and_then(|s| s.phase);
    assert!(eventually(Duration::from_secs(10), async || phase(&client).await == Some(Phase::Deploying)).await);
    // Argo CD reports the services healthy at the head commit: the watch brings the preview's
    // reconcile, well within a second.
    let started = std::time::Instant::now();
    for service in ["web", "api", "worker"] {
        support::healthy_application(&client, NAME, service, &pe.spec.head_sha).await;
    }
    assert!(eventually(Duration::from_secs(5), async || phase(&client).await == Some(Phase::Ready)).await);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "ready after {took:?}");
    running.abort();
}

#[tokio::test]
async fn an_unchanged_preview_is_reconciled_without_writes() {
    let (api, client) = cluster();
    let config = config();
    let pe = create(&client, &config, "opened.json", Utc::now()).await;
    for service in ["web", "api", "worker"] {
        support::healthy_application(&client, NAME, service, &pe.spec.head_sha).await;
    }
    let (ctx, running) = run_controller(&client, config);
    let ready = async || fetch(&client, NAME).await.status.and_then(|s| s.phase) == Some(Phase::Ready);
    assert!(eventually(Duration::from_secs(10), ready).await);
    // The controller settles: its own writes come back through the watches and change nothing.
    let idle = async || {
        api.clear_requests();
        tokio::time::sleep(Duration::from_millis(300)).await;
        api.requests().iter().all(|r| r.verb == "watch")
    };
    assert!(eventually(Duration::from_secs(10), idle).await, "the controller kept writing");
    // One more reconcile of the cached preview: no request at all, read or write.
    let pe = ctx.cached(NAME).unwrap();
    let outcome = reconcile_at(&pe, &ctx, Utc::now()).await.unwrap();
    assert!(matches!(outcome, Outcome::Applied { .. }), "{outcome:?}");
    let requests: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| r.verb != "watch")
        .map(|r| format!("{} {} {}", r.verb, r.path, r.query))
        .collect();
    assert!(requests.is_empty(), "an unchanged preview cost {requests:#?}");
    running.abort();
}

#[tokio::test]
async fn a_reconcile_from_a_lagging_cache_does_not_repeat_the_status_write() {
    let (api, client) = cluster();
    let config = config();
    let now = Utc::now();
    create(&client, &config, "opened.json", now).await;
    let ctx = context(&client, config);
    // As the cache holds it: no status yet.
    let lagging = fetch(&client, NAME).await;
    reconcile_at(&lagging, &ctx, now).await.unwrap();
    assert_eq!(fetch(&client, NAME).await.status.and_then(|s| s.phase), Some(Phase::Deploying));
    // Another watch event brings the same stale copy back before the status update arrives.
    api.clear_requests();
    reconcile_at(&lagging, &ctx, now).await.unwrap();
    let writes: Vec<String> =
        api.requests().iter().filter(|r| r.is_write()).map(|r| format!("{} {}", r.verb, r.path)).collect();
    assert!(writes.is_empty(), "the status (and its Events) were written again: {writes:#?}");
}
