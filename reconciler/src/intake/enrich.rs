//! What GitHub and the AI add to a spec before it is written: whether a fork label was added
//! by a maintainer, which services the changed files (and the AI) choose, and a predicted TTL
//! for quiet PRs.

use previewd_events::PreviewEvent;

use super::Intake;
use crate::ai::{self, answer, engine::AiEngine, excerpt::ChangedFile};
use crate::config::{AiMode, RepositoryConfig};
use crate::crd::{AiVerdict, PreviewEnvironment, PreviewEnvironmentSpec, SelectedBy, ServiceSelection, TtlPrediction};
use crate::github::client::GitHubError;
use crate::github::source;
use crate::policy::Approval;

impl Intake {
    /// What a fork label just added approves: the head commit of this `labeled` event, if its
    /// sender has push access to the repository (asked of GitHub). Without GitHub credentials
    /// nobody can be checked, so nothing is approved.
    pub(super) async fn verify_approval(&self, event: &PreviewEvent) -> Result<Approval, GitHubError> {
        let Some(github) = &self.github else {
            tracing::warn!(pr = event.pull_request.number, "fork label cannot be verified without GitHub credentials");
            return Ok(Approval::Untrusted);
        };
        let (installation, repo, labeler) =
            (event.installation_id, event.repository.full_name.as_str(), event.sender.as_str());
        let allowed = github.can_push(installation, repo, labeler).await?;
        tracing::info!(pr = event.pull_request.number, %labeler, allowed, sha = %event.pull_request.head_sha, "fork approval checked");
        Ok(if allowed { Approval::Verified(labeler.to_owned()) } else { Approval::Untrusted })
    }

