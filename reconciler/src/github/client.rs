//! One shared GitHub client for the reconciler: GitHub App installation tokens (minted per
//! installation from the App's JWT and cached until shortly before they expire) or a token, a
//! concurrency limit, and rate-limit discipline (`retry-after`, `x-ratelimit-reset`, secondary
//! limits). Credentials come from the environment, never the config file. GitHub being slow or
//! down surfaces as an error the caller retries later; it never blocks cluster work.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use octocrab::Octocrab;
use octocrab::models::InstallationId;
pub use previewd_github_rest::{GitHubAuth, GitHubError};
use previewd_github_rest::{RateLimit, build_client, next_link, relative_to_api};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, Semaphore};

/// The HTTP methods Previewd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Patch,
}

/// GitHub lists at most 3,000 files of a pull request.
pub const MAX_PR_FILES: usize = 3000;

/// The environment's GitHub settings: `PREVIEWD_GITHUB_APP_ID` with
/// `PREVIEWD_GITHUB_APP_PRIVATE_KEY` (or `..._FILE`, a mounted Secret), or `PREVIEWD_GITHUB_TOKEN`;
/// `PREVIEWD_GITHUB_API_URL` for GitHub Enterprise Server. `None` when GitHub is not configured.
pub fn auth_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<GitHubAuth>, GitHubError> {
    let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if let Some(token) = get("PREVIEWD_GITHUB_TOKEN") {
        return Ok(Some(GitHubAuth::Token(token)));
    }
    let Some(id) = get("PREVIEWD_GITHUB_APP_ID") else { return Ok(None) };
    let app_id =
        id.parse().map_err(|_| GitHubError::Config(format!("PREVIEWD_GITHUB_APP_ID = {id:?} is not a number")))?;
    let private_key = match (lookup("PREVIEWD_GITHUB_APP_PRIVATE_KEY"), get("PREVIEWD_GITHUB_APP_PRIVATE_KEY_FILE")) {
        (Some(key), _) if !key.trim().is_empty() => key,
        (_, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| GitHubError::Config(format!("PREVIEWD_GITHUB_APP_PRIVATE_KEY_FILE {path}: {e}")))?,
        _ => {
            return Err(GitHubError::Config(
                "PREVIEWD_GITHUB_APP_ID is set but neither PREVIEWD_GITHUB_APP_PRIVATE_KEY nor ..._FILE".to_owned(),
            ));
        }
    };
    Ok(Some(GitHubAuth::App { app_id, private_key }))
}

#[derive(Debug)]
pub struct GitHubClient {
    api_url: String,
    base: Arc<Octocrab>,
    is_app: bool,
    /// Installation clients, each caching its own installation token (shared, never cloned:
    /// a cloned octocrab client starts with an empty token cache).
    installations: Mutex<HashMap<u64, Arc<Octocrab>>>,
    permits: Semaphore,
    rate_limit: RateLimit,
    /// The longest rate-limit wait sat out inside one call.
    pub max_wait: Duration,
    /// `previewd_github_requests_total{operation,outcome}` when metrics are on.
    requests: Option<prometheus::IntCounterVec>,
}

/// One file a pull request changes, as GitHub lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PrChange {
    pub filename: String,
    /// The old name of a renamed file.
    #[serde(default)]
    pub previous_filename: Option<String>,
    /// The unified diff hunk (absent for binary files and very large diffs).
    #[serde(default)]
    pub patch: Option<String>,
}

