//! The GitHub REST operations the reconciler uses, on the shared client: deployments and their
//! statuses, commit statuses, the PR's issue comments, who added a label, and a user's
//! permission on the repository. Each answer is decoded into only the fields Previewd reads.

use serde::Deserialize;
use serde_json::json;

use super::client::{GitHubClient, GitHubError, Method};

/// A deployment's state, as GitHub spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentState {
    /// Waiting for something outside Previewd (a maintainer's approval of a fork's commit).
    Pending,
    Queued,
    InProgress,
    Success,
    Failure,
    Inactive,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Pending => "pending",
            DeploymentState::Queued => "queued",
            DeploymentState::InProgress => "in_progress",
            DeploymentState::Success => "success",
            DeploymentState::Failure => "failure",
            DeploymentState::Inactive => "inactive",
        }
    }

    fn parse(state: &str) -> Option<DeploymentState> {
        [
            DeploymentState::Pending,
            DeploymentState::Queued,
            DeploymentState::InProgress,
            DeploymentState::Success,
            DeploymentState::Failure,
            DeploymentState::Inactive,
        ]
        .into_iter()
        .find(|s| s.as_str() == state)
    }

    /// The closest commit status (`pending`, `success`, `failure`, `error`).
    pub fn commit_state(self) -> &'static str {
        match self {
            DeploymentState::Pending | DeploymentState::Queued | DeploymentState::InProgress => "pending",
            DeploymentState::Success => "success",
            DeploymentState::Failure => "failure",
            // A destroyed preview is not a failed check.
            DeploymentState::Inactive => "success",
        }
    }
}

/// A state to report, with the link it opens and a short description.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub state: DeploymentState,
    pub url: Option<&'a str>,
    pub description: &'a str,
}

/// A comment on the PR (the issue comments of its conversation).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IssueComment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub user: Option<User>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub login: String,
    /// `User`, `Bot` or `Organization`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Deserialize)]
struct Id {
    id: u64,
}

#[derive(Deserialize)]
struct StatusState {
    state: String,
}

#[derive(Deserialize)]
struct Permission {
    permission: String,
    #[serde(default)]
    role_name: Option<String>,
}

