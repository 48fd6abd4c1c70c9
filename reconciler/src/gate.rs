//! The build gate (pure): a commit deploys only after the checks its repository names passed.
//! While it waits, the preview keeps serving its last good commit, with that commit's services;
//! a new preview deploys nothing until its first commit passes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use previewd_events::CheckState;

use crate::config::BuildGate;
use crate::crd::{AwaitingBuild, PreviewEnvironmentSpec};

/// What the named checks say about a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Waiting { for_checks: Vec<String> },
    Failed(String),
}

/// The verdict of `gate` over what the checks said so far (`checks`: name -> state).
pub fn verdict(gate: &BuildGate, checks: &BTreeMap<String, String>) -> Verdict {
    let state = |name: &str| checks.get(name).map(String::as_str);
    if let Some(failed) = gate.checks.iter().find(|c| state(c) == Some(CheckState::Failure.as_str())) {
        return Verdict::Failed(format!("check `{failed}` failed"));
    }
    let passed = |c: &&String| matches!(state(c), Some("success" | "neutral"));
    let waiting: Vec<String> = gate.checks.iter().filter(|c| !passed(c)).cloned().collect();
    if waiting.is_empty() { Verdict::Passed } else { Verdict::Waiting { for_checks: waiting } }
}

/// Holds a freshly decided `spec` at its last good commit when its head has not passed the gate
/// yet. Returns whether the head now waits (a new wait or a continued one).
pub fn hold(
    previous: Option<&PreviewEnvironmentSpec>,
    spec: &mut PreviewEnvironmentSpec,
    since: DateTime<Utc>,
) -> bool {
    let head = spec.head_sha.clone();
    if previous.is_some_and(|p| p.head_sha == head && p.awaiting_build.as_ref().is_none_or(|a| a.sha != head)) {
        // Deployed already: this commit passed before.
        spec.awaiting_build = None;
        return false;
    }
    let same = previous.and_then(|p| p.awaiting_build.as_ref()).filter(|a| a.sha == head);
    let awaiting = AwaitingBuild {
        sha: head,
        since: same.map_or(since, |a| a.since),
        checks: same.map(|a| a.checks.clone()).unwrap_or_default(),
        failed: same.and_then(|a| a.failed.clone()),
        services: spec.services.clone(),
        selection: spec.selection.clone(),
    };
    match previous.filter(|p| !p.head_sha.is_empty()) {
        Some(good) => {
            spec.head_sha = good.head_sha.clone();
            spec.services = good.services.clone();
            spec.selection = good.selection.clone();
        }
        // Nothing good yet: the services are known, the commit is not deployed.
        None => spec.head_sha = String::new(),
    }
    spec.awaiting_build = Some(awaiting);
    true
}

/// Records check results for the waiting commit `sha` and applies the verdict: a pass deploys
/// the commit, a failure is kept for the PR to read. Returns whether the spec changed.
pub fn record(
    spec: &mut PreviewEnvironmentSpec,
    gate: &BuildGate,
    sha: &str,
    results: impl IntoIterator<Item = (String, CheckState)>,
) -> bool {
    let Some(awaiting) = spec.awaiting_build.as_mut().filter(|a| a.sha == sha) else { return false };
    let before = awaiting.clone();
    for (name, state) in results {
        if gate.names(&name) && state != CheckState::Pending {
            awaiting.checks.insert(name, state.as_str().to_owned());
        }
    }
    match verdict(gate, &awaiting.checks) {
        Verdict::Passed => {
            promote(spec);
            true
        }
        Verdict::Failed(why) => {
            awaiting.failed = Some(why);
            *awaiting != before
        }
        // A check that passed on a re-run clears an earlier failure.
        Verdict::Waiting { .. } => {
            if awaiting.failed.as_deref().is_some_and(|f| f.starts_with("check ")) {
                awaiting.failed = None;
            }
            *awaiting != before
        }
    }
}

