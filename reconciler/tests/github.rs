//! The reconciler's GitHub client against a local stand-in for the GitHub API answering with
//! the documented shapes: App JWT -> installation token (and its refresh before expiry),
//! paginated files of a 3,000-file PR, rate limits sat out, GitHub errors reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use previewd::github::client::{GitHubAuth, GitHubClient, GitHubError};
use serde_json::{Value, json};

const APP_ID: u64 = 31337;

#[derive(Default)]
struct Fake {
    public_pem: String,
    /// Lifetime of minted installation tokens.
    token_ttl: i64,
    tokens_minted: Vec<(u64, String)>,
    file_count: usize,
    /// Answers for the next file-list requests before normal handling.
    inject: Vec<Response>,
    file_requests: usize,
}

type Shared = Arc<Mutex<Fake>>;

fn json_response(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-ratelimit-remaining", "4321")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn jwt_ok(fake: &Fake, header: &str) -> bool {
    let Some(jwt) = header.strip_prefix("Bearer ") else { return false };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(fake.public_pem.as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat"]);
    jsonwebtoken::decode::<Value>(jwt, &key, &validation).is_ok_and(|d| d.claims["iss"] == APP_ID)
}

async fn handle(State((fake, base)): State<(Shared, String)>, request: Request) -> Response {
    let mut fake = fake.lock().unwrap();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let auth = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    // POST /app/installations/{id}/access_tokens: App JWT in, installation token out.
    if request.method() == Method::POST
        && let Some(id) = path.strip_prefix("/app/installations/").and_then(|r| r.strip_suffix("/access_tokens"))
    {
        if !jwt_ok(&fake, &auth) {
            return json_response(
                StatusCode::UNAUTHORIZED,
                json!({"message": "A JSON web token could not be decoded"}),
            );
        }
        let token = format!("ghs_{}", fake.tokens_minted.len() + 1);
        fake.tokens_minted.push((id.parse().unwrap(), token.clone()));
        let expires = chrono::Utc::now() + chrono::Duration::seconds(fake.token_ttl);
        return json_response(
            StatusCode::CREATED,
            json!({"token": token, "expires_at": expires.to_rfc3339(), "permissions": {"pull_requests": "read"}}),
        );
    }
    // GET /repos/{owner}/{repo}/pulls/{n}/files?per_page=100&page=K, with an installation token.
    if request.method() == Method::GET && path.ends_with("/files") {
        let token_ok = fake.tokens_minted.iter().any(|(_, t)| auth == format!("Bearer {t}"));
        if !token_ok {
            return json_response(StatusCode::UNAUTHORIZED, json!({"message": "Bad credentials"}));
        }
        fake.file_requests += 1;
        if !fake.inject.is_empty() {
            return fake.inject.remove(0);
        }
        let page: usize =
            query.split('&').find_map(|kv| kv.strip_prefix("page=")).and_then(|p| p.parse().ok()).unwrap_or(1);
        let total = fake.file_count.min(3000);
        let start = (page - 1) * 100;
        let files: Vec<Value> = (start..total.min(start + 100))
            .map(|i| {
                if i == 0 {
                    json!({"sha": "x", "filename": "api/new.go", "previous_filename": "worker/old.go", "status": "renamed"})
                } else {
                    json!({"sha": "x", "filename": format!("web/src/file{i}.ts"), "status": "modified", "additions": 1, "deletions": 0, "changes": 1})
                }
            })
            .collect();
        let mut response = json_response(StatusCode::OK, Value::from(files));
        if start + 100 < total {
            let link = format!(
                "<{base}{path}?per_page=100&page={}>; rel=\"next\", <{base}{path}?per_page=100&page=30>; rel=\"last\"",
                page + 1
            );
            response.headers_mut().insert("link", link.parse().unwrap());
        }
        return response;
    }
    json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"}))
}

async fn start(token_ttl: i64, file_count: usize) -> (Shared, String, String) {
    let key = previewd_testkit::github_app_key();
    let fake: Shared =
        Arc::new(Mutex::new(Fake { public_pem: key.public_pem, token_ttl, file_count, ..Fake::default() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(handle).with_state((Arc::clone(&fake), base.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, base, key.private_pem)
}

fn app_client(base: &str, private_key: String) -> GitHubClient {
    GitHubClient::new(base, &GitHubAuth::App { app_id: APP_ID, private_key }, 4).unwrap()
}

#[tokio::test]
async fn app_installation_tokens_are_minted_once_and_reused() {
    let (fake, base, key) = start(3600, 10).await;
    let github = app_client(&base, key);
    for _ in 0..3 {
        let files = github.pr_files(Some(77), "acme/shop", 12).await.unwrap();
        assert_eq!(files.len(), 11, "10 files, the renamed one under both names");
    }
    let minted = fake.lock().unwrap().tokens_minted.clone();
    assert_eq!(minted, vec![(77, "ghs_1".to_owned())]);
    assert_eq!(github.remaining_quota(), Some(4321));
    // A second installation gets its own token.
    github.pr_files(Some(78), "other/repo", 1).await.unwrap();
    assert_eq!(fake.lock().unwrap().tokens_minted.len(), 2);
}

#[tokio::test]
async fn tokens_near_expiry_are_refreshed() {
    // Tokens that expire within octocrab's 30 s margin are re-minted before use.
    let (fake, base, key) = start(20, 5).await;
    let github = app_client(&base, key);
    github.pr_files(Some(77), "acme/shop", 12).await.unwrap();
    github.pr_files(Some(77), "acme/shop", 12).await.unwrap();
    assert_eq!(fake.lock().unwrap().tokens_minted.len(), 2);
}

#[tokio::test]
async fn files_of_a_3000_file_pr_are_paginated() {
    let (fake, base, key) = start(3600, 3000).await;
    let github = app_client(&base, key);
    let files = github.pr_files(Some(77), "acme/shop", 12).await.unwrap();
    assert_eq!(files.len(), 3001);
    assert!(files.contains(&"worker/old.go".to_owned()) && files.contains(&"web/src/file2999.ts".to_owned()));
    assert_eq!(fake.lock().unwrap().file_requests, 30);
}

#[tokio::test]
async fn rate_limits_are_sat_out_or_reported() {
    let (fake, base, key) = start(3600, 5).await;
    let github = app_client(&base, key);
    // A secondary limit with retry-after: 1 is waited for, then the call succeeds.
    let limited = Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header("retry-after", "1")
        .body(Body::from(r#"{"message":"You have exceeded a secondary rate limit"}"#))
        .unwrap();
    fake.lock().unwrap().inject.push(limited);
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
    fake.lock().unwrap().inject.push(exhausted);
    let err = github.pr_files(Some(77), "acme/shop", 12).await.unwrap_err();
    assert!(matches!(err, GitHubError::RateLimited(wait) if wait > Duration::from_secs(3000)), "{err}");
    let before = fake.lock().unwrap().file_requests;
    assert!(matches!(github.pr_files(Some(77), "acme/shop", 12).await, Err(GitHubError::RateLimited(_))));
    assert_eq!(fake.lock().unwrap().file_requests, before, "blocked until the reset");
}

#[tokio::test]
async fn github_errors_are_reported_not_panicked() {
    let (fake, base, key) = start(3600, 5).await;
    let github = app_client(&base, key);
    fake.lock().unwrap().inject.push(json_response(StatusCode::BAD_GATEWAY, json!({"message": "Server Error"})));
    let err = github.pr_files(Some(77), "acme/shop", 12).await.unwrap_err();
    assert!(matches!(err, GitHubError::Status { status: 502, .. }), "{err}");
    // App auth without an installation id is a configuration error, not a request.
    assert!(matches!(github.pr_files(None, "acme/shop", 12).await, Err(GitHubError::Config(_))));
    // GitHub unreachable.
    let nowhere = GitHubClient::new("http://127.0.0.1:9", &GitHubAuth::Token("t".into()), 1).unwrap();
    assert!(matches!(nowhere.pr_files(None, "acme/shop", 12).await, Err(GitHubError::Transport { .. })));
}
