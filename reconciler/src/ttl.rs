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
    let by_activity = last_activity + chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::MAX);
    let absolute = created_at + chrono::Duration::from_std(ttl.max).unwrap_or(chrono::Duration::MAX);
    by_activity.min(absolute)
}

/// When the preview of `spec`, created at `created_at`, expires under `config`.
pub fn expiry(config: &Config, spec: &PreviewEnvironmentSpec, created_at: DateTime<Utc>) -> DateTime<Utc> {
    let do_not_expire = spec.labels.iter().any(|l| l.eq_ignore_ascii_case(&config.policy.do_not_expire_label));
    let predicted = spec.ttl_prediction.as_ref().map(|p| std::time::Duration::from_secs(p.idle_seconds));
    expires_at(&config.ttl, spec.last_activity, created_at, do_not_expire, predicted)
}

#[cfg(test)]
mod tests {
    use super::*;

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
