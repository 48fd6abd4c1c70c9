//! What one reconcile of a live preview should do, decided from values alone (pure): which
//! objects to apply (only those that differ from what the API holds), whether it expired, its
//! new status (only when it changed), the Events to publish, what the PR should show, and when
//! to look again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Outcome;
use super::observe::Observed;
use super::status::{self, Facts};
use crate::config::Config;
use crate::cost;
use crate::crd::{Phase, PreviewEnvironment, PreviewEnvironmentStatus};
use crate::github::notify::Update;
use crate::github::view;
use crate::names;
use crate::render::{Desired, Kind, Preview, RenderError};

/// A Kubernetes Event to publish about the preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Note {
    fn normal(reason: &'static str, message: String) -> Note {
        Note { warning: false, reason, message }
    }

    fn warning(reason: &'static str, message: String) -> Note {
        Note { warning: true, reason, message }
    }
}

/// Everything one reconcile does, as values.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Objects to server-side apply: those missing or different from what the API holds.
    pub apply: Vec<Desired>,
    /// Previewd's objects that must go (a baseline stand-in for a service the PR now deploys).
    pub delete: Vec<Desired>,
    /// The preview expired: delete it (its finalizer cleans up).
    pub expire: bool,
    /// The new status, when it differs from the current one.
    pub status: Option<PreviewEnvironmentStatus>,
    pub events: Vec<Note>,
    /// What the PR should show (the notifier sends only what GitHub does not show yet).
    pub update: Option<Update>,
    pub outcome: Outcome,
}

/// What the plan is made from: the preview (rendered, or why it cannot be), the live state,
/// and whether a new ApplicationSet must wait for the rate limit.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub pe: &'a PreviewEnvironment,
    pub config: &'a Config,
    pub preview: Result<&'a Preview<'a>, &'a RenderError>,
    pub desired: &'a [Desired],
    /// What must not exist, if Previewd made it.
    pub withdrawn: &'a [Desired],
    pub observed: &'a Observed,
    /// `Some(wait)`: the ApplicationSet does not exist and may not be created for `wait`.
    pub throttle: Option<Duration>,
    /// The synthetic data set after this pass's seeding step.
    pub seed: Option<crate::crd::SeedStatus>,
    pub now: DateTime<Utc>,
}

/// Whether `live` already has every field `desired` sets, with the same values (the API server
/// adds fields of its own: defaults, status, metadata; those do not count).
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => {
            desired.iter().all(|(key, want)| live.get(key).is_some_and(|have| contains(have, want)))
        }
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len() && live.iter().zip(desired).all(|(have, want)| contains(have, want))
        }
        (live, desired) => live == desired,
    }
}

/// When the preview was created: its status says, else its object does.
pub fn created_at(pe: &PreviewEnvironment, now: DateTime<Utc>) -> DateTime<Utc> {
    pe.status
        .as_ref()
        .and_then(|s| s.created_at)
        .or_else(|| {
            let t = pe.metadata.creation_timestamp.as_ref()?;
            DateTime::from_timestamp(t.0.as_second(), u32::try_from(t.0.subsec_nanosecond()).unwrap_or(0))
        })
        .unwrap_or(now)
}

