//! GitHub event classification and `pull_request` payload parsing (pure, no I/O).
//!
//! Only the fields the queue message needs are deserialised; everything else in the payload
//! (which can be megabytes of PR body and links) is skipped without allocating.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use previewd_events::{CheckSource, Message, PrAction, PrState, PreviewEvent, PullRequest, Repository, SCHEMA_VERSION};
use serde::Deserialize;

/// The `X-GitHub-Event` header, reduced to what the front distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind<'a> {
    Ping,
    PullRequest,
    /// A build gate's input: `check_run`, `check_suite`, `workflow_run` or `status`.
    Check(CheckSource),
    /// A `/preview` command, perhaps.
    IssueComment,
    Other(&'a str),
}

impl<'a> EventKind<'a> {
    pub fn from_header(name: &'a str) -> EventKind<'a> {
        match name {
            "ping" => EventKind::Ping,
            "pull_request" => EventKind::PullRequest,
            "check_run" => EventKind::Check(CheckSource::CheckRun),
            "check_suite" => EventKind::Check(CheckSource::CheckSuite),
            "workflow_run" => EventKind::Check(CheckSource::WorkflowRun),
            "status" => EventKind::Check(CheckSource::Status),
            "issue_comment" => EventKind::IssueComment,
            other => EventKind::Other(other),
        }
    }

    /// A bounded metric dimension.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::Ping => "ping",
            EventKind::PullRequest => "pull_request",
            EventKind::Check(source) => source.as_str(),
            EventKind::IssueComment => "issue_comment",
            EventKind::Other(_) => "other",
        }
    }
}

/// What a payload turns into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Forward to the reconciler.
    Event(Box<Message>),
    /// A valid delivery Previewd does not act on; the string names the action.
    Ignored { action: String, reason: &'static str },
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("payload is not valid JSON: {0}")]
    Json(String),
    #[error("payload field `{path}`: {message}")]
    Field { path: String, message: String },
    #[error("payload field `{path}` is invalid: {message}")]
    Invalid { path: &'static str, message: String },
}

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    pull_request: RawPullRequest<'a>,
    #[serde(borrow)]
    repository: RawRepository<'a>,
    #[serde(default)]
    installation: Option<Id>,
    #[serde(borrow)]
    sender: Login<'a>,
    #[serde(borrow, default)]
    label: Option<Name<'a>>,
    #[serde(borrow, default)]
    changes: Option<Changes<'a>>,
}

#[derive(Deserialize)]
struct RawPullRequest<'a> {
    number: u64,
    #[serde(borrow)]
    head: Head<'a>,
    #[serde(borrow)]
    base: Base<'a>,
    #[serde(default)]
    draft: bool,
    #[serde(borrow)]
    state: Cow<'a, str>,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(borrow, default)]
    labels: Vec<Name<'a>>,
    #[serde(borrow)]
    user: Login<'a>,
    #[serde(borrow)]
    author_association: Cow<'a, str>,
    updated_at: DateTime<Utc>,
    #[serde(borrow)]
    html_url: Cow<'a, str>,
    #[serde(borrow)]
    title: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    sha: Cow<'a, str>,
    #[serde(borrow, rename = "ref")]
    git_ref: Cow<'a, str>,
    /// `null` when the fork has been deleted.
    #[serde(borrow, default)]
    repo: Option<FullName<'a>>,
}

#[derive(Deserialize)]
struct Base<'a> {
    #[serde(borrow, rename = "ref")]
    git_ref: Cow<'a, str>,
    #[serde(borrow)]
    repo: FullName<'a>,
}

#[derive(Deserialize)]
pub(crate) struct RawRepository<'a> {
    pub(crate) id: u64,
    #[serde(borrow)]
    pub(crate) full_name: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) name: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) owner: Login<'a>,
}

#[derive(Deserialize)]
struct FullName<'a> {
    #[serde(borrow)]
    full_name: Cow<'a, str>,
}

#[derive(Deserialize)]
pub(crate) struct Login<'a> {
    #[serde(borrow)]
    pub(crate) login: Cow<'a, str>,
}

#[derive(Deserialize)]
pub(crate) struct Name<'a> {
    #[serde(borrow)]
    pub(crate) name: Cow<'a, str>,
}

#[derive(Deserialize)]
pub(crate) struct Id {
    pub(crate) id: u64,
}

#[derive(Deserialize)]
struct Changes<'a> {
    #[serde(borrow, default)]
    base: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct ActionOnly<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
}

