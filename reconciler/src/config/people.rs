//! Who gets a preview (the PR policy) and what the PR shows (GitHub).

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::HumanDuration;
use super::{ConfigError, invalid};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ForkPolicy {
    /// Deploy fork PRs only at commits a maintainer approved with `forkLabel`.
    #[default]
    RequireLabel,
    /// Deploy fork PRs like any other (only for trusted contributor bases).
    Allow,
    /// Never deploy fork PRs.
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub forks: ForkPolicy,
    /// Added by someone with push access, it approves a fork's head commit.
    pub fork_label: String,
    pub deploy_drafts: bool,
    /// PRs with this label get no preview.
    pub opt_out_label: String,
    /// `optOut`: every PR gets a preview unless it opts out. `optIn`: only PRs with
    /// `optInLabel` get one (a repository may say otherwise: `repositories[].mode`).
    pub mode: PolicyMode,
    /// In `optIn` mode, the label that asks for a preview.
    pub opt_in_label: String,
    /// PRs with this label idle for `ttl.doNotExpire` instead of `ttl.idle`.
    pub do_not_expire_label: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            forks: ForkPolicy::default(),
            fork_label: "preview-fork".into(),
            deploy_drafts: false,
            opt_out_label: "no-preview".into(),
            mode: PolicyMode::OptOut,
            opt_in_label: "preview".into(),
            do_not_expire_label: "do-not-expire".into(),
        }
    }
}

/// Whether PRs get a preview unless they opt out, or only when they ask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PolicyMode {
    #[default]
    OptOut,
    OptIn,
}

/// How the preview shows on the pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GitHubConfig {
    /// A GitHub Deployment per head commit in the PR's transient environment
    /// (`preview/pr-<n>`): the PR shows "View deployment", later "destroyed".
    pub deployments: bool,
    /// Also a commit status on the head commit, for branch protection rules and users who
    /// prefer checks.
    pub commit_status: bool,
    /// The commit status's context.
    #[schemars(length(min = 1))]
    pub status_context: String,
    /// The one sticky comment (URL, services, cost, expiry; or why there is no preview).
    pub comment: bool,
    /// Concurrent GitHub requests (one shared client).
    #[schemars(range(min = 1, max = 32))]
    pub concurrency: u32,
    /// How long a deleted preview waits for GitHub to hear "destroyed" before it goes anyway.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "HumanDuration")]
    pub destroy_grace: Duration,
    /// GitHub requests one event may spend reading the build graph (the tree listing and the
    /// blobs not yet cached); past it, the `paths` globs decide.
    #[schemars(range(min = 1, max = 5000))]
    pub detection_budget: u32,
    /// Memory for build files read from GitHub, cached by blob SHA across events (MiB).
    #[schemars(range(max = 1024))]
    pub blob_cache_mib: u32,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        GitHubConfig {
            deployments: true,
            commit_status: false,
            status_context: "previewd/preview".into(),
            comment: true,
            concurrency: 4,
            destroy_grace: Duration::from_secs(600),
            detection_budget: 300,
            blob_cache_mib: 32,
        }
    }
}

impl GitHubConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=32).contains(&self.concurrency) {
            return Err(invalid("github.concurrency", "between 1 and 32"));
        }
        if !(1..=5000).contains(&self.detection_budget) {
            return Err(invalid("github.detectionBudget", "between 1 and 5000"));
        }
        if self.blob_cache_mib > 1024 {
            return Err(invalid("github.blobCacheMib", "at most 1024"));
        }
        if self.destroy_grace > Duration::from_secs(24 * 3600) {
            return Err(invalid("github.destroyGrace", "at most 24h"));
        }
        if self.status_context.trim().is_empty() {
            return Err(invalid("github.statusContext", "must not be empty"));
        }
        Ok(())
    }
}
