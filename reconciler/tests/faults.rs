//! Kubernetes API faults under the controller and the consumer: a layer between `kube` and
//! the in-memory API answers chosen requests with an API error (500, 409 Conflict, 429) while
//! the code under test runs. A failed pass never leaves a preview half-built once the API
//! answers again, a failed cleanup keeps the finalizer, and a refused write keeps the message.
//! The runbook's lines for these are in docs/operations.md ("Faults and what Previewd does").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};

use chrono::Utc;
use http_body_util::Full;
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::client::Body;
use previewd::argo::ApplicationSet;
use previewd::consumer::{Consumer, Outcome as ConsumerOutcome};
use previewd::controller::{Context, Outcome, reconcile_at};
use previewd::crd::{FINALIZER, PreviewEnvironment};
use previewd::policy::{Decision, decide_offline};
use support::{config, event};

/// (HTTP method, path fragment, status): requests matching it fail with that status.
type Rule = (&'static str, &'static str, u16);

#[derive(Clone, Default)]
struct Faults(Arc<Mutex<Vec<Rule>>>, Arc<Mutex<u32>>);

impl Faults {
    fn fail(&self, method: &'static str, path: &'static str, status: u16) {
        self.0.lock().unwrap().push((method, path, status));
    }
    fn heal(&self) {
        self.0.lock().unwrap().clear();
    }
    fn injected(&self) -> u32 {
        *self.1.lock().unwrap()
    }
}

/// The in-memory API behind a layer that injects `faults`.
async fn faulty_cluster() -> (Client, Faults) {
    let inner = support::fake_cluster().await;
    let faults = Faults::default();
    let f = faults.clone();
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let (inner, f) = (inner.clone(), f.clone());
        async move {
            let path = request.uri().path().to_owned();
            let hit =
                f.0.lock()
                    .unwrap()
                    .iter()
                    .find(|(method, fragment, _)| request.method().as_str() == *method && path.contains(fragment))
                    .map(|rule| rule.2);
            if let Some(status) = hit {
                *f.1.lock().unwrap() += 1;
                let reason = match status {
                    409 => "Conflict",
                    429 => "TooManyRequests",
                    _ => "InternalError",
                };
                let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": reason, "code": status, "message": format!("injected {status} for {path}")});
                let response = http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))?;
                return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(response);
            }
            let response = inner.send(request).await?;
            let (parts, body) = response.into_parts();
            let bytes = http_body_util::BodyExt::collect(body).await?.to_bytes();
            Ok(http::Response::from_parts(parts, Full::new(bytes)))
        }
    });
    (Client::new(service, "default"), faults)
}

async fn create(client: &Client) -> PreviewEnvironment {
    let config = config();
    let mut e = event("opened.json");
    e.pull_request.updated_at = Utc::now();
    let Decision::Upsert(spec) = decide_offline(&e, &config) else { panic!("expected an upsert") };
    let mut pe = previewd::offline::preview_resource(&config, *spec).unwrap();
    pe.status = None;
    Api::<PreviewEnvironment>::all(client.clone()).create(&PostParams::default(), &pe).await.unwrap()
}

const NS: &str = "preview-shop-pr-42";

/// Which of the preview's objects exist.
async fn built(client: &Client) -> [bool; 6] {
    let ns = |c: &Client| Api::<Namespace>::all(c.clone());
    [
        ns(client).get_opt(NS).await.unwrap().is_some(),
        Api::<ResourceQuota>::namespaced(client.clone(), NS).get_opt("preview-quota").await.unwrap().is_some(),
        Api::<LimitRange>::namespaced(client.clone(), NS).get_opt("preview-defaults").await.unwrap().is_some(),
        Api::<NetworkPolicy>::namespaced(client.clone(), NS).list(&Default::default()).await.unwrap().items.len() == 2,
        Api::<Ingress>::namespaced(client.clone(), NS).get_opt("preview").await.unwrap().is_some(),
        Api::<ApplicationSet>::namespaced(client.clone(), "argocd").get_opt(NS).await.unwrap().is_some(),
    ]
}

