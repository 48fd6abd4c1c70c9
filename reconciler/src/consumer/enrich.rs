//! What GitHub and the AI add to a spec before it is written: who opted a fork in, which
//! services the changed files (and the AI) choose, and a predicted TTL for quiet PRs.

use previewd_events::{PrAction, PreviewEvent};

use super::Consumer;
use crate::ai::{self, answer, engine::AiEngine, excerpt::ChangedFile};
use crate::config::{AiMode, RepositoryConfig};
use crate::crd::{AiVerdict, PreviewEnvironment, PreviewEnvironmentSpec, SelectedBy, ServiceSelection, TtlPrediction};
use crate::github::client::GitHubError;

impl Consumer {
    /// Who opted this fork PR in, if it was someone with write access to the repository: the
    /// sender of a `labeled` event for the fork label, else whoever last added that label
    /// (from the PR's issue events). An approval holds while the label stays on the PR.
    pub(super) async fn fork_approval(
        &self,
        event: &PreviewEvent,
        existing: Option<&PreviewEnvironment>,
    ) -> Result<Option<String>, GitHubError> {
        if let Some(by) = existing.and_then(|e| e.spec.fork_approved_by.clone()) {
            return Ok(Some(by));
        }
        let Some(notifier) = &self.github else {
            tracing::warn!(pr = event.pull_request.number, "fork label cannot be verified without GitHub credentials");
            return Ok(None);
        };
        let github = notifier.github();
        let (installation, repo, label) =
            (event.installation_id, event.repository.full_name.as_str(), self.config.policy.fork_label.as_str());
        let labeler = match &event.label {
            Some(added) if event.action == PrAction::Labeled && added.eq_ignore_ascii_case(label) => {
                Some(event.sender.clone())
            }
            _ => github.label_added_by(installation, repo, event.pull_request.number, label).await?,
        };
        let Some(labeler) = labeler else { return Ok(None) };
        let allowed = github.can_push(installation, repo, &labeler).await?;
        tracing::info!(pr = event.pull_request.number, %labeler, allowed, "fork opt-in label checked");
        Ok(allowed.then_some(labeler))
    }

    /// Narrows `spec.services` to those the PR's changed files touch: the path globs, merged
    /// with the AI's answer when AI is on (`ai.mode`). Files are read once per head commit; if
    /// GitHub cannot say, every service deploys (and the next event tries again).
    pub(super) async fn select_services(
        &self,
        repo: &RepositoryConfig,
        event: &PreviewEvent,
        existing: Option<&PreviewEnvironment>,
        spec: &mut PreviewEnvironmentSpec,
    ) {
        let selection = |by, note: Option<String>| ServiceSelection {
            by,
            head_sha: spec.head_sha.clone(),
            changed_files: None,
            note,
            ai: None,
        };
        let Some(matcher) = self.matchers.get(&repo.name).filter(|m| m.has_paths()) else {
            spec.selection = Some(selection(SelectedBy::AllServices, None));
            return;
        };
        if let Some(previous) = existing.map(|e| &e.spec)
            && let Some(chosen) = &previous.selection
            && chosen.head_sha == spec.head_sha
            && chosen.by != SelectedBy::Fallback
            && previous.base_ref == spec.base_ref
        {
            spec.services = previous.services.clone();
            spec.selection = Some(chosen.clone());
            return;
        }
        let Some(notifier) = &self.github else {
            let note = Some("GitHub is not configured: the changed files are unknown".to_owned());
            spec.selection = Some(selection(SelectedBy::AllServices, note));
            return;
        };
        let number = event.pull_request.number;
        let changes =
            match notifier.github().pr_changes(event.installation_id, &event.repository.full_name, number).await {
                Ok(changes) => changes,
                Err(err) => {
                    tracing::warn!(pr = number, error = %err, "changed files unavailable; deploying every service");
                    let note = Some(format!("changed files unavailable: {err}"));
                    spec.selection = Some(selection(SelectedBy::Fallback, note));
                    return;
                }
            };
        let files: Vec<&str> = changes
            .iter()
            .flat_map(|c| std::iter::once(c.filename.as_str()).chain(c.previous_filename.as_deref()))
            .collect();
        spec.services = matcher.services_for(files.iter().copied());
        let mut chosen =
            ServiceSelection { changed_files: Some(files.len() as u64), ..selection(SelectedBy::Paths, None) };
        if let Some(engine) = &self.ai {
            let changed: Vec<ChangedFile> =
                changes.iter().map(|c| ChangedFile { path: c.filename.clone(), patch: c.patch.clone() }).collect();
            let (services, verdict) = ask_ai(engine, repo, &changed, &spec.services).await;
            if verdict.error.is_none() && (!verdict.added.is_empty() || !verdict.removed.is_empty()) {
                chosen.by = SelectedBy::PathsAndAi;
            }
            spec.services = services;
            chosen.ai = Some(verdict);
        }
        spec.selection = Some(chosen);
    }

    /// A shorter idle TTL for a quiet PR, from its activity on GitHub (when predicted).
    pub(super) async fn predict_ttl(&self, event: &PreviewEvent, spec: &mut PreviewEnvironmentSpec) {
        let (Some(engine), Some(notifier)) = (&self.ai, &self.github) else { return };
        if !engine.config().features.ttl_prediction {
            return;
        }
        let number = event.pull_request.number;
        match notifier.github().pr_activity(event.installation_id, &event.repository.full_name, number).await {
            Ok(a) => {
                let activity = ai::ttl::Activity {
                    commits: a.commits,
                    comments: a.comments + a.review_comments,
                    opened_at: a.created_at,
                };
                spec.ttl_prediction = ai::ttl::predict_idle(activity, self.config.ttl.idle, chrono::Utc::now())
                    .map(|(idle, reason)| TtlPrediction { idle_seconds: idle.as_secs(), reason });
            }
            Err(err) => tracing::debug!(pr = number, error = %err, "PR activity unavailable; no TTL prediction"),
        }
    }
}

/// The AI's answer merged with the path globs' choice, and what to record about it. Any
/// failure keeps the path globs' choice.
async fn ask_ai(
    engine: &AiEngine,
    repo: &RepositoryConfig,
    changed: &[ChangedFile],
    static_services: &[String],
) -> (Vec<String>, AiVerdict) {
    let config = engine.config();
    let mut verdict =
        AiVerdict { model: config.model.clone(), prompt: ai::PROMPT_VERSION.to_owned(), ..AiVerdict::default() };
    match engine.detect(repo, changed).await {
        Ok(detection) => {
            let answer = &detection.answer;
            let mode = if config.features.service_detection { config.mode } else { AiMode::StaticOnly };
            let merged = answer::merge_for(repo, static_services, answer, mode, config.min_confidence);
            verdict.cached = detection.cached;
            verdict.services = answer.services.iter().map(|p| format!("{} ({:.2})", p.name, p.confidence)).collect();
            verdict.tests = if config.features.test_selection { answer.tests.clone() } else { Vec::new() };
            verdict.added = merged.added;
            verdict.removed = merged.removed;
            (merged.services, verdict)
        }
        Err(err) => {
            tracing::warn!(error = %err, kind = err.label(), "AI service detection failed; the path globs decide");
            verdict.error = Some(err.to_string());
            (static_services.to_vec(), verdict)
        }
    }
}