/// The waiting commit deploys, with the services chosen for it.
fn promote(spec: &mut PreviewEnvironmentSpec) {
    if let Some(awaiting) = spec.awaiting_build.take() {
        spec.head_sha = awaiting.sha;
        spec.services = awaiting.services;
        spec.selection = awaiting.selection;
    }
}

/// Marks a wait longer than the gate's timeout as failed. Returns whether the spec changed.
pub fn time_out(spec: &mut PreviewEnvironmentSpec, gate: &BuildGate, now: DateTime<Utc>) -> bool {
    let Some(awaiting) = spec.awaiting_build.as_mut().filter(|a| a.failed.is_none()) else { return false };
    let limit = chrono::Duration::from_std(gate.timeout).unwrap_or(chrono::Duration::MAX);
    if awaiting.since.checked_add_signed(limit).is_none_or(|deadline| now < deadline) {
        return false;
    }
    let Verdict::Waiting { for_checks } = verdict(gate, &awaiting.checks) else { return false };
    awaiting.failed = Some(format!(
        "timed out after {} waiting for {}",
        humantime_serde::re::humantime::format_duration(gate.timeout),
        for_checks.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
    ));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> BuildGate {
        BuildGate { checks: vec!["build".into(), "ci/e2e".into()], timeout: std::time::Duration::from_secs(1800) }
    }

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::minutes(minutes)
    }

    fn spec(sha: &str, services: &[&str]) -> PreviewEnvironmentSpec {
        PreviewEnvironmentSpec {
            head_sha: sha.into(),
            services: services.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_preview_deploys_nothing_until_its_first_commit_passes() {
        let mut first = spec("a", &["web"]);
        assert!(hold(None, &mut first, at(0)));
        assert_eq!((first.head_sha.as_str(), first.services.as_slice()), ("", &["web".to_owned()][..]));
        assert!(!record(&mut first, &gate(), "other", [("build".into(), CheckState::Success)]));
        assert!(record(&mut first, &gate(), "a", [("build".into(), CheckState::Success)]));
        assert_eq!(first.head_sha, "");
        assert!(record(&mut first, &gate(), "a", [("ci/e2e".into(), CheckState::Neutral)]));
        assert_eq!((first.head_sha.as_str(), first.awaiting_build.is_none()), ("a", true));
    }

    #[test]
    fn a_push_waits_while_the_last_good_commit_keeps_serving() {
        let good = spec("a", &["web"]);
        let mut next = spec("b", &["web", "api"]);
        assert!(hold(Some(&good), &mut next, at(10)));
        assert_eq!((next.head_sha.as_str(), next.services.len()), ("a", 1));
        assert!(record(&mut next, &gate(), "b", [("build".into(), CheckState::Failure)]));
        assert_eq!(next.awaiting_build.as_ref().and_then(|a| a.failed.as_deref()), Some("check `build` failed"));
        // The same commit again (a label, say) keeps its wait and what was recorded.
        let mut again = spec("b", &["web", "api"]);
        assert!(hold(Some(&next), &mut again, at(20)));
        assert_eq!(again.awaiting_build, next.awaiting_build);
        // A re-run passes.
        assert!(record(
            &mut again,
            &gate(),
            "b",
            [("build".into(), CheckState::Success), ("ci/e2e".into(), CheckState::Success)]
        ));
        assert_eq!((again.head_sha.as_str(), again.services.len()), ("b", 2));
        // Deployed commits do not wait again.
        let mut same = spec("b", &["web", "api"]);
        assert!(!hold(Some(&again), &mut same, at(30)));
    }

    #[test]
    fn a_wait_past_the_timeout_fails_and_says_what_it_waited_for() {
        let mut waiting = spec("a", &["web"]);
        hold(None, &mut waiting, at(0));
        record(&mut waiting, &gate(), "a", [("build".into(), CheckState::Success)]);
        assert!(!time_out(&mut waiting, &gate(), at(29)));
        assert!(time_out(&mut waiting, &gate(), at(30)));
        let failed = waiting.awaiting_build.and_then(|a| a.failed).unwrap_or_default();
        assert_eq!(failed, "timed out after 30m waiting for `ci/e2e`");
    }
}
