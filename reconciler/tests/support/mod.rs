//! Shared by the reconciler's tests: the example configuration and queue messages of
//! `docs/examples/`, the in-memory Kubernetes API (`kube-memory`) serving Previewd's and Argo
//! CD's resources, a recorder of the requests the code under test sends, and a preview's whole
//! life to record.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod chart;
pub mod drill;
pub mod github;
pub mod openai;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use kube::Client;
use kube::client::Body;
use serde_json::Value;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `docs/examples/config.yaml`.
pub fn config() -> previewd::config::Config {
    previewd::config::Config::load(&root().join("docs/examples/config.yaml")).unwrap()
}

/// A queue message from `docs/examples/events/`.
pub fn event(name: &str) -> previewd_events::PreviewEvent {
    let text = std::fs::read_to_string(root().join("docs/examples/events").join(name)).unwrap();
    previewd_events::PreviewEvent::from_json(&text).unwrap()
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An API served over HTTP on loopback.
pub struct Served {
    pub addr: std::net::SocketAddr,
    /// While set, every request is answered 503, as by an API server that is down.
    pub down: Arc<std::sync::atomic::AtomicBool>,
    /// (method, path, query) of every request answered while up.
    pub requests: Arc<Mutex<Vec<(String, String, String)>>>,
}

/// Serves `client` (e.g. the in-memory API) over plain HTTP on `listener`.
pub fn serve(client: Client, listener: tokio::net::TcpListener) -> Served {
    use std::sync::atomic::{AtomicBool, Ordering};
    let addr = listener.local_addr().unwrap();
    let down = Arc::new(AtomicBool::new(false));
    let requests: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let (is_down, log) = (down.clone(), requests.clone());
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (client, is_down, log) = (client.clone(), is_down.clone(), log.clone());
        async move {
            if is_down.load(Ordering::SeqCst) {
                return axum::response::Response::builder().status(503).body(axum::body::Body::from("down")).unwrap();
            }
            let (parts, body) = request.into_parts();
            let uri = &parts.uri;
            log.lock().unwrap().push((
                parts.method.to_string(),
                uri.path().to_owned(),
                uri.query().unwrap_or_default().to_owned(),
            ));
            let bytes = body.collect().await.unwrap().to_bytes();
            let request = http::Request::from_parts(parts, Body::from(bytes.to_vec()));
            match client.send(request).await {
                // Streamed, not collected: a watch answers with a body that never ends.
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    axum::response::Response::from_parts(parts, axum::body::Body::new(body))
                }
                Err(err) => axum::response::Response::builder()
                    .status(502)
                    .body(axum::body::Body::from(err.to_string()))
                    .unwrap(),
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Served { addr, down, requests }
}

/// A kubeconfig of the API at `addr` (plain HTTP, a token).
pub fn kubeconfig_of(addr: std::net::SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\n\
         users:\n- name: fake\n  user:\n    token: fake\n"
    )
}

/// Serves `client` (e.g. the in-memory API) over plain HTTP on loopback, so a `previewd`
/// process can reach it through a kubeconfig. Returns the kubeconfig's path.
pub async fn serve_over_http(client: Client, dir: &std::path::Path) -> PathBuf {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = serve(client, listener).addr;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_of(addr)).unwrap();
    kubeconfig
}

/// An API call as RBAC sees it: (API group, resource[/subresource], verb).
pub type Access = (String, String, String);

/// Which RBAC access a request needs.
pub fn access_of(method: &str, path: &str, query: &str) -> Option<Access> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
        _ => return None,
    };
    // Namespaced paths start namespaces/{ns}/{resource}; a bare namespaces/{name} is the
    // Namespace object itself.
    let rest: &[&str] = match rest {
        ["namespaces", _ns, resource, tail @ ..] => &[&[*resource], tail].concat(),
        other => other,
    };
    let (resource, name, sub) = (rest.first()?, rest.get(1), rest.get(2));
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => (*resource).to_owned(),
    };
    let verb = match (method, name) {
        ("GET", Some(_)) => "get",
        ("GET", None) if query.contains("watch=true") || query.contains("watch=1") => "watch",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", Some(_)) => "delete",
        ("DELETE", None) => "deletecollection",
        _ => return None,
    };
    Some((group, resource, verb.to_owned()))
}

