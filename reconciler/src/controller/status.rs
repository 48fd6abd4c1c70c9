//! The PreviewEnvironment's status as a value (pure): phase, conditions with stable transition
//! times, per-service readiness from the Argo CD Applications. A service is ready only when its
//! Application has synced the preview's head commit and is healthy there: until then the
//! preview is Deploying, whatever an older commit's Application says.

use chrono::{DateTime, Utc};

use crate::argo::ApplicationStatus;
use crate::crd::{Condition, CostEstimate, Phase, PreviewEnvironmentStatus, SeedState, SeedStatus, ServiceStatus};

/// Readiness of service `name` at commit `head` from its Application's status (`None`: the
/// Application does not exist yet, or reports nothing).
pub fn service_status(name: &str, app: Option<&ApplicationStatus>, head: &str) -> ServiceStatus {
    let health = app.and_then(ApplicationStatus::health);
    let sync = app.and_then(ApplicationStatus::sync);
    let revision = app.and_then(ApplicationStatus::revision);
    ServiceStatus {
        name: name.to_owned(),
        ready: health == Some("Healthy") && sync == Some("Synced") && revision == Some(head),
        health: health.map(str::to_owned),
        sync: sync.map(str::to_owned),
        revision: revision.map(str::to_owned),
        message: app.and_then(|a| a.failure_at(head)),
    }
}

/// What the controller knows about a preview beyond its services.
#[derive(Debug, Clone)]
pub struct Facts {
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
    /// No commit has passed the build gate yet: what it waits for, or why it failed.
    pub first_build: Option<FirstBuild>,
    /// The synthetic data set, once the loader was started.
    pub seed: Option<SeedStatus>,
    /// With `ttl.sleepAfter`: since when the preview sleeps (`None`: awake).
    pub sleep: Option<Option<DateTime<Utc>>>,
}

/// A new preview whose first commit waits for its build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstBuild {
    pub failed: bool,
    pub message: String,
}

