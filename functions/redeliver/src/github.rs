//! The few GitHub REST calls the redeliver function makes, over one shared octocrab client:
//! list a hook's deliveries (cursor pagination through `Link` headers) and request a
//! redelivery. Rate limits are honoured from the response headers.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use octocrab::Octocrab;
pub use previewd_github_rest::{GitHubAuth, GitHubError};
use previewd_github_rest::{RateLimit, build_client, next_link, relative_to_api};
use serde::Deserialize;

use crate::config::HookTarget;

#[derive(Deserialize)]
struct CredentialsJson {
    #[serde(default)]
    app_id: Option<serde_json::Value>,
    #[serde(default)]
    private_key: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

/// Reads the Secrets Manager value: `{"app_id": 123, "private_key": "-----BEGIN ..."}` or
/// `{"token": "..."}` (`app_id` may be a number or a string).
pub fn credentials_from_json(text: &str) -> Result<GitHubAuth, GitHubError> {
    let json: CredentialsJson =
        serde_json::from_str(text).map_err(|e| GitHubError::Config(format!("not the expected JSON object: {e}")))?;
    if let Some(token) = json.token.filter(|t| !t.trim().is_empty()) {
        return Ok(GitHubAuth::Token(token.trim().to_owned()));
    }
    let app_id = match json.app_id {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    match (app_id, json.private_key.filter(|k| k.contains("PRIVATE KEY"))) {
        (Some(app_id), Some(private_key)) => Ok(GitHubAuth::App { app_id, private_key }),
        _ => Err(GitHubError::Config(
            "set either \"token\", or \"app_id\" with a PEM \"private_key\" (see docs/deploy-aws.md)".to_owned(),
        )),
    }
}

/// One entry of `GET .../hook/deliveries`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HookDelivery {
    pub id: u64,
    /// The same for a delivery and all its redeliveries.
    pub guid: String,
    pub delivered_at: DateTime<Utc>,
    #[serde(default)]
    pub redelivery: bool,
    /// The receiver's HTTP status; 0 when GitHub got no HTTP answer (timeout, connection error).
    #[serde(default)]
    pub status_code: u16,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug)]
pub struct Page {
    pub deliveries: Vec<HookDelivery>,
    /// The absolute URL of the next page, from the `Link` header.
    pub next: Option<String>,
}

/// One client for the whole container; it remembers a rate limit across calls.
#[derive(Debug)]
pub struct GitHub {
    client: Octocrab,
    api_url: String,
    rate_limit: RateLimit,
}

impl GitHub {
    pub fn new(api_url: &str, credentials: &GitHubAuth) -> Result<GitHub, GitHubError> {
        let client = build_client(api_url, credentials)?;
        Ok(GitHub { client, api_url: api_url.trim_end_matches('/').to_owned(), rate_limit: RateLimit::default() })
    }

    /// The first page (a path; octocrab joins it with the API base, GitHub Enterprise's
    /// `/api/v3` included).
    pub fn first_page(&self, hook: &HookTarget) -> String {
        format!("{}?per_page=100", hook.deliveries_path())
    }

    /// The path and query of `url`, which must point at the configured API host. Octocrab only
    /// authenticates relative requests, and a `Link` to another host is never followed.
    fn relative(&self, url: &str) -> Result<String, GitHubError> {
        relative_to_api(&self.api_url, url)
            .ok_or_else(|| GitHubError::Decode { what: "pagination link", message: format!("unexpected URL {url}") })
    }

    fn check_blocked(&self) -> Result<(), GitHubError> {
        match self.rate_limit.blocked_for(Utc::now().timestamp()) {
            Some(wait) => Err(GitHubError::RateLimited(wait)),
            None => Ok(()),
        }
    }

    /// Records rate-limit signals of a response; returns the wait if this response was refused.
    fn observe(&self, status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
        let wait = self.rate_limit.observe(status, headers, Utc::now().timestamp());
        tracing::debug!(remaining = self.rate_limit.remaining(), "GitHub rate limit");
        wait
    }

