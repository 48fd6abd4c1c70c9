//! The reconciler's GitHub client against a local stand-in for the GitHub API answering with
//! the documented shapes: App JWT -> installation token (and its refresh before expiry),
//! paginated files of a 3,000-file PR, rate limits sat out, GitHub errors reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use previewd::github::client::{GitHubAuth, GitHubClient, GitHubError};
use serde_json::{Value, json};
use support::github::{FakeGitHub, json_response};

/// `count` changed files: the first a rename from `worker/`, the rest under `web/`.
fn files(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            if i == 0 {
                json!({"sha": "x", "filename": "api/new.go", "previous_filename": "worker/old.go", "status": "renamed"})
            } else {
                json!({"sha": "x", "filename": format!("web/src/file{i}.ts"), "status": "modified", "additions": 1, "deletions": 0, "changes": 1})
            }
        })
        .collect()
}

/// A stand-in whose installation tokens live `token_ttl` seconds and whose PRs change
/// `file_count` files.
async fn start(token_ttl: i64, file_count: usize) -> (FakeGitHub, GitHubClient) {
    let fake = FakeGitHub::start().await;
    {
        let mut state = fake.lock();
        state.token_ttl = token_ttl;
        state.files = files(file_count);
    }
    let client = fake.client();
    (fake, client)
}

fn file_requests(fake: &FakeGitHub) -> usize {
    fake.lock().count("GET", "/files")
}

#[tokio::test]
async fn app_installation_tokens_are_minted_once_and_reused() {
    let (fake, github) = start(3600, 10).await;
    for _ in 0..3 {
        let files = github.pr_files(Some(77), "acme/shop", 12).await.unwrap();
        assert_eq!(files.len(), 11, "10 files, the renamed one under both names");
    }
    let minted = fake.lock().tokens_minted.clone();
    assert_eq!(minted, vec![(77, "ghs_1".to_owned())]);
    assert_eq!(github.remaining_quota(), Some(4321));
    // A second installation gets its own token.
    github.pr_files(Some(78), "other/repo", 1).await.unwrap();
    assert_eq!(fake.lock().tokens_minted.len(), 2);
}

#[tokio::test]
async fn tokens_near_expiry_are_refreshed() {
    // Tokens that expire within octocrab's 30 s margin are re-minted before use.
    let (fake, github) = start(20, 5).await;
    github.pr_files(Some(77), "acme/shop", 12).await.unwrap();
    github.pr_files(Some(77), "acme/shop", 12).await.unwrap();
    assert_eq!(fake.lock().tokens_minted.len(), 2);
}

#[tokio::test]
async fn files_of_a_3000_file_pr_are_paginated() {
    let (fake, github) = start(3600, 3000).await;
    let files = github.pr_files(Some(77), "acme/shop", 12).await.unwrap();
    assert_eq!(files.len(), 3001);
    assert!(files.contains(&"worker/old.go".to_owned()) && files.contains(&"web/src/file2999.ts".to_owned()));
    assert_eq!(file_requests(&fake), 30);
}

#[tokio::test]
async fn rate_limits_are_sat_out_or_reported() {
    let (fake, github) = start(3600, 5).await;
    // A secondary limit with retry-after: 1 is waited for, then the call succeeds.
    let limited = Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header("retry-after", "1")
        .body(Body::from(r#"{"message":"You have exceeded a secondary rate limit"}"#))
        .unwrap();
    fake.lock().inject.push(("/files".into(), limited));
    let started = Instant::now();
    assert_eq!(github.pr_files(Some(77), "acme/shop", 12).await.unwrap().len(), 6);
    assert!(started.elapsed() >= Duration::from_secs(1));

    // The primary limit, reset in an hour: reported at once, and no further request is sent.
    let exhausted = Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset", (chrono::Utc::now().timestamp() + 3600).to_string())
        .body(Body::from(r#"{"message":"API rate limit exceeded"}"#))
        .unwrap();
    fake.lock().inject.push(("/files".into(), exhausted));
    let err = github.pr_files(Some(77), "acme/shop", 12).await.unwrap_err();
    assert!(matches!(err, GitHubError::RateLimited(wait) if wait > Duration::from_secs(3000)), "{err}");
    let before = file_requests(&fake);
    assert!(matches!(github.pr_files(Some(77), "acme/shop", 12).await, Err(GitHubError::RateLimited(_))));
    assert_eq!(file_requests(&fake), before, "blocked until the reset");
}

#[tokio::test]
async fn github_errors_are_reported_not_panicked() {
    let (fake, github) = start(3600, 5).await;
    fake.lock()
        .inject
        .push(("/files".into(), json_response(StatusCode::BAD_GATEWAY, json!({"message": "Server Error"}))));
    let err = github.pr_files(Some(77), "acme/shop", 12).await.unwrap_err();
    assert!(matches!(err, GitHubError::Status { status: 502, .. }), "{err}");
    // App auth without an installation id is a configuration error, not a request.
    assert!(matches!(github.pr_files(None, "acme/shop", 12).await, Err(GitHubError::Config(_))));
    // GitHub unreachable.
    let nowhere = GitHubClient::new("http://127.0.0.1:9", &GitHubAuth::Token("t".into()), 1).unwrap();
    assert!(matches!(nowhere.pr_files(None, "acme/shop", 12).await, Err(GitHubError::Transport { .. })));
}

#[tokio::test]
async fn requests_are_counted_by_operation_and_outcome() {
    let fake = FakeGitHub::start().await;
    fake.lock().files = files(150);
    let metrics = previewd::metrics::Metrics::new().unwrap();
    let github = fake.client().with_request_counter(metrics.github_requests.clone());
    github.pr_files(Some(77), "acme/shop", 12).await.unwrap();
    fake.lock().outage = Some(502);
    assert!(github.pr_files(Some(77), "acme/shop", 12).await.is_err());
    let text = metrics.render();
    assert!(
        text.contains(r#"previewd_github_requests_total{operation="list pull request files",outcome="ok"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"previewd_github_requests_total{operation="list pull request files",outcome="status"} 1"#),
        "{text}"
    );
}
