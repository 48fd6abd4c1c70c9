//! Start-up configuration from the environment; errors name the variable.

use std::fmt;
use std::time::Duration;

/// Which webhook's deliveries to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookTarget {
    /// The GitHub App's own webhook (`/app/hook/...`, authenticated with the App's JWT).
    App,
    Repository {
        owner: String,
        repo: String,
        hook_id: u64,
    },
    Organization {
        org: String,
        hook_id: u64,
    },
}

impl HookTarget {
    /// `app`, `repo:<owner>/<name>:<hook id>` or `org:<org>:<hook id>`.
    pub fn parse(value: &str) -> Option<HookTarget> {
        let value = value.trim();
        if value == "app" {
            return Some(HookTarget::App);
        }
        let (kind, rest) = value.split_once(':')?;
        let (target, id) = rest.rsplit_once(':')?;
        let hook_id = id.parse().ok()?;
        let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        match kind {
            "repo" => {
                let (owner, repo) = target.split_once('/')?;
                (valid(owner) && valid(repo)).then(|| HookTarget::Repository {
                    owner: owner.into(),
                    repo: repo.into(),
                    hook_id,
                })
            }
            "org" => valid(target).then(|| HookTarget::Organization { org: target.into(), hook_id }),
            _ => None,
        }
    }

    /// The API path of the hook (without `/deliveries`).
    pub fn hook_path(&self) -> String {
        match self {
            HookTarget::App => "/app/hook".to_owned(),
            HookTarget::Repository { owner, repo, hook_id } => format!("/repos/{owner}/{repo}/hooks/{hook_id}"),
            HookTarget::Organization { org, hook_id } => format!("/orgs/{org}/hooks/{hook_id}"),
        }
    }

    pub fn deliveries_path(&self) -> String {
        format!("{}/deliveries", self.hook_path())
    }

    pub fn attempts_path(&self, delivery_id: u64) -> String {
        format!("{}/deliveries/{delivery_id}/attempts", self.hook_path())
    }
}

impl fmt::Display for HookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookTarget::App => f.write_str("app"),
            HookTarget::Repository { owner, repo, hook_id } => write!(f, "repo:{owner}/{repo}:{hook_id}"),
            HookTarget::Organization { org, hook_id } => write!(f, "org:{org}:{hook_id}"),
        }
    }
}

/// Where the GitHub credentials come from.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// A Secrets Manager secret holding `{"app_id": ..., "private_key": "..."}` or `{"token": "..."}`.
    SecretArn(String),
    /// `PREVIEWD_GITHUB_APP_ID` + `PREVIEWD_GITHUB_APP_PRIVATE_KEY`, or `PREVIEWD_GITHUB_TOKEN` (local runs).
    Inline(previewd_github_rest::GitHubAuth),
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::SecretArn(arn) => write!(f, "SecretArn({arn})"),
            CredentialSource::Inline(c) => write!(f, "Inline({c:?})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub table_name: String,
    pub hook: HookTarget,
    pub api_url: String,
    pub credentials: CredentialSource,
    /// Redelivery requests per delivery (GUID) before giving up.
    pub max_attempts: u32,
    /// How far back the first run looks (GitHub keeps deliveries redeliverable for 3 days).
    pub lookback: Duration,
    /// Each run re-reads this much before the previous run's start, for deliveries that were
    /// still in flight then.
    pub overlap: Duration,
    /// Pages of 100 deliveries per run, at most.
    pub max_pages: u32,
    /// The longest rate-limit wait a run sits out; longer ones end the run (the next continues).
    pub max_wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} = {value:?} is invalid: {reason}")]
    Invalid { name: &'static str, value: String, reason: &'static str },
    #[error(
        "no GitHub credentials: set PREVIEWD_GITHUB_CREDENTIALS_SECRET_ARN, or PREVIEWD_GITHUB_APP_ID with \
         PREVIEWD_GITHUB_APP_PRIVATE_KEY, or PREVIEWD_GITHUB_TOKEN"
    )]
    NoCredentials,
}