/// One request the code under test sent, with what an admission webhook or policy would see.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Server-side apply (which creates the object when it does not exist yet).
    pub apply: bool,
    /// The request body (JSON), when there is one.
    pub body: Option<Value>,
    /// For a write to an existing object: the object before the request.
    pub before: Option<Value>,
    /// For a write: the object the API server answered with.
    pub answer: Option<Value>,
    /// For a write in a namespace: that Namespace, as it was before the request.
    pub namespace: Option<Value>,
}

impl Call {
    /// The RBAC accesses the request needs (server-side apply is also authorized as `create`).
    pub fn accesses(&self) -> Vec<Access> {
        let Some(access) = access_of(&self.method, &self.path, &self.query) else { return Vec::new() };
        let mut all = vec![access.clone()];
        if self.apply {
            all.push((access.0, access.1, "create".to_owned()));
        }
        all
    }
}

/// Every RBAC access of `calls`.
pub fn accesses(calls: &[Call]) -> std::collections::BTreeSet<Access> {
    calls.iter().flat_map(Call::accesses).collect()
}

async fn get_json(client: &Client, path: &str) -> Option<Value> {
    let request = http::Request::get(path).body(Body::empty()).ok()?;
    let response = client.send(request).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    serde_json::from_slice(&response.into_body().collect().await.ok()?.to_bytes()).ok()
}

/// The namespace a request path is in, if any (`/api/v1/namespaces/{ns}/...`).
pub fn namespace_of(path: &str) -> Option<&str> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", _, "namespaces", ns, _, ..] | ["apis", _, _, "namespaces", ns, _, ..] => Some(ns),
        _ => None,
    }
}

/// `client`, recording every request it sends (see [`Call`]).
pub fn recording(client: Client) -> (Client, Arc<Mutex<Vec<Call>>>) {
    let seen: Arc<Mutex<Vec<Call>>> = Arc::default();
    let record = Arc::clone(&seen);
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let inner = client.clone();
        let record = Arc::clone(&record);
        async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await?.to_bytes();
            let (method, path) = (parts.method.as_str().to_owned(), parts.uri.path().to_owned());
            let write = matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE");
            let apply = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/apply-patch"));
            let before = if write && method != "POST" { get_json(&inner, &path).await } else { None };
            let namespace = match namespace_of(&path) {
                Some(ns) if write => get_json(&inner, &format!("/api/v1/namespaces/{ns}")).await,
                _ => None,
            };
            let mut call = Call {
                method,
                path,
                query: parts.uri.query().unwrap_or("").to_owned(),
                apply,
                body: serde_json::from_slice(&bytes).ok(),
                before,
                answer: None,
                namespace,
            };
            let response = inner.send(http::Request::from_parts(parts, Body::from(bytes.to_vec()))).await?;
            let (parts, body) = response.into_parts();
            if !write {
                // Reads pass through as they come: a watch's body never ends.
                record.lock().unwrap().push(call);
                return Ok::<_, BoxError>(http::Response::from_parts(parts, body.boxed_unsync()));
            }
            let bytes = body.collect().await?.to_bytes();
            if parts.status.is_success() {
                call.answer = serde_json::from_slice(&bytes).ok();
            }
            record.lock().unwrap().push(call);
            Ok(http::Response::from_parts(parts, Full::new(bytes).map_err(|never| match never {}).boxed_unsync()))
        }
    });
    (Client::new(service, "default"), seen)
}

/// The example configuration as the chart would hold it, with its shop a whole app from part
/// of one (the baseline) and secrets (a copy, and one from the External Secrets Operator).
pub fn whole_app_config_value() -> Value {
    let mut config = chart::example_config();
    let shop = &mut config["repositories"][0];
    shop["unchangedServices"] = serde_json::json!("baseline");
    shop["baselineNamespace"] = serde_json::json!("shop-staging");
    shop["secrets"] = serde_json::json!([
        {"name": "shop-test-db", "from": "preview-secrets"},
        {"name": "stripe-test", "remoteKey": "previews/shop/stripe"}
    ]);
    config["secrets"] = serde_json::json!({
        "sourceNamespaces": ["preview-secrets"],
        "externalSecrets": {"storeName": "vault"}
    });
    config["repositories"][0]["seed"] = serde_json::json!({
        "service": "web",
        "schema": ["db/migrations/*.sql"],
        "rows": 5,
        "loader": {"env": {"PGHOST": "db", "PGDATABASE": "shop"}, "envFromSecret": "shop-test-db"}
    });
    config
}

