//! GitHub REST conventions both Previewd halves follow: how they authenticate, the one octocrab
//! client they build, how GitHub says "slow down", how it paginates, and never sending
//! credentials off the configured API host.
#![forbid(unsafe_code)]

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, StatusCode, Uri};
use octocrab::Octocrab;
use octocrab::models::AppId;

/// How a Previewd component authenticates to GitHub. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub enum GitHubAuth {
    /// A GitHub App: JWTs signed with its private key (and installation tokens minted with them).
    App { app_id: u64, private_key: String },
    /// A token (fine-grained, classic, or an installation token).
    Token(String),
}

impl fmt::Debug for GitHubAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitHubAuth::App { app_id, .. } => write!(f, "App {{ app_id: {app_id}, private_key: <redacted> }}"),
            GitHubAuth::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("GitHub configuration: {0}")]
    Config(String),
    #[error("GitHub rate limit: retry in {} s", .0.as_secs())]
    RateLimited(Duration),
    #[error("GitHub answered {status} to {what}: {message}")]
    Status { status: u16, what: &'static str, message: String },
    #[error("GitHub request failed ({what}): {message}")]
    Transport { what: &'static str, message: String },
    #[error("GitHub's answer to {what} could not be read: {message}")]
    Decode { what: &'static str, message: String },
}

impl GitHubError {
    /// A bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            GitHubError::Config(_) => "config",
            GitHubError::RateLimited(_) => "rate_limited",
            GitHubError::Status { .. } => "status",
            GitHubError::Transport { .. } => "transport",
            GitHubError::Decode { .. } => "decode",
        }
    }
}

/// The octocrab client for `api_url` (GitHub Enterprise: `https://HOST/api/v3`) with bounded
/// timeouts. With App auth it sends the App's JWT; `Octocrab::installation` derives clients
/// that mint and cache installation tokens.
pub fn build_client(api_url: &str, auth: &GitHubAuth) -> Result<Octocrab, GitHubError> {
    let builder = Octocrab::builder()
        .base_uri(api_url)
        .map_err(|e| GitHubError::Config(format!("invalid GitHub API URL {api_url}: {e}")))?
        .set_connect_timeout(Some(Duration::from_secs(5)))
        .set_read_timeout(Some(Duration::from_secs(20)));
    let builder = match auth {
        GitHubAuth::App { app_id, private_key } => {
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes())
                .map_err(|e| GitHubError::Config(format!("the App private key is not an RSA PEM key: {e}")))?;
            builder.app(AppId(*app_id), key)
        }
        GitHubAuth::Token(token) => builder.personal_token(token.clone()),
    };
    builder.build().map_err(|e| GitHubError::Config(format!("building the GitHub client: {e}")))
}

/// How long to wait before the next call, from a response's status and headers.
///
/// GitHub signals limits three ways: `retry-after` (secondary limits, 429/403),
/// `x-ratelimit-remaining: 0` with `x-ratelimit-reset` (primary limit, epoch seconds), and a 403
/// or 429 with neither, for which GitHub's guidance is to wait at least a minute.
pub fn rate_limit_wait(status: StatusCode, headers: &HeaderMap, now_epoch: i64) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(seconds) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(seconds.max(1)));
    }
    let exhausted = header("x-ratelimit-remaining") == Some("0");
    if exhausted && let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok()) {
        // One second past the reset, as GitHub's clock and ours differ a little.
        return Some(Duration::from_secs(u64::try_from(reset - now_epoch).unwrap_or(0) + 1));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || (status == StatusCode::FORBIDDEN && exhausted) {
        return Some(Duration::from_secs(60));
    }
    None
}

/// What a client knows of its rate limit: until when it must not call (a limit GitHub reported),
/// and the last quota GitHub said remains. One per client, shared by all its calls.
#[derive(Debug)]
pub struct RateLimit {
    /// Epoch seconds before which no request is sent.
    blocked_until: std::sync::atomic::AtomicI64,
    /// The last `x-ratelimit-remaining` (-1: none yet).
    remaining: std::sync::atomic::AtomicI64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { blocked_until: 0.into(), remaining: (-1).into() }
    }
}

impl RateLimit {
    /// How long to wait before the next request, if a reported limit still holds at `now_epoch`.
    pub fn blocked_for(&self, now_epoch: i64) -> Option<Duration> {
        let until = self.blocked_until.load(std::sync::atomic::Ordering::Relaxed);
        (until > now_epoch).then(|| Duration::from_secs(u64::try_from(until - now_epoch).unwrap_or(1)))
    }

