//! Leader election on a Lease, against the in-memory API (optimistic concurrency included).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use previewd::leader::LeaderElection;

fn leases() -> Api<Lease> {
    let api = kube_memory::MemoryApi::default();
    let client = kube::Client::new(api.service(), "default");
    Api::namespaced(client, "previewd")
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test]
async fn one_leader_at_a_time_and_takeover_after_expiry() {
    let api = leases();
    let a = LeaderElection::new(api.clone(), "previewd-leader", "pod-a");
    let b = LeaderElection::new(api.clone(), "previewd-leader", "pod-b");
    let (t0, l0) = (Timestamp::now(), Instant::now());
    let at = |s: i64| t0 + SignedDuration::from_secs(s);

    assert!(a.try_acquire_or_renew(at(0), l0).await.unwrap(), "the first candidate creates the lease");
    assert!(!b.try_acquire_or_renew(at(1), l0 + secs(1)).await.unwrap(), "held and fresh");
    assert!(a.try_acquire_or_renew(at(5), l0 + secs(5)).await.unwrap(), "the holder renews");
    assert!(!b.try_acquire_or_renew(at(15), l0 + secs(15)).await.unwrap(), "b saw it change 10 s ago");

    // The holder stops renewing: a lease duration after b last saw a change, b takes over.
    assert!(!b.try_acquire_or_renew(at(29), l0 + secs(29)).await.unwrap(), "14 s since b saw the renewal");
    assert!(b.try_acquire_or_renew(at(31), l0 + secs(31)).await.unwrap());
    let lease = api.get("previewd-leader").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("pod-b"));
    assert_eq!(lease.lease_transitions, Some(1));
    assert!(!a.try_acquire_or_renew(at(32), l0 + secs(32)).await.unwrap(), "the old leader is out");
}

#[tokio::test]
async fn leader_expiry_uses_the_local_observation_time() {
    let api = leases();
    let holder = LeaderElection::new(api.clone(), "previewd-leader", "pod-a");
    let candidate = LeaderElection::new(api.clone(), "previewd-leader", "pod-b");
    let l0 = Instant::now();
    // The holder's clock runs an hour behind the candidate's: every renewTime it writes looks
    // long expired to a candidate that compares it with its own clock.
    let skewed = Timestamp::now() - SignedDuration::from_hours(1);
    let at = |s: i64| skewed + SignedDuration::from_secs(s);

    assert!(holder.try_acquire_or_renew(at(0), l0).await.unwrap());
    assert!(!candidate.try_acquire_or_renew(Timestamp::now(), l0 + secs(1)).await.unwrap(), "first sight");
    for s in [3_u64, 6, 9, 12, 15, 18] {
        assert!(holder.try_acquire_or_renew(at(s.cast_signed()), l0 + secs(s)).await.unwrap(), "renews at {s} s");
        let seen = l0 + secs(s + 1);
        assert!(
            !candidate.try_acquire_or_renew(Timestamp::now(), seen).await.unwrap(),
            "a holder that renewed 1 s ago keeps the lease, whatever its clock says ({s} s)"
        );
    }
    // It stops renewing: the candidate waits a whole lease from its last sight of a change.
    assert!(!candidate.try_acquire_or_renew(Timestamp::now(), l0 + secs(33)).await.unwrap());
    assert!(candidate.try_acquire_or_renew(Timestamp::now(), l0 + secs(35)).await.unwrap());
}

#[tokio::test]
async fn the_renew_deadline_is_shorter_than_the_lease() {
    let election = LeaderElection::new(leases(), "previewd-leader", "pod-a");
    assert!(election.renew_deadline + election.retry_period <= election.lease_duration);
}

#[tokio::test]
async fn concurrent_candidates_never_both_win() {
    let api = leases();
    let (now, local) = (Timestamp::now(), Instant::now());
    let candidates: Vec<LeaderElection> =
        (0..8).map(|i| LeaderElection::new(api.clone(), "previewd-leader", &format!("pod-{i}"))).collect();
    let results = futures::future::join_all(candidates.iter().map(|c| c.try_acquire_or_renew(now, local))).await;
    let winners = results.into_iter().filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(winners, 1);
}
