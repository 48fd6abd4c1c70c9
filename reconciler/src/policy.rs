//! What a queue message means for the cluster (pure): create or update a preview, remove it,
//! or do nothing.

use previewd_events::{PrAction, PrState, PreviewEvent};

use crate::config::{Config, ForkPolicy};
use crate::crd::{EventRef, PreviewEnvironmentSpec};

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
    Draft,
    ForkAwaitingLabel,
    /// The fork label was added by someone without write access to the repository.
    ForkLabelUntrusted,
    ForkDenied,
    /// Only files no service claims changed (docs, CI settings).
    NoServicesAffected,
    /// Removed by the TTL.
    Expired,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RepositoryNotConfigured => "repository_not_configured",
            Reason::Closed => "closed",
            Reason::Merged => "merged",
            Reason::OptedOut => "opted_out",
            Reason::Draft => "draft",
            Reason::ForkAwaitingLabel => "fork_awaiting_label",
            Reason::ForkLabelUntrusted => "fork_label_untrusted",
            Reason::ForkDenied => "fork_denied",
            Reason::NoServicesAffected => "no_services_affected",
            Reason::Expired => "expired",
        }
    }

    /// The spelling of [`Reason::as_str`] back (from the removal annotation).
    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    pub const ALL: [Reason; 10] = [
        Reason::RepositoryNotConfigured,
        Reason::Closed,
        Reason::Merged,
        Reason::OptedOut,
        Reason::Draft,
        Reason::ForkAwaitingLabel,
        Reason::ForkLabelUntrusted,
        Reason::ForkDenied,
        Reason::NoServicesAffected,
        Reason::Expired,
    ];
}

pub fn decide(event: &PreviewEvent, config: &Config) -> Decision {
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
    if pr.draft && !policy.deploy_drafts {
        return Decision::Remove { reason: Reason::Draft };
    }
    if pr.fork {
        match policy.forks {
            ForkPolicy::Deny => return Decision::Remove { reason: Reason::ForkDenied },
            ForkPolicy::RequireLabel if !has(&policy.fork_label) => {
                return Decision::Remove { reason: Reason::ForkAwaitingLabel };
            }
            _ => {}
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
        fork_approved_by: None,
        author: pr.author.clone(),
        installation_id: event.installation_id,
        html_url: Some(pr.html_url.clone()),
        last_activity: pr.updated_at,
        ttl_prediction: None,
        last_event: EventRef {
            delivery_id: event.delivery_id.clone(),
            updated_at: pr.updated_at,
            received_at: event.received_at,
        },
    }))
}

/// Whether `event` is older than the one a spec was last written from (stale events never win:
/// by the PR's `updated_at`, then by when the webhook accepted them).
pub fn is_stale(event: &PreviewEvent, last: &EventRef) -> bool {
    (event.pull_request.updated_at, event.received_at) < (last.updated_at, last.received_at)
}
