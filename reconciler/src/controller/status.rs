//! The PreviewEnvironment's status as a value (pure): phase, conditions with stable transition
//! times, per-service readiness from the Argo CD Applications.

use chrono::{DateTime, Utc};

use crate::crd::{Condition, CostEstimate, Phase, PreviewEnvironmentStatus, ServiceStatus};

/// Readiness of one service from its Application's health and sync status (`None`: the
/// Application does not exist yet).
pub fn service_status(name: &str, health: Option<&str>, sync: Option<&str>) -> ServiceStatus {
    ServiceStatus {
        name: name.to_owned(),
        ready: health == Some("Healthy") && sync == Some("Synced"),
        health: health.map(str::to_owned),
        sync: sync.map(str::to_owned),
    }
}

/// What the controller observed in one reconcile.
#[derive(Debug, Clone)]
pub struct Observed {
    pub services: Vec<ServiceStatus>,
    pub url: String,
    pub namespace: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub generation: Option<i64>,
    pub last_event: DateTime<Utc>,
    /// Waiting for the ApplicationSet rate limit.
    pub throttled: bool,
    pub cost: Option<CostEstimate>,
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: now,
        observed_generation: generation,
    }
}

/// Keeps a condition's `lastTransitionTime` when its status did not change.
fn carry_transition_times(previous: &[Condition], mut next: Vec<Condition>) -> Vec<Condition> {
    for c in &mut next {
        if let Some(old) = previous.iter().find(|o| o.type_ == c.type_ && o.status == c.status) {
            c.last_transition_time = old.last_transition_time;
        }
    }
    next
}

pub fn compute(
    previous: Option<&PreviewEnvironmentStatus>,
    observed: Observed,
    now: DateTime<Utc>,
) -> PreviewEnvironmentStatus {
    let g = observed.generation;
    let total = observed.services.len();
    let ready = observed.services.iter().filter(|s| s.ready).count();
    let degraded: Vec<&str> = observed
        .services
        .iter()
        .filter(|s| matches!(s.health.as_deref(), Some("Degraded" | "Missing")))
        .map(|s| s.name.as_str())
        .collect();
    let (phase, conditions) = if !degraded.is_empty() {
        let message = format!("degraded: {}", degraded.join(", "));
        (
            Phase::Failed,
            vec![
                condition("Ready", false, "ServicesDegraded", message.clone(), now, g),
                condition("Deploying", false, "ServicesDegraded", String::new(), now, g),
                condition("Failed", true, "ServicesDegraded", message, now, g),
            ],
        )
    } else if total > 0 && ready == total {
        (
            Phase::Ready,
            vec![
                condition("Ready", true, "EnvironmentReady", format!("all {total} services are running"), now, g),
                condition("Deploying", false, "DeploymentComplete", String::new(), now, g),
                condition("Failed", false, "NoErrors", String::new(), now, g),
            ],
        )
    } else if observed.throttled {
        (
            Phase::Pending,
            vec![
                condition("Ready", false, "Waiting", "waiting for the ApplicationSet rate limit".into(), now, g),
                condition("Deploying", false, "RateLimited", String::new(), now, g),
                condition("Failed", false, "NoErrors", String::new(), now, g),
            ],
        )
    } else {
        (
            Phase::Deploying,
            vec![
                condition("Ready", false, "Deploying", format!("{ready} of {total} services ready"), now, g),
                condition("Deploying", true, "Deploying", format!("{ready} of {total} services ready"), now, g),
                condition("Failed", false, "NoErrors", String::new(), now, g),
            ],
        )
    };
    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    PreviewEnvironmentStatus {
        phase: Some(phase),
        conditions: carry_transition_times(previous_conditions, conditions),
        url: Some(observed.url),
        namespace: Some(observed.namespace),
        services: observed.services,
        cost_estimate: observed.cost.or_else(|| previous.and_then(|p| p.cost_estimate.clone())),
        created_at: Some(observed.created_at),
        expires_at: Some(observed.expires_at),
        selection: previous.and_then(|p| p.selection.clone()),
        ready_at: previous.and_then(|p| p.ready_at).or((phase == Phase::Ready).then_some(now)),
        observed_generation: g,
        last_applied_event: Some(observed.last_event),
    }
}

/// A failure that waits for a change of the PreviewEnvironment (or the config).
pub fn failed(
    previous: Option<&PreviewEnvironmentStatus>,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> PreviewEnvironmentStatus {
    let conditions = vec![
        condition("Ready", false, reason, message.clone(), now, generation),
        condition("Deploying", false, reason, String::new(), now, generation),
        condition("Failed", true, reason, message, now, generation),
    ];
    let mut status = previous.cloned().unwrap_or_default();
    status.phase = Some(Phase::Failed);
    status.conditions = carry_transition_times(&status.conditions, conditions);
    status.observed_generation = generation;
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(services: Vec<ServiceStatus>) -> Observed {
        let t: DateTime<Utc> = "2026-11-26T10:00:00Z".parse().unwrap();
        Observed {
            services,
            url: "https://shop-pr-1.preview.example.com".into(),
            namespace: "preview-shop-pr-1".into(),
            created_at: t,
            expires_at: t + chrono::Duration::hours(4),
            generation: Some(1),
            last_event: t,
            throttled: false,
            cost: None,
        }
    }

    #[test]
    fn phases_follow_the_applications() {
        let now = Utc::now();
        let deploying = compute(
            None,
            observed(vec![
                service_status("web", Some("Progressing"), Some("Synced")),
                service_status("api", None, None),
            ]),
            now,
        );
        assert_eq!(deploying.phase, Some(Phase::Deploying));
        assert_eq!(deploying.conditions[1].message, "0 of 2 services ready");
        let ready =
            compute(Some(&deploying), observed(vec![service_status("web", Some("Healthy"), Some("Synced"))]), now);
        assert_eq!(ready.phase, Some(Phase::Ready));
        let failed =
            compute(Some(&ready), observed(vec![service_status("web", Some("Degraded"), Some("Synced"))]), now);
        assert_eq!(failed.phase, Some(Phase::Failed));
        assert!(failed.conditions.iter().any(|c| c.type_ == "Failed" && c.status == "True"));
    }

    #[test]
    fn transition_times_only_move_on_transitions() {
        let t0: DateTime<Utc> = "2026-11-26T10:00:00Z".parse().unwrap();
        let t1 = t0 + chrono::Duration::minutes(1);
        let first = compute(None, observed(vec![service_status("web", Some("Progressing"), None)]), t0);
        let again = compute(Some(&first), observed(vec![service_status("web", Some("Progressing"), None)]), t1);
        assert!(again.conditions.iter().all(|c| c.last_transition_time == t0));
        let ready = compute(Some(&again), observed(vec![service_status("web", Some("Healthy"), Some("Synced"))]), t1);
        let ready_condition = ready.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready_condition.status.as_str(), ready_condition.last_transition_time), ("True", t1));
        let failed_condition = ready.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
        assert_eq!(failed_condition.last_transition_time, t0, "Failed stayed False");
    }
}