/// The fixture schema's migrations, as the repository holds them (`db/migrations/…`).
pub fn seed_migrations() -> Vec<(String, String)> {
    let dir = root().join("reconciler/tests/fixtures/seed/migrations");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (format!("db/migrations/{name}"), std::fs::read_to_string(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// [`whole_app_config_value`], loaded.
pub fn whole_app_config() -> previewd::config::Config {
    previewd::config::Config::from_yaml(&serde_norway::to_string(&whole_app_config_value()).unwrap()).unwrap()
}

/// A preview's whole life through `kube` (recorded, say): the consumer, the controller, Events,
/// the finalizer's cleanup after expiry, a merged PR, and leader election on the Lease.
/// `unrecorded` is the same cluster around the recorder: the test's own writes (standing in for
/// Argo CD) go through it.
pub async fn a_preview_life(kube: Client, unrecorded: Client) {
    use chrono::Utc;
    use previewd::consumer::{Consumer, Outcome as Consumed};
    use previewd::controller::{Context, reconcile_at};
    use previewd::crd::PreviewEnvironment;

    const NAME: &str = "preview-shop-pr-42";
    let github = github::FakeGitHub::start().await;
    github.lock().files = vec![serde_json::json!({"filename": "web/a.ts", "status": "modified"})];
    let config = Arc::new(config());
    let notifier = Arc::new(previewd::github::notify::Notifier::new(Arc::new(github.client()), config.github.clone()));
    let consumer = Consumer::new(unused_sqs(), "unused".into(), kube.clone(), Arc::clone(&config))
        .with_github(Arc::clone(&notifier));
    let ctx = Context::new(kube.clone(), Arc::clone(&config)).with_github(Arc::clone(&notifier));

    let mut opened = event("opened.json");
    opened.pull_request.updated_at = Utc::now();
    opened.received_at = Utc::now();
    assert_eq!(consumer.handle_event(&opened).await, Consumed::Applied { name: NAME.into() });
    let api: kube::Api<PreviewEnvironment> = kube::Api::all(kube.clone());
    // The first pass adds the finalizer, the next one builds the preview.
    reconcile_at(&api.get(NAME).await.unwrap(), &ctx, Utc::now()).await.unwrap();
    reconcile_at(&api.get(NAME).await.unwrap(), &ctx, Utc::now()).await.unwrap();
    // Argo CD's Applications appear; the preview becomes ready (Events on the way).
    healthy_application(&unrecorded, NAME, "web", &opened.pull_request.head_sha).await;
    reconcile_at(&api.get(NAME).await.unwrap(), &ctx, Utc::now()).await.unwrap();
    // Someone loosens the namespace's Pod Security level: the next pass puts it back.
    let loosened = serde_json::json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}});
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(unrecorded.clone())
        .patch(NAME, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&loosened))
        .await
        .unwrap();
    reconcile_at(&api.get(NAME).await.unwrap(), &ctx, Utc::now()).await.unwrap();
    let namespace =
        kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(unrecorded.clone()).get(NAME).await.unwrap();
    assert_eq!(namespace.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"], "restricted");

    // Expiry deletes it; deletion runs the finalizer's cleanup, which waits for GitHub.
    let pe = api.get(NAME).await.unwrap();
    reconcile_at(&pe, &ctx, Utc::now() + chrono::Duration::days(8)).await.unwrap();
    reconcile_at(&api.get(NAME).await.unwrap(), &ctx, Utc::now()).await.unwrap();
    notifier.flush(false).await;
    reconcile_at(&api.get(NAME).await.unwrap(), &ctx, Utc::now()).await.unwrap();
    assert!(api.get_opt(NAME).await.unwrap().is_none(), "cleaned up and gone");

    // A PR closed: the consumer deletes.
    let mut reopened = opened.clone();
    reopened.delivery_id = "again".into();
    consumer.handle_event(&reopened).await;
    let mut closed = event("closed-merged.json");
    closed.pull_request.updated_at = Utc::now() + chrono::Duration::seconds(5);
    closed.received_at = Utc::now() + chrono::Duration::seconds(5);
    assert!(matches!(consumer.handle_event(&closed).await, Consumed::Removed { .. }));

    // A whole app from part of one: the services the PR does not change resolve to the
    // baseline; one it starts to change is withdrawn from it.
    let whole = Arc::new(whole_app_config());
    let sources = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(unrecorded.clone());
    let source = serde_json::from_value(serde_json::json!({"metadata": {"name": "preview-secrets"}})).unwrap();
    sources.create(&Default::default(), &source).await.unwrap();
    let secret = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "shop-test-db"}, "stringData": {"password": "x"}}),
    )
    .unwrap();
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(unrecorded.clone(), "preview-secrets")
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    let consumer = Consumer::new(unused_sqs(), "unused".into(), kube.clone(), Arc::clone(&whole))
        .with_github(Arc::clone(&notifier));
    let ctx = Context::new(kube.clone(), Arc::clone(&whole)).with_github(Arc::clone(&notifier));
    const PART: &str = "preview-shop-pr-44";
    let mut part = opened.clone();
    part.pull_request.number = 44;
    part.delivery_id = "part".into();
    part.pull_request.updated_at = Utc::now() + chrono::Duration::seconds(10);
    assert_eq!(consumer.handle_event(&part).await, Consumed::Applied { name: PART.into() });
    reconcile_at(&api.get(PART).await.unwrap(), &ctx, Utc::now()).await.unwrap();
    reconcile_at(&api.get(PART).await.unwrap(), &ctx, Utc::now()).await.unwrap();
    // Its web service is healthy: the synthetic data's loader Job starts, then ends.
    github.lock().trees.insert(part.pull_request.head_sha.clone(), seed_migrations());
    healthy_application(&unrecorded, PART, "web", &part.pull_request.head_sha).await;
    reconcile_at(&api.get(PART).await.unwrap(), &ctx, Utc::now()).await.unwrap();
    let jobs = kube::Api::<k8s_openapi::api::batch::v1::Job>::namespaced(unrecorded.clone(), PART);
    let loader = jobs.list(&Default::default()).await.unwrap().items.pop().expect("a loader Job");
    let done = serde_json::json!({"status": {"succeeded": 1}});
    jobs.patch_status(&loader.metadata.name.unwrap(), &Default::default(), &kube::api::Patch::Merge(&done))
        .await
        .unwrap();
    reconcile_at(&api.get(PART).await.unwrap(), &ctx, Utc::now()).await.unwrap();
    let seeded = api.get(PART).await.unwrap().status.unwrap().seed.unwrap();
    assert_eq!(seeded.state, previewd::crd::SeedState::Loaded);
    let services = || kube::Api::<k8s_openapi::api::core::v1::Service>::namespaced(unrecorded.clone(), PART);
    let names = |list: Vec<k8s_openapi::api::core::v1::Service>| {
        list.into_iter().map(|s| s.metadata.name.unwrap_or_default()).collect::<Vec<_>>()
    };
    assert_eq!(names(services().list(&Default::default()).await.unwrap().items), ["api", "worker"]);
    github.lock().files = vec![
        serde_json::json!({"filename": "web/a.ts", "status": "modified"}),
        serde_json::json!({"filename": "api/main.go", "status": "modified"}),
    ];
    let mut reaches_api = part.clone();
    reaches_api.delivery_id = "part-2".into();
    reaches_api.pull_request.head_sha = "4444444444444444444444444444444444444444".into();
    reaches_api.pull_request.updated_at += chrono::Duration::seconds(1);
    assert_eq!(consumer.handle_event(&reaches_api).await, Consumed::Applied { name: PART.into() });
    reconcile_at(&api.get(PART).await.unwrap(), &ctx, Utc::now()).await.unwrap();
    assert_eq!(names(services().list(&Default::default()).await.unwrap().items), ["worker"]);

    // Leader election on the Lease.
    let lease = previewd::leader::LeaderElection::new(
        kube::Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(kube.clone(), "previewd"),
        "previewd-leader",
        "pod-a",
    );
    let now = || (k8s_openapi::jiff::Timestamp::now(), std::time::Instant::now());
    let (t, l) = now();
    assert!(lease.try_acquire_or_renew(t, l).await.unwrap());
    let (t, l) = now();
    assert!(lease.try_acquire_or_renew(t, l).await.unwrap());
}

