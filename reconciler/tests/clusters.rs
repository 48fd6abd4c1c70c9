//! Several preview clusters: Previewd's own (the control cluster, in memory) and two preview
//! clusters, each an in-memory API served over HTTP and reached the way a deployment reaches
//! them, through the Secret that registers it. `east` (an Argo CD cluster Secret) is down at
//! first; `west` (a kubeconfig Secret) works and has room for one preview.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, Secret};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use previewd::argo::ApplicationSet;
use previewd::config::Config;
use previewd::controller::{Context, Outcome, reconcile_at};
use previewd::crd::{FINALIZER, Phase, PreviewEnvironment};
use previewd::policy::{Decision, decide_offline};
use serde_json::json;

fn config() -> Config {
    Config::from_yaml(&serde_json::to_string(&config_value()).unwrap()).unwrap()
}

fn config_value() -> serde_json::Value {
    let mut value = support::chart::example_config();
    value["clusters"] = json!([
        {"name": "east", "argocdSecret": "cluster-east"},
        // Room for one preview: the example's quota is 4 CPUs and 8Gi.
        {"name": "west", "kubeconfigSecret": {"name": "west-kubeconfig"}, "previewZone": "west.preview.example.com",
         "capacity": {"cpu": "6", "memory": "12Gi"}},
    ]);
    value["repositories"][0]["clusters"] = json!(["east", "west", "in-cluster"]);
    value["repositories"][1]["clusters"] = json!(["east"]);
    value
}

/// The rules of the chart's ClusterRole for a preview cluster (`role=previewCluster`):
/// (group, resource, verb).
fn preview_cluster_rules() -> Vec<support::Access> {
    let objects = support::chart::template_config(&config_value(), &["role=previewCluster"]);
    let role = objects.iter().find(|o| o["kind"] == "ClusterRole").expect("a ClusterRole");
    let mut rules = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    let text = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
                    rules.push((text(group), text(resource), text(verb)));
                }
            }
        }
    }
    rules
}

/// The PreviewEnvironment the consumer would create for PR `number` of `repository`, with the
/// controller's finalizer already added.
async fn create(control: &Client, config: &Config, repository: &str, number: u64) -> PreviewEnvironment {
    let mut event = support::event("opened.json");
    event.repository.full_name = repository.to_owned();
    event.pull_request.number = number;
    event.pull_request.updated_at = Utc::now();
    let Decision::Upsert(spec) = decide_offline(&event, config) else { panic!("expected an upsert") };
    let mut pe = previewd::render::as_applied(config, *spec).unwrap();
    pe.status = None;
    pe.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    Api::<PreviewEnvironment>::all(control.clone()).create(&PostParams::default(), &pe).await.unwrap()
}

async fn fetch(control: &Client, name: &str) -> PreviewEnvironment {
    Api::<PreviewEnvironment>::all(control.clone()).get(name).await.unwrap()
}

async fn secret(control: &Client, namespace: &str, name: &str, data: &[(&str, String)]) {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.to_owned());
    secret.data = Some(data.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect());
    Api::<Secret>::namespaced(control.clone(), namespace).create(&PostParams::default(), &secret).await.unwrap();
}

async fn namespace(client: &Client, name: &str) -> Option<Namespace> {
    Api::<Namespace>::all(client.clone()).get_opt(name).await.unwrap()
}

