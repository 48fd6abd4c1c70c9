//! What a queue message means for the cluster (pure): create or update a preview, remove it,
//! or do nothing. A fork's code deploys only at a commit a maintainer approved: the fork label,
//! added by someone with push access, approves the head commit of its `labeled` event, and a
//! later push waits (the preview keeps the approved commit) until the label is added again.

use previewd_events::{PrAction, PrState, PreviewEvent};

use crate::config::{Config, ForkPolicy};
use crate::crd::{AwaitingApproval, EventRef, ForkApproval, PreviewEnvironmentSpec};

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Server-side apply this spec.
    Upsert(Box<PreviewEnvironmentSpec>),
    /// Make sure no preview exists for the PR (idempotent: nothing to do if none does).
    Remove { reason: Reason },
    /// Not Previewd's business.
    Ignore { reason: Reason },
}

/// Why a preview is not (or no longer) there; shown in logs, metrics and the PR comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    RepositoryNotConfigured,
    Closed,
    Merged,
    OptedOut,
    /// An opt-in repository, and the PR has not asked for a preview.
    NotOptedIn,
    Draft,
    ForkAwaitingLabel,
    /// The fork label was added by someone without write access to the repository.
    ForkLabelUntrusted,
    /// The fork label is on the PR, but no maintainer approved its head commit (a push after
    /// the approval, or a preview that expired): adding the label again approves it.
    ForkCommitUnapproved,
    ForkDenied,
    /// Only files no service claims changed (docs, CI settings).
    NoServicesAffected,
    /// Removed by the TTL.
    Expired,
    /// Removed by a writer's `/preview destroy`.
    Destroyed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RepositoryNotConfigured => "repository_not_configured",
            Reason::Closed => "closed",
            Reason::Merged => "merged",
            Reason::OptedOut => "opted_out",
            Reason::NotOptedIn => "not_opted_in",
            Reason::Draft => "draft",
            Reason::ForkAwaitingLabel => "fork_awaiting_label",
            Reason::ForkLabelUntrusted => "fork_label_untrusted",
            Reason::ForkCommitUnapproved => "fork_commit_unapproved",
            Reason::ForkDenied => "fork_denied",
            Reason::NoServicesAffected => "no_services_affected",
            Reason::Expired => "expired",
            Reason::Destroyed => "destroyed",
        }
    }

    /// The spelling of [`Reason::as_str`] back (from the removal annotation).
    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    pub const ALL: [Reason; 13] = [
        Reason::RepositoryNotConfigured,
        Reason::Closed,
        Reason::Merged,
        Reason::OptedOut,
        Reason::NotOptedIn,
        Reason::Draft,
        Reason::ForkAwaitingLabel,
        Reason::ForkLabelUntrusted,
        Reason::ForkCommitUnapproved,
        Reason::ForkDenied,
        Reason::NoServicesAffected,
        Reason::Expired,
        Reason::Destroyed,
    ];
}

/// What this event says about a maintainer's approval of the fork's head commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// It carries none (it is not a `labeled` event for the fork label).
    None,
    /// The fork label was just added by this user, who has push access: it approves the
    /// event's head commit.
    Verified(String),
    /// The fork label was just added by someone without push access (or who cannot be checked).
    Untrusted,
}

/// Whether `event` is a maintainer's gesture of approval that must be checked with GitHub (and
/// must not be superseded by a newer event of the same batch): the fork label added to a fork
/// PR under `forks: requireLabel`.
pub fn offers_approval(event: &PreviewEvent, config: &Config) -> bool {
    event.pull_request.fork
        && config.policy.forks == ForkPolicy::RequireLabel
        && event.action == PrAction::Labeled
        && event.label.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(&config.policy.fork_label))
}

/// Whether a fork's head commit deploys, given its preview (if any) and the event's approval.
enum ForkGate {
    Deploy(ForkApproval),
    /// The approved commit keeps running; the head waits for an approval.
    Hold,
    Refuse(Reason),
}

