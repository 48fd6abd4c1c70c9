//! TTL prediction from PR activity (pure): a PR that has gone quiet over days gets a shorter
//! idle TTL, never longer than the policy's and never under an hour. The `do-not-expire` label
//! always wins over a prediction.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// What GitHub says about the PR's activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    pub commits: u64,
    /// Conversation and review comments.
    pub comments: u64,
    pub opened_at: DateTime<Utc>,
}

/// The least idle TTL a prediction may set.
pub const FLOOR: Duration = Duration::from_secs(3600);

/// A shorter idle TTL for a quiet PR, with the reason in words; `None` keeps the policy's.
pub fn predict_idle(activity: Activity, idle: Duration, now: DateTime<Utc>) -> Option<(Duration, String)> {
    let days = (now - activity.opened_at).num_hours().max(0) as f64 / 24.0;
    if days < 3.0 {
        return None;
    }
    let events = activity.commits + activity.comments;
    let per_day = events as f64 / days;
    let factor = match per_day {
        r if days >= 14.0 && r < 0.2 => 4,
        r if r < 0.5 => 2,
        _ => return None,
    };
    let predicted = (idle / factor).max(FLOOR).min(idle);
    (predicted < idle).then(|| {
        let reason = format!("{} commits and {} comments in {:.0} days", activity.commits, activity.comments, days);
        (predicted, reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn quiet_old_prs_get_shorter_ttls() {
        let now = at("2026-11-27T00:00:00Z");
        let four_hours = Duration::from_secs(4 * 3600);
        let busy = Activity { commits: 12, comments: 9, opened_at: at("2026-11-20T00:00:00Z") };
        assert_eq!(predict_idle(busy, four_hours, now), None);
        let young = Activity { commits: 0, comments: 0, opened_at: at("2026-11-26T00:00:00Z") };
        assert_eq!(predict_idle(young, four_hours, now), None, "too new to call stale");
        let quiet = Activity { commits: 2, comments: 0, opened_at: at("2026-11-20T00:00:00Z") };
        let (ttl, reason) = predict_idle(quiet, four_hours, now).unwrap();
        assert_eq!(ttl, Duration::from_secs(2 * 3600));
        assert_eq!(reason, "2 commits and 0 comments in 7 days");
        let abandoned = Activity { commits: 1, comments: 1, opened_at: at("2026-10-27T00:00:00Z") };
        assert_eq!(predict_idle(abandoned, four_hours, now).unwrap().0, FLOOR);
    }

    proptest! {
        #[test]
        fn never_longer_than_the_policy_nor_under_an_hour(
            commits in 0u64..500, comments in 0u64..500, age_hours in 0i64..20_000, idle_hours in 1u64..200,
        ) {
            let now = at("2026-11-27T00:00:00Z");
            let idle = Duration::from_secs(idle_hours * 3600);
            let activity = Activity { commits, comments, opened_at: now - chrono::Duration::hours(age_hours) };
            if let Some((ttl, _)) = predict_idle(activity, idle, now) {
                prop_assert!(ttl < idle && ttl >= FLOOR.min(idle));
            }
        }
    }
}