/// The plan for one reconcile of a live (not deleted) preview.
pub fn plan(inputs: Inputs<'_>) -> Plan {
    let Inputs { pe, config, preview, desired, withdrawn, observed, throttle, seed, now } = inputs;
    let previous = pe.status.as_ref();
    let created = created_at(pe, now);
    let expires_at = crate::ttl::expiry(config, &pe.spec, created);
    let until_expiry = (expires_at - now).to_std().unwrap_or(Duration::ZERO) + Duration::from_secs(1);
    if now >= expires_at {
        return Plan {
            apply: Vec::new(),
            delete: Vec::new(),
            expire: true,
            status: None,
            events: vec![Note::normal("PreviewExpired", format!("Expired at {expires_at}; deleted"))],
            update: None,
            outcome: Outcome::Expired,
        };
    }
    let preview = match preview {
        Ok(preview) => preview,
        Err(err) => {
            // Said once in the status and an Event; it still expires, then it is cleaned up.
            let next = status::invalid(previous, err.to_string(), pe.metadata.generation, created, expires_at, now);
            let newly = previous.is_none_or(|p| !p.conditions.iter().any(|c| c.reason == "InvalidSpec"));
            return Plan {
                apply: Vec::new(),
                delete: Vec::new(),
                expire: false,
                status: (previous != Some(&next)).then_some(next),
                events: if newly { vec![Note::warning("InvalidSpec", err.to_string())] } else { Vec::new() },
                update: None,
                outcome: Outcome::Invalid { reason: err.to_string(), requeue: until_expiry },
            };
        }
    };

    let app_set_exists = desired.iter().any(|d| d.kind == Kind::ApplicationSet && observed.object(d).is_some());
    let apply: Vec<Desired> = desired
        .iter()
        .filter(|d| !(throttle.is_some() && d.kind == Kind::ApplicationSet))
        .filter(|d| observed.object(d).is_none_or(|live| !contains(live, &d.object)))
        .cloned()
        .collect();
    let ours = |live: &Value| live["metadata"]["labels"]["app.kubernetes.io/managed-by"] == crate::render::MANAGED_BY;
    let delete: Vec<Desired> = withdrawn.iter().filter(|d| observed.object(d).is_some_and(ours)).cloned().collect();
    let mut events = Vec::new();
    if previous.is_none() {
        let note = format!("Creating preview environment for {}#{}", pe.spec.repository, pe.spec.pr_number);
        events.push(Note::normal("PreviewCreating", note));
    }
    match throttle {
        Some(wait) => {
            let note = format!("ApplicationSet creation rate limit reached; retrying in {} s", wait.as_secs());
            events.push(Note::normal("ApplicationSetRateLimited", note));
        }
        None if !app_set_exists => {
            events.push(Note::normal("ApplicationSetCreated", format!("Created ApplicationSet {}", preview.name)));
        }
        None => {}
    }

    let head = &pe.spec.head_sha;
    let services = preview
        .services
        .iter()
        .map(|s| {
            let app = names::application_name(&preview.name, &s.name);
            status::service_status(&s.name, observed.application(&app), head)
        })
        .collect();
    let facts = Facts {
        services,
        url: preview.url(),
        namespace: preview.name.clone(),
        created_at: created,
        expires_at,
        generation: pe.metadata.generation,
        last_event: pe.spec.last_event.received_at,
        throttled: throttle.is_some(),
        cost: Some(cost::for_services(
            config,
            preview.services.iter().copied(),
            pe.spec.sizing.as_ref(),
            preview.asleep.is_some(),
            created,
            now,
        )),
        first_build: status::FirstBuild::of(&pe.spec, preview.repo.build_gate.as_ref()),
        seed,
        // Asleep only where the controller could send visitors to the page (it has the key).
        sleep: config
            .ttl
            .sleep_after
            .map(|_| preview.asleep.as_ref().and_then(|_| crate::sleep::asleep_since(config, &pe.spec, now))),
    };
    let mut next = status::compute(previous, facts, now);
    next.selection = pe.spec.selection.clone();
    let was = previous.and_then(|p| p.phase);
    match next.phase {
        _ if next.asleep_since.is_some() && previous.and_then(|p| p.asleep_since).is_none() => {
            events
                .push(Note::normal("PreviewAsleep", "Idle: services scaled to zero; the URL offers to wake it".into()));
        }
        Some(Phase::Ready) if was != next.phase => {
            events.push(Note::normal("PreviewReady", format!("Preview environment ready at {}", preview.url())));
        }
        Some(Phase::Failed) if was != next.phase => {
            let why = next.conditions.iter().find(|c| c.type_ == "Failed").map(|c| c.message.clone());
            events.push(Note::warning("PreviewFailed", why.unwrap_or_default()));
        }
        _ => {}
    }
    events.extend(seed_note(previous.and_then(|p| p.seed.as_ref()), next.seed.as_ref()));
    let update = Some(view::live(config, pe, &next));
    // A loader that runs is looked at again soon, besides the Job watch.
    let loading = next.seed.as_ref().is_some_and(|s| s.state == crate::crd::SeedState::Loading);
    let mut sweep = if loading { config.ttl.sweep_interval.min(SEED_POLL) } else { config.ttl.sweep_interval };
    // The exact moment it falls asleep, like the moment of expiry.
    if let Some(at) = crate::sleep::falls_asleep_at(config, &pe.spec).filter(|at| *at > now) {
        sweep = sweep.min((at - now).to_std().unwrap_or(Duration::ZERO) + Duration::from_secs(1));
    }
    let outcome = match throttle {
        Some(wait) => Outcome::Throttled { retry_in: wait.min(until_expiry) },
        // Changes of the Applications arrive by watch; this is only the safety net, and the
        // exact moment of expiry.
        None => Outcome::Applied { requeue: sweep.min(until_expiry) },
    };
    Plan { apply, delete, expire: false, status: (previous != Some(&next)).then_some(next), events, update, outcome }
}