/// A query string with each value percent-encoded (`preview/pr-1` -> `preview%2Fpr-1`).
fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// One path segment, percent-encoded (logins of bots contain `[` and `]`).
fn segment(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// At most this many pages of comments or issue events are read (10,000 items).
const MAX_PAGES: usize = 100;

impl GitHubClient {
    /// The newest deployment of `sha` to `environment` and its latest status, if any.
    pub async fn find_deployment(
        &self,
        installation: Option<u64>,
        repository: &str,
        sha: &str,
        environment: &str,
    ) -> Result<Option<(u64, Option<DeploymentState>)>, GitHubError> {
        let url = format!(
            "/repos/{repository}/deployments?{}",
            query(&[("sha", sha), ("environment", environment), ("per_page", "1")])
        );
        let (_, found): (_, Vec<Id>) = self.get_json(installation, &url, "list deployments").await?;
        let Some(deployment) = found.first() else { return Ok(None) };
        let url = format!("/repos/{repository}/deployments/{}/statuses?per_page=1", deployment.id);
        let (_, statuses): (_, Vec<StatusState>) =
            self.get_json(installation, &url, "list deployment statuses").await?;
        Ok(Some((deployment.id, statuses.first().and_then(|s| DeploymentState::parse(&s.state)))))
    }

    /// Creates a deployment of `sha` to the transient, non-production `environment`.
    pub async fn create_deployment(
        &self,
        installation: Option<u64>,
        repository: &str,
        sha: &str,
        environment: &str,
        description: &str,
    ) -> Result<u64, GitHubError> {
        let body = json!({
            "ref": sha,
            "environment": environment,
            "description": description,
            "transient_environment": true,
            "production_environment": false,
            // Previewd deploys what was pushed: no merge of the base, no wait for checks.
            "auto_merge": false,
            "required_contexts": [],
        });
        let url = format!("/repos/{repository}/deployments");
        let created: Id = self.write_json(Method::Post, installation, &url, &body, "create deployment").await?;
        Ok(created.id)
    }

    /// Adds a status to a deployment; the report's URL is what "View deployment" opens.
    pub async fn create_deployment_status(
        &self,
        installation: Option<u64>,
        repository: &str,
        deployment: u64,
        report: Report<'_>,
    ) -> Result<(), GitHubError> {
        let mut body = json!({
            "state": report.state.as_str(),
            "description": truncate(report.description, 140),
            // Earlier deployments to this environment become inactive once this one succeeds.
            "auto_inactive": true,
        });
        if let Some(url) = report.url {
            body["environment_url"] = json!(url);
        }
        let url = format!("/repos/{repository}/deployments/{deployment}/statuses");
        let _: Id = self.write_json(Method::Post, installation, &url, &body, "create deployment status").await?;
        Ok(())
    }

    /// Sets the commit status `context` on `sha`.
    pub async fn create_commit_status(
        &self,
        installation: Option<u64>,
        repository: &str,
        sha: &str,
        context: &str,
        report: Report<'_>,
    ) -> Result<(), GitHubError> {
        let mut body = json!({
            "state": report.state.commit_state(),
            "context": context,
            "description": truncate(report.description, 140),
        });
        if let Some(url) = report.url {
            body["target_url"] = json!(url);
        }
        let url = format!("/repos/{repository}/statuses/{sha}");
        let _: Id = self.write_json(Method::Post, installation, &url, &body, "create commit status").await?;
        Ok(())
    }

    /// Every comment of the PR's conversation, oldest first.
    pub async fn pr_comments(
        &self,
        installation: Option<u64>,
        repository: &str,
        number: u64,
    ) -> Result<Vec<IssueComment>, GitHubError> {
        let first = format!("/repos/{repository}/issues/{number}/comments?per_page=100");
        self.get_all(installation, first, MAX_PAGES, "list comments").await
    }

    pub async fn create_comment(
        &self,
        installation: Option<u64>,
        repository: &str,
        number: u64,
        body: &str,
    ) -> Result<u64, GitHubError> {
        let url = format!("/repos/{repository}/issues/{number}/comments");
        let created: Id =
            self.write_json(Method::Post, installation, &url, &json!({"body": body}), "create comment").await?;
        Ok(created.id)
    }

    pub async fn edit_comment(
        &self,
        installation: Option<u64>,
        repository: &str,
        comment: u64,
        body: &str,
    ) -> Result<(), GitHubError> {
        let url = format!("/repos/{repository}/issues/comments/{comment}");
        let _: Id = self.write_json(Method::Patch, installation, &url, &json!({"body": body}), "edit comment").await?;
        Ok(())
    }

    /// Whether `user` may push to the repository (write, maintain or admin). Someone who is
    /// not a collaborator at all may not.
    pub async fn can_push(&self, installation: Option<u64>, repository: &str, user: &str) -> Result<bool, GitHubError> {
        let url = format!("/repos/{repository}/collaborators/{}/permission", segment(user));
        match self.get_json::<Permission>(installation, &url, "get collaborator permission").await {
            Ok((_, p)) => Ok(matches!(p.permission.as_str(), "admin" | "write")
                || matches!(p.role_name.as_deref(), Some("admin" | "maintain" | "write"))),
            Err(GitHubError::Status { status: 404, .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_and_segments_are_encoded() {
        assert_eq!(query(&[("environment", "preview/pr-12"), ("sha", "abc")]), "environment=preview%2Fpr-12&sha=abc");
        assert_eq!(segment("previewd[bot]"), "previewd%5Bbot%5D");
    }

    #[test]
    fn states_round_trip_and_map_to_commit_states() {
        for s in [DeploymentState::Queued, DeploymentState::Success, DeploymentState::Inactive] {
            assert_eq!(DeploymentState::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeploymentState::parse("error"), None);
        assert_eq!(DeploymentState::InProgress.commit_state(), "pending");
        assert_eq!(DeploymentState::Failure.commit_state(), "failure");
    }
}