/// Reconciles `name` (as the API holds it now) until `done` says so, for at most `within`.
async fn reconcile_until(
    control: &Client,
    ctx: &Context,
    name: &str,
    within: Duration,
    done: impl Fn(&Result<Outcome, previewd::controller::Error>) -> bool,
) -> Result<Outcome, previewd::controller::Error> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let result = reconcile_at(&fetch(control, name).await, ctx, Utc::now()).await;
        if done(&result) || tokio::time::Instant::now() > deadline {
            return result;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_preview_lands_in_its_cluster_and_is_cleaned_up_there() {
    let control_api = support::memory_api();
    let control = support::client_of(&control_api);
    let west_api = support::memory_api();
    let west = support::client_of(&west_api);
    let west_served = support::serve(west.clone(), tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    // east's port is taken and let go: nothing listens there until east comes up.
    let east_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let east_server = format!("http://127.0.0.1:{east_port}");
    secret(
        &control,
        "argocd",
        "cluster-east",
        &[
            ("name", "east".into()),
            ("server", east_server.clone()),
            ("config", r#"{"bearerToken":"east-token","tlsClientConfig":{"insecure":false}}"#.into()),
        ],
    )
    .await;
    secret(&control, "previewd", "west-kubeconfig", &[("kubeconfig", support::kubeconfig_of(west_served.addr))]).await;
    let config = config();
    let ctx = Context::new(control.clone(), Arc::new(config.clone())).with_home_namespace("previewd");
    let ok = |r: &Result<Outcome, _>| matches!(r, Ok(Outcome::Applied { .. }));

    // 1. east is down, west has room: the shop's PR 42 lands in west.
    let first = create(&control, &config, "acme/shop", 42).await;
    let name = first.name_any();
    let outcome = reconcile_at(&first, &ctx, Utc::now()).await;
    assert!(ok(&outcome), "{outcome:?}");
    let pe = fetch(&control, &name).await;
    let status = pe.status.clone().unwrap();
    assert_eq!(status.cluster.as_deref(), Some("west"));
    assert_eq!(status.url.as_deref(), Some("https://shop-pr-42.west.preview.example.com"), "west's own zone");
    let there = namespace(&west, &name).await.expect("the namespace is in west");
    assert!(there.owner_references().is_empty(), "no owner reference across clusters");
    assert_eq!(there.annotations()["preview.previewd.io/owner-uid"], pe.uid().unwrap());
    Api::<ResourceQuota>::namespaced(west.clone(), &name).get("preview-quota").await.unwrap();
    let policies = Api::<NetworkPolicy>::namespaced(west.clone(), &name).list(&Default::default()).await.unwrap();
    assert_eq!(policies.items.len(), 2);
    let ingress = Api::<Ingress>::namespaced(west.clone(), &name).get("preview").await.unwrap();
    assert_eq!(ingress.spec.unwrap().rules.unwrap()[0].host.as_deref(), Some("shop-pr-42.west.preview.example.com"));
    assert!(namespace(&control, &name).await.is_none(), "nothing namespaced in the control cluster");
    let app_set = Api::<ApplicationSet>::namespaced(control.clone(), "argocd").get(&name).await.unwrap();
    let destination = &app_set.spec.fields["template"]["spec"]["destination"];
    assert_eq!(destination["server"], format!("http://{}", west_served.addr));
    assert_eq!(app_set.owner_references()[0].uid, pe.uid().unwrap(), "the ApplicationSet is in the control cluster");

    // 2. west is full now and east still down: PR 43 falls back to Previewd's own cluster.
    let second = create(&control, &config, "acme/shop", 43).await;
    let outcome = reconcile_at(&second, &ctx, Utc::now()).await;
    assert!(ok(&outcome), "{outcome:?}");
    let second = fetch(&control, &second.name_any()).await;
    assert_eq!(second.status.as_ref().unwrap().cluster.as_deref(), Some("in-cluster"));
    let local = namespace(&control, &second.name_any()).await.expect("in the control cluster");
    assert_eq!(local.owner_references()[0].uid, second.uid().unwrap());
    assert!(namespace(&west, &second.name_any()).await.is_none());

    // 3. The platform repository uses east only: its preview waits, and only it.
    let pinned = create(&control, &config, "acme/very-long-repository-name-for-the-platform-team-services", 7).await;
    let err = reconcile_at(&pinned, &ctx, Utc::now()).await.unwrap_err();
    assert_eq!(err.metric_label(), "cluster");
    assert!(err.to_string().contains("east is unreachable"), "{err}");
    assert!(fetch(&control, &pinned.name_any()).await.status.is_none(), "not placed");
    support::healthy_application(&control, &name, "web", &pe.spec.head_sha).await;
    support::healthy_application(&control, &name, "api", &pe.spec.head_sha).await;
    support::healthy_application(&control, &name, "worker", &pe.spec.head_sha).await;
    let outcome = reconcile_at(&fetch(&control, &name).await, &ctx, Utc::now()).await;
    assert!(ok(&outcome), "{outcome:?}");
    assert_eq!(fetch(&control, &name).await.status.unwrap().phase, Some(Phase::Ready), "west's preview goes on");
    // One client per cluster: west's Secret was read once for all these passes.
    let reads = |api: &kube_memory::MemoryApi| {
        api.requests().iter().filter(|r| r.verb == "get" && r.path.ends_with("/secrets/west-kubeconfig")).count()
    };
    assert_eq!(reads(&control_api), 1);

    // 4. east comes up: the pinned preview lands there once its health check passes again.
    let east_api = support::memory_api();
    let east = support::client_of(&east_api);
    support::serve(east.clone(), tokio::net::TcpListener::bind(("127.0.0.1", east_port)).await.unwrap());
    let outcome = reconcile_until(&control, &ctx, &pinned.name_any(), Duration::from_secs(20), ok).await;
    assert!(ok(&outcome), "{outcome:?}");
    assert_eq!(fetch(&control, &pinned.name_any()).await.status.unwrap().cluster.as_deref(), Some("east"));
    assert!(namespace(&east, &pinned.name_any()).await.is_some());

    // 5. PR 42 is deleted while west is down: it waits for west, then its namespace goes there.
    Api::<PreviewEnvironment>::all(control.clone()).delete(&name, &DeleteParams::default()).await.unwrap();
    west_served.down.store(true, Ordering::SeqCst);
    let deleting = fetch(&control, &name).await;
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert!(reconcile_at(&deleting, &ctx, Utc::now()).await.is_err(), "west is down: the finalizer stays");
    assert!(fetch(&control, &name).await.finalizers().iter().any(|f| f == FINALIZER));
    west_served.down.store(false, Ordering::SeqCst);
    assert!(namespace(&west, &name).await.is_some());
    let finalized = |r: &Result<Outcome, _>| matches!(r, Ok(Outcome::Finalized));
    let outcome = reconcile_until(&control, &ctx, &name, Duration::from_secs(20), finalized).await;
    assert!(finalized(&outcome), "{outcome:?}");
    assert!(Api::<PreviewEnvironment>::all(control.clone()).get_opt(&name).await.unwrap().is_none());
    let gone = namespace(&west, &name).await;
    assert!(gone.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()), "deleted in west");
    assert!(namespace(&east, &pinned.name_any()).await.is_some(), "east's preview is untouched");

    // 6. Whatever Previewd did in west, the chart's preview-cluster ClusterRole allows.
    let rules = preview_cluster_rules();
    let requests = west_served.requests.lock().unwrap().clone();
    let mut checked = 0;
    for (method, path, query) in &requests {
        // `/version` (the health check) is open to every authenticated user.
        let Some(access) = support::access_of(method, path, query) else { continue };
        assert!(rules.contains(&access), "{method} {path}: {access:?} is not in {rules:#?}");
        checked += 1;
    }
    assert!(checked > 10, "{requests:?}");
}

#[tokio::test]
async fn a_preview_in_another_cluster_lives_under_the_running_controller() {
    use futures::StreamExt;
    let control = support::client_of(&support::memory_api());
    let west = support::client_of(&support::memory_api());
    let served = support::serve(west.clone(), tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    secret(&control, "previewd", "west-kubeconfig", &[("kubeconfig", support::kubeconfig_of(served.addr))]).await;
    let mut value = config_value();
    value["repositories"][0]["clusters"] = json!(["west"]);
    let config = Config::from_yaml(&serde_json::to_string(&value).unwrap()).unwrap();
    // As `previewd run` wires it: caches and watches on the control cluster.
    let (caches, controller) = previewd::controller::watch::controller(&control, &config);
    let ctx = Arc::new(
        Context::new(control.clone(), Arc::new(config.clone())).with_home_namespace("previewd").with_caches(caches),
    );
    let running = tokio::spawn(
        controller
            .run(previewd::controller::reconcile, previewd::controller::error_policy, ctx)
            .for_each(|_| futures::future::ready(())),
    );

    let pe = create(&control, &config, "acme/shop", 42).await;
    let name = pe.name_any();
    assert!(support::eventually(Duration::from_secs(10), async || namespace(&west, &name).await.is_some()).await);
    let placed = async || fetch(&control, &name).await.status.and_then(|s| s.cluster).as_deref() == Some("west");
    assert!(support::eventually(Duration::from_secs(10), placed).await);
    assert!(namespace(&control, &name).await.is_none());
    // Argo CD reports the services healthy, in the control cluster: its watch makes it Ready.
    for service in ["web", "api", "worker"] {
        support::healthy_application(&control, &name, service, &pe.spec.head_sha).await;
    }
    let ready = async || fetch(&control, &name).await.status.and_then(|s| s.phase) == Some(Phase::Ready);
    assert!(support::eventually(Duration::from_secs(10), ready).await);

    Api::<PreviewEnvironment>::all(control.clone()).delete(&name, &DeleteParams::default()).await.unwrap();
    let gone = async || Api::<PreviewEnvironment>::all(control.clone()).get_opt(&name).await.unwrap().is_none();
    assert!(support::eventually(Duration::from_secs(10), gone).await, "finalized");
    let deleted = namespace(&west, &name).await;
    assert!(deleted.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()), "its namespace went in west");
    running.abort();
}