/// Parses a `pull_request` payload into the queue message, or says why it is ignored.
///
/// A payload for an action Previewd ignores is answered as ignored even when its other fields
/// do not match what a handled action needs, so unusual but valid deliveries never become 400s.
pub fn parse_pull_request(payload: &[u8], delivery_id: &str, received_at: DateTime<Utc>) -> Result<Parsed, ParseError> {
    let raw: Payload<'_> = match read_payload(payload) {
        Ok(raw) => raw,
        Err(err) => {
            // Slow path only: was it an action we would have ignored anyway?
            if let Ok(probe) = serde_json::from_slice::<ActionOnly<'_>>(payload)
                && PrAction::from_github(&probe.action).is_none()
            {
                return Ok(ignored(&probe.action));
            }
            return Err(err);
        }
    };
    let Some(action) = PrAction::from_github(&raw.action) else {
        return Ok(ignored(&raw.action));
    };
    if action == PrAction::Edited && raw.changes.as_ref().and_then(|c| c.base).is_none() {
        // Title or body edits change nothing in the preview; a new base branch does.
        return Ok(Parsed::Ignored { action: raw.action.into_owned(), reason: "edited without a base branch change" });
    }
    build_event(raw, action, delivery_id, received_at).map(|e| Parsed::Event(Box::new(e.into_message())))
}

/// Deserialises a payload, naming the path of a field that does not fit.
pub(crate) fn read_payload<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, ParseError> {
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() || path == "." {
            ParseError::Json(inner.to_string())
        } else {
            ParseError::Field { path, message: inner.to_string() }
        }
    })
}

fn ignored(action: &str) -> Parsed {
    Parsed::Ignored { action: action.chars().take(64).collect(), reason: "pull_request action not used by Previewd" }
}

fn build_event(
    raw: Payload<'_>,
    action: PrAction,
    delivery_id: &str,
    received_at: DateTime<Utc>,
) -> Result<PreviewEvent, ParseError> {
    let pr = raw.pull_request;
    if !is_commit_sha(&pr.head.sha) {
        return Err(ParseError::Invalid {
            path: "pull_request.head.sha",
            message: "expected a 40- or 64-digit hex commit id".into(),
        });
    }
    let state = match pr.state.as_ref() {
        "open" => PrState::Open,
        "closed" => PrState::Closed,
        other => {
            return Err(ParseError::Invalid {
                path: "pull_request.state",
                message: format!("expected open or closed, got {:?}", truncate(other)),
            });
        }
    };
    let repository = repository(raw.repository)?;
    let head_repo = pr.head.repo.map(|r| r.full_name.into_owned());
    // A deleted head repository can only have been a fork; treat it as untrusted.
    let fork = head_repo.as_deref() != Some(pr.base.repo.full_name.as_ref());
    Ok(PreviewEvent {
        version: SCHEMA_VERSION,
        delivery_id: delivery_id.to_owned(),
        received_at,
        action,
        repository,
        installation_id: raw.installation.map(|i| i.id),
        pull_request: PullRequest {
            number: pr.number,
            head_sha: pr.head.sha.to_ascii_lowercase(),
            head_ref: pr.head.git_ref.into_owned(),
            head_repo,
            base_ref: pr.base.git_ref.into_owned(),
            fork,
            draft: pr.draft,
            state,
            merged: pr.merged.unwrap_or(false),
            labels: pr.labels.into_iter().map(|l| l.name.into_owned()).collect(),
            author: pr.user.login.into_owned(),
            author_association: pr.author_association.into_owned(),
            updated_at: pr.updated_at,
            html_url: pr.html_url.into_owned(),
            title: pr.title.chars().take(256).collect(),
        },
        sender: raw.sender.login.into_owned(),
        label: raw.label.map(|l| l.name.into_owned()),
    })
}

/// The repository of a payload, its `full_name` checked against its owner and name (they
/// become keys: a mismatch would file events under the wrong repository).
pub(crate) fn repository(raw: RawRepository<'_>) -> Result<Repository, ParseError> {
    let (owner, name) = (raw.owner.login, raw.name);
    if raw.full_name != format!("{owner}/{name}") {
        return Err(ParseError::Invalid {
            path: "repository.full_name",
            message: "does not equal repository.owner.login/repository.name".into(),
        });
    }
    Ok(Repository {
        full_name: raw.full_name.into_owned(),
        owner: owner.into_owned(),
        name: name.into_owned(),
        id: raw.id,
    })
}

