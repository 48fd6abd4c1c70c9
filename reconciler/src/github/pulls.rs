//! The GitHub reads and writes behind `/preview` commands and the build gate: a pull request as
//! it is now, a reaction that acknowledges a command, and what the checks of a commit say.

use chrono::{DateTime, Utc};
use previewd_events::{CheckState, PrAction, PrState, PreviewEvent, PullRequest, Repository, SCHEMA_VERSION};
use serde::Deserialize;
use serde_json::json;

use super::client::{GitHubClient, GitHubError, Method};

#[derive(Deserialize)]
struct Login {
    login: String,
}

#[derive(Deserialize)]
struct Name {
    name: String,
}

#[derive(Deserialize)]
struct FullName {
    full_name: String,
}

#[derive(Deserialize)]
struct Head {
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    repo: Option<FullName>,
}

#[derive(Deserialize)]
struct Base {
    #[serde(rename = "ref")]
    git_ref: String,
    repo: FullName,
}

#[derive(Deserialize)]
struct Pull {
    number: u64,
    state: String,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    merged: Option<bool>,
    title: String,
    html_url: String,
    updated_at: DateTime<Utc>,
    author_association: String,
    user: Login,
    #[serde(default)]
    labels: Vec<Name>,
    head: Head,
    base: Base,
}

#[derive(Deserialize)]
struct CheckRuns {
    check_runs: Vec<Run>,
}

#[derive(Deserialize)]
struct CheckSuites {
    check_suites: Vec<Suite>,
}

#[derive(Deserialize)]
struct WorkflowRuns {
    workflow_runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    conclusion: Option<String>,
}

#[derive(Deserialize)]
struct Suite {
    #[serde(default)]
    app: Option<Name>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    conclusion: Option<String>,
}

#[derive(Deserialize)]
struct Combined {
    statuses: Vec<Status>,
}

#[derive(Deserialize)]
struct Status {
    context: String,
    state: String,
}

fn finished(status: Option<&str>, conclusion: Option<&str>) -> CheckState {
    match (status, conclusion) {
        (Some("completed"), Some(conclusion)) => CheckState::from_conclusion(conclusion),
        _ => CheckState::Pending,
    }
}

impl GitHubClient {
    /// The pull request as it is now, in the queue message's shape (a command carries only
    /// the PR's number): `action` is `reopened`, the closest to "look at it again".
    pub async fn pull_request_event(
        &self,
        installation: Option<u64>,
        repository: &Repository,
        number: u64,
        delivery_id: &str,
        received_at: DateTime<Utc>,
    ) -> Result<PreviewEvent, GitHubError> {
        let url = format!("/repos/{}/pulls/{number}", repository.full_name);
        let (_, pull): (_, Pull) = self.get_json(installation, &url, "get pull request").await?;
        let head_repo = pull.head.repo.map(|r| r.full_name);
        let fork = head_repo.as_deref() != Some(pull.base.repo.full_name.as_str());
        Ok(PreviewEvent {
            version: SCHEMA_VERSION,
            delivery_id: delivery_id.to_owned(),
            received_at,
            action: PrAction::Reopened,
            repository: repository.clone(),
            installation_id: installation,
            pull_request: PullRequest {
                number: pull.number,
                head_sha: pull.head.sha.to_ascii_lowercase(),
                head_ref: pull.head.git_ref,
                head_repo,
                base_ref: pull.base.git_ref,
                fork,
                draft: pull.draft.unwrap_or(false),
                state: if pull.state == "open" { PrState::Open } else { PrState::Closed },
                merged: pull.merged.unwrap_or(false),
                labels: pull.labels.into_iter().map(|l| l.name).collect(),
                author: pull.user.login,
                author_association: pull.author_association,
                updated_at: pull.updated_at,
                html_url: pull.html_url,
                title: pull.title.chars().take(256).collect(),
            },
            sender: String::new(),
            label: None,
        })
    }

    /// Reacts to a comment (`+1`, `confused`, `eyes`, ...): how a command is acknowledged.
    pub async fn react(
        &self,
        installation: Option<u64>,
        repository: &str,
        comment: u64,
        content: &str,
    ) -> Result<(), GitHubError> {
        let url = format!("/repos/{repository}/issues/comments/{comment}/reactions");
        let _: serde::de::IgnoredAny =
            self.write_json(Method::Post, installation, &url, &json!({"content": content}), "create reaction").await?;
        Ok(())
    }

    /// What every check of `sha` says now, by the names a build gate uses: check runs, commit
    /// statuses (by context), workflow runs and check suites (by app). The last two are read
    /// only when `wanted` names something the first two did not.
    pub async fn check_states(
        &self,
        installation: Option<u64>,
        repository: &str,
        sha: &str,
        wanted: &[String],
    ) -> Result<Vec<(String, CheckState)>, GitHubError> {
        let mut found = Vec::new();
        let url = format!("/repos/{repository}/commits/{sha}/check-runs?per_page=100");
        let (_, runs): (_, CheckRuns) = self.get_json(installation, &url, "list check runs").await?;
        for run in runs.check_runs {
            let state = finished(run.status.as_deref(), run.conclusion.as_deref());
            found.extend(run.name.map(|n| (n, state)));
        }
        let url = format!("/repos/{repository}/commits/{sha}/status?per_page=100");
        let (_, combined): (_, Combined) = self.get_json(installation, &url, "get combined status").await?;
        found.extend(combined.statuses.into_iter().map(|s| (s.context, CheckState::from_status(&s.state))));
        if wanted.iter().all(|w| found.iter().any(|(name, _)| name == w)) {
            return Ok(found);
        }
        let url = format!("/repos/{repository}/actions/runs?head_sha={sha}&per_page=100");
        let (_, workflows): (_, WorkflowRuns) = self.get_json(installation, &url, "list workflow runs").await?;
        for run in workflows.workflow_runs {
            let state = finished(run.status.as_deref(), run.conclusion.as_deref());
            found.extend(run.name.map(|n| (n, state)));
        }
        let url = format!("/repos/{repository}/commits/{sha}/check-suites?per_page=100");
        let (_, suites): (_, CheckSuites) = self.get_json(installation, &url, "list check suites").await?;
        for suite in suites.check_suites {
            let state = finished(suite.status.as_deref(), suite.conclusion.as_deref());
            found.extend(suite.app.map(|a| (a.name, state)));
        }
        Ok(found)
    }
}