/// What GitHub says about a pull request's activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PrActivity {
    pub commits: u64,
    pub comments: u64,
    pub review_comments: u64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl GitHubClient {
    pub fn new(api_url: &str, auth: &GitHubAuth, concurrency: usize) -> Result<GitHubClient, GitHubError> {
        let base = build_client(api_url, auth)?;
        let is_app = matches!(auth, GitHubAuth::App { .. });
        Ok(GitHubClient {
            api_url: api_url.trim_end_matches('/').to_owned(),
            base: Arc::new(base),
            is_app,
            installations: Mutex::new(HashMap::new()),
            permits: Semaphore::new(concurrency.max(1)),
            rate_limit: RateLimit::default(),
            max_wait: Duration::from_secs(10),
            requests: None,
        })
    }

    /// Counts every request by operation and outcome (both bounded label sets).
    pub fn with_request_counter(mut self, counter: prometheus::IntCounterVec) -> GitHubClient {
        self.requests = Some(counter);
        self
    }

    /// Whether requests act as a GitHub App (its comments are authored by a bot).
    pub fn is_app(&self) -> bool {
        self.is_app
    }

    /// The last remaining-quota figure GitHub reported.
    pub fn remaining_quota(&self) -> Option<i64> {
        self.rate_limit.remaining()
    }

    async fn client_for(&self, installation: Option<u64>) -> Result<Arc<Octocrab>, GitHubError> {
        match (self.is_app, installation) {
            (false, _) => Ok(Arc::clone(&self.base)),
            (true, None) => Err(GitHubError::Config("GitHub App auth needs the event's installation id".to_owned())),
            (true, Some(id)) => {
                let mut cache = self.installations.lock().await;
                if let Some(client) = cache.get(&id) {
                    return Ok(Arc::clone(client));
                }
                let client = Arc::new(
                    self.base
                        .installation(InstallationId(id))
                        .map_err(|e| GitHubError::Config(format!("installation {id}: {e}")))?,
                );
                cache.insert(id, Arc::clone(&client));
                Ok(client)
            }
        }
    }

    /// Sends a request to `url` (path or API-host URL) and returns the headers and body of a
    /// successful answer. Rate limits up to `max_wait` are sat out (GitHub did not act on a
    /// rate-limited request, so repeating a POST is safe); longer ones are returned as errors.
    #[tracing::instrument(name = "github.request", skip_all, fields(operation = what))]
    async fn send(
        &self,
        method: Method,
        installation: Option<u64>,
        url: &str,
        body: Option<&serde_json::Value>,
        what: &'static str,
    ) -> Result<(HeaderMap, String), GitHubError> {
        let result = self.send_uncounted(method, installation, url, body, what).await;
        if let Some(requests) = &self.requests {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(err) => err.kind(),
            };
            requests.with_label_values(&[what, outcome]).inc();
        }
        result
    }

    /// [`Self::send`] without the counting.
    async fn send_uncounted(
        &self,
        method: Method,
        installation: Option<u64>,
        url: &str,
        body: Option<&serde_json::Value>,
        what: &'static str,
    ) -> Result<(HeaderMap, String), GitHubError> {
        let path = relative_to_api(&self.api_url, url)
            .ok_or_else(|| GitHubError::Decode { what, message: format!("link to another host: {url}") })?;
        let client = self.client_for(installation).await?;
        let _permit =
            self.permits.acquire().await.map_err(|e| GitHubError::Transport { what, message: e.to_string() })?;
        loop {
            // One place decides: a limit GitHub just reported (`observe`) shows up here too.
            if let Some(wait) = self.rate_limit.blocked_for(chrono::Utc::now().timestamp()) {
                if wait > self.max_wait {
                    return Err(GitHubError::RateLimited(wait));
                }
                tracing::info!(wait_seconds = wait.as_secs(), what, "GitHub rate limit: waiting");
                tokio::time::sleep(wait).await;
            }
            let response = match method {
                Method::Get => client._get(path.as_str()).await,
                Method::Post => client._post(path.as_str(), body).await,
                Method::Patch => client._patch(path.as_str(), body).await,
            }
            .map_err(|e| GitHubError::Transport { what, message: e.to_string() })?;
            let status = response.status();
            let headers = response.headers().clone();
            if self.rate_limit.observe(status, &headers, chrono::Utc::now().timestamp()).is_some() {
                // GitHub did not act on it: send again once the limit allows.
                continue;
            }
            let body = client
                .body_to_string(response)
                .await
                .map_err(|e| GitHubError::Transport { what, message: e.to_string() })?;
            if !status.is_success() {
                return Err(GitHubError::Status {
                    status: status.as_u16(),
                    what,
                    message: body.chars().take(200).collect(),
                });
            }
            return Ok((headers, body));
        }
    }

    /// A GET whose JSON answer is decoded as `T`.
    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        installation: Option<u64>,
        url: &str,
        what: &'static str,
    ) -> Result<(HeaderMap, T), GitHubError> {
        let (headers, body) = self.send(Method::Get, installation, url, None, what).await?;
        let value = decode(&body, what)?;
        Ok((headers, value))
    }

    /// Every item of a paginated list, following `Link: rel="next"` for at most `max_pages`.
    pub(super) async fn get_all<T: DeserializeOwned>(
        &self,
        installation: Option<u64>,
        first: String,
        max_pages: usize,
        what: &'static str,
    ) -> Result<Vec<T>, GitHubError> {
        let mut url = first;
        let mut items = Vec::new();
        for _ in 0..max_pages.max(1) {
            let (headers, page): (_, Vec<T>) = self.get_json(installation, &url, what).await?;
            items.extend(page);
            match headers.get(http::header::LINK).and_then(|v| v.to_str().ok()).and_then(next_link) {
                Some(next) => url = next,
                None => break,
            }
        }
        Ok(items)
    }

    /// A POST or PATCH with a JSON body; the answer decoded as `T`.
    pub(super) async fn write_json<T: DeserializeOwned>(
        &self,
        method: Method,
        installation: Option<u64>,
        url: &str,
        body: &serde_json::Value,
        what: &'static str,
    ) -> Result<T, GitHubError> {
        let (_, text) = self.send(method, installation, url, Some(body), what).await?;
        decode(&text, what)
    }

    /// Every file a pull request changes (renames count for both names), following pagination
    /// up to GitHub's limit of 3,000 files.
    pub async fn pr_files(
        &self,
        installation: Option<u64>,
        repository: &str,
        number: u64,
    ) -> Result<Vec<String>, GitHubError> {
        let changes = self.pr_changes(installation, repository, number).await?;
        Ok(changes.into_iter().flat_map(|f| std::iter::once(f.filename).chain(f.previous_filename)).collect())
    }

    /// The files a pull request changes with their patches, up to GitHub's 3,000.
    #[tracing::instrument(name = "github.fetch_diff", skip(self, installation))]
    pub async fn pr_changes(
        &self,
        installation: Option<u64>,
        repository: &str,
        number: u64,
    ) -> Result<Vec<PrChange>, GitHubError> {
        let first = format!("/repos/{repository}/pulls/{number}/files?per_page=100");
        self.get_all(installation, first, MAX_PR_FILES / 100, "list pull request files").await
    }

    /// The PR's commits, comments and age (for TTL prediction).
    pub async fn pr_activity(
        &self,
        installation: Option<u64>,
        repository: &str,
        number: u64,
    ) -> Result<PrActivity, GitHubError> {
        let url = format!("/repos/{repository}/pulls/{number}");
        Ok(self.get_json(installation, &url, "get pull request").await?.1)
    }
}

fn decode<T: DeserializeOwned>(body: &str, what: &'static str) -> Result<T, GitHubError> {
    serde_json::from_str(body).map_err(|e| GitHubError::Decode { what, message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_comes_from_the_environment_only() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(auth_from_lookup(env(&[])).unwrap(), None);
        assert_eq!(
            auth_from_lookup(env(&[("PREVIEWD_GITHUB_TOKEN", "ghp_1")])).unwrap(),
            Some(GitHubAuth::Token("ghp_1".into()))
        );
        let err = auth_from_lookup(env(&[("PREVIEWD_GITHUB_APP_ID", "12")])).unwrap_err().to_string();
        assert!(err.contains("PRIVATE_KEY"), "{err}");
        assert!(auth_from_lookup(env(&[("PREVIEWD_GITHUB_APP_ID", "twelve")])).is_err());
        let app = auth_from_lookup(env(&[
            ("PREVIEWD_GITHUB_APP_ID", "12"),
            ("PREVIEWD_GITHUB_APP_PRIVATE_KEY", "-----BEGIN"),
        ]));
        assert!(matches!(app, Ok(Some(GitHubAuth::App { app_id: 12, .. }))));
        assert!(!format!("{:?}", app.unwrap()).contains("BEGIN"));
    }
}
