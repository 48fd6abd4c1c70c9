//! Start-up configuration from the environment, validated once; errors name the variable.

use std::time::Duration;

/// Where the webhook secrets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretConfig {
    /// `PREVIEWD_WEBHOOK_SECRET`: comma-separated, newest first (local runs, tests).
    Inline(String),
    /// `PREVIEWD_WEBHOOK_SECRET_ARN`: a Secrets Manager secret holding the same format.
    Arn(String),
}

/// Where accepted deliveries go, and where the ledger lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// The AWS front: `PREVIEWD_QUEUE_URL` (SQS FIFO) and `PREVIEWD_TABLE_NAME` (DynamoDB).
    Aws { queue_url: String, table_name: String },
    /// The in-cluster front: `PREVIEWD_NATS_URL`, a NATS server with JetStream (the stream and
    /// buckets are named in `docs/in-cluster-front.md`).
    Nats { url: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub secret: SecretConfig,
    pub backing: Backing,
    /// Deliveries per repository per minute; `None` disables the limit.
    pub rate_limit_per_minute: Option<u32>,
    pub max_body_bytes: usize,
    /// How long a delivery id is remembered. GitHub lets a delivery be redelivered for 3 days.
    pub dedupe_retention: Duration,
    /// How long an in-flight claim blocks a duplicate before a retry may take it over (covers a
    /// container that died between claiming and enqueueing).
    pub claim_lease: Duration,
    pub secret_refresh: Duration,
    /// `owner/repo` or `owner/*` patterns; empty = every repository the hook is installed on.
    pub allowed_repositories: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} = {value:?} is invalid: {reason}")]
    Invalid { name: &'static str, value: String, reason: &'static str },
    #[error(
        "no webhook secret configured: set PREVIEWD_WEBHOOK_SECRET (comma-separated for rotation) \
         or PREVIEWD_WEBHOOK_SECRET_ARN (a Secrets Manager secret); refusing to start"
    )]
    NoSecret,
    #[error("set only one of PREVIEWD_WEBHOOK_SECRET and PREVIEWD_WEBHOOK_SECRET_ARN")]
    TwoSecretSources,
}

pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 100;
/// Lambda's synchronous payload limit is 6 MB including encoding; GitHub caps at 25 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (tests pass a map instead of the process env).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let secret = match (get("PREVIEWD_WEBHOOK_SECRET"), get("PREVIEWD_WEBHOOK_SECRET_ARN")) {
            (Some(_), Some(_)) => return Err(ConfigError::TwoSecretSources),
            (Some(list), None) => SecretConfig::Inline(list),
            (None, Some(arn)) => SecretConfig::Arn(arn.trim().to_owned()),
            (None, None) => return Err(ConfigError::NoSecret),
        };
        let backing = match get("PREVIEWD_NATS_URL") {
            Some(url) => Backing::Nats { url: url.trim().to_owned() },
            None => aws_backing(&get)?,
        };
        let rate = number(&get, "PREVIEWD_RATE_LIMIT_PER_MINUTE", DEFAULT_RATE_LIMIT_PER_MINUTE as u64)?;
        let max_body_bytes = number(&get, "PREVIEWD_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES as u64)?;
        let retention_hours = number(&get, "PREVIEWD_DEDUPE_TTL_HOURS", 96)?;
        let lease_seconds = number(&get, "PREVIEWD_CLAIM_LEASE_SECONDS", 60)?;
        let refresh_seconds = number(&get, "PREVIEWD_SECRET_REFRESH_SECONDS", 300)?;
        if retention_hours < 72 {
            return Err(ConfigError::Invalid {
                name: "PREVIEWD_DEDUPE_TTL_HOURS",
                value: retention_hours.to_string(),
                reason: "must be at least 72: GitHub redelivers deliveries up to 3 days old",
            });
        }
        let allowed_repositories =
            get("PREVIEWD_ALLOWED_REPOSITORIES").map(|list| parse_patterns(&list)).transpose()?.unwrap_or_default();
        Ok(Config {
            secret,
            backing,
            rate_limit_per_minute: u32::try_from(rate).ok().filter(|r| *r > 0),
            max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
            dedupe_retention: Duration::from_secs(retention_hours.saturating_mul(3600)),
            claim_lease: Duration::from_secs(lease_seconds.max(1)),
            secret_refresh: Duration::from_secs(refresh_seconds.max(1)),
            allowed_repositories,
        })
    }

    /// Whether deliveries from `full_name` (`owner/repo`) are accepted.
    pub fn repository_allowed(&self, full_name: &str) -> bool {
        if self.allowed_repositories.is_empty() {
            return true;
        }
        let Some((owner, _)) = full_name.split_once('/') else {
            return false;
        };
        self.allowed_repositories.iter().any(|pattern| match pattern.strip_suffix("/*") {
            Some(org) => org.eq_ignore_ascii_case(owner),
            None => pattern.eq_ignore_ascii_case(full_name),
        })
    }
}

