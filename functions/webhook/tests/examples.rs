//! GitHub's published example payloads (`@octokit/webhooks-examples`, installed by
//! `infra/setup.sh`) through the pure pipeline, as JSON and form-encoded bodies, and our
//! signatures cross-checked with octokit's reference implementation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use chrono::{DateTime, Utc};
use previewd_events::{Message, PrAction, PrState, PreviewEvent};
use previewd_webhook::signature::{Secrets, sign, verify};
use previewd_webhook::{Outcome, Prepared, prepare};
use serde_json::Value;
use support::{SECRET, Signed, Stack, WebhookStack};

fn npm_dir() -> std::path::PathBuf {
    support::workspace_root().join("infra/npm")
}

fn examples(event: &str) -> Vec<Value> {
    let path = npm_dir().join("node_modules/@octokit/webhooks-examples/api.github.com/index.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e}. Install the test payloads with infra/setup.sh (or `make test`).", path.display())
    });
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    let entry = all.into_iter().find(|e| e["name"] == event).unwrap();
    entry["examples"].as_array().unwrap().clone()
}

fn config() -> previewd_webhook::config::Config {
    previewd_webhook::config::Config::from_lookup(|k| {
        match k {
            "PREVIEWD_WEBHOOK_SECRET" => Some(SECRET),
            "PREVIEWD_QUEUE_URL" => Some("http://127.0.0.1:4566/000000000000/q.fifo"),
            "PREVIEWD_TABLE_NAME" => Some("t"),
            _ => None,
        }
        .map(str::to_owned)
    })
    .unwrap()
}

fn secrets() -> Secrets {
    Secrets::parse(SECRET).unwrap()
}

/// What the message must say, read straight from the example payload.
fn assert_matches_payload(event: &PreviewEvent, payload: &Value, id: &str, received: DateTime<Utc>) {
    let pr = &payload["pull_request"];
    let s = |v: &Value| v.as_str().unwrap().to_owned();
    assert_eq!(event.delivery_id, id);
    assert_eq!(event.received_at, received);
    assert_eq!(event.action.as_str(), payload["action"]);
    assert_eq!(event.repository.full_name, s(&payload["repository"]["full_name"]));
    assert_eq!(event.repository.owner, s(&payload["repository"]["owner"]["login"]));
    assert_eq!(event.repository.name, s(&payload["repository"]["name"]));
    assert_eq!(event.repository.id, payload["repository"]["id"].as_u64().unwrap());
    assert_eq!(event.installation_id, payload["installation"]["id"].as_u64());
    assert_eq!(event.pull_request.number, pr["number"].as_u64().unwrap());
    assert_eq!(event.pull_request.head_sha, s(&pr["head"]["sha"]));
    assert_eq!(event.pull_request.head_ref, s(&pr["head"]["ref"]));
    assert_eq!(event.pull_request.base_ref, s(&pr["base"]["ref"]));
    assert_eq!(event.pull_request.draft, pr["draft"].as_bool().unwrap_or(false));
    assert_eq!(event.pull_request.merged, pr["merged"].as_bool().unwrap_or(false));
    let state = if pr["state"] == "open" { PrState::Open } else { PrState::Closed };
    assert_eq!(event.pull_request.state, state);
    let fork = pr["head"]["repo"]["full_name"] != pr["base"]["repo"]["full_name"];
    assert_eq!(event.pull_request.fork, fork);
    let labels: Vec<String> = pr["labels"].as_array().unwrap().iter().map(|l| s(&l["name"])).collect();
    assert_eq!(event.pull_request.labels, labels);
    assert_eq!(event.pull_request.author, s(&pr["user"]["login"]));
    assert_eq!(event.pull_request.author_association, s(&pr["author_association"]));
    assert_eq!(event.pull_request.updated_at, s(&pr["updated_at"]).parse::<DateTime<Utc>>().unwrap());
    assert_eq!(event.pull_request.html_url, s(&pr["html_url"]));
    assert_eq!(event.sender, s(&payload["sender"]["login"]));
    assert_eq!(event.label, payload["label"]["name"].as_str().map(str::to_owned));
    // One case rule for every key: the group is the lowercased name (`repository_key`).
    let group = format!("{}#{}", event.repository.full_name.to_ascii_lowercase(), event.pull_request.number);
    assert_eq!(event.message_group_id(), group);
}

