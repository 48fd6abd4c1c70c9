//! When a preview expires (pure).

use chrono::{DateTime, Utc};

use crate::config::{Config, TtlConfig};
use crate::crd::PreviewEnvironmentSpec;

/// `idle` (or `doNotExpire` with the label) after the PR's last activity, but never later than
/// `max` after the preview was created. A predicted idle TTL (quiet PRs) may only shorten
/// `idle`, and the label overrides it.
pub fn expires_at(
    ttl: &TtlConfig,
    last_activity: DateTime<Utc>,
    created_at: DateTime<Utc>,
    do_not_expire: bool,
    predicted_idle: Option<std::time::Duration>,
) -> DateTime<Utc> {
    let idle = if do_not_expire { ttl.do_not_expire } else { predicted_idle.map_or(ttl.idle, |p| p.min(ttl.idle)) };
    after(last_activity, idle).min(after(created_at, ttl.max))
}

/// `at + span`, saturating at the latest time chrono can hold (the configuration bounds the
/// spans; stored timestamps are whatever the API server holds).
fn after(at: DateTime<Utc>, span: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(span)
        .ok()
        .and_then(|span| at.checked_add_signed(span))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// When the preview of `spec`, created at `created_at`, expires under `config`.
pub fn expiry(config: &Config, spec: &PreviewEnvironmentSpec, created_at: DateTime<Utc>) -> DateTime<Utc> {
    let do_not_expire = spec.labels.iter().any(|l| l.eq_ignore_ascii_case(&config.policy.do_not_expire_label));
    let predicted = spec.ttl_prediction.as_ref().map(|p| std::time::Duration::from_secs(p.idle_seconds));
    // Waking a sleeping preview is activity too.
    let woken = spec.requested.as_ref().and_then(|r| r.woken_at);
    let activity = woken.map_or(spec.last_activity, |w| w.max(spec.last_activity));
    let computed = expires_at(&config.ttl, activity, created_at, do_not_expire, predicted);
    // `/preview extend` keeps it at least that long, never past `max`.
    match spec.requested.as_ref().and_then(|r| r.extended_until) {
        Some(until) => computed.max(until.min(after(created_at, config.ttl.max))),
        None => computed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any TTL the configuration's types can hold, at any time chrono can hold: no panic,
        /// and the expiry is never before the creation.
        #[test]
        fn no_ttl_configuration_panics(
            idle in any::<u64>(), do_not_expire in any::<u64>(), max in any::<u64>(), nanos in any::<u32>(),
            predicted in proptest::option::of(any::<u64>()),
            activity in any::<i64>(), created in any::<i64>(), label in any::<bool>(),
        ) {
            let span = |s: u64| std::time::Duration::new(s, nanos % 1_000_000_000);
            let ttl = TtlConfig { idle: span(idle), do_not_expire: span(do_not_expire), max: span(max), ..TtlConfig::default() };
            let time = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC);
            let (activity, created) = (time(activity), time(created));
            let at = expires_at(&ttl, activity, created, label, predicted.map(std::time::Duration::from_secs));
            prop_assert!(at >= created.min(activity));
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_four_hours_twenty_four_with_label_seven_days_at_most() {
        let ttl = TtlConfig::default();
        let created = at("2026-11-20T00:00:00Z");
        assert_eq!(expires_at(&ttl, at("2026-11-20T10:00:00Z"), created, false, None), at("2026-11-20T14:00:00Z"));
        assert_eq!(expires_at(&ttl, at("2026-11-20T10:00:00Z"), created, true, None), at("2026-11-21T10:00:00Z"));
        // Still active on day 7: the absolute maximum wins.
        assert_eq!(expires_at(&ttl, at("2026-11-26T23:00:00Z"), created, true, None), at("2026-11-27T00:00:00Z"));
        // A prediction shortens, never lengthens, and the label overrides it.
        let hour = Some(std::time::Duration::from_secs(3600));
        assert_eq!(expires_at(&ttl, at("2026-11-20T10:00:00Z"), created, false, hour), at("2026-11-20T11:00:00Z"));
        let day = Some(std::time::Duration::from_secs(86_400));
        assert_eq!(expires_at(&ttl, at("2026-11-20T10:00:00Z"), created, false, day), at("2026-11-20T14:00:00Z"));
        assert_eq!(expires_at(&ttl, at("2026-11-20T10:00:00Z"), created, true, hour), at("2026-11-21T10:00:00Z"));
    }
}