fn aws_backing(get: &impl Fn(&str) -> Option<String>) -> Result<Backing, ConfigError> {
    let queue_url = get("PREVIEWD_QUEUE_URL").ok_or(ConfigError::Missing("PREVIEWD_QUEUE_URL"))?;
    if !queue_url.ends_with(".fifo") {
        return Err(ConfigError::Invalid {
            name: "PREVIEWD_QUEUE_URL",
            value: queue_url,
            reason: "must be a FIFO queue (URL ending in .fifo)",
        });
    }
    let table_name = get("PREVIEWD_TABLE_NAME").ok_or(ConfigError::Missing("PREVIEWD_TABLE_NAME"))?;
    Ok(Backing::Aws { queue_url, table_name })
}

fn number(get: &impl Fn(&str) -> Option<String>, name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(value) => {
            value.trim().parse().map_err(|_| ConfigError::Invalid { name, value, reason: "expected a whole number" })
        }
    }
}

fn parse_patterns(list: &str) -> Result<Vec<String>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let valid = matches!(p.split_once('/'), Some((o, r)) if !o.is_empty() && !r.is_empty() && !r.contains('/') && (r == "*" || !r.contains('*')) && !o.contains('*'));
            if valid {
                Ok(p.to_owned())
            } else {
                Err(ConfigError::Invalid {
                    name: "PREVIEWD_ALLOWED_REPOSITORIES",
                    value: p.to_owned(),
                    reason: "each entry must be owner/repo or owner/*",
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 3] = [
        ("PREVIEWD_WEBHOOK_SECRET", "s1,s2"),
        ("PREVIEWD_QUEUE_URL", "http://127.0.0.1:5000/000000000000/previewd-events.fifo"),
        ("PREVIEWD_TABLE_NAME", "previewd-webhook"),
    ];

    #[test]
    fn defaults_apply() -> Result<(), ConfigError> {
        let c = config(&BASE)?;
        assert_eq!(c.rate_limit_per_minute, Some(100));
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.dedupe_retention, Duration::from_secs(96 * 3600));
        assert_eq!(c.secret, SecretConfig::Inline("s1,s2".into()));
        assert!(c.repository_allowed("anyone/anything"));
        Ok(())
    }

    #[test]
    fn no_secret_refuses_to_start() {
        assert_eq!(config(&BASE[1..]), Err(ConfigError::NoSecret));
        let mut both = BASE.to_vec();
        both.push(("PREVIEWD_WEBHOOK_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:x"));
        assert_eq!(config(&both), Err(ConfigError::TwoSecretSources));
    }

    #[test]
    fn errors_name_the_variable() {
        let mut bad = BASE.to_vec();
        bad.push(("PREVIEWD_RATE_LIMIT_PER_MINUTE", "lots"));
        let err = config(&bad).map(|_| ()).unwrap_err_or_default();
        assert!(err.contains("PREVIEWD_RATE_LIMIT_PER_MINUTE"), "{err}");
        let err = config(&BASE[..1]).map(|_| ()).unwrap_err_or_default();
        assert!(err.contains("PREVIEWD_QUEUE_URL"), "{err}");
        let mut standard = BASE.to_vec();
        standard[1] = ("PREVIEWD_QUEUE_URL", "http://x/q");
        let err = config(&standard).map(|_| ()).unwrap_err_or_default();
        assert!(err.contains("FIFO"), "{err}");
    }

    #[test]
    fn a_nats_url_needs_no_aws_resources() -> Result<(), ConfigError> {
        let c = config(&[("PREVIEWD_WEBHOOK_SECRET", "s"), ("PREVIEWD_NATS_URL", " nats://nats:4222 ")])?;
        assert_eq!(c.backing, Backing::Nats { url: "nats://nats:4222".into() });
        assert!(matches!(config(&BASE)?.backing, Backing::Aws { .. }));
        Ok(())
    }

    #[test]
    fn zero_rate_disables_the_limit() -> Result<(), ConfigError> {
        let mut c = BASE.to_vec();
        c.push(("PREVIEWD_RATE_LIMIT_PER_MINUTE", "0"));
        assert_eq!(config(&c)?.rate_limit_per_minute, None);
        Ok(())
    }

    #[test]
    fn allowed_repositories_match_case_insensitively() -> Result<(), ConfigError> {
        let mut c = BASE.to_vec();
        c.push(("PREVIEWD_ALLOWED_REPOSITORIES", "acme/*, Other/Shop"));
        let c = config(&c)?;
        assert!(c.repository_allowed("ACME/web"));
        assert!(c.repository_allowed("other/shop"));
        assert!(!c.repository_allowed("other/web"));
        assert!(!c.repository_allowed("nobody"));
        let mut bad = BASE.to_vec();
        bad.push(("PREVIEWD_ALLOWED_REPOSITORIES", "acme"));
        assert!(config(&bad).is_err());
        Ok(())
    }

    trait ErrText {
        fn unwrap_err_or_default(self) -> String;
    }
    impl ErrText for Result<(), ConfigError> {
        fn unwrap_err_or_default(self) -> String {
            self.err().map(|e| e.to_string()).unwrap_or_default()
        }
    }
}
