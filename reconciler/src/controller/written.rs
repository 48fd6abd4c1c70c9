//! Statuses this controller wrote that its cache may not show yet.
//!
//! A status write and the reconcile it triggers elsewhere (e.g. the ApplicationSet's watch
//! event, which can arrive before the PreviewEnvironment's own) race: the second reconcile can
//! read the cached preview with its old status, and would write the new one again, publish its
//! Events again and count the same transition twice. Remembering the last write for a short
//! while lets that reconcile start from what was written instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::crd::{PreviewEnvironment, PreviewEnvironmentStatus};

/// How long a write is trusted over the cache: far longer than a watch event takes to arrive,
/// short enough that a status changed by someone else is not hidden for long.
const HORIZON: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub(super) struct Written {
    /// By uid: a recreated preview of the same name is another object.
    entries: Mutex<HashMap<String, (Instant, PreviewEnvironmentStatus)>>,
}

impl Written {
    /// Notes that `pe`'s status was written as `status` at `at`.
    pub(super) fn remember(&self, pe: &PreviewEnvironment, status: &PreviewEnvironmentStatus, at: Instant) {
        let Some(uid) = pe.metadata.uid.clone() else { return };
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (when, _)| at.saturating_duration_since(*when) < HORIZON);
            entries.insert(uid, (at, status.clone()));
        }
    }

    /// The status written for `pe` when the cached `pe` does not show it yet; `None` once it
    /// does (the entry is dropped then), or when nothing was written within the horizon.
    pub(super) fn newer_than(&self, pe: &PreviewEnvironment, at: Instant) -> Option<PreviewEnvironmentStatus> {
        let uid = pe.metadata.uid.as_deref()?;
        let mut entries = self.entries.lock().ok()?;
        let (when, status) = entries.get(uid)?;
        if at.saturating_duration_since(*when) >= HORIZON || pe.status.as_ref() == Some(status) {
            entries.remove(uid);
            return None;
        }
        Some(status.clone())
    }

    /// Drops what was remembered for `pe` (it is gone).
    pub(super) fn forget(&self, pe: &PreviewEnvironment) {
        if let (Some(uid), Ok(mut entries)) = (pe.metadata.uid.as_deref(), self.entries.lock()) {
            entries.remove(uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Phase;

    fn preview(phase: Option<Phase>) -> PreviewEnvironment {
        let mut pe = PreviewEnvironment::new("p", Default::default());
        pe.metadata.uid = Some("u-1".to_owned());
        pe.status = phase.map(|phase| PreviewEnvironmentStatus { phase: Some(phase), ..Default::default() });
        pe
    }

    #[test]
    fn a_lagging_cache_is_read_through_the_last_write_until_it_catches_up() {
        let written = Written::default();
        let start = Instant::now();
        let cached = preview(Some(Phase::Ready));
        let deploying = PreviewEnvironmentStatus { phase: Some(Phase::Deploying), ..Default::default() };
        written.remember(&cached, &deploying, start);
        // The cache still shows Ready: the write wins.
        assert_eq!(written.newer_than(&cached, start), Some(deploying.clone()));
        // The cache caught up: the entry is done with.
        assert_eq!(written.newer_than(&preview(Some(Phase::Deploying)), start), None);
        assert_eq!(written.newer_than(&cached, start), None);
    }

    #[test]
    fn a_write_is_trusted_over_the_cache_only_for_a_while() {
        let written = Written::default();
        let start = Instant::now();
        let cached = preview(None);
        let ready = PreviewEnvironmentStatus { phase: Some(Phase::Ready), ..Default::default() };
        written.remember(&cached, &ready, start);
        assert_eq!(written.newer_than(&cached, start + HORIZON), None);
        // Another object of the same name is not confused with it.
        written.remember(&cached, &ready, start);
        let mut other = preview(None);
        other.metadata.uid = Some("u-2".to_owned());
        assert_eq!(written.newer_than(&other, start), None);
        written.forget(&cached);
        assert_eq!(written.newer_than(&cached, start), None);
    }
}
