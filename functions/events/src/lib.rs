//! The queue-message contract shared by both halves of Previewd.
//!
//! The webhook front turns a verified GitHub `pull_request` delivery into a [`PreviewEvent`]
//! and puts it on the SQS FIFO queue; the reconciler decodes it with [`PreviewEvent::from_json`].
//! The message carries only what the reconciler needs, never the raw GitHub payload (which can
//! reach 25 MB while an SQS message is limited to 256 KiB).
//!
//! Compatibility rules (see `docs/queue-message.md`):
//! - additive, optional fields keep [`SCHEMA_VERSION`]; decoders ignore unknown fields;
//! - renaming, removing or changing the meaning of a field bumps [`SCHEMA_VERSION`], and a
//!   decoder refuses versions it does not know instead of guessing.
#![forbid(unsafe_code)]

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod message;
pub use message::{CONTRACT_VERSION, CheckEvent, CheckSource, CheckState, CommandEvent, MAX_COMMAND_LEN, Message};

/// The version of `pull_request` messages (contract version 1, unchanged in version 2; see
/// [`message`]).
pub const SCHEMA_VERSION: u32 = 1;

/// SQS limit for `MessageGroupId` and `MessageDeduplicationId`.
pub const MAX_GROUP_ID_LEN: usize = 128;

/// One pull-request event, as it travels on the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewEvent {
    /// Contract version; see [`SCHEMA_VERSION`].
    pub version: u32,
    /// GitHub's `X-GitHub-Delivery` id: unique per delivery, kept across redeliveries.
    pub delivery_id: String,
    /// When the webhook front accepted the delivery (used for webhook-to-ready latency and to
    /// order two events with the same PR `updated_at`).
    pub received_at: DateTime<Utc>,
    /// What happened to the pull request.
    pub action: PrAction,
    pub repository: Repository,
    /// GitHub App installation that sent the delivery, absent for plain repository hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    pub pull_request: PullRequest,
    /// Login of whoever caused the event (for `labeled`: who added the label).
    pub sender: String,
    /// The label added or removed, for `labeled` / `unlabeled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// The pull-request actions Previewd acts on. Everything else is ignored at the front.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrAction {
    Opened,
    Reopened,
    Synchronize,
    Closed,
    Labeled,
    Unlabeled,
    ReadyForReview,
    ConvertedToDraft,
    /// Only forwarded when the base branch changed.
    Edited,
}

impl PrAction {
    /// Every action, in a fixed order (for tests and documentation).
    pub const ALL: [PrAction; 9] = [
        PrAction::Opened,
        PrAction::Reopened,
        PrAction::Synchronize,
        PrAction::Closed,
        PrAction::Labeled,
        PrAction::Unlabeled,
        PrAction::ReadyForReview,
        PrAction::ConvertedToDraft,
        PrAction::Edited,
    ];

    /// GitHub's spelling of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            PrAction::Opened => "opened",
            PrAction::Reopened => "reopened",
            PrAction::Synchronize => "synchronize",
            PrAction::Closed => "closed",
            PrAction::Labeled => "labeled",
            PrAction::Unlabeled => "unlabeled",
            PrAction::ReadyForReview => "ready_for_review",
            PrAction::ConvertedToDraft => "converted_to_draft",
            PrAction::Edited => "edited",
        }
    }

    /// Parses GitHub's spelling; `None` for actions Previewd does not act on.
    pub fn from_github(action: &str) -> Option<PrAction> {
        PrAction::ALL.into_iter().find(|a| a.as_str() == action)
    }
}

impl fmt::Display for PrAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The base repository of the pull request (where the webhook is installed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// `owner/name`, as GitHub spells it.
    pub full_name: String,
    pub owner: String,
    pub name: String,
    /// GitHub's numeric id: survives renames and transfers.
    pub id: u64,
}

/// The parts of the pull request the reconciler needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub head_sha: String,
    pub head_ref: String,
    /// `owner/name` of the head repository; `None` when the fork was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_repo: Option<String>,
    pub base_ref: String,
    /// The head lives in another repository than the base (or its repository is gone).
    pub fork: bool,
    pub draft: bool,
    /// `open` or `closed`.
    pub state: PrState,
    /// Set on `closed` when the PR was merged rather than abandoned.
    pub merged: bool,
    /// Label names on the PR after the event.
    pub labels: Vec<String>,
    pub author: String,
    /// GitHub's `author_association` (OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, ...).
    pub author_association: String,
    /// The PR's own `updated_at`: the order in which stale events are recognised.
    pub updated_at: DateTime<Utc>,
    pub html_url: String,
    pub title: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrState {
    Open,
    Closed,
}

/// Why a queue message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("queue message is not valid JSON for the event contract: {0}")]
    Json(#[from] serde_json::Error),
    #[error("queue message has contract version {found}; this build reads versions 1 to {CONTRACT_VERSION}")]
    UnsupportedVersion { found: u32 },
}