/// The in-memory API serving the core kinds, Previewd's and Argo CD's resources.
pub fn memory_api() -> kube_memory::MemoryApi {
    use kube_memory::{MemoryApi, Registry, ResourceType};
    MemoryApi::new(Registry::core())
        .with_resource(
            ResourceType::new("preview.previewd.io", "v1alpha1", "previewenvironments", "PreviewEnvironment", false)
                .with_status(),
        )
        .with_resource(ResourceType::new("argoproj.io", "v1alpha1", "applicationsets", "ApplicationSet", true))
        .with_resource(ResourceType::new("argoproj.io", "v1alpha1", "applications", "Application", true))
        .with_resource(ResourceType::new("external-secrets.io", "v1", "externalsecrets", "ExternalSecret", true))
}

/// A client of `api`.
pub fn client_of(api: &kube_memory::MemoryApi) -> Client {
    Client::new(api.service(), "default")
}

/// A client of a fresh in-memory API.
pub async fn fake_cluster() -> Client {
    client_of(&memory_api())
}

/// An SQS client for a consumer whose events are handed to it directly (never called).
pub fn unused_sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .build(),
    )
}

/// What Argo CD reports once `service` of `preview` runs: a healthy, synced Application.
pub async fn healthy_application(client: &Client, preview: &str, service: &str, revision: &str) {
    application(client, preview, service, "Healthy", "Synced", revision).await;
}

