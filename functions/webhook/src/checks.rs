//! The build gate's events (`check_run`, `check_suite`, `workflow_run`, `status`) and `/preview`
//! commands (`issue_comment`), parsed into contract-v2 messages (pure, no I/O).
//!
//! Only finished checks travel: a queued or running check changes no gate, and check events are
//! the busiest GitHub sends. Only comments on pull requests that start a line with `/preview`
//! travel, and only that line.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use previewd_events::{CheckEvent, CheckSource, CheckState, CommandEvent, MAX_COMMAND_LEN, Message};
use serde::Deserialize;

use crate::github::{Id, Login, Name, ParseError, Parsed, RawRepository, is_commit_sha, read_payload, repository};

#[derive(Deserialize)]
struct Number {
    number: u64,
}

/// A check run, check suite or workflow run: the fields all three share.
#[derive(Deserialize)]
struct Run<'a> {
    #[serde(borrow)]
    head_sha: Cow<'a, str>,
    /// Absent on check suites, whose name is their app's.
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    app: Option<Name<'a>>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow, default)]
    conclusion: Option<Cow<'a, str>>,
    #[serde(default)]
    completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pull_requests: Vec<Number>,
}

#[derive(Deserialize)]
struct RunPayload<'a> {
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    check_run: Option<Run<'a>>,
    #[serde(borrow, default)]
    check_suite: Option<Run<'a>>,
    #[serde(borrow, default)]
    workflow_run: Option<Run<'a>>,
    #[serde(borrow)]
    repository: RawRepository<'a>,
    #[serde(default)]
    installation: Option<Id>,
}

#[derive(Deserialize)]
struct StatusPayload<'a> {
    #[serde(borrow)]
    sha: Cow<'a, str>,
    #[serde(borrow)]
    context: Cow<'a, str>,
    #[serde(borrow)]
    state: Cow<'a, str>,
    updated_at: DateTime<Utc>,
    #[serde(borrow)]
    repository: RawRepository<'a>,
    #[serde(default)]
    installation: Option<Id>,
}

#[derive(Deserialize)]
struct CommentPayload<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    issue: Issue<'a>,
    #[serde(borrow)]
    comment: Comment<'a>,
    #[serde(borrow)]
    repository: RawRepository<'a>,
    #[serde(default)]
    installation: Option<Id>,
}

#[derive(Deserialize)]
struct Issue<'a> {
    number: u64,
    /// Present when the issue is a pull request.
    #[serde(borrow, default)]
    pull_request: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct Comment<'a> {
    id: u64,
    #[serde(borrow)]
    body: Cow<'a, str>,
    #[serde(borrow)]
    user: Login<'a>,
    created_at: DateTime<Utc>,
}

fn checked_sha(sha: &str, path: &'static str) -> Result<String, ParseError> {
    if !is_commit_sha(sha) {
        return Err(ParseError::Invalid { path, message: "expected a 40- or 64-digit hex commit id".into() });
    }
    Ok(sha.to_ascii_lowercase())
}

/// Names are shown on the PR and compared with the configuration: bounded.
fn bounded(name: &str) -> String {
    name.chars().take(128).collect()
}