    /// Lists one page of deliveries, newest first.
    pub async fn list(&self, url: &str) -> Result<Page, GitHubError> {
        const WHAT: &str = "list hook deliveries";
        self.check_blocked()?;
        let path = self.relative(url)?;
        let response =
            self.client._get(path).await.map_err(|e| GitHubError::Transport { what: WHAT, message: e.to_string() })?;
        let status = response.status();
        let headers = response.headers().clone();
        if let Some(wait) = self.observe(status, &headers) {
            return Err(GitHubError::RateLimited(wait));
        }
        let body = self
            .client
            .body_to_string(response)
            .await
            .map_err(|e| GitHubError::Transport { what: WHAT, message: e.to_string() })?;
        if !status.is_success() {
            return Err(GitHubError::Status { status: status.as_u16(), what: WHAT, message: excerpt(&body) });
        }
        let deliveries =
            serde_json::from_str(&body).map_err(|e| GitHubError::Decode { what: WHAT, message: e.to_string() })?;
        let next = headers.get(http::header::LINK).and_then(|v| v.to_str().ok()).and_then(next_link);
        Ok(Page { deliveries, next })
    }

    /// Asks GitHub to deliver `delivery_id` again (GitHub answers 202 and delivers shortly).
    pub async fn redeliver(&self, hook: &HookTarget, delivery_id: u64) -> Result<(), GitHubError> {
        const WHAT: &str = "redeliver";
        self.check_blocked()?;
        let response = self
            .client
            ._post(hook.attempts_path(delivery_id), None::<&()>)
            .await
            .map_err(|e| GitHubError::Transport { what: WHAT, message: e.to_string() })?;
        let status = response.status();
        if let Some(wait) = self.observe(status, &response.headers().clone()) {
            return Err(GitHubError::RateLimited(wait));
        }
        if status.is_success() {
            return Ok(());
        }
        let body = self.client.body_to_string(response).await.unwrap_or_default();
        Err(GitHubError::Status { status: status.as_u16(), what: WHAT, message: excerpt(&body) })
    }
}

fn excerpt(body: &str) -> String {
    body.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pagination_links_stay_on_the_api_host() {
        let github = GitHub::new("https://ghe.example.com/api/v3", &GitHubAuth::Token("t".into())).unwrap();
        assert_eq!(github.first_page(&HookTarget::App), "/app/hook/deliveries?per_page=100");
        assert_eq!(
            github.relative("https://ghe.example.com/api/v3/app/hook/deliveries?per_page=100&cursor=v1_9").unwrap(),
            "/api/v3/app/hook/deliveries?per_page=100&cursor=v1_9"
        );
        // Credentials never follow a link to another host.
        assert!(github.relative("https://evil.example.com/app/hook/deliveries").is_err());
    }

    #[test]
    fn credentials_json_forms() {
        assert_eq!(credentials_from_json(r#"{"token":" ghp_1 "}"#).unwrap(), GitHubAuth::Token("ghp_1".into()));
        let app =
            credentials_from_json(r#"{"app_id":"42","private_key":"-----BEGIN RSA PRIVATE KEY-----\n..."}"#).unwrap();
        assert!(matches!(app, GitHubAuth::App { app_id: 42, .. }));
        assert!(!format!("{app:?}").contains("BEGIN"));
        // The placeholder the template creates is refused with directions.
        let err = credentials_from_json(r#"{"app_id":"","private_key":""}"#).unwrap_err();
        assert!(err.to_string().contains("docs/deploy-aws.md"), "{err}");
        assert!(credentials_from_json("not json").is_err());
    }

    #[test]
    fn deliveries_parse_from_githubs_documented_shape() {
        // From GitHub's REST docs, "List deliveries for an app webhook".
        let body = r#"[{"id":12345678,"guid":"0b989ba4-242f-11e5-81e1-c7b6966d2516","delivered_at":"2019-06-03T00:57:16Z","redelivery":false,"duration":0.27,"status":"OK","status_code":200,"event":"issues","action":"opened","installation_id":123,"repository_id":456,"throttled_at":"2019-06-03T00:57:16Z"}]"#;
        let deliveries: Vec<HookDelivery> = serde_json::from_str(body).unwrap();
        assert_eq!(deliveries[0].id, 12345678);
        assert_eq!(deliveries[0].status_code, 200);
        assert_eq!(deliveries[0].action.as_deref(), Some("opened"));
    }
}
