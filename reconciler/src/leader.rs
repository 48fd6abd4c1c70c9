//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics:
//!
//! - A candidate measures a holder's lease from the moment *it* last saw the lease record
//!   change, on its own monotonic clock. The holder's `renewTime` is only compared for change,
//!   never against the local clock: pods' clocks can disagree by more than a lease.
//! - The holder renews every `retry_period` and gives leadership up when it has not renewed
//!   for `renew_deadline`, which is shorter than `lease_duration`: the caller stops its work in
//!   the margin, before any candidate can take the lease over.
//! - Writes carry the Lease's resourceVersion, so two candidates never both win.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

/// The lease record as last seen, and when (locally) it was first seen in that form.
#[derive(Debug, Clone)]
struct Observation {
    record: LeaseSpec,
    at: Instant,
}

#[derive(Debug)]
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// How long a candidate waits, after it last saw the lease change, before taking it over
    /// (client-go's default: 15 s).
    pub lease_duration: Duration,
    /// How long the holder keeps leading without a successful renewal (10 s).
    pub renew_deadline: Duration,
    /// How often the holder renews, and a candidate retries (2 s).
    pub retry_period: Duration,
    observed: Mutex<Option<Observation>>,
}

fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}

impl LeaderElection {
    pub fn new(api: Api<Lease>, name: &str, identity: &str) -> LeaderElection {
        LeaderElection {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            observed: Mutex::new(None),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn spec(&self, now: Timestamp, acquired: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.lease_duration.as_secs()).unwrap_or(15)),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Records `record` as seen at `local`; returns when it was first seen in this form.
    fn observe(&self, record: &LeaseSpec, local: Instant) -> Instant {
        let Ok(mut observed) = self.observed.lock() else { return local };
        match observed.as_ref() {
            Some(seen) if seen.record == *record => seen.at,
            _ => {
                *observed = Some(Observation { record: record.clone(), at: local });
                local
            }
        }
    }

    /// One attempt to acquire or renew the lease. `now` is the wall-clock time written into
    /// the lease (for people reading it); `local` is this process's monotonic clock, the only
    /// one expiry is measured on. True while this candidate leads.
    pub async fn try_acquire_or_renew(&self, now: Timestamp, local: Instant) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let spec = self.spec(now, now, 0);
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(spec.clone()),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    self.observe(&spec, local);
                    Ok(true)
                }
                Err(err) if is_conflict(&err) => Ok(false),
                Err(err) => Err(err),
            };
        };
        let record = lease.spec.clone().unwrap_or_default();
        let seen_since = self.observe(&record, local);
        let holder = record.holder_identity.as_deref().filter(|h| !h.is_empty());
        let ours = holder == Some(self.identity.as_str());
        let duration = Duration::from_secs(u64::try_from(record.lease_duration_seconds.unwrap_or(15)).unwrap_or(15));
        let expired = local.saturating_duration_since(seen_since) > duration;
        if !(ours || holder.is_none() || expired) {
            return Ok(false);
        }
        let transitions = record.lease_transitions.unwrap_or(0).saturating_add(i32::from(!ours));
        let acquired = if ours { record.acquire_time.map_or(now, |t| t.0) } else { now };
        let spec = self.spec(now, acquired, transitions);
        lease.spec = Some(spec.clone());
        // `replace` carries the resourceVersion we read: a concurrent writer makes this a 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => {
                self.observe(&spec, local);
                Ok(true)
            }
            Err(err) if is_conflict(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// One attempt now, bounded by `limit` so a hung API call cannot outlast the renew deadline.
    async fn attempt(&self, limit: Duration) -> Result<bool, String> {
        match tokio::time::timeout(limit, async { self.try_acquire_or_renew(Timestamp::now(), Instant::now()).await })
            .await
        {
            Ok(Ok(leads)) => Ok(leads),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err("lease request timed out".to_owned()),
        }
    }

    /// Waits until this candidate leads.
    pub async fn acquire(&self) {
        loop {
            match self.attempt(self.retry_period.max(Duration::from_secs(1))).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "leader election: lease unavailable"),
            }
            tokio::time::sleep(self.retry_period).await;
        }
    }

    /// Renews while leading; returns once leadership is lost: another holder, or no successful
    /// renewal for `renew_deadline` (shorter than the lease, so the caller can stop its work
    /// before a candidate may take over).
    pub async fn hold(&self) {
        let mut last_renewal = Instant::now();
        loop {
            let left = self.renew_deadline.saturating_sub(last_renewal.elapsed());
            tokio::time::sleep(self.retry_period.min(left)).await;
            let left = self.renew_deadline.saturating_sub(last_renewal.elapsed());
            if left.is_zero() {
                return;
            }
            match self.attempt(self.retry_period.min(left)).await {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => return,
                Err(err) => tracing::warn!(error = %err, "leader election: renewal failed"),
            }
        }
    }
}
