//! What the PR should show for a preview's state (pure): the deployment status and the sticky
//! comment, as an [`Update`] for the notifier.

use chrono::{DateTime, Utc};
use previewd_events::PreviewEvent;

use super::api::DeploymentState;
use super::comment::{self, Labels, View};
use super::notify::{CommentUpdate, DeploymentUpdate, Update};
use crate::config::Config;
use crate::crd::{Phase, PreviewEnvironment, PreviewEnvironmentStatus};
use crate::policy::Reason;

pub fn labels(config: &Config) -> Labels<'_> {
    Labels {
        fork: &config.policy.fork_label,
        opt_out: &config.policy.opt_out_label,
        opt_in: &config.policy.opt_in_label,
    }
}

/// A live preview: deployment state from its phase, the comment with URL, services, cost and
/// expiry.
pub fn live(config: &Config, pe: &PreviewEnvironment, status: &PreviewEnvironmentStatus) -> Update {
    let spec = &pe.spec;
    let ready = status.services.iter().filter(|s| s.ready).count();
    let total = status.services.len();
    let (state, description) = match status.phase {
        Some(Phase::Ready) => (DeploymentState::Success, format!("Preview ready: {total} services running")),
        Some(Phase::Failed) => {
            let why = status.conditions.iter().find(|c| c.type_ == "Failed").map(|c| c.message.as_str());
            (DeploymentState::Failure, format!("Preview failed: {}", why.unwrap_or("see the preview's events")))
        }
        Some(Phase::Pending) => (DeploymentState::Queued, "Preview queued".to_owned()),
        _ => (DeploymentState::InProgress, format!("Deploying: {ready} of {total} services ready")),
    };
    let do_not_expire = spec.labels.iter().any(|l| l.eq_ignore_ascii_case(&config.policy.do_not_expire_label));
    let gate = config.repository(&spec.repository).and_then(|r| r.build_gate.as_ref());
    let awaiting_build = spec.awaiting_build.as_ref().map(|a| comment::BuildWait {
        sha: &a.sha,
        waiting_for: match gate.map(|g| crate::gate::verdict(g, &a.checks)) {
            Some(crate::gate::Verdict::Waiting { for_checks }) => for_checks,
            _ => Vec::new(),
        },
        failed: a.failed.as_deref(),
    });
    let body = comment::render(&View::Live {
        status,
        head_sha: &spec.head_sha,
        awaiting_approval: spec.awaiting_approval.as_ref().map(|a| a.sha.as_str()),
        awaiting_build: awaiting_build.clone(),
        baseline: crate::render::baseline::unchanged(config, &pe.spec),
        sizing: spec.sizing.as_ref(),
        labels: labels(config),
        do_not_expire_label: &config.policy.do_not_expire_label,
        do_not_expire,
        ttl_prediction: spec.ttl_prediction.as_ref(),
    });
    let comment = CommentUpdate { body, create: true };
    if let Some(waiting) = &spec.awaiting_approval {
        // The PR's head is the unapproved commit: its deployment waits, while the approved
        // commit's deployment keeps its state (and "View deployment" its URL).
        let description = format!(
            "Waiting for a maintainer to approve this commit (add the `{}` label again); the preview runs {}",
            config.policy.fork_label,
            comment::short(&spec.head_sha)
        );
        let deployment = DeploymentUpdate { state: DeploymentState::Pending, url: None, description };
        return for_commit(pe, &waiting.sha, deployment, comment);
    }
    if let Some(wait) = &awaiting_build {
        // The head waits for its build: its deployment says so; the running commit's keeps
        // its state.
        let (state, description) = match wait.failed {
            Some(why) => (DeploymentState::Failure, format!("Will not deploy: {why}")),
            None => (DeploymentState::Pending, format!("Waiting for the build: {}", wait.waiting_for.join(", "))),
        };
        return for_commit(pe, wait.sha, DeploymentUpdate { state, url: None, description }, comment);
    }
    let url = status.url.clone().filter(|_| state == DeploymentState::Success);
    for_preview(pe, DeploymentUpdate { state, url, description }, comment)
}