/// What Argo CD reports for `service` of `preview`: its health and sync status at `revision`
/// (created, or replaced as Argo CD's controllers update it).
pub async fn application(client: &Client, preview: &str, service: &str, health: &str, sync: &str, revision: &str) {
    use previewd::argo::{Application, ApplicationSpec, ApplicationStatus, StatusField};
    let mut app = Application::new(&format!("{preview}-{service}"), ApplicationSpec::default());
    app.metadata.labels = Some([("preview.previewd.io/name".to_owned(), preview.to_owned())].into());
    let field = |status: &str| StatusField { status: Some(status.into()), ..Default::default() };
    app.status = Some(ApplicationStatus {
        health: Some(field(health)),
        sync: Some(StatusField { revision: Some(revision.to_owned()), ..field(sync) }),
        ..Default::default()
    });
    let params = kube::api::PatchParams::apply("argocd-application-controller").force();
    kube::Api::<Application>::namespaced(client.clone(), "argocd")
        .patch(&app.metadata.name.clone().unwrap(), &params, &kube::api::Patch::Apply(&app))
        .await
        .unwrap();
}

/// `pe` as the API server shows it after a delete while the finalizer holds it, deleted for
/// `reason` (the consumer's or the TTL's annotation).
pub fn deleting(mut pe: previewd::crd::PreviewEnvironment, reason: &str) -> previewd::crd::PreviewEnvironment {
    pe.metadata.annotations.get_or_insert_default().insert(previewd::crd::REMOVAL_REASON.into(), reason.into());
    pe.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    pe
}

/// The webhook front on `stack`'s table and queue, verifying with `secret`.
pub fn front(stack: &previewd_testkit::Stack, secret: &str) -> previewd_webhook::Webhook {
    let env = [
        ("PREVIEWD_WEBHOOK_SECRET", secret.to_owned()),
        ("PREVIEWD_QUEUE_URL", stack.queue_url.clone()),
        ("PREVIEWD_TABLE_NAME", stack.table.clone()),
    ];
    let config = previewd_webhook::config::Config::from_lookup(|k| {
        env.iter().find(|(name, _)| *name == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    let ledger = previewd_webhook::ledger::Ledger::new(
        stack.ddb.clone(),
        stack.table.clone(),
        config.claim_lease,
        config.dedupe_retention,
    );
    let secrets = previewd_webhook::secrets::SecretSource::Static(Arc::new(
        previewd_webhook::signature::Secrets::parse(secret).unwrap(),
    ));
    let queue = previewd_webhook::queue::EventQueue::new(stack.sqs.clone(), stack.queue_url.clone());
    previewd_webhook::Webhook::new(config, secrets, ledger, queue)
}

/// Fails the test if any exchange with the GitHub stand-in broke GitHub's published REST
/// description (a request GitHub would refuse, or an answer it would never send).
pub fn assert_github_contract(github: &github::FakeGitHub) {
    if std::thread::panicking() {
        return;
    }
    let problems = previewd_testkit::github_api::problems(&github.lock().exchanges);
    assert!(problems.is_empty(), "GitHub contract:\n{}", problems.join("\n"));
}

/// Polls `check` every 20 ms for up to `within`.
pub async fn eventually(within: std::time::Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}
