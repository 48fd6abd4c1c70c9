//! Tells the pull request what happened, without ever holding up cluster work: the controller
//! and the consumer `publish` the state GitHub should show (a deployment status, a commit
//! status, the sticky comment), and one background worker brings GitHub there, retrying with
//! backoff while GitHub is down or rate-limited. Only the newest state per PR is kept, so a
//! burst of changes becomes one update. What GitHub already has is learned once per PR (the
//! deployment of the head commit, the comment with the marker) and then remembered, so a
//! restart neither duplicates the comment nor repeats a status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::Notify;

use super::api::{DeploymentState, Report};
use super::client::{GitHubClient, GitHubError};
use super::comment;
use crate::config::GitHubConfig;

/// What GitHub should show for one PR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub installation: Option<u64>,
    /// `owner/name`.
    pub repository: String,
    pub number: u64,
    pub head_sha: String,
    /// The deployment status of the head commit (`None`: no preview, so no deployment).
    pub deployment: Option<DeploymentUpdate>,
    pub comment: Option<CommentUpdate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentUpdate {
    pub state: DeploymentState,
    /// Opened by "View deployment" (set once the preview is ready).
    pub url: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentUpdate {
    pub body: String,
    /// Create the comment if the PR has none (else only an existing one is edited).
    pub create: bool,
}

impl DeploymentUpdate {
    fn report(&self) -> Report<'_> {
        Report { state: self.state, url: self.url.as_deref(), description: &self.description }
    }
}

impl Update {
    fn key(&self) -> (String, u64) {
        (previewd_events::repository_key(&self.repository), self.number)
    }

    /// The PR's transient environment.
    pub fn environment(&self) -> String {
        format!("preview/pr-{}", self.number)
    }
}

/// What GitHub is known to have for one PR.
#[derive(Debug, Clone, Default)]
struct Known {
    /// The deployment of a head commit: (sha, id, latest state).
    deployment: Option<(String, u64, Option<DeploymentState>)>,
    /// The last commit status set: (sha, state).
    commit_status: Option<(String, DeploymentState)>,
    /// `None`: not looked for yet; `Some(None)`: the PR has no comment of ours.
    comment: Option<Option<(u64, String)>>,
}

#[derive(Debug)]
struct Entry {
    desired: Update,
    synced: Option<Update>,
    known: Known,
    due: Instant,
    failures: u32,
    in_flight: bool,
    touched: Instant,
}

/// How one flush went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushReport {
    pub delivered: usize,
    pub failed: usize,
    /// Refused by GitHub for good (permissions, validation): dropped, logged.
    pub rejected: usize,
}

pub struct Notifier {
    github: Arc<GitHubClient>,
    config: GitHubConfig,
    entries: Mutex<HashMap<(String, u64), Entry>>,
    wake: Notify,
    /// `previewd_github_updates_total{outcome}`.
    updates: Option<prometheus::IntCounterVec>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Entries whose state GitHub already shows are forgotten after this long without a publish
/// (a live preview republishes on every reconcile, so only finished PRs age out).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Retry delay after `failures` consecutive failures: 2 s doubling up to 5 minutes.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(2u64.saturating_mul(1 << failures.saturating_sub(1).min(8)).min(300))
}

/// GitHub refused the request itself (not a limit, not an outage): retrying cannot help.
fn is_permanent(err: &GitHubError) -> bool {
    match err {
        GitHubError::Status { status, .. } => (400..500).contains(status) && *status != 408 && *status != 429,
        GitHubError::Config(_) | GitHubError::Decode { .. } => true,
        GitHubError::RateLimited(_) | GitHubError::Transport { .. } => false,
    }
}

impl Notifier {
    pub fn new(github: Arc<GitHubClient>, config: GitHubConfig) -> Notifier {
        Notifier { github, config, entries: Mutex::default(), wake: Notify::new(), updates: None }
    }

    pub fn with_update_counter(mut self, counter: prometheus::IntCounterVec) -> Notifier {
        self.updates = Some(counter);
        self
    }

    pub fn github(&self) -> &Arc<GitHubClient> {
        &self.github
    }