impl FirstBuild {
    /// What the spec's waiting commit says, when nothing is deployed yet.
    pub fn of(
        spec: &crate::crd::PreviewEnvironmentSpec,
        gate: Option<&crate::config::BuildGate>,
    ) -> Option<FirstBuild> {
        let waiting = spec.awaiting_build.as_ref().filter(|_| spec.head_sha.is_empty())?;
        let short: String = waiting.sha.chars().take(7).collect();
        Some(match &waiting.failed {
            Some(why) => FirstBuild { failed: true, message: format!("commit {short} will not deploy: {why}") },
            None => {
                let pending = gate.map(|g| match crate::gate::verdict(g, &waiting.checks) {
                    crate::gate::Verdict::Waiting { for_checks } => for_checks.join(", "),
                    _ => String::new(),
                });
                FirstBuild {
                    failed: false,
                    message: format!("waiting for the build of {short}: {}", pending.unwrap_or_default()),
                }
            }
        })
    }
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
    facts: Facts,
    now: DateTime<Utc>,
) -> PreviewEnvironmentStatus {
    let g = facts.generation;
    let total = facts.services.len();
    let ready = facts.services.iter().filter(|s| s.ready).count();
    let failed: Vec<String> =
        facts.services.iter().filter_map(|s| s.message.as_ref().map(|m| format!("{}: {m}", s.name))).collect();
    let (phase, conditions) = if let Some(build) = &facts.first_build {
        let (reason, message) = (if build.failed { "BuildFailed" } else { "WaitingForBuild" }, build.message.clone());
        (
            if build.failed { Phase::Failed } else { Phase::Pending },
            vec![
                condition("Ready", false, reason, message.clone(), now, g),
                condition("Deploying", false, reason, String::new(), now, g),
                condition("Failed", build.failed, reason, if build.failed { message } else { String::new() }, now, g),
            ],
        )
    } else if !failed.is_empty() {
        let message = failed.join("; ");
        (
            Phase::Failed,
            vec![
                condition("Ready", false, "ServicesFailed", message.clone(), now, g),
                condition("Deploying", false, "ServicesFailed", String::new(), now, g),
                condition("Failed", true, "ServicesFailed", message, now, g),
            ],
        )
    } else if total > 0 && ready == total {
        (
            Phase::Ready,
            vec![
                condition(
                    "Ready",
                    true,
                    "EnvironmentReady",
                    format!("all {total} services run the head commit"),
                    now,
                    g,
                ),
                condition("Deploying", false, "DeploymentComplete", String::new(), now, g),
                condition("Failed", false, "NoErrors", String::new(), now, g),
            ],
        )
    } else if facts.throttled {
        (
            Phase::Pending,
            vec![
                condition("Ready", false, "Waiting", "waiting for the ApplicationSet rate limit".into(), now, g),
                condition("Deploying", false, "RateLimited", String::new(), now, g),
                condition("Failed", false, "NoErrors", String::new(), now, g),
            ],
        )
    } else {
        let progress = format!("{ready} of {total} services run the head commit");
        (
            Phase::Deploying,
            vec![
                condition("Ready", false, "Deploying", progress.clone(), now, g),
                condition("Deploying", true, "Deploying", progress, now, g),
                condition("Failed", false, "NoErrors", String::new(), now, g),
            ],
        )
    };
    let mut conditions = conditions;
    if let Some(seed) = &facts.seed {
        conditions.push(seeded(seed, now, g));
    }
    if let Some(asleep) = facts.sleep {
        conditions.push(match asleep {
            Some(since) => condition("Asleep", true, "Idle", format!("scaled to zero since {since}"), now, g),
            None => condition("Asleep", false, "Active", String::new(), now, g),
        });
    }
    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    PreviewEnvironmentStatus {
        phase: Some(phase),
        conditions: carry_transition_times(previous_conditions, conditions),
        url: Some(facts.url),
        namespace: Some(facts.namespace),
        services: facts.services,
        cost_estimate: facts.cost.or_else(|| previous.and_then(|p| p.cost_estimate.clone())),
        created_at: Some(facts.created_at),
        expires_at: Some(facts.expires_at),
        selection: previous.and_then(|p| p.selection.clone()),
        ready_at: previous.and_then(|p| p.ready_at).or((phase == Phase::Ready).then_some(now)),
        observed_generation: g,
        last_applied_event: Some(facts.last_event),
        seed: facts.seed,
        asleep_since: facts.sleep.flatten(),
        cluster: previous.and_then(|p| p.cluster.clone()),
    }
}

/// The `Seeded` condition: whether the preview's database holds its synthetic data set.
fn seeded(seed: &SeedStatus, now: DateTime<Utc>, generation: Option<i64>) -> Condition {
    let rows: u64 = seed.tables.iter().map(|t| t.rows).sum();
    let what = format!("{rows} rows in {} tables", seed.tables.len());
    match seed.state {
        SeedState::Loading => condition("Seeded", false, "Loading", format!("loading {what}"), now, generation),
        SeedState::Loaded => condition("Seeded", true, "Loaded", what, now, generation),
        SeedState::Failed => condition("Seeded", false, "SeedFailed", seed.message.clone(), now, generation),
    }
}

