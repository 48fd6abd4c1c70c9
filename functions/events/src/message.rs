//! Contract version 2: the queue carries three kinds of message.
//!
//! - `pull_request` ([`PreviewEvent`]), still written as version 1, byte for byte as before, so
//!   a version-1 reconciler keeps handling pull requests through a rolling deploy;
//! - `check` ([`CheckEvent`]): a check run, check suite, workflow run or commit status finished
//!   for a commit (the build gate);
//! - `command` ([`CommandEvent`]): a `/preview` comment on a pull request.
//!
//! Version-2 bodies carry `"version": 2` and a `"kind"`. [`Message::from_json`] reads both
//! versions and refuses any other, as version 1 does.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{DecodeError, MAX_GROUP_ID_LEN, PreviewEvent, Repository, repository_key};

/// The newest contract version this build reads and writes.
pub const CONTRACT_VERSION: u32 = 2;

/// The longest `/preview` line carried: a command is short, and a comment can be 65 536
/// characters of someone else's text.
pub const MAX_COMMAND_LEN: usize = 200;

/// Where a check result came from (GitHub's event name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckSource {
    CheckRun,
    CheckSuite,
    WorkflowRun,
    Status,
}

impl CheckSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckSource::CheckRun => "check_run",
            CheckSource::CheckSuite => "check_suite",
            CheckSource::WorkflowRun => "workflow_run",
            CheckSource::Status => "status",
        }
    }
}

/// A finished check, reduced to what the gate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    /// Not finished yet (a status still `pending`); the front does not forward these.
    Pending,
    Success,
    /// Failed, cancelled, timed out or needs action: the commit will not deploy.
    Failure,
    /// Finished without a verdict (`neutral`, `skipped`, `stale`): counts as passed, as GitHub's
    /// branch protection counts it.
    Neutral,
}

impl CheckState {
    /// GitHub's `conclusion` of a finished check run, suite or workflow run.
    pub fn from_conclusion(conclusion: &str) -> CheckState {
        match conclusion {
            "success" => CheckState::Success,
            "neutral" | "skipped" | "stale" => CheckState::Neutral,
            _ => CheckState::Failure,
        }
    }

    /// A commit status's `state`.
    pub fn from_status(state: &str) -> CheckState {
        match state {
            "success" => CheckState::Success,
            "pending" => CheckState::Pending,
            _ => CheckState::Failure,
        }
    }

    /// Counts as a passed build.
    pub fn passed(self) -> bool {
        matches!(self, CheckState::Success | CheckState::Neutral)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::Pending => "pending",
            CheckState::Success => "success",
            CheckState::Failure => "failure",
            CheckState::Neutral => "neutral",
        }
    }
}

/// One check result for one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckEvent {
    pub delivery_id: String,
    pub received_at: DateTime<Utc>,
    pub repository: Repository,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    pub source: CheckSource,
    /// The lower-case commit id the check ran on.
    pub sha: String,
    /// The name a gate refers to: the check run's name, the workflow's name, the status's
    /// context, or the check suite's app name.
    pub name: String,
    pub state: CheckState,
    /// When the check finished (GitHub's timestamp).
    pub updated_at: DateTime<Utc>,
    /// Pull requests GitHub links the check to (empty for statuses and for forks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_requests: Vec<u64>,
}

/// A `/preview` comment on a pull request. The reconciler checks the author's permission
/// with GitHub before acting: nothing here is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandEvent {
    pub delivery_id: String,
    pub received_at: DateTime<Utc>,
    pub repository: Repository,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    /// The pull request's number.
    pub number: u64,
    /// The comment's id: what the acknowledgement reacts to.
    pub comment_id: u64,
    /// Who wrote the comment.
    pub author: String,
    /// The first line of the comment that starts with `/preview`, at most
    /// [`MAX_COMMAND_LEN`] characters.
    pub command: String,
    pub created_at: DateTime<Utc>,
}

/// A queue message of any kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    PullRequest(Box<PreviewEvent>),
    Check(Box<CheckEvent>),
    Command(Box<CommandEvent>),
}

/// The version-2 body: the kind beside the fields.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(tag = "kind", rename_all = "snake_case")]
enum V2 {
    Check(CheckEvent),
    Command(CommandEvent),
}

/// [`V2`] borrowed, for writing without copying the event.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum V2Ref<'a> {
    Check(&'a CheckEvent),
    Command(&'a CommandEvent),
}

#[derive(Serialize)]
struct Versioned<'a> {
    version: u32,
    #[serde(flatten)]
    body: V2Ref<'a>,
}

#[derive(Deserialize)]
struct VersionProbe {
    version: u32,
}

impl Message {
    /// GitHub's delivery id: the deduplication id.
    pub fn delivery_id(&self) -> &str {
        match self {
            Message::PullRequest(e) => &e.delivery_id,
            Message::Check(e) => &e.delivery_id,
            Message::Command(e) => &e.delivery_id,
        }
    }

    pub fn repository(&self) -> &Repository {
        match self {
            Message::PullRequest(e) => &e.repository,
            Message::Check(e) => &e.repository,
            Message::Command(e) => &e.repository,
        }
    }

    pub fn received_at(&self) -> DateTime<Utc> {
        match self {
            Message::PullRequest(e) => e.received_at,
            Message::Check(e) => e.received_at,
            Message::Command(e) => e.received_at,
        }
    }