fn fork_gate(
    event: &PreviewEvent,
    config: &Config,
    existing: Option<&PreviewEnvironmentSpec>,
    approval: Approval,
) -> ForkGate {
    let pr = &event.pull_request;
    let labelled = pr.labels.iter().any(|l| l.eq_ignore_ascii_case(&config.policy.fork_label));
    if let (true, Approval::Verified(by)) = (labelled, &approval) {
        return ForkGate::Deploy(ForkApproval { by: by.clone(), sha: pr.head_sha.clone() });
    }
    match existing.and_then(|spec| spec.fork_approval.as_ref()) {
        Some(approved) if approved.sha == pr.head_sha && labelled => ForkGate::Deploy(approved.clone()),
        // A push after the approval (with the label still on, or taken off to be added again).
        Some(approved) if approved.sha != pr.head_sha => ForkGate::Hold,
        // The label was taken off the approved commit: the approval is withdrawn.
        _ if !labelled => ForkGate::Refuse(Reason::ForkAwaitingLabel),
        _ if approval == Approval::Untrusted => ForkGate::Refuse(Reason::ForkLabelUntrusted),
        _ => ForkGate::Refuse(Reason::ForkCommitUnapproved),
    }
}

/// What `event` means for the PR's preview. `existing` is the PR's PreviewEnvironment spec, if
/// it has one (a fork's approval lives there); `approval` is what the event approves, checked
/// against GitHub by the caller (see [`offers_approval`]).
pub fn decide(
    event: &PreviewEvent,
    config: &Config,
    existing: Option<&PreviewEnvironmentSpec>,
    approval: Approval,
) -> Decision {
    decide_requested(event, config, existing, approval, None)
}

/// [`decide`] for a PR a writer asked a preview for with `/preview` (`requested_by`, checked
/// with GitHub by the caller), or whose preview was asked for so before (in `existing`): that
/// is the way in for an opt-in repository. A fork still needs the maintainer's label on the
/// commit (the comment names no commit).
pub fn decide_requested(
    event: &PreviewEvent,
    config: &Config,
    existing: Option<&PreviewEnvironmentSpec>,
    approval: Approval,
    requested_by: Option<&str>,
) -> Decision {
    let mut requested = existing.and_then(|s| s.requested.clone());
    if let Some(by) = requested_by {
        requested.get_or_insert_with(Default::default).by = Some(by.to_owned());
    }
    let asked = requested.as_ref().is_some_and(|r| r.by.is_some());
    let Some(repo) = config.repository(&event.repository.full_name) else {
        return Decision::Ignore { reason: Reason::RepositoryNotConfigured };
    };
    let pr = &event.pull_request;
    if event.action == PrAction::Closed || pr.state == PrState::Closed {
        let reason = if pr.merged { Reason::Merged } else { Reason::Closed };
        return Decision::Remove { reason };
    }
    let policy = &config.policy;
    let has = |label: &str| pr.labels.iter().any(|l| l.eq_ignore_ascii_case(label));
    if has(&policy.opt_out_label) {
        return Decision::Remove { reason: Reason::OptedOut };
    }
    if repo.mode.unwrap_or(policy.mode) == crate::config::PolicyMode::OptIn && !has(&policy.opt_in_label) && !asked {
        return Decision::Remove { reason: Reason::NotOptedIn };
    }
    if pr.draft && !policy.deploy_drafts {
        return Decision::Remove { reason: Reason::Draft };
    }
    let last_event = EventRef {
        delivery_id: event.delivery_id.clone(),
        updated_at: pr.updated_at,
        received_at: event.received_at,
        traceparent: None,
    };
    let mut fork_approval = None;
    if pr.fork {
        match policy.forks {
            ForkPolicy::Deny => return Decision::Remove { reason: Reason::ForkDenied },
            ForkPolicy::Allow => {}
            ForkPolicy::RequireLabel => match fork_gate(event, config, existing, approval) {
                ForkGate::Deploy(approved) => fork_approval = Some(approved),
                ForkGate::Refuse(reason) => return Decision::Remove { reason },
                ForkGate::Hold => {
                    // Everything as approved (commit, services); only what the PR's activity
                    // changes moves on, and the head is recorded as waiting.
                    let Some(previous) = existing else {
                        return Decision::Remove { reason: Reason::ForkCommitUnapproved };
                    };
                    let mut held = previous.clone();
                    held.labels = pr.labels.clone();
                    held.html_url = Some(pr.html_url.clone());
                    held.last_activity = pr.updated_at;
                    held.last_event = last_event;
                    held.requested = requested;
                    held.awaiting_approval = Some(AwaitingApproval { sha: pr.head_sha.clone(), since: pr.updated_at });
                    return Decision::Upsert(Box::new(held));
                }
            },
        }
    }
    Decision::Upsert(Box::new(PreviewEnvironmentSpec {
        repository: repo.name.clone(),
        pr_number: pr.number,
        head_sha: pr.head_sha.clone(),
        head_ref: pr.head_ref.clone(),
        base_ref: pr.base_ref.clone(),
        // Every configured service until the PR's files are known (service detection narrows it).
        services: repo.services.iter().map(|s| s.name.clone()).collect(),
        selection: None,
        labels: pr.labels.clone(),
        fork: pr.fork,
        fork_approval,
        awaiting_approval: None,
        author: pr.author.clone(),
        installation_id: event.installation_id,
        html_url: Some(pr.html_url.clone()),
        last_activity: pr.updated_at,
        ttl_prediction: None,
        last_event,
        requested,
        awaiting_build: existing.and_then(|s| s.awaiting_build.clone()),
        // The arm is the hash's: recorded once, with its corrections kept across pushes.
        experiment: existing
            .and_then(|s| s.experiment.clone())
            .filter(|e| repo.experiment.as_ref().is_some_and(|x| x.name == e.experiment))
            .or_else(|| crate::experiment::record(repo.experiment.as_ref(), &repo.name, pr.number)),
        // Sized by the intake from the latest proposals; kept until it sizes again.
        sizing: existing.and_then(|s| s.sizing.clone()),
    }))
}