#[tokio::test]
async fn a_pass_failed_half_way_is_completed_by_the_next_one() {
    let (client, faults) = faulty_cluster().await;
    create(&client).await;
    let ctx = Context::new(client.clone(), Arc::new(config()));

    // The API server fails one kind of object per pass, each applied after the namespace.
    for (fragment, status) in [("/ingresses/", 500), ("/applicationsets/", 409), ("/networkpolicies/", 429)] {
        faults.heal();
        faults.fail("PATCH", fragment, status);
        let pe = Api::<PreviewEnvironment>::all(client.clone()).get(NS).await.unwrap();
        let err = reconcile_at(&pe, &ctx, Utc::now()).await.unwrap_err();
        assert!(format!("{err:?}").contains(&format!("injected {status}")), "{err:?}");
        let phase = Api::<PreviewEnvironment>::all(client.clone()).get(NS).await.unwrap().status.and_then(|s| s.phase);
        assert_ne!(phase, Some(previewd::crd::Phase::Ready), "a failed pass never reports Ready");
    }
    assert!(faults.injected() >= 3);
    let partial = built(&client).await;
    assert!(partial.contains(&false), "the faults left it partial: {partial:?}");

    faults.heal();
    let pe = Api::<PreviewEnvironment>::all(client.clone()).get(NS).await.unwrap();
    let outcome = reconcile_at(&pe, &ctx, Utc::now()).await.unwrap();
    assert!(matches!(outcome, Outcome::Applied { .. }), "{outcome:?}");
    assert_eq!(built(&client).await, [true; 6], "every object once the API answers");
}

#[tokio::test]
async fn a_failed_cleanup_keeps_the_finalizer_until_it_succeeds() {
    let (client, faults) = faulty_cluster().await;
    let pe = create(&client).await;
    let ctx = Context::new(client.clone(), Arc::new(config()));
    reconcile_at(&pe, &ctx, Utc::now()).await.unwrap();
    let pe = Api::<PreviewEnvironment>::all(client.clone()).get(NS).await.unwrap();
    assert!(pe.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER));

    // Removing the finalizer is the cleanup's last write (the owned objects go by garbage
    // collection, or first, with GitHub configured).
    faults.fail("PATCH", "/previewenvironments/", 500);
    let deleting = support::deleting(pe, "closed");
    let err = reconcile_at(&deleting, &ctx, Utc::now()).await.unwrap_err();
    assert!(format!("{err:?}").contains("injected 500"), "{err:?}");
    let still = Api::<PreviewEnvironment>::all(client.clone()).get(NS).await.unwrap();
    assert!(still.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER), "the finalizer stays");

    faults.heal();
    let outcome = reconcile_at(&support::deleting(still, "closed"), &ctx, Utc::now()).await.unwrap();
    assert_eq!(outcome, Outcome::Finalized);
    let after = Api::<PreviewEnvironment>::all(client.clone()).get_opt(NS).await.unwrap();
    assert!(after.is_none_or(|pe| !pe.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER)));
}

#[tokio::test]
async fn a_conflict_on_the_consumer_write_keeps_the_message_for_a_retry() {
    let (client, faults) = faulty_cluster().await;
    let consumer = Consumer::new(support::unused_sqs(), String::new(), client.clone(), Arc::new(config()));
    let mut opened = event("opened.json");
    opened.pull_request.updated_at = Utc::now();
    faults.fail("PATCH", "/previewenvironments/", 409);
    let outcome = consumer.handle_event(&opened).await;
    assert!(
        matches!(&outcome, ConsumerOutcome::Failed { error } if error.contains("409") || error.contains("Conflict")),
        "{outcome:?}"
    );
    faults.heal();
    assert_eq!(consumer.handle_event(&opened).await, ConsumerOutcome::Applied { name: NS.into() });
}
