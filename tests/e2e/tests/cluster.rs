//! End to end against a real cluster: the CRDs (Previewd's and Argo CD's) installed, the
//! `previewd` binary running against it, PR events sent through the SQS queue (local emulator),
//! and the preview appearing and disappearing — with Kubernetes' own garbage collector.
//!
//! Needs a cluster: `PREVIEWD_E2E_KUBECONFIG=<kubeconfig> make test` runs it (docs/e2e.md shows
//! kind). Without one it is reported as ignored, not passed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use kube::{Client, Config, CustomResourceExt};
use previewd::crd::PreviewEnvironment;
use previewd_events::{PrAction, PrState, PreviewEvent};
use previewd_testkit::Stack;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Reconciler(Child);

impl Drop for Reconciler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn client(kubeconfig: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("previewd-e2e").force();
    let mut all = vec![PreviewEnvironment::crd()];
    for file in ["application-crd.yaml", "applicationset-crd.yaml"] {
        let text = std::fs::read_to_string(root().join("../shared/fixtures/argocd").join(file)).unwrap();
        all.push(serde_norway::from_str(&text).unwrap());
    }
    for crd in all {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(&name, &params, &Patch::Apply(&crd)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // let the API server establish them
    let argocd: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}});
    argocd.patch("argocd", &params, &Patch::Apply(&ns)).await.unwrap();
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set PREVIEWD_E2E_KUBECONFIG (docs/e2e.md)"]
async fn a_pull_request_gets_a_preview_and_loses_it_when_closed() {
    let kubeconfig = std::env::var("PREVIEWD_E2E_KUBECONFIG").expect("PREVIEWD_E2E_KUBECONFIG");
    let client = client(&kubeconfig).await;
    install_crds(&client).await;
    let stack = Stack::new("e2e").await;

    // The binary `make test` builds (cargo gives other packages' tests no path to it).
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root().join("target"));
    let binary = target.join("debug/previewd");
    assert!(binary.exists(), "{} missing: cargo build -p previewd", binary.display());
    let reconciler = Reconciler(
        Command::new(binary)
            .args(["run", "--config", root().join("docs/examples/config.yaml").to_str().unwrap()])
            .env("KUBECONFIG", &kubeconfig)
            .env("PREVIEWD_QUEUE_URL", &stack.queue_url)
            .env("PREVIEWD_LISTEN", "127.0.0.1:0")
            .env("AWS_ENDPOINT_URL", previewd_testkit::endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .spawn()
            .unwrap(),
    );

    let mut event: PreviewEvent =
        PreviewEvent::from_json(&std::fs::read_to_string(root().join("docs/examples/events/opened.json")).unwrap())
            .unwrap();
    event.delivery_id = format!("e2e-{}", std::process::id());
    stack.send_event(&event).await;

    let name = "preview-shop-pr-42";
    let previews: Api<PreviewEnvironment> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let app_sets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "argocd",
        &ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "ApplicationSet")),
    );
    eventually("the PreviewEnvironment", Duration::from_secs(60), || async {
        previews.get_opt(name).await.ok().flatten().is_some()
    })
    .await;
    eventually("the namespace and the ApplicationSet", Duration::from_secs(60), || async {
        namespaces.get_opt(name).await.ok().flatten().is_some() && app_sets.get_opt(name).await.ok().flatten().is_some()
    })
    .await;
    let pe = previews.get(name).await.unwrap();
    assert_eq!(pe.status.and_then(|s| s.url).as_deref(), Some("https://shop-pr-42.preview.example.com"));

    let mut closed = event.clone();
    closed.action = PrAction::Closed;
    closed.pull_request.state = PrState::Closed;
    closed.pull_request.updated_at += chrono_minutes(1);
    closed.delivery_id = format!("{}-closed", event.delivery_id);
    stack.send_event(&closed).await;
    eventually("the preview to be gone", Duration::from_secs(120), || async {
        previews.get_opt(name).await.ok().flatten().is_none()
            && app_sets.get_opt(name).await.ok().flatten().is_none()
            && namespaces.get_opt(name).await.ok().flatten().is_none_or(|ns| ns.metadata.deletion_timestamp.is_some())
    })
    .await;
    drop(reconciler);
}

fn chrono_minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}