/// GitHub redelivers deliveries up to three days old.
pub const REDELIVERABLE_FOR: Duration = Duration::from_secs(3 * 24 * 3600);

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let table_name = get("PREVIEWD_TABLE_NAME").ok_or(ConfigError::Missing("PREVIEWD_TABLE_NAME"))?;
        let hook_value = get("PREVIEWD_GITHUB_HOOK").unwrap_or_else(|| "app".to_owned());
        let hook = HookTarget::parse(&hook_value).ok_or(ConfigError::Invalid {
            name: "PREVIEWD_GITHUB_HOOK",
            value: hook_value,
            reason: "expected app, repo:<owner>/<repo>:<hook id> or org:<org>:<hook id>",
        })?;
        let api_url = get("PREVIEWD_GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".to_owned());
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                name: "PREVIEWD_GITHUB_API_URL",
                value: api_url,
                reason: "expected an http(s) URL, e.g. https://github.example.com/api/v3 for GitHub Enterprise Server",
            });
        }
        let credentials = if let Some(arn) = get("PREVIEWD_GITHUB_CREDENTIALS_SECRET_ARN") {
            CredentialSource::SecretArn(arn)
        } else if let Some(token) = get("PREVIEWD_GITHUB_TOKEN") {
            CredentialSource::Inline(previewd_github_rest::GitHubAuth::Token(token))
        } else {
            match (get("PREVIEWD_GITHUB_APP_ID"), lookup("PREVIEWD_GITHUB_APP_PRIVATE_KEY")) {
                (Some(id), Some(private_key)) => {
                    let app_id = id.parse().map_err(|_| ConfigError::Invalid {
                        name: "PREVIEWD_GITHUB_APP_ID",
                        value: id,
                        reason: "expected the App's numeric id",
                    })?;
                    CredentialSource::Inline(previewd_github_rest::GitHubAuth::App { app_id, private_key })
                }
                _ => return Err(ConfigError::NoCredentials),
            }
        };
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            get(name).map_or(Ok(default), |v| {
                v.parse().map_err(|_| ConfigError::Invalid { name, value: v, reason: "expected a whole number" })
            })
        };
        let max_attempts = number("PREVIEWD_REDELIVER_MAX_ATTEMPTS", 3)?;
        let lookback_hours = number("PREVIEWD_REDELIVER_LOOKBACK_HOURS", 24)?;
        if !(1..=72).contains(&lookback_hours) {
            return Err(ConfigError::Invalid {
                name: "PREVIEWD_REDELIVER_LOOKBACK_HOURS",
                value: lookback_hours.to_string(),
                reason: "must be 1 to 72: GitHub redelivers deliveries up to 3 days old",
            });
        }
        Ok(Config {
            table_name,
            hook,
            api_url: api_url.trim_end_matches('/').to_owned(),
            credentials,
            max_attempts: u32::try_from(max_attempts.clamp(1, 100)).unwrap_or(3),
            lookback: Duration::from_secs(lookback_hours * 3600),
            overlap: Duration::from_secs(number("PREVIEWD_REDELIVER_OVERLAP_MINUTES", 15)? * 60),
            max_pages: u32::try_from(number("PREVIEWD_REDELIVER_MAX_PAGES", 50)?.max(1)).unwrap_or(50),
            max_wait: Duration::from_secs(number("PREVIEWD_REDELIVER_MAX_WAIT_SECONDS", 20)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use previewd_github_rest::GitHubAuth;

    #[test]
    fn hook_targets_parse_and_print() {
        for text in ["app", "repo:acme/shop:123", "org:acme:9"] {
            assert_eq!(HookTarget::parse(text).map(|h| h.to_string()).as_deref(), Some(text));
        }
        for bad in ["", "repo:acme:1", "repo:acme/shop:x", "org::1", "team:a:1", "repo:a/b/c:1", "org:a b:1"] {
            assert_eq!(HookTarget::parse(bad), None, "{bad}");
        }
        let repo = HookTarget::parse("repo:acme/shop:123").unwrap();
        assert_eq!(repo.deliveries_path(), "/repos/acme/shop/hooks/123/deliveries");
        assert_eq!(repo.attempts_path(7), "/repos/acme/shop/hooks/123/deliveries/7/attempts");
        assert_eq!(HookTarget::App.attempts_path(7), "/app/hook/deliveries/7/attempts");
    }

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn defaults_and_credentials() {
        let c = config(&[("PREVIEWD_TABLE_NAME", "t"), ("PREVIEWD_GITHUB_TOKEN", "ghp_x")]).unwrap();
        assert_eq!(c.hook, HookTarget::App);
        assert_eq!(c.api_url, "https://api.github.com");
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.credentials, CredentialSource::Inline(GitHubAuth::Token("ghp_x".into())));
        assert!(!format!("{c:?}").contains("ghp_x"), "tokens are never printed");
        assert_eq!(config(&[("PREVIEWD_TABLE_NAME", "t")]), Err(ConfigError::NoCredentials));
        let err = config(&[
            ("PREVIEWD_TABLE_NAME", "t"),
            ("PREVIEWD_GITHUB_APP_ID", "abc"),
            ("PREVIEWD_GITHUB_APP_PRIVATE_KEY", "k"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("PREVIEWD_GITHUB_APP_ID"));
        let err =
            config(&[("PREVIEWD_TABLE_NAME", "t"), ("PREVIEWD_GITHUB_TOKEN", "x"), ("PREVIEWD_GITHUB_HOOK", "repo:x")])
                .unwrap_err();
        assert!(err.to_string().contains("PREVIEWD_GITHUB_HOOK"));
    }
}