/// Parses a `check_run`, `check_suite` or `workflow_run` payload.
pub fn parse_run(
    source: CheckSource,
    payload: &[u8],
    delivery_id: &str,
    received_at: DateTime<Utc>,
) -> Result<Parsed, ParseError> {
    let raw: RunPayload<'_> = read_payload(payload)?;
    let action = raw.action.as_deref().unwrap_or("").chars().take(64).collect::<String>();
    if action != "completed" {
        return Ok(Parsed::Ignored { action, reason: "only finished checks change a build gate" });
    }
    let (run, path) = match source {
        CheckSource::CheckRun => (raw.check_run, "check_run"),
        CheckSource::CheckSuite => (raw.check_suite, "check_suite"),
        CheckSource::WorkflowRun => (raw.workflow_run, "workflow_run"),
        CheckSource::Status => (None, "status"),
    };
    let Some(run) = run else {
        return Err(ParseError::Field { path: path.into(), message: "missing field".into() });
    };
    let name = match (source, &run.name, &run.app) {
        (CheckSource::CheckSuite, _, Some(app)) => app.name.as_ref(),
        (_, Some(name), _) if !name.is_empty() => name.as_ref(),
        _ => {
            return Ok(Parsed::Ignored { action, reason: "a check without a name cannot be named by a gate" });
        }
    };
    // GitHub can send `completed` with a `status` still lagging; the conclusion decides.
    let Some(conclusion) = run.conclusion.as_deref().filter(|_| run.status == "completed") else {
        return Ok(Parsed::Ignored { action, reason: "check not finished" });
    };
    let event = CheckEvent {
        delivery_id: delivery_id.to_owned(),
        received_at,
        repository: repository(raw.repository)?,
        installation_id: raw.installation.map(|i| i.id),
        source,
        sha: checked_sha(&run.head_sha, "head_sha")?,
        name: bounded(name),
        state: CheckState::from_conclusion(conclusion),
        updated_at: run.completed_at.or(run.updated_at).unwrap_or(received_at),
        pull_requests: run.pull_requests.iter().map(|p| p.number).collect(),
    };
    Ok(Parsed::Event(Box::new(Message::Check(Box::new(event)))))
}

/// Parses a `status` payload (commit statuses have no action; a pending one is ignored).
pub fn parse_status(payload: &[u8], delivery_id: &str, received_at: DateTime<Utc>) -> Result<Parsed, ParseError> {
    let raw: StatusPayload<'_> = read_payload(payload)?;
    let state = CheckState::from_status(&raw.state);
    if state == CheckState::Pending {
        return Ok(Parsed::Ignored { action: "pending".into(), reason: "only finished checks change a build gate" });
    }
    let event = CheckEvent {
        delivery_id: delivery_id.to_owned(),
        received_at,
        repository: repository(raw.repository)?,
        installation_id: raw.installation.map(|i| i.id),
        source: CheckSource::Status,
        sha: checked_sha(&raw.sha, "sha")?,
        name: bounded(&raw.context),
        state,
        updated_at: raw.updated_at,
        pull_requests: Vec::new(),
    };
    Ok(Parsed::Event(Box::new(Message::Check(Box::new(event)))))
}

/// The first line of `body` that is a `/preview` command, trimmed and bounded.
pub fn command_line(body: &str) -> Option<String> {
    body.lines()
        .map(str::trim)
        .find(|line| {
            line.strip_prefix("/preview").is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
        })
        .map(|line| line.chars().take(MAX_COMMAND_LEN).collect())
}