/// How often a running loader Job is looked at, at the most.
const SEED_POLL: Duration = Duration::from_secs(15);

/// The Event of a change in the preview's synthetic data.
fn seed_note(before: Option<&crate::crd::SeedStatus>, after: Option<&crate::crd::SeedStatus>) -> Option<Note> {
    use crate::crd::SeedState;
    let after = after?;
    let changed = before.is_none_or(|b| b.state != after.state || b.job != after.job);
    if !changed {
        return None;
    }
    let rows: u64 = after.tables.iter().map(|t| t.rows).sum();
    Some(match after.state {
        SeedState::Loading => Note::normal(
            "SeedLoading",
            format!("Loading {rows} rows into {} tables ({})", after.tables.len(), after.job),
        ),
        SeedState::Loaded => Note::normal("Seeded", format!("Loaded {rows} rows into {} tables", after.tables.len())),
        SeedState::Failed => Note::warning("SeedFailed", after.message.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PreviewEnvironmentSpec;
    use crate::render::Rendered;
    use serde_json::json;

    fn config() -> Config {
        Config::from_yaml(include_str!("../../../docs/examples/config.yaml")).unwrap()
    }

    fn preview(config: &Config, now: DateTime<Utc>) -> PreviewEnvironment {
        let spec = PreviewEnvironmentSpec {
            repository: "acme/shop".into(),
            pr_number: 42,
            head_sha: "abc".into(),
            services: vec!["web".into()],
            last_activity: now,
            ..PreviewEnvironmentSpec::default()
        };
        let mut pe = crate::render::as_applied(config, spec).unwrap();
        pe.status = None;
        pe.metadata.uid = Some("uid-1".into());
        pe
    }

    /// What the API would hold after applying `desired`.
    fn live(desired: &[Desired]) -> Observed {
        let mut observed = Observed::default();
        for d in desired {
            observed.insert(d, d.object.clone());
        }
        observed
    }

    #[test]
    fn a_preview_in_step_with_its_objects_writes_nothing() {
        let (config, now) = (config(), Utc::now());
        let pe = preview(&config, now);
        let resolved = Preview::resolve(&config, &pe).unwrap();
        let desired = Rendered::of(&resolved).desired();
        let nothing = Observed::default();
        let inputs = |pe, observed| Inputs {
            pe,
            config: &config,
            preview: Ok(&resolved),
            desired: &desired,
            withdrawn: &[],
            observed,
            throttle: None,
            seed: None,
            now,
        };
        // Nothing there yet: everything is applied and the status written.
        let first = plan(inputs(&pe, &nothing));
        assert_eq!(first.apply.len(), desired.len());
        let mut written = pe.clone();
        written.status = first.status.clone();
        // Everything there, status as planned: nothing to write.
        let all = live(&desired);
        let again = plan(inputs(&written, &all));
        assert!(again.apply.is_empty() && again.status.is_none() && again.events.is_empty(), "{again:?}");
        assert_eq!(again.outcome, Outcome::Applied { requeue: config.ttl.sweep_interval });
    }

    #[test]
    fn past_its_expiry_a_preview_is_deleted_and_nothing_else() {
        let (config, now) = (config(), Utc::now());
        let pe = preview(&config, now - chrono::Duration::hours(5));
        let resolved = Preview::resolve(&config, &pe).unwrap();
        let desired = Rendered::of(&resolved).desired();
        let observed = Observed::default();
        let expired = plan(Inputs {
            pe: &pe,
            config: &config,
            preview: Ok(&resolved),
            desired: &desired,
            withdrawn: &[],
            observed: &observed,
            throttle: None,
            seed: None,
            now,
        });
        assert!(expired.expire && expired.apply.is_empty() && expired.status.is_none());
        assert_eq!(expired.outcome, Outcome::Expired);
    }

    #[test]
    fn the_live_object_may_have_more_but_not_other() {
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"ports": [{"port": 53}]}});
        let live = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "kubernetes.io/metadata.name": "a"}},
                          "spec": {"ports": [{"port": 53, "protocol": "TCP"}]}, "status": {}});
        assert!(contains(&live, &desired), "server defaults and metadata do not count");
        let changed = json!({"metadata": {"name": "a", "labels": {"x": "2"}}, "spec": {"ports": [{"port": 53}]}});
        assert!(!contains(&live, &changed));
        let more_ports = json!({"metadata": {"name": "a"}, "spec": {"ports": [{"port": 53}, {"port": 54}]}});
        assert!(!contains(&live, &more_ports), "a list is the whole list");
    }
}