/// A preview whose spec cannot be rendered (a service or repository no longer configured):
/// Failed, saying why, with the expiry it still has.
pub fn invalid(
    previous: Option<&PreviewEnvironmentStatus>,
    message: String,
    generation: Option<i64>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> PreviewEnvironmentStatus {
    let reason = "InvalidSpec";
    let conditions = vec![
        condition("Ready", false, reason, message.clone(), now, generation),
        condition("Deploying", false, reason, String::new(), now, generation),
        condition("Failed", true, reason, message, now, generation),
    ];
    let mut status = previous.cloned().unwrap_or_default();
    status.phase = Some(Phase::Failed);
    status.conditions = carry_transition_times(&status.conditions, conditions);
    status.observed_generation = generation;
    status.created_at = Some(created_at);
    status.expires_at = Some(expires_at);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argo::{OperationState, StatusField, SyncResult};

    const HEAD: &str = "bbbbbbb";

    /// An Application's status: health, sync status and the revision it synced.
    pub(crate) fn app(health: &str, sync: &str, revision: &str) -> ApplicationStatus {
        let field = |status: &str| StatusField { status: Some(status.into()), ..Default::default() };
        ApplicationStatus {
            health: Some(field(health)),
            sync: Some(StatusField { revision: Some(revision.into()), ..field(sync) }),
            ..Default::default()
        }
    }

    fn facts(services: Vec<ServiceStatus>) -> Facts {
        let t: DateTime<Utc> = "2026-11-26T10:00:00Z".parse().unwrap();
        Facts {
            services,
            url: "https://shop-pr-1.preview.example.com".into(),
            namespace: "preview-shop-pr-1".into(),
            created_at: t,
            expires_at: t + chrono::Duration::hours(4),
            generation: Some(1),
            last_event: t,
            throttled: false,
            cost: None,
            first_build: None,
            seed: None,
            sleep: None,
        }
    }

    #[test]
    fn ready_means_the_head_commit_is_synced_and_healthy() {
        let now = Utc::now();
        // An older commit, synced and healthy: still deploying the head.
        let old = service_status("web", Some(&app("Healthy", "Synced", "aaaaaaa")), HEAD);
        assert!(!old.ready);
        let deploying = compute(None, facts(vec![old]), now);
        assert_eq!(deploying.phase, Some(Phase::Deploying));
        assert_eq!(deploying.conditions[1].message, "0 of 1 services run the head commit");
        // Out of sync at the head, or progressing there: not yet.
        for (health, sync) in [("Healthy", "OutOfSync"), ("Progressing", "Synced")] {
            assert!(!service_status("web", Some(&app(health, sync, HEAD)), HEAD).ready);
        }
        let ready = compute(
            Some(&deploying),
            facts(vec![service_status("web", Some(&app("Healthy", "Synced", HEAD)), HEAD)]),
            now,
        );
        assert_eq!(ready.phase, Some(Phase::Ready));
    }

    #[test]
    fn only_a_failure_at_the_head_commit_fails_the_preview() {
        let now = Utc::now();
        let mut degraded = app("Degraded", "Synced", HEAD);
        degraded.health.as_mut().unwrap().message = Some("CrashLoopBackOff".into());
        let failed = compute(None, facts(vec![service_status("api", Some(&degraded), HEAD)]), now);
        assert_eq!(failed.phase, Some(Phase::Failed));
        let condition = failed.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
        assert_eq!((condition.status.as_str(), condition.message.as_str()), ("True", "api: CrashLoopBackOff"));
        // The previous commit degraded while the head syncs: deploying, not failed.
        let old = compute(
            None,
            facts(vec![service_status("api", Some(&app("Degraded", "OutOfSync", "aaaaaaa")), HEAD)]),
            now,
        );
        assert_eq!(old.phase, Some(Phase::Deploying));
        // A failed sync of the head.
        let mut sync_failed = app("Healthy", "OutOfSync", HEAD);
        sync_failed.operation_state = Some(OperationState {
            phase: Some("Failed".into()),
            message: Some("one or more objects failed to apply".into()),
            sync_result: Some(SyncResult { revision: Some(HEAD.into()), ..Default::default() }),
            ..Default::default()
        });
        let status = compute(None, facts(vec![service_status("api", Some(&sync_failed), HEAD)]), now);
        assert_eq!(status.phase, Some(Phase::Failed));
    }

    #[test]
    fn transition_times_only_move_on_transitions() {
        let t0: DateTime<Utc> = "2026-11-26T10:00:00Z".parse().unwrap();
        let t1 = t0 + chrono::Duration::minutes(1);
        let progressing = || service_status("web", Some(&app("Progressing", "Synced", HEAD)), HEAD);
        let first = compute(None, facts(vec![progressing()]), t0);
        let again = compute(Some(&first), facts(vec![progressing()]), t1);
        assert!(again.conditions.iter().all(|c| c.last_transition_time == t0));
        let ready =
            compute(Some(&again), facts(vec![service_status("web", Some(&app("Healthy", "Synced", HEAD)), HEAD)]), t1);
        let ready_condition = ready.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready_condition.status.as_str(), ready_condition.last_transition_time), ("True", t1));
        let failed_condition = ready.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
        assert_eq!(failed_condition.last_transition_time, t0, "Failed stayed False");
    }
}