    /// GitHub's own time of what happened: the replay window is measured on it.
    pub fn happened_at(&self) -> DateTime<Utc> {
        match self {
            Message::PullRequest(e) => e.pull_request.updated_at,
            Message::Check(e) => e.updated_at,
            Message::Command(e) => e.created_at,
        }
    }

    /// The FIFO group: a PR's events and commands share the PR's group, so a command is
    /// applied after the pushes before it; a commit's checks share one group per commit.
    pub fn message_group_id(&self) -> String {
        match self {
            Message::PullRequest(e) => e.message_group_id(),
            Message::Command(e) => pr_group(&e.repository, e.number),
            Message::Check(e) => {
                let by_name = format!("check:{}@{}", repository_key(&e.repository.full_name), e.sha);
                if by_name.len() <= MAX_GROUP_ID_LEN {
                    by_name
                } else {
                    format!("check:repo-id:{}@{}", e.repository.id, e.sha)
                }
            }
        }
    }

    /// The body: version 1 for a pull request, version 2 for the rest.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let body = match self {
            Message::PullRequest(e) => return e.to_json(),
            Message::Check(e) => V2Ref::Check(e),
            Message::Command(e) => V2Ref::Command(e),
        };
        serde_json::to_string(&Versioned { version: CONTRACT_VERSION, body })
    }

    /// Decodes a body of version 1 or 2; any other version is refused by name.
    pub fn from_json(body: &str) -> Result<Message, DecodeError> {
        let probe: VersionProbe = serde_json::from_str(body)?;
        match probe.version {
            crate::SCHEMA_VERSION => Ok(Message::PullRequest(Box::new(PreviewEvent::from_json(body)?))),
            CONTRACT_VERSION => Ok(match serde_json::from_str::<V2>(body)? {
                V2::Check(e) => Message::Check(Box::new(e)),
                V2::Command(e) => Message::Command(Box::new(e)),
            }),
            found => Err(DecodeError::UnsupportedVersion { found }),
        }
    }
}

pub(crate) fn pr_group(repository: &Repository, number: u64) -> String {
    let by_name = format!("{}#{number}", repository_key(&repository.full_name));
    if by_name.len() <= MAX_GROUP_ID_LEN { by_name } else { format!("repo-id:{}#{number}", repository.id) }
}

impl PreviewEvent {
    /// This event as a queue message.
    pub fn into_message(self) -> Message {
        Message::PullRequest(Box::new(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> Repository {
        Repository { full_name: "Acme/Shop".into(), owner: "Acme".into(), name: "Shop".into(), id: 42 }
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap_or_default()
    }

    fn check() -> CheckEvent {
        CheckEvent {
            delivery_id: "d-check".into(),
            received_at: at("2026-11-30T10:00:01Z"),
            repository: repo(),
            installation_id: Some(7),
            source: CheckSource::CheckRun,
            sha: "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into(),
            name: "build-images".into(),
            state: CheckState::Success,
            updated_at: at("2026-11-30T10:00:00Z"),
            pull_requests: vec![12],
        }
    }

    fn command() -> CommandEvent {
        CommandEvent {
            delivery_id: "d-command".into(),
            received_at: at("2026-11-30T10:00:01Z"),
            repository: repo(),
            installation_id: None,
            number: 12,
            comment_id: 99,
            author: "octocat".into(),
            command: "/preview extend 2d".into(),
            created_at: at("2026-11-30T10:00:00Z"),
        }
    }

    #[test]
    fn version_two_kinds_round_trip() -> Result<(), DecodeError> {
        for message in [Message::Check(Box::new(check())), Message::Command(Box::new(command()))] {
            let json = message.to_json()?;
            assert!(json.starts_with("{\"version\":2,\"kind\":"), "{json}");
            assert_eq!(Message::from_json(&json)?, message);
        }
        Ok(())
    }

    #[test]
    fn a_command_shares_its_pull_requests_group_and_a_check_has_its_commits() {
        assert_eq!(Message::Command(Box::new(command())).message_group_id(), "acme/shop#12");
        assert_eq!(
            Message::Check(Box::new(check())).message_group_id(),
            "check:acme/shop@ec26c3e57ca3a959ca5aad62de7213c562f8c821"
        );
        let mut long = check();
        long.repository.full_name = format!("{}/{}", "o".repeat(39), "r".repeat(100));
        let group = Message::Check(Box::new(long)).message_group_id();
        assert!(group.starts_with("check:repo-id:42@") && group.len() <= MAX_GROUP_ID_LEN);
    }

    #[test]
    fn unknown_versions_and_kinds_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let mut value = serde_json::to_value(V2::Check(check()))?;
        value["version"] = serde_json::json!(3);
        let err = Message::from_json(&value.to_string());
        assert!(matches!(err, Err(DecodeError::UnsupportedVersion { found: 3 })));
        value["version"] = serde_json::json!(2);
        value["kind"] = serde_json::json!("deployment");
        assert!(matches!(Message::from_json(&value.to_string()), Err(DecodeError::Json(_))));
        Ok(())
    }

    #[test]
    fn conclusions_map_to_the_gate_states() {
        assert_eq!(CheckState::from_conclusion("success"), CheckState::Success);
        assert_eq!(CheckState::from_conclusion("skipped"), CheckState::Neutral);
        for failed in ["failure", "cancelled", "timed_out", "action_required", "startup_failure", "anything"] {
            assert_eq!(CheckState::from_conclusion(failed), CheckState::Failure, "{failed}");
        }
        assert_eq!(CheckState::from_status("error"), CheckState::Failure);
        assert!(CheckState::Neutral.passed() && !CheckState::Pending.passed());
    }
}
