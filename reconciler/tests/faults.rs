//! Kubernetes API faults under the controller and the consumer: the in-memory API answers
//! chosen requests with an API error (500, 409 Conflict, 429) while
//! the code under test runs. A failed pass never leaves a preview half-built once the API
//! answers again, a failed cleanup keeps the finalizer, and a refused write keeps the message.
//! The runbook's lines for these are in docs/operations.md ("Faults and what Previewd does").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use chrono::Utc;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::Client;
use kube::api::{Api, PostParams};
use kube_memory::MemoryApi;
use previewd::argo::ApplicationSet;
use previewd::consumer::{Consumer, Outcome as ConsumerOutcome};
use previewd::controller::{Context, Outcome, reconcile_at};
use previewd::crd::{FINALIZER, PreviewEnvironment};
use previewd::policy::{Decision, decide_offline};
use support::{config, event};

/// The in-memory API, whose requests can be made to fail.
fn faulty_cluster() -> (Client, MemoryApi) {
    let api = support::memory_api();
    (support::client_of(&api), api)
}

/// Fails every `method` request whose path contains `fragment` with `status`, until healed.
fn fail(api: &MemoryApi, method: &'static str, fragment: &'static str, status: u16) {
    api.fail(move |r| r.method == method && r.path.contains(fragment), status, usize::MAX);
}

async fn create(client: &Client) -> PreviewEnvironment {
    let config = config();
    let mut e = event("opened.json");
    e.pull_request.updated_at = Utc::now();
    let Decision::Upsert(spec) = decide_offline(&e, &config) else { panic!("expected an upsert") };
    let mut pe = previewd::render::as_applied(&config, *spec).unwrap();
    pe.status = None;
    // As after the controller's first pass, which adds its finalizer.
    pe.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
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
    let (client, faults) = faulty_cluster();
    create(&client).await;
    let ctx = Context::new(client.clone(), Arc::new(config()));

    // The API server fails one kind of object per pass, in the order they are applied (a pass
    // writes only what is missing or different, so each pass gets one object further).
    for (fragment, status) in [("/networkpolicies/", 429), ("/ingresses/", 500), ("/applicationsets/", 409)] {
        faults.heal();
        fail(&faults, "PATCH", fragment, status);
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
    let (client, faults) = faulty_cluster();
    let pe = create(&client).await;
    let ctx = Context::new(client.clone(), Arc::new(config()));
    reconcile_at(&pe, &ctx, Utc::now()).await.unwrap();
    let pe = Api::<PreviewEnvironment>::all(client.clone()).get(NS).await.unwrap();
    assert!(pe.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER));

    // Removing the finalizer is the cleanup's last write (the owned objects go by garbage
    // collection, or first, with GitHub configured).
    fail(&faults, "PATCH", "/previewenvironments/", 500);
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
    let (client, faults) = faulty_cluster();
    let consumer = Consumer::new(support::unused_sqs(), String::new(), client.clone(), Arc::new(config()));
    let mut opened = event("opened.json");
    opened.pull_request.updated_at = Utc::now();
    fail(&faults, "PATCH", "/previewenvironments/", 409);
    let outcome = consumer.handle_event(&opened).await;
    assert!(
        matches!(&outcome, ConsumerOutcome::Failed { error } if error.contains("409") || error.contains("Conflict")),
        "{outcome:?}"
    );
    faults.heal();
    assert_eq!(consumer.handle_event(&opened).await, ConsumerOutcome::Applied { name: NS.into() });
}