pub(crate) fn is_commit_sha(sha: &str) -> bool {
    matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(action: &str) -> serde_json::Value {
        json!({
            "action": action,
            "number": 7,
            "pull_request": {
                "number": 7,
                "state": "open",
                "draft": false,
                "merged": null,
                "title": "Add cart",
                "html_url": "https://github.com/acme/shop/pull/7",
                "updated_at": "2026-11-26T10:00:00Z",
                "author_association": "CONTRIBUTOR",
                "user": {"login": "outsider"},
                "labels": [{"name": "preview"}],
                "head": {"sha": "ABCDEF0123456789abcdef0123456789abcdef01", "ref": "cart", "repo": {"full_name": "outsider/shop"}},
                "base": {"ref": "main", "repo": {"full_name": "acme/shop"}}
            },
            "repository": {"id": 99, "full_name": "acme/shop", "name": "shop", "owner": {"login": "acme"}},
            "installation": {"id": 5},
            "sender": {"login": "maintainer"},
            "label": {"name": "preview"}
        })
    }

    fn parse(value: &serde_json::Value) -> Result<Parsed, ParseError> {
        parse_pull_request(value.to_string().as_bytes(), "d-1", DateTime::<Utc>::UNIX_EPOCH)
    }

    fn event(value: &serde_json::Value) -> PreviewEvent {
        match parse(value) {
            Ok(Parsed::Event(message)) => match *message {
                Message::PullRequest(e) => *e,
                other => panic!("expected a pull request, got {other:?}"),
            },
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn fork_label_event_becomes_a_message() {
        let e = event(&payload("labeled"));
        assert_eq!(e.action, PrAction::Labeled);
        assert!(e.pull_request.fork);
        assert_eq!(e.pull_request.head_sha, "abcdef0123456789abcdef0123456789abcdef01");
        assert_eq!(e.label.as_deref(), Some("preview"));
        assert_eq!(e.sender, "maintainer");
        assert_eq!(e.installation_id, Some(5));
        assert_eq!(e.message_group_id(), "acme/shop#7");
    }

    #[test]
    fn deleted_head_repository_counts_as_fork() {
        let mut p = payload("synchronize");
        p["pull_request"]["head"]["repo"] = serde_json::Value::Null;
        let e = event(&p);
        assert!(e.pull_request.fork);
        assert_eq!(e.pull_request.head_repo, None);
    }

    #[test]
    fn same_repository_is_not_a_fork() {
        let mut p = payload("opened");
        p["pull_request"]["head"]["repo"]["full_name"] = json!("acme/shop");
        assert!(!event(&p).pull_request.fork);
    }

    #[test]
    fn edited_needs_a_base_change() {
        let p = payload("edited");
        assert!(matches!(parse(&p), Ok(Parsed::Ignored { .. })));
        let mut p = payload("edited");
        p["changes"] = json!({"base": {"ref": {"from": "develop"}}});
        assert_eq!(event(&p).action, PrAction::Edited);
    }

    #[test]
    fn unhandled_actions_are_ignored_even_with_odd_fields() {
        assert!(matches!(parse(&payload("assigned")), Ok(Parsed::Ignored { action, .. }) if action == "assigned"));
        assert!(matches!(parse(&json!({"action": "locked"})), Ok(Parsed::Ignored { .. })));
    }

    #[test]
    fn field_errors_name_the_path() {
        let mut p = payload("opened");
        p["pull_request"]["number"] = json!("seven");
        match parse(&p) {
            Err(ParseError::Field { path, .. }) => assert_eq!(path, "pull_request.number"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_sha_and_state_are_invalid() {
        let mut p = payload("opened");
        p["pull_request"]["head"]["sha"] = json!("not-a-sha");
        assert!(matches!(parse(&p), Err(ParseError::Invalid { path: "pull_request.head.sha", .. })));
        let mut p = payload("opened");
        p["pull_request"]["state"] = json!("merged");
        assert!(matches!(parse(&p), Err(ParseError::Invalid { path: "pull_request.state", .. })));
    }

    #[test]
    fn syntax_errors_are_json_errors() {
        assert!(matches!(
            parse_pull_request(b"{\"action\":", "d", DateTime::<Utc>::UNIX_EPOCH),
            Err(ParseError::Json(_))
        ));
        assert!(matches!(
            parse_pull_request(b"[]", "d", DateTime::<Utc>::UNIX_EPOCH),
            Err(ParseError::Json(_) | ParseError::Field { .. })
        ));
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let mut p = payload("opened");
        p["pull_request"]["title"] = json!("quote \" and \u{e9}");
        assert_eq!(event(&p).pull_request.title, "quote \" and \u{e9}");
    }
}