    /// Narrows `spec.services` to those the PR's changed files reach: through each service's
    /// build graph when build roots are configured (read from GitHub at the head commit), else
    /// the path globs; merged with the AI's answer when AI is on (`ai.mode`). Files are read
    /// once per head commit; if GitHub cannot say, every service deploys (and the next event
    /// tries again). If the build graph cannot be read, the globs decide.
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
            reasons: Default::default(),
            changed: Vec::new(),
        };
        if let Some(named) = spec.requested.as_ref().map(|r| r.services.clone()).filter(|s| !s.is_empty()) {
            spec.services = named;
            spec.selection = Some(selection(SelectedBy::Command, Some("named with `/preview services`".to_owned())));
            return;
        }
        let graphed = repo.services.iter().any(|s| !s.build.is_empty() || !s.manifests.is_empty());
        let Some(matcher) = self.matchers.get(&repo.name).filter(|m| m.has_paths() || graphed) else {
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
        let Some(github) = &self.github else {
            let note = Some("GitHub is not configured: the changed files are unknown".to_owned());
            spec.selection = Some(selection(SelectedBy::AllServices, note));
            return;
        };
        let number = event.pull_request.number;
        let changes = match github.pr_changes(event.installation_id, &event.repository.full_name, number).await {
            Ok(changes) => changes,
            Err(err) => {
                tracing::warn!(pr = number, error = %err, "changed files unavailable; deploying every service");
                let note = Some(format!("changed files unavailable: {err}"));
                spec.selection = Some(selection(SelectedBy::Fallback, note));
                return;
            }
        };
        let files: Vec<String> = changes
            .iter()
            .flat_map(|c| std::iter::once(c.filename.clone()).chain(c.previous_filename.clone()))
            .collect();
        let mut chosen =
            ServiceSelection { changed_files: Some(files.len() as u64), ..selection(SelectedBy::Paths, None) };
        spec.services = matcher.services_for(files.iter().map(String::as_str));
        if graphed {
            let patch = source::unified_diff(&changes);
            let (installation, repository) = (event.installation_id, event.repository.full_name.as_str());
            // Without the base, deleted files and lockfile changes are judged from the head.
            let base = match source::base_sha(github, installation, repository, number).await {
                Ok(sha) => Some(sha),
                Err(err) => {
                    tracing::info!(pr = number, error = %err, "base commit unknown; reading the head only");
                    None
                }
            };
            let commits = source::Commits {
                installation,
                head: &spec.head_sha,
                base: base.as_deref(),
                budget: self.config.github.detection_budget,
            };
            match source::detect_from_github(github, &self.blobs, repo, commits, &files, Some(&patch)).await {
                Ok((detection, cost)) => {
                    tracing::info!(pr = number, requests = cost.requests, cached = cost.cached, services = ?detection.services, "services chosen from the build graph");
                    spec.services = detection.services;
                    chosen.by = SelectedBy::Graph;
                    chosen.reasons = bounded(detection.reasons);
                }
                Err(err) if matcher.has_paths() => {
                    tracing::warn!(pr = number, error = %err, "build graph unavailable; the path globs decide");
                    chosen.note = Some(format!("build graph unavailable ({err}): the path globs decided"));
                }
                // No globs to fall back on: every service, chosen again on the next event.
                Err(err) => {
                    tracing::warn!(pr = number, error = %err, "build graph unavailable; deploying every service");
                    spec.services = repo.services.iter().map(|s| s.name.clone()).collect();
                    chosen.by = SelectedBy::Fallback;
                    chosen.note = Some(format!("build graph unavailable ({err}): every service deployed"));
                }
            }
        }
        // An experiment's arm may keep the AI out, or ask another model.
        let arm = crate::experiment::arm_of(repo, spec.experiment.as_ref());
        let rules_only = arm.is_some_and(|a| a.detection == Some(crate::config::ArmDetection::Rules));
        if let Some(engine) = self.ai.as_ref().filter(|_| !rules_only) {
            let changed: Vec<ChangedFile> =
                changes.iter().map(|c| ChangedFile { path: c.filename.clone(), patch: c.patch.clone() }).collect();
            let evidence: Vec<String> = chosen.reasons.values().flatten().cloned().collect();
            let model = arm.and_then(|a| a.model.as_deref());
            let (services, verdict) = ask_ai(engine, repo, &changed, &spec.services, &evidence, model).await;
            if verdict.error.is_none() && (!verdict.added.is_empty() || !verdict.removed.is_empty()) {
                chosen.by =
                    if chosen.by == SelectedBy::Graph { SelectedBy::GraphAndAi } else { SelectedBy::PathsAndAi };
            }
            spec.services = services;
            chosen.ai = Some(verdict);
        }
        // A push that adds services the last selection did not have: it missed them.
        if let (Some(previous), Some(arm)) = (existing.map(|e| &e.spec), spec.experiment.as_mut())
            && previous.head_sha != spec.head_sha
            && !previous.head_sha.is_empty()
            && spec.services.iter().any(|s| !previous.services.contains(s))
        {
            arm.corrections = arm.corrections.saturating_add(1);
        }
        spec.selection = Some(chosen);
    }

    /// A shorter idle TTL for a quiet PR, from its activity on GitHub (when predicted).
    pub(super) async fn predict_ttl(&self, event: &PreviewEvent, spec: &mut PreviewEnvironmentSpec) {
        let (Some(engine), Some(github)) = (&self.ai, &self.github) else { return };
        if !engine.config().features.ttl_prediction {
            return;
        }
        let number = event.pull_request.number;
        match github.pr_activity(event.installation_id, &event.repository.full_name, number).await {
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
    evidence: &[String],
    model: Option<&str>,
) -> (Vec<String>, AiVerdict) {
    let config = engine.config();
    let asked = model.unwrap_or(&config.model).to_owned();
    let mut verdict = AiVerdict { model: asked, prompt: ai::PROMPT_VERSION.to_owned(), ..AiVerdict::default() };
    match engine.detect_with_evidence(repo, changed, evidence, model).await {
        Ok(detection) => {
            verdict.spend_micro_usd = (detection.spend_usd * 1e6).round() as u64;
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

/// Reasons kept on the PreviewEnvironment: a few per service, each of bounded length (a PR can
/// change thousands of files).
fn bounded(
    reasons: std::collections::BTreeMap<String, Vec<String>>,
) -> std::collections::BTreeMap<String, Vec<String>> {
    const PER_SERVICE: usize = 5;
    const LENGTH: usize = 300;
    reasons
        .into_iter()
        .map(|(service, list)| {
            let total = list.len();
            let mut kept: Vec<String> =
                list.into_iter().take(PER_SERVICE).map(|r| r.chars().take(LENGTH).collect()).collect();
            if total > PER_SERVICE {
                kept.push(format!("… and {} more", total - PER_SERVICE));
            }
            (service, kept)
        })
        .collect()
}