/// Parses an `issue_comment` payload: a new `/preview` comment on a pull request.
pub fn parse_comment(payload: &[u8], delivery_id: &str, received_at: DateTime<Utc>) -> Result<Parsed, ParseError> {
    let raw: CommentPayload<'_> = read_payload(payload)?;
    let action: String = raw.action.chars().take(64).collect();
    if action != "created" {
        // An edited comment does not run its command again.
        return Ok(Parsed::Ignored { action, reason: "only new comments are commands" });
    }
    if raw.issue.pull_request.is_none() {
        return Ok(Parsed::Ignored { action, reason: "comment on an issue, not a pull request" });
    }
    let Some(command) = command_line(&raw.comment.body) else {
        return Ok(Parsed::Ignored { action, reason: "comment is not a /preview command" });
    };
    let event = CommandEvent {
        delivery_id: delivery_id.to_owned(),
        received_at,
        repository: repository(raw.repository)?,
        installation_id: raw.installation.map(|i| i.id),
        number: raw.issue.number,
        comment_id: raw.comment.id,
        author: raw.comment.user.login.into_owned(),
        command,
        created_at: raw.comment.created_at,
    };
    Ok(Parsed::Event(Box::new(Message::Command(Box::new(event)))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA: &str = "EC26C3E57CA3A959CA5AAD62DE7213C562F8C821";

    fn repo() -> serde_json::Value {
        json!({"id": 1, "full_name": "acme/shop", "name": "shop", "owner": {"login": "acme"}})
    }

    fn parsed(result: Result<Parsed, ParseError>) -> Message {
        match result {
            Ok(Parsed::Event(message)) => *message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn run(conclusion: &str) -> serde_json::Value {
        json!({
            "action": "completed",
            "check_run": {"head_sha": SHA, "name": "build", "status": "completed", "conclusion": conclusion,
                          "completed_at": "2026-11-30T10:00:00Z", "pull_requests": [{"number": 4}]},
            "repository": repo(), "installation": {"id": 3}
        })
    }

    fn at() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH
    }

    #[test]
    fn a_finished_check_run_becomes_a_check_message() {
        let Message::Check(check) =
            parsed(parse_run(CheckSource::CheckRun, run("success").to_string().as_bytes(), "d", at()))
        else {
            panic!("not a check")
        };
        assert_eq!((check.sha.as_str(), check.name.as_str()), (SHA.to_ascii_lowercase().as_str(), "build"));
        assert_eq!(
            (check.state, check.pull_requests.as_slice(), check.installation_id),
            (CheckState::Success, &[4][..], Some(3))
        );
    }

    #[test]
    fn unfinished_checks_and_pending_statuses_are_ignored() {
        let mut queued = run("success");
        queued["action"] = json!("created");
        assert!(matches!(
            parse_run(CheckSource::CheckRun, queued.to_string().as_bytes(), "d", at()),
            Ok(Parsed::Ignored { .. })
        ));
        let status = json!({"sha": SHA, "context": "ci/build", "state": "pending", "updated_at": "2026-11-30T10:00:00Z", "repository": repo()});
        assert!(matches!(parse_status(status.to_string().as_bytes(), "d", at()), Ok(Parsed::Ignored { .. })));
    }

    #[test]
    fn a_suite_is_named_by_its_app_and_a_bad_sha_is_named() {
        let suite = json!({
            "action": "completed",
            "check_suite": {"head_sha": SHA, "app": {"name": "Buildkite"}, "status": "completed", "conclusion": "failure",
                            "updated_at": "2026-11-30T10:00:00Z"},
            "repository": repo()
        });
        let Message::Check(check) = parsed(parse_run(CheckSource::CheckSuite, suite.to_string().as_bytes(), "d", at()))
        else {
            panic!("not a check")
        };
        assert_eq!((check.name.as_str(), check.state), ("Buildkite", CheckState::Failure));
        let mut bad = run("success");
        bad["check_run"]["head_sha"] = json!("nope");
        let err = parse_run(CheckSource::CheckRun, bad.to_string().as_bytes(), "d", at());
        assert!(matches!(err, Err(ParseError::Invalid { path: "head_sha", .. })), "{err:?}");
    }

    #[test]
    fn only_a_preview_line_in_a_new_pr_comment_is_a_command() {
        let comment = |action: &str, body: &str, pr: bool| {
            let mut issue = json!({"number": 12});
            if pr {
                issue["pull_request"] = json!({"url": "https://api.github.com/repos/acme/shop/pulls/12"});
            }
            json!({"action": action, "issue": issue, "repository": repo(),
                   "comment": {"id": 5, "body": body, "user": {"login": "reviewer"}, "created_at": "2026-11-30T10:00:00Z"}})
        };
        let parse = |v: serde_json::Value| parse_comment(v.to_string().as_bytes(), "d", at());
        let Message::Command(command) =
            parsed(parse(comment("created", "Looks good.\r\n  /preview extend 2d  \nthanks", true)))
        else {
            panic!("not a command")
        };
        assert_eq!((command.command.as_str(), command.number, command.comment_id), ("/preview extend 2d", 12, 5));
        assert_eq!(command.author, "reviewer");
        for ignored in [
            comment("edited", "/preview destroy", true),
            comment("created", "/preview destroy", false),
            comment("created", "please /preview this", true),
            comment("created", "/previewing", true),
        ] {
            assert!(matches!(parse(ignored), Ok(Parsed::Ignored { .. })));
        }
        let long = format!("/preview services {}", "a,".repeat(500));
        let Message::Command(command) = parsed(parse(comment("created", &long, true))) else { panic!("not a command") };
        assert_eq!(command.command.chars().count(), MAX_COMMAND_LEN);
    }
}