    /// Records what GitHub should show for the PR; returns at once. A state GitHub already
    /// shows costs nothing.
    pub fn publish(&self, update: Update) {
        let now = Instant::now();
        let Ok(mut entries) = self.entries.lock() else { return };
        let entry = entries.entry(update.key()).or_insert_with(|| Entry {
            desired: update.clone(),
            synced: None,
            known: Known::default(),
            due: now,
            failures: 0,
            in_flight: false,
            touched: now,
        });
        entry.touched = now;
        if entry.desired != update {
            entry.desired = update;
            entry.failures = 0;
            entry.due = now;
        }
        let pending = entry.synced.as_ref() != Some(&entry.desired);
        drop(entries);
        if pending {
            self.wake.notify_one();
        }
    }

    /// Whether GitHub shows `update` (or refused it for good).
    pub fn is_synced(&self, update: &Update) -> bool {
        self.entries
            .lock()
            .ok()
            .and_then(|entries| entries.get(&update.key()).map(|e| e.synced.as_ref() == Some(update)))
            .unwrap_or(false)
    }

    /// PRs whose state GitHub does not show yet.
    pub fn pending(&self) -> usize {
        self.entries.lock().map(|e| e.values().filter(|e| e.synced.as_ref() != Some(&e.desired)).count()).unwrap_or(0)
    }