#[test]
fn every_pull_request_example_parses_into_the_right_message() {
    let examples = examples("pull_request");
    assert!(examples.len() >= 29, "expected the package's 29 pull_request examples");
    let received = "2026-11-26T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
    let mut handled = BTreeSet::new();
    let mut ignored = BTreeSet::new();
    for (i, payload) in examples.iter().enumerate() {
        let action = payload["action"].as_str().unwrap();
        let id = format!("example-{i}");
        for signed in [Signed::json("pull_request", &id, payload), Signed::form("pull_request", &id, payload)] {
            let (prepared, dims) = prepare(&config(), &secrets(), &signed.delivery(), received);
            match (PrAction::from_github(action), prepared) {
                (Some(expected), Prepared::Enqueue(message)) => {
                    let Message::PullRequest(event) = *message else { panic!("example {i}: not a pull request") };
                    assert_eq!(event.action, expected);
                    assert_eq!(dims.action, expected.as_str());
                    assert_matches_payload(&event, payload, &id, received);
                    handled.insert(action.to_owned());
                }
                (None, Prepared::Respond(reply)) => {
                    assert_eq!(reply.outcome, Outcome::Ignored, "example {i} ({action}): {reply:?}");
                    assert_eq!(reply.status(), 200);
                    ignored.insert(action.to_owned());
                }
                (_, other) => panic!("example {i} ({action}, {}): unexpected {other:?}", signed.content_type),
            }
        }
    }
    let expected_handled: BTreeSet<String> = [
        "opened",
        "reopened",
        "synchronize",
        "closed",
        "labeled",
        "unlabeled",
        "ready_for_review",
        "converted_to_draft",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(handled, expected_handled, "the package has no `edited` example; unit tests cover it");
    assert!(ignored.contains("assigned") && ignored.contains("locked"), "{ignored:?}");
}

#[test]
fn other_event_examples_are_ignored_without_parsing() {
    for event in ["issues", "push", "deployment_status", "pull_request_review"] {
        for (i, payload) in examples(event).iter().enumerate() {
            let signed = Signed::json(event, &format!("{event}-{i}"), payload);
            let (prepared, dims) = prepare(&config(), &secrets(), &signed.delivery(), Utc::now());
            match prepared {
                Prepared::Respond(reply) => assert_eq!(reply.outcome, Outcome::Ignored),
                other => panic!("{event} example {i}: {other:?}"),
            }
            assert_eq!(dims.event, "other");
        }
    }
    let ping = &examples("ping")[0];
    let (prepared, _) = prepare(&config(), &secrets(), &Signed::json("ping", "p", ping).delivery(), Utc::now());
    assert!(matches!(prepared, Prepared::Respond(r) if r.outcome == Outcome::Pong));
}

/// Every published example of the build gate's events and of `issue_comment`: finished checks
/// become version-2 check messages with the payload's commit, name and verdict; the rest, and
/// comments on issues or without a command, are ignored with a 200.
#[test]
fn check_and_comment_examples_parse_into_version_two_messages() {
    let received = "2026-11-30T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
    let mut checks = 0;
    for (event, object) in
        [("check_run", "check_run"), ("check_suite", "check_suite"), ("workflow_run", "workflow_run"), ("status", "")]
    {
        for (i, payload) in examples(event).iter().enumerate() {
            let id = format!("{event}-{i}");
            let (prepared, dims) =
                prepare(&config(), &secrets(), &Signed::json(event, &id, payload).delivery(), received);
            assert_eq!(dims.event, event);
            let run = if object.is_empty() { payload } else { &payload[object] };
            let finished = if object.is_empty() {
                payload["state"] != "pending"
            } else {
                payload["action"] == "completed" && run["status"] == "completed"
            };
            match prepared {
                Prepared::Enqueue(message) => {
                    let Message::Check(check) = *message else { panic!("{id}: not a check") };
                    assert!(finished, "{id}: an unfinished check was forwarded");
                    let sha = if object.is_empty() { &payload["sha"] } else { &run["head_sha"] };
                    assert_eq!(check.sha, sha.as_str().unwrap());
                    let name = match event {
                        "status" => &payload["context"],
                        "check_suite" => &run["app"]["name"],
                        _ => &run["name"],
                    };
                    assert_eq!(check.name, name.as_str().unwrap());
                    let verdict = if object.is_empty() { &payload["state"] } else { &run["conclusion"] };
                    assert_eq!(check.state.as_str() == "success", verdict == "success", "{id}");
                    assert_eq!(check.repository.full_name, payload["repository"]["full_name"].as_str().unwrap());
                    checks += 1;
                }
                Prepared::Respond(reply) => {
                    assert_eq!(reply.outcome, Outcome::Ignored, "{id}: {reply:?}");
                    let unnamed = run["name"].as_str().is_some_and(str::is_empty);
                    assert!(!finished || unnamed, "{id}: a finished, named check was ignored: {reply:?}");
                }
            }
        }
    }
    // 3 check runs, 4 suites and 4 statuses finish; the finished workflow runs have empty names.
    assert_eq!(checks, 11, "check messages from the examples");
    for (i, payload) in examples("issue_comment").iter().enumerate() {
        // The package's comments are on issues, so all are ignored as they are ...
        let (prepared, _) =
            prepare(&config(), &secrets(), &Signed::json("issue_comment", "c", payload).delivery(), received);
        assert!(matches!(&prepared, Prepared::Respond(r) if r.outcome == Outcome::Ignored), "{i}: {prepared:?}");
        // ... and, on a pull request with a command, only a new comment is a command.
        let mut on_pr = payload.clone();
        on_pr["issue"]["pull_request"] = serde_json::json!({"url": "https://api.github.com/repos/o/r/pulls/1"});
        on_pr["comment"]["body"] = Value::from("Thanks!\n/preview redeploy");
        let (prepared, dims) =
            prepare(&config(), &secrets(), &Signed::form("issue_comment", "c", &on_pr).delivery(), received);
        match (payload["action"].as_str().unwrap(), prepared) {
            ("created", Prepared::Enqueue(message)) => {
                let Message::Command(command) = *message else { panic!("{i}: not a command") };
                assert_eq!(command.command, "/preview redeploy");
                assert_eq!(command.number, payload["issue"]["number"].as_u64().unwrap());
                assert_eq!(command.comment_id, payload["comment"]["id"].as_u64().unwrap());
                assert_eq!(command.author, payload["comment"]["user"]["login"].as_str().unwrap());
                assert_eq!(dims.event, "issue_comment");
            }
            (action, Prepared::Respond(reply)) if action != "created" => assert_eq!(reply.outcome, Outcome::Ignored),
            (action, other) => panic!("{i} ({action}): {other:?}"),
        }
    }
}

#[test]
fn signatures_agree_with_octokit_webhooks_methods() {
    let payloads = [
        String::from("Hello, World!"),
        examples("pull_request")[0].to_string(),
        "unicode: \u{e9}\u{1F680} and \"quotes\"\n".to_owned(),
    ];
    let script = r#"
        import { sign, verify } from "@octokit/webhooks-methods";
        const [secret, ours, ...payloads] = JSON.parse(process.argv[1]);
        const out = [];
        for (let i = 0; i < payloads.length; i++) {
          out.push({ signature: await sign(secret, payloads[i]), accepts_ours: await verify(secret, payloads[i], ours[i]) });
        }
        console.log(JSON.stringify(out));
    "#;
    let ours: Vec<String> = payloads.iter().map(|p| sign(SECRET.as_bytes(), p.as_bytes())).collect();
    let mut args = vec![Value::from(SECRET), Value::from(ours)];
    args.extend(payloads.iter().map(|p| Value::from(p.as_str())));
    let output = Command::new("node")
        .current_dir(npm_dir())
        .args(["--input-type=module", "-e", script, &Value::from(args).to_string()])
        .output()
        .expect("node is needed for the octokit cross-check");
    assert!(output.status.success(), "node failed: {}", String::from_utf8_lossy(&output.stderr));
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results.len(), payloads.len());
    for (payload, result) in payloads.iter().zip(&results) {
        let theirs = result["signature"].as_str().unwrap();
        assert_eq!(verify(&secrets(), Some(theirs), payload.as_bytes()), Ok(0), "octokit's signature rejected");
        assert_eq!(result["accepts_ours"], true, "octokit rejects our signature");
    }
}