    /// Records a response's rate-limit signals; returns the wait when GitHub refused the
    /// request for its rate limit (GitHub did not act on it, so sending it again is safe).
    pub fn observe(&self, status: StatusCode, headers: &HeaderMap, now_epoch: i64) -> Option<Duration> {
        use std::sync::atomic::Ordering;
        if let Some(remaining) =
            headers.get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
        {
            self.remaining.store(remaining, Ordering::Relaxed);
        }
        let wait = rate_limit_wait(status, headers, now_epoch);
        if let Some(wait) = wait {
            let until = now_epoch + i64::try_from(wait.as_secs()).unwrap_or(60);
            self.blocked_until.fetch_max(until, Ordering::Relaxed);
        }
        wait.filter(|_| status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::FORBIDDEN)
    }

    /// The last remaining quota GitHub reported.
    pub fn remaining(&self) -> Option<i64> {
        Some(self.remaining.load(std::sync::atomic::Ordering::Relaxed)).filter(|r| *r >= 0)
    }
}

/// The `rel="next"` URL of an RFC 8288 `Link` header.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let url = pieces.next()?.trim().strip_prefix('<')?.strip_suffix('>')?;
        pieces.any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next")).then(|| url.to_owned())
    })
}

/// The path and query of `url` when it points at the host of `api_url` (GitHub Enterprise's
/// `/api/v3` included); `None` for any other host. Clients that attach credentials only to
/// relative requests (octocrab) stay safe when following `Link` headers.
pub fn relative_to_api(api_url: &str, url: &str) -> Option<String> {
    if url.starts_with('/') {
        return Some(url.to_owned());
    }
    let uri: Uri = url.parse().ok()?;
    let api: Uri = api_url.parse().ok()?;
    if uri.authority() != api.authority() || uri.scheme() != api.scheme() {
        return None;
    }
    uri.path_and_query().map(|pq| pq.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn a_reported_limit_holds_until_it_ends() {
        let limit = RateLimit::default();
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
        headers.insert("x-ratelimit-reset", "1100".parse().unwrap());
        assert_eq!(limit.observe(StatusCode::FORBIDDEN, &headers, 1000), Some(Duration::from_secs(101)));
        assert_eq!(limit.remaining(), Some(0));
        assert_eq!(limit.blocked_for(1050), Some(Duration::from_secs(51)));
        assert_eq!(limit.blocked_for(1101), None);
        // A success that reports an exhausted quota blocks the next call, without a refusal.
        assert_eq!(limit.observe(StatusCode::OK, &headers, 1000), None);
        assert!(limit.blocked_for(1000).is_some());
    }

    #[test]
    fn rate_limit_signals() {
        let now = 1_000;
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &headers(&[("retry-after", "30")]), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            rate_limit_wait(
                StatusCode::FORBIDDEN,
                &headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1100")]),
                now
            ),
            Some(Duration::from_secs(101))
        );
        // The last allowed call succeeded but nothing is left: wait before the next one.
        assert_eq!(
            rate_limit_wait(
                StatusCode::OK,
                &headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "990")]),
                now
            ),
            Some(Duration::from_secs(1))
        );
        assert_eq!(rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &headers(&[]), now), Some(Duration::from_secs(60)));
        // A plain 403 is a permission problem, not a rate limit.
        assert_eq!(rate_limit_wait(StatusCode::FORBIDDEN, &headers(&[("x-ratelimit-remaining", "4999")]), now), None);
        assert_eq!(rate_limit_wait(StatusCode::OK, &headers(&[("x-ratelimit-remaining", "12")]), now), None);
    }

    #[test]
    fn next_link_is_found_among_others() {
        let link = r#"<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12>; rel="next", <https://api.github.com/app/hook/deliveries?per_page=100>; rel="first""#;
        assert_eq!(
            next_link(link).as_deref(),
            Some("https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12")
        );
        assert_eq!(next_link(r#"<https://x/a>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[tokio::test]
    async fn clients_build_and_bad_keys_are_named() {
        assert!(build_client("https://ghe.example.com/api/v3", &GitHubAuth::Token("t".into())).is_ok());
        let bad = GitHubAuth::App { app_id: 1, private_key: "not a key".into() };
        let err = build_client("https://api.github.com", &bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("RSA PEM"), "{err}");
        assert!(!format!("{bad:?}").contains("not a key"), "keys are never printed");
    }

    #[test]
    fn links_stay_on_the_api_host() {
        let api = "https://ghe.example.com/api/v3";
        assert_eq!(
            relative_to_api(api, "https://ghe.example.com/api/v3/app/hook/deliveries?cursor=v1_9").as_deref(),
            Some("/api/v3/app/hook/deliveries?cursor=v1_9")
        );
        assert_eq!(
            relative_to_api(api, "/repos/a/b/pulls/1/files?page=2").as_deref(),
            Some("/repos/a/b/pulls/1/files?page=2")
        );
        assert_eq!(relative_to_api(api, "https://evil.example.com/app/hook/deliveries"), None);
        assert_eq!(relative_to_api(api, "http://ghe.example.com/api/v3/x"), None, "no downgrade to http");
    }
}