/// The approval an event would carry if GitHub confirmed its sender may push: for `previewd
/// render` and `previewd consume` without a cluster, where there is no GitHub to ask.
pub fn assumed_approval(event: &PreviewEvent, config: &Config) -> Approval {
    if offers_approval(event, config) { Approval::Verified(event.sender.clone()) } else { Approval::None }
}

/// [`decide`] for an event of a PR with no preview yet, its fork label (if just added) taken
/// as a maintainer's approval ([`assumed_approval`]).
pub fn decide_offline(event: &PreviewEvent, config: &Config) -> Decision {
    decide(event, config, None, assumed_approval(event, config))
}

/// Whether `event` is older than the one a spec was last written from (stale events never win:
/// by the PR's `updated_at`, then by when the webhook accepted them).
pub fn is_stale(event: &PreviewEvent, last: &EventRef) -> bool {
    (event.pull_request.updated_at, event.received_at) < (last.updated_at, last.received_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_yaml(include_str!("../../docs/examples/config.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn fork(action: PrAction, sha: &str, labelled: bool) -> PreviewEvent {
        let text = include_str!("../../docs/examples/events/fork-labeled.json");
        let mut event = PreviewEvent::from_json(text).unwrap_or_else(|e| panic!("{e}"));
        event.action = action;
        event.label = (action == PrAction::Labeled).then(|| "preview-fork".to_owned());
        event.pull_request.head_sha = sha.to_owned();
        event.pull_request.labels = if labelled { vec!["preview-fork".into()] } else { vec![] };
        event
    }

    fn approved_at(sha: &str) -> PreviewEnvironmentSpec {
        let config = config();
        let event = fork(PrAction::Labeled, sha, true);
        match decide(&event, &config, None, Approval::Verified("maintainer".into())) {
            Decision::Upsert(spec) => *spec,
            other => panic!("{other:?}"),
        }
    }

    fn head(decision: &Decision) -> Option<(&str, Option<&str>)> {
        match decision {
            Decision::Upsert(spec) => {
                Some((spec.head_sha.as_str(), spec.awaiting_approval.as_ref().map(|a| a.sha.as_str())))
            }
            _ => None,
        }
    }

    #[test]
    fn a_fork_deploys_only_commits_a_maintainer_approved() {
        let c = config();
        let x = approved_at("x");
        assert_eq!(x.fork_approval, Some(ForkApproval { by: "maintainer".into(), sha: "x".into() }));
        // A push waits, with or without the label (taken off to be added again).
        for labelled in [true, false] {
            let d = decide(&fork(PrAction::Synchronize, "y", labelled), &c, Some(&x), Approval::None);
            assert_eq!(head(&d), Some(("x", Some("y"))), "labelled: {labelled}");
        }
        // Only a verified label on the new head moves it.
        let d = decide(&fork(PrAction::Labeled, "y", true), &c, Some(&x), Approval::Untrusted);
        assert_eq!(head(&d), Some(("x", Some("y"))));
        let d = decide(&fork(PrAction::Labeled, "y", true), &c, Some(&x), Approval::Verified("m".into()));
        assert_eq!(head(&d), Some(("y", None)));
        // Events at the approved commit keep it; the label taken off it withdraws it.
        let d = decide(&fork(PrAction::Labeled, "x", true), &c, Some(&x), Approval::None);
        assert_eq!(head(&d), Some(("x", None)));
        let d = decide(&fork(PrAction::Unlabeled, "x", false), &c, Some(&x), Approval::None);
        assert_eq!(d, Decision::Remove { reason: Reason::ForkAwaitingLabel });
        // Without a preview (never approved, or expired), the label alone approves nothing.
        let d = decide(&fork(PrAction::Synchronize, "z", true), &c, None, Approval::None);
        assert_eq!(d, Decision::Remove { reason: Reason::ForkCommitUnapproved });
        let d = decide(&fork(PrAction::Labeled, "z", true), &c, None, Approval::Untrusted);
        assert_eq!(d, Decision::Remove { reason: Reason::ForkLabelUntrusted });
        let d = decide(&fork(PrAction::Opened, "z", false), &c, None, Approval::None);
        assert_eq!(d, Decision::Remove { reason: Reason::ForkAwaitingLabel });
    }

    #[test]
    fn a_held_preview_moves_only_with_the_prs_activity() {
        let c = config();
        let x = approved_at("x");
        let mut push = fork(PrAction::Synchronize, "y", true);
        push.pull_request.labels.push("do-not-expire".into());
        push.pull_request.updated_at += chrono::Duration::hours(1);
        push.delivery_id = "push".into();
        let Decision::Upsert(held) = decide(&push, &c, Some(&x), Approval::None) else { panic!() };
        assert_eq!(
            (held.services.clone(), held.head_ref.clone(), held.fork_approval.clone()),
            (x.services, x.head_ref, x.fork_approval)
        );
        assert_eq!(held.labels, ["preview-fork", "do-not-expire"]);
        assert_eq!((held.last_activity, held.last_event.delivery_id.as_str()), (push.pull_request.updated_at, "push"));
    }

    #[test]
    fn only_the_fork_label_being_added_offers_an_approval() {
        let c = config();
        assert!(offers_approval(&fork(PrAction::Labeled, "x", true), &c));
        assert!(!offers_approval(&fork(PrAction::Synchronize, "x", true), &c));
        let mut other = fork(PrAction::Labeled, "x", true);
        other.label = Some("do-not-expire".into());
        assert!(!offers_approval(&other, &c));
        let mut same_repo = fork(PrAction::Labeled, "x", true);
        same_repo.pull_request.fork = false;
        assert!(!offers_approval(&same_repo, &c));
        assert_eq!(assumed_approval(&fork(PrAction::Labeled, "x", true), &c), Approval::Verified("maintainer".into()));
    }
}