/// The update about `pe`'s PR at its head commit.
fn for_preview(pe: &PreviewEnvironment, deployment: DeploymentUpdate, comment: CommentUpdate) -> Update {
    for_commit(pe, &pe.spec.head_sha, deployment, comment)
}

/// The update about `pe`'s PR, with the deployment of commit `sha`.
fn for_commit(pe: &PreviewEnvironment, sha: &str, deployment: DeploymentUpdate, comment: CommentUpdate) -> Update {
    let spec = &pe.spec;
    Update {
        installation: spec.installation_id,
        repository: spec.repository.clone(),
        number: spec.pr_number,
        head_sha: sha.to_owned(),
        deployment: Some(deployment),
        comment: Some(comment),
    }
}

/// A preview being deleted: its deployment becomes inactive ("destroyed" on the PR) and the
/// comment says when and why. `at` is the deletion time, so the update is the same on every
/// retry.
pub fn destroyed(config: &Config, pe: &PreviewEnvironment, reason: Option<Reason>, at: DateTime<Utc>) -> Update {
    let body = comment::render(&View::Destroyed { reason, at, labels: labels(config) });
    let deployment =
        DeploymentUpdate { state: DeploymentState::Inactive, url: None, description: "Preview destroyed".to_owned() };
    for_preview(pe, deployment, CommentUpdate { body, create: false })
}

/// A PR that gets no preview: the comment says why (a new comment only where the author can
/// act on it; see [`comment::explains`]).
pub fn not_created(config: &Config, event: &PreviewEvent, reason: Reason) -> Update {
    let body = comment::render(&View::NotCreated { reason, labels: labels(config) });
    Update {
        installation: event.installation_id,
        repository: event.repository.full_name.clone(),
        number: event.pull_request.number,
        head_sha: event.pull_request.head_sha.clone(),
        deployment: None,
        comment: Some(CommentUpdate { body, create: comment::explains(reason) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PreviewEnvironmentSpec;
    use crate::crd::ServiceStatus;

    fn pe() -> PreviewEnvironment {
        PreviewEnvironment::new(
            "preview-shop-pr-42",
            PreviewEnvironmentSpec {
                repository: "acme/shop".into(),
                pr_number: 42,
                head_sha: "ec26c3e57ca3".into(),
                installation_id: Some(7),
                ..PreviewEnvironmentSpec::default()
            },
        )
    }

    #[test]
    fn phases_map_to_deployment_states_and_the_url_waits_for_ready() {
        let config = Config::from_yaml(include_str!("../../../docs/examples/config.yaml")).unwrap();
        let mut status = PreviewEnvironmentStatus {
            phase: Some(Phase::Deploying),
            url: Some("https://shop-pr-42.preview.example.com".into()),
            services: vec![ServiceStatus {
                name: "web".into(),
                ready: false,
                health: Some("Progressing".into()),
                sync: None,
                revision: None,
                message: None,
            }],
            ..Default::default()
        };
        let deploying = live(&config, &pe(), &status);
        let d = deploying.deployment.clone().unwrap();
        assert_eq!(
            (d.state, d.url, d.description.as_str()),
            (DeploymentState::InProgress, None, "Deploying: 0 of 1 services ready")
        );
        assert_eq!((deploying.installation, deploying.environment()), (Some(7), "preview/pr-42".to_owned()));
        status.phase = Some(Phase::Ready);
        let ready = live(&config, &pe(), &status).deployment.unwrap();
        assert_eq!(ready.state, DeploymentState::Success);
        assert_eq!(ready.url.as_deref(), Some("https://shop-pr-42.preview.example.com"));

        let at = "2026-11-27T10:00:00Z".parse().unwrap();
        let gone = destroyed(&config, &pe(), Some(Reason::Merged), at);
        assert_eq!(gone.deployment.unwrap().state, DeploymentState::Inactive);
        let comment = gone.comment.unwrap();
        assert!(!comment.create && comment.body.contains("merged"), "{}", comment.body);
        assert_eq!(destroyed(&config, &pe(), Some(Reason::Merged), at).comment.unwrap().body, comment.body, "stable");
    }
}