/// The contract message for every handled example also survives the real queue.
#[tokio::test]
async fn example_messages_round_trip_through_the_queue() {
    let stack = Stack::new("examples").await;
    let webhook = stack.webhook(1000);
    let mut sent = Vec::new();
    let examples = examples("pull_request");
    let start = Utc::now() - chrono::Duration::seconds(examples.len() as i64);
    for (i, payload) in examples.iter().enumerate() {
        if PrAction::from_github(payload["action"].as_str().unwrap()).is_none() {
            continue;
        }
        // The examples date from 2019: outside the replay window. Restamped in sending order,
        // each is the newest event of its PR when it arrives.
        let mut payload = payload.clone();
        let at = start + chrono::Duration::seconds(i as i64);
        payload["pull_request"]["updated_at"] = Value::from(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        let id = format!("{}-{i}", support::new_delivery_id());
        let reply = webhook.handle(&Signed::form("pull_request", &id, &payload).delivery()).await;
        assert_eq!(reply.outcome, Outcome::Accepted, "{reply:?}");
        sent.push(id);
    }
    let mut received: Vec<String> =
        stack.drain().await.iter().map(|m| PreviewEvent::from_json(m.body().unwrap()).unwrap().delivery_id).collect();
    received.sort();
    sent.sort();
    assert_eq!(received, sent);
}