    /// Delivers every update that is due (all pending ones with `ignore_backoff`), concurrently
    /// within the client's limit. Returns what happened and how soon the next one is due.
    pub async fn flush(&self, ignore_backoff: bool) -> (FlushReport, Option<Duration>) {
        let now = Instant::now();
        let work: Vec<(Update, Known)> = match self.entries.lock() {
            Ok(mut entries) => {
                entries.retain(|_, e| {
                    e.in_flight || e.synced.as_ref() != Some(&e.desired) || now.duration_since(e.touched) < FORGET_AFTER
                });
                entries
                    .values_mut()
                    .filter(|e| !e.in_flight && e.synced.as_ref() != Some(&e.desired))
                    .filter(|e| ignore_backoff || e.due <= now)
                    .map(|e| {
                        e.in_flight = true;
                        (e.desired.clone(), e.known.clone())
                    })
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        let results = join_all(work.into_iter().map(|(update, mut known)| async move {
            let result = self.sync(&update, &mut known).await;
            (update, known, result)
        }))
        .await;

        let mut report = FlushReport::default();
        let now = Instant::now();
        let Ok(mut entries) = self.entries.lock() else { return (report, None) };
        for (update, known, result) in results {
            let Some(entry) = entries.get_mut(&update.key()) else { continue };
            entry.in_flight = false;
            entry.known = known;
            let outcome = match result {
                Ok(()) => {
                    entry.failures = 0;
                    entry.synced = Some(update);
                    report.delivered += 1;
                    "delivered"
                }
                Err(err) if is_permanent(&err) => {
                    tracing::error!(repository = %update.repository, pr = update.number, error = %err,
                        "GitHub refused the PR update; not retrying (check the App's permissions)");
                    entry.failures = 0;
                    entry.synced = Some(update);
                    report.rejected += 1;
                    "rejected"
                }
                Err(err) => {
                    entry.failures = entry.failures.saturating_add(1);
                    let delay = match err {
                        GitHubError::RateLimited(wait) => wait.max(backoff(entry.failures)),
                        _ => backoff(entry.failures),
                    };
                    entry.due = now + delay;
                    tracing::warn!(repository = %update.repository, pr = update.number, error = %err,
                        kind = err.kind(), retry_in_seconds = delay.as_secs(), "GitHub update failed; will retry");
                    report.failed += 1;
                    "failed"
                }
            };
            if let Some(counter) = &self.updates {
                counter.with_label_values(&[outcome]).inc();
            }
        }
        let next = entries
            .values()
            .filter(|e| !e.in_flight && e.synced.as_ref() != Some(&e.desired))
            .map(|e| e.due.saturating_duration_since(now))
            .min();
        (report, next)
    }

    /// The background worker: flushes whenever something is published or a retry is due.
    pub async fn run(self: Arc<Self>) {
        loop {
            let (_, next) = self.flush(false).await;
            let idle = next.unwrap_or(Duration::from_secs(60)).max(Duration::from_millis(50));
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(idle) => {}
            }
        }
    }

    /// Brings GitHub to `update`, learning into `known` what it has. Each step is idempotent,
    /// so a retry after a partial failure repeats nothing GitHub already shows.
    async fn sync(&self, update: &Update, known: &mut Known) -> Result<(), GitHubError> {
        let (installation, repo) = (update.installation, update.repository.as_str());
        let github = &self.github;
        if let Some(wanted) = &update.deployment {
            if self.config.deployments {
                self.sync_deployment(update, wanted, known).await?;
            }
            if self.config.commit_status
                && known.commit_status.as_ref() != Some(&(update.head_sha.clone(), wanted.state))
            {
                let context = &self.config.status_context;
                github.create_commit_status(installation, repo, &update.head_sha, context, wanted.report()).await?;
                known.commit_status = Some((update.head_sha.clone(), wanted.state));
            }
        }
        if let (Some(wanted), true) = (&update.comment, self.config.comment) {
            self.sync_comment(update, wanted, known).await?;
        }
        Ok(())
    }

    async fn sync_deployment(
        &self,
        update: &Update,
        wanted: &DeploymentUpdate,
        known: &mut Known,
    ) -> Result<(), GitHubError> {
        let (installation, repo, sha) = (update.installation, update.repository.as_str(), update.head_sha.as_str());
        let environment = update.environment();
        if known.deployment.as_ref().is_none_or(|(known_sha, _, _)| known_sha != sha) {
            let found = self.github.find_deployment(installation, repo, sha, &environment).await?;
            known.deployment = match found {
                Some((id, state)) => Some((sha.to_owned(), id, state)),
                // Nothing to mark inactive if this commit was never deployed.
                None if wanted.state == DeploymentState::Inactive => return Ok(()),
                None => {
                    let id = self
                        .github
                        .create_deployment(installation, repo, sha, &environment, "Previewd preview environment")
                        .await?;
                    Some((sha.to_owned(), id, None))
                }
            };
        }
        if let Some((_, id, state)) = &mut known.deployment
            && *state != Some(wanted.state)
        {
            self.github.create_deployment_status(installation, repo, *id, wanted.report()).await?;
            *state = Some(wanted.state);
        }
        Ok(())
    }

    async fn sync_comment(
        &self,
        update: &Update,
        wanted: &CommentUpdate,
        known: &mut Known,
    ) -> Result<(), GitHubError> {
        let (installation, repo) = (update.installation, update.repository.as_str());
        if known.comment.is_none() {
            let comments = self.github.pr_comments(installation, repo, update.number).await?;
            let ours = comment::find(comments, self.github.is_app());
            known.comment = Some(ours.map(|c| (c.id, c.body.unwrap_or_default())));
        }
        match known.comment.clone().flatten() {
            Some((_, body)) if body == wanted.body => Ok(()),
            Some((id, _)) => match self.github.edit_comment(installation, repo, id, &wanted.body).await {
                Ok(()) => {
                    known.comment = Some(Some((id, wanted.body.clone())));
                    Ok(())
                }
                // Deleted by someone: start again (a new comment if this update may create one).
                Err(GitHubError::Status { status: 404, .. }) => {
                    known.comment = Some(None);
                    Box::pin(self.sync_comment(update, wanted, known)).await
                }
                Err(err) => Err(err),
            },
            None if wanted.create => {
                let id = self.github.create_comment(installation, repo, update.number, &wanted.body).await?;
                known.comment = Some(Some((id, wanted.body.clone())));
                Ok(())
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let delays: Vec<u64> = (1..=10).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }

    #[test]
    fn only_refusals_are_permanent() {
        let status = |status| GitHubError::Status { status, what: "x", message: String::new() };
        assert!(is_permanent(&status(422)) && is_permanent(&status(403)));
        assert!(!is_permanent(&status(502)) && !is_permanent(&status(429)) && !is_permanent(&status(408)));
        assert!(!is_permanent(&GitHubError::RateLimited(Duration::from_secs(1))));
        assert!(!is_permanent(&GitHubError::Transport { what: "x", message: String::new() }));
    }
}
