//! Leader election on a Lease, against the in-memory API (optimistic concurrency included).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use previewd::leader::LeaderElection;

#[tokio::test]
async fn one_leader_at_a_time_and_takeover_after_expiry() {
    let api = kube_memory::MemoryApi::default();
    let client = kube::Client::new(api.service(), "default");
    let api: Api<Lease> = Api::namespaced(client, "previewd");
    let a = LeaderElection::new(api.clone(), "previewd-leader", "pod-a");
    let b = LeaderElection::new(api.clone(), "previewd-leader", "pod-b");
    let t0 = Timestamp::now();

    assert!(a.try_acquire_or_renew(t0).await.unwrap(), "the first candidate creates the lease");
    assert!(!b.try_acquire_or_renew(t0 + SignedDuration::from_secs(1)).await.unwrap(), "held and fresh");
    assert!(a.try_acquire_or_renew(t0 + SignedDuration::from_secs(5)).await.unwrap(), "the holder renews");
    assert!(!b.try_acquire_or_renew(t0 + SignedDuration::from_secs(15)).await.unwrap(), "renewed 10 s ago");

    // The holder stops renewing: after the lease duration the other takes over.
    let later = t0 + SignedDuration::from_secs(21);
    assert!(b.try_acquire_or_renew(later).await.unwrap());
    let lease = api.get("previewd-leader").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("pod-b"));
    assert_eq!(lease.lease_transitions, Some(1));
    assert!(!a.try_acquire_or_renew(later + SignedDuration::from_secs(1)).await.unwrap(), "the old leader is out");
}

#[tokio::test]
async fn concurrent_candidates_never_both_win() {
    let api = kube_memory::MemoryApi::default();
    let client = kube::Client::new(api.service(), "default");
    let api: Api<Lease> = Api::namespaced(client, "previewd");
    let now = Timestamp::now();
    let candidates: Vec<LeaderElection> =
        (0..8).map(|i| LeaderElection::new(api.clone(), "previewd-leader", &format!("pod-{i}"))).collect();
    let results = futures::future::join_all(candidates.iter().map(|c| c.try_acquire_or_renew(now))).await;
    let winners = results.into_iter().filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(winners, 1);
}