impl DecodeError {
    /// A contract version later than this build's: written by a newer front during a rolling
    /// deploy, readable by a newer consumer. Not malformed.
    pub fn is_newer_version(&self) -> bool {
        matches!(self, DecodeError::UnsupportedVersion { found } if *found > CONTRACT_VERSION)
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    version: u32,
}

/// The one case rule for keys built from a repository name. GitHub treats `Acme/Shop` and
/// `acme/shop` as the same repository, and so does every key Previewd derives from a name: the
/// FIFO group, the ledger's rate and order items, the consumer's batching.
pub fn repository_key(full_name: &str) -> String {
    full_name.to_ascii_lowercase()
}

impl PreviewEvent {
    /// The PR this event is about, as a key ([`repository_key`] and the number).
    pub fn pr_key(&self) -> (String, u64) {
        (repository_key(&self.repository.full_name), self.pull_request.number)
    }

    /// The FIFO message group: all events of one PR are delivered in order, PRs in parallel.
    ///
    /// `<owner>/<repo>#<pr>` ([`repository_key`]); SQS caps group ids at 128 characters, and
    /// GitHub names can reach 39 + 1 + 100, so an over-long name falls back to the repository's
    /// numeric id.
    pub fn message_group_id(&self) -> String {
        message::pr_group(&self.repository, self.pull_request.number)
    }

    /// Serialises the message as compact JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Decodes a queue message, refusing contract versions this build does not know.
    pub fn from_json(body: &str) -> Result<PreviewEvent, DecodeError> {
        // Read the version first so an incompatible message fails with a clear reason instead
        // of a confusing missing-field error.
        let probe: VersionProbe = serde_json::from_str(body)?;
        if probe.version != SCHEMA_VERSION {
            return Err(DecodeError::UnsupportedVersion { found: probe.version });
        }
        Ok(serde_json::from_str(body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PreviewEvent {
        PreviewEvent {
            version: SCHEMA_VERSION,
            delivery_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
            received_at: "2026-11-26T10:00:00Z".parse().unwrap_or_default(),
            action: PrAction::Synchronize,
            repository: Repository { full_name: "acme/shop".into(), owner: "acme".into(), name: "shop".into(), id: 42 },
            installation_id: Some(7),
            pull_request: PullRequest {
                number: 12,
                head_sha: "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into(),
                head_ref: "feature/cart".into(),
                head_repo: Some("acme/shop".into()),
                base_ref: "main".into(),
                fork: false,
                draft: false,
                state: PrState::Open,
                merged: false,
                labels: vec!["preview".into()],
                author: "octocat".into(),
                author_association: "MEMBER".into(),
                updated_at: "2026-11-26T09:59:58Z".parse().unwrap_or_default(),
                html_url: "https://github.com/acme/shop/pull/12".into(),
                title: "Cart".into(),
            },
            sender: "octocat".into(),
            label: None,
        }
    }

    #[test]
    fn round_trips_through_json() -> Result<(), DecodeError> {
        let event = sample();
        assert_eq!(PreviewEvent::from_json(&event.to_json()?)?, event);
        Ok(())
    }

    #[test]
    fn group_id_is_per_pull_request() {
        assert_eq!(sample().message_group_id(), "acme/shop#12");
    }

    #[test]
    fn a_pr_has_one_group_whatever_the_case_of_its_repository_name() {
        let mut event = sample();
        event.repository.full_name = "Acme/Shop".into();
        assert_eq!(event.message_group_id(), sample().message_group_id());
        assert_eq!(event.pr_key(), sample().pr_key());
    }

    #[test]
    fn over_long_names_fall_back_to_the_repository_id() {
        let mut event = sample();
        event.repository.full_name = format!("{}/{}", "o".repeat(39), "r".repeat(100));
        let group = event.message_group_id();
        assert_eq!(group, "repo-id:42#12");
        assert!(group.len() <= MAX_GROUP_ID_LEN);
    }

    #[test]
    fn unknown_fields_are_ignored() -> Result<(), Box<dyn std::error::Error>> {
        let mut value = serde_json::to_value(sample())?;
        value["added_in_a_later_minor_change"] = serde_json::json!(true);
        assert_eq!(PreviewEvent::from_json(&value.to_string())?, sample());
        Ok(())
    }

    #[test]
    fn other_versions_are_refused_by_name() -> Result<(), serde_json::Error> {
        let mut value = serde_json::to_value(sample())?;
        value["version"] = serde_json::json!(2);
        let err = PreviewEvent::from_json(&value.to_string());
        assert!(matches!(err, Err(DecodeError::UnsupportedVersion { found: 2 })));
        Ok(())
    }

    #[test]
    fn garbage_is_a_json_error() {
        assert!(matches!(PreviewEvent::from_json("{not json"), Err(DecodeError::Json(_))));
    }

    #[test]
    fn actions_round_trip_through_github_spelling() {
        for action in PrAction::ALL {
            assert_eq!(PrAction::from_github(action.as_str()), Some(action));
        }
        assert_eq!(PrAction::from_github("assigned"), None);
    }

    #[test]
    fn message_stays_small() {
        // SQS allows 256 KiB; a typical message must be tiny so batches stay cheap.
        let json = sample().to_json().unwrap_or_default();
        assert!(!json.is_empty() && json.len() < 1024, "{} bytes", json.len());
    }
}
