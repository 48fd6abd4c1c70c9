//! A local stand-in for the GitHub REST API: the endpoints Previewd calls, answering with the
//! documented shapes (GitHub's own examples from its REST description, with the ids and fields
//! the stand-in controls; `Link` pagination, `x-ratelimit-*` headers), recording every exchange
//! (checked against the description by `every_github_request_matches_the_published_api`),
//! and able to fail on demand (an outage, or one injected answer for a path).
//!
//! Auth: `POST /app/installations/{id}/access_tokens` needs a valid App JWT (RS256, `iss` = the
//! App id) and mints `ghs_N` tokens; everything else needs one of those tokens or the
//! configured personal token. Comments made with an installation token are the App's bot's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use previewd_testkit::github_api::{Exchange, shaped};
use serde_json::{Value, json};

pub const APP_ID: u64 = 31337;
pub const PERSONAL_TOKEN: &str = "ghp_personal";

#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: u64,
    pub repository: String,
    pub sha: String,
    pub environment: String,
    pub body: Value,
    /// Newest last.
    pub statuses: Vec<Value>,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub repository: String,
    pub number: u64,
    pub body: String,
    pub login: String,
    pub kind: String,
}

#[derive(Default)]
pub struct GitHubState {
    pub public_pem: String,
    /// Lifetime of minted installation tokens, seconds.
    pub token_ttl: i64,
    pub tokens_minted: Vec<(u64, String)>,
    /// The files of every PR (GitHub's file objects).
    pub files: Vec<Value>,
    /// login -> permission (`admin`, `write`, `read`, `none`); others are 404 (not a user).
    pub permissions: HashMap<String, String>,
    /// `GET /repos/{repo}/pulls/{n}` (404 when unset).
    pub pull: Option<Value>,
    pub deployments: Vec<Deployment>,
    pub comments: Vec<Comment>,
    pub commit_statuses: Vec<(String, Value)>,
    /// (method, path?query) of every request.
    pub requests: Vec<(String, String)>,
    /// Every request with its answer.
    pub exchanges: Vec<Exchange>,
    /// Every request gets this status (an outage) while set.
    pub outage: Option<u16>,
    /// One answer each for the next requests whose path contains the fragment.
    pub inject: Vec<(String, Response)>,
    /// How long every answer takes (a slow GitHub).
    pub latency: std::time::Duration,
    /// Repository trees by commit SHA: (path, text) of every file (`git/trees`, `git/blobs`).
    pub trees: HashMap<String, Vec<(String, String)>>,
    /// Check runs by commit SHA: (name, status, conclusion) (`commits/{sha}/check-runs`).
    pub check_runs: HashMap<String, Vec<(String, String, Option<String>)>>,
    /// (comment id, content, login) of every reaction.
    pub reactions: Vec<(u64, String, String)>,
    next_id: u64,
}

/// A blob's SHA: a digest of its content, as Git names blobs (so equal files share one).
pub fn blob_sha(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))[..40].to_owned()
}

impl GitHubState {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        1000 + self.next_id
    }

    /// Requests whose method and path (with query) contain the fragments.
    pub fn count(&self, method: &str, fragment: &str) -> usize {
        self.requests.iter().filter(|(m, p)| m == method && p.contains(fragment)).count()
    }

    /// The states posted to each deployment, in order.
    pub fn status_states(&self) -> Vec<Vec<String>> {
        self.deployments
            .iter()
            .map(|d| d.statuses.iter().map(|s| s["state"].as_str().unwrap_or("").to_owned()).collect())
            .collect()
    }

    pub fn comments_on(&self, number: u64) -> Vec<&Comment> {
        self.comments.iter().filter(|c| c.number == number).collect()
    }

    /// Adds `count` comments by people before anything else happens on PR `number`.
    pub fn chatter(&mut self, repository: &str, number: u64, count: usize) {
        for i in 0..count {
            let id = self.id();
            self.comments.push(Comment {
                id,
                repository: repository.to_owned(),
                number,
                body: format!("comment {i}"),
                login: "reviewer".into(),
                kind: "User".into(),
            });
        }
    }
}

pub type Shared = Arc<Mutex<GitHubState>>;

pub struct FakeGitHub {
    pub state: Shared,
    pub base: String,
    pub private_pem: String,
}

impl FakeGitHub {
    pub async fn start() -> FakeGitHub {
        let key = previewd_testkit::github_app_key();
        let state: Shared =
            Arc::new(Mutex::new(GitHubState { public_pem: key.public_pem, token_ttl: 3600, ..GitHubState::default() }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(handle).with_state((Arc::clone(&state), base.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGitHub { state, base, private_pem: key.private_pem }
    }

    pub fn app_auth(&self) -> previewd::github::client::GitHubAuth {
        previewd::github::client::GitHubAuth::App { app_id: APP_ID, private_key: self.private_pem.clone() }
    }

    pub fn client(&self) -> previewd::github::client::GitHubClient {
        previewd::github::client::GitHubClient::new(&self.base, &self.app_auth(), 4).unwrap()
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, GitHubState> {
        self.state.lock().unwrap()
    }
}

pub fn json_response(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-ratelimit-limit", "5000")
        .header("x-ratelimit-remaining", "4321")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn jwt_ok(state: &GitHubState, header: &str) -> bool {
    let Some(jwt) = header.strip_prefix("Bearer ") else { return false };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(state.public_pem.as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat"]);
    jsonwebtoken::decode::<Value>(jwt, &key, &validation).is_ok_and(|d| d.claims["iss"] == APP_ID)
}

fn query(q: &str) -> HashMap<String, String> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

/// One page of `items` with GitHub's `Link` header.
fn page(items: Vec<Value>, base: &str, path: &str, q: &HashMap<String, String>) -> Response {
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30).clamp(1, 100);
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let start = (page - 1) * per_page;
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items.into_iter().skip(start).take(per_page).collect();
    let mut response = json_response(StatusCode::OK, Value::from(slice));
    if page < last {
        let mut other: Vec<(String, String)> =
            q.iter().filter(|(k, _)| *k != "page").map(|(k, v)| (k.clone(), v.clone())).collect();
        other.sort();
        let keep = form_urlencoded::Serializer::new(String::new()).extend_pairs(other).finish();
        let link = format!(
            "<{base}{path}?{keep}&page={}>; rel=\"next\", <{base}{path}?{keep}&page={last}>; rel=\"last\"",
            page + 1
        );
        response.headers_mut().insert("link", link.parse().unwrap());
    }
    response
}

fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
    )
}

async fn handle(State((state, base)): State<(Shared, String)>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let raw_query = request.uri().query().unwrap_or("").to_owned();
    let auth = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body: Value = to_bytes(request.into_body(), 1 << 20)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let latency = state.lock().unwrap().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let response = answer(&state, &base, &method, &path, &raw_query, &auth, body.clone());
    let (parts, answer_body) = response.into_parts();
    let bytes = to_bytes(answer_body, 1 << 24).await.unwrap_or_default();
    state.lock().unwrap().exchanges.push(Exchange {
        method: method.to_string(),
        path,
        query: raw_query,
        body,
        status: parts.status.as_u16(),
        response: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    });
    Response::from_parts(parts, Body::from(bytes))
}

fn answer(
    state: &Shared,
    base: &str,
    method: &Method,
    path: &str,
    raw_query: &str,
    auth: &str,
    body: Value,
) -> Response {
    let (method, path, raw_query, auth) = (method.clone(), path.to_owned(), raw_query.to_owned(), auth.to_owned());
    let base = base.to_owned();
    let mut s = state.lock().unwrap();
    let full = if raw_query.is_empty() { path.clone() } else { format!("{path}?{raw_query}") };
    s.requests.push((method.to_string(), full));
    if let Some(status) = s.outage {
        return json_response(StatusCode::from_u16(status).unwrap(), json!({"message": "Server Error"}));
    }
    if let Some(i) = s.inject.iter().position(|(fragment, _)| path.contains(fragment.as_str())) {
        return s.inject.remove(i).1;
    }
    let q = query(&raw_query);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();

    // POST /app/installations/{id}/access_tokens: App JWT in, installation token out.
    if let (&Method::POST, ["app", "installations", id, "access_tokens"]) = (&method, &segments[..]) {
        if !jwt_ok(&s, &auth) {
            return json_response(
                StatusCode::UNAUTHORIZED,
                json!({"message": "A JSON web token could not be decoded"}),
            );
        }
        let token = format!("ghs_{}", s.tokens_minted.len() + 1);
        s.tokens_minted.push((id.parse().unwrap(), token.clone()));
        let expires = chrono::Utc::now() + chrono::Duration::seconds(s.token_ttl);
        return json_response(
            StatusCode::CREATED,
            shaped(
                "POST",
                &path,
                201,
                json!({"token": token, "expires_at": expires.to_rfc3339(), "permissions": {"pull_requests": "write", "deployments": "write"}}),
            ),
        );
    }
    let installation = s.tokens_minted.iter().any(|(_, t)| auth == format!("Bearer {t}"));
    if !installation && auth != format!("Bearer {PERSONAL_TOKEN}") {
        return json_response(StatusCode::UNAUTHORIZED, json!({"message": "Bad credentials"}));
    }
    let (login, kind) = if installation { ("previewd[bot]", "Bot") } else { ("deploy-user", "User") };
    let ["repos", owner, name, rest @ ..] = &segments[..] else { return not_found() };
    let repository = format!("{owner}/{name}");
    match (&method, rest) {
        (&Method::GET, ["pulls", _, "files"]) => {
            let files = s.files.iter().map(|f| shaped("GET", &path, 200, f.clone())).collect();
            page(files, &base, &path, &q)
        }
        (&Method::GET, ["pulls", _]) => match &s.pull {
            Some(pull) => {
                // (GitHub's own example lists a requested team without the `type` its schema
                // requires: the stand-in lists none unless told.)
                let mut pull = pull.clone();
                if pull.get("requested_teams").is_none() {
                    pull["requested_teams"] = json!([]);
                }
                json_response(StatusCode::OK, shaped("GET", &path, 200, pull))
            }
            None => not_found(),
        },
        (&Method::GET, ["git", "trees", sha]) => {
            let Some(files) = s.trees.get(*sha) else { return not_found() };
            let entries: Vec<Value> = files
                .iter()
                .map(|(file, text)| {
                    let blob = blob_sha(text);
                    json!({"path": file, "mode": "100644", "type": "blob", "sha": blob, "size": text.len(),
                           "url": format!("{base}/repos/{repository}/git/blobs/{blob}")})
                })
                .collect();
            let listing = json!({"sha": sha, "url": format!("{base}{path}"), "truncated": false, "tree": entries});
            json_response(StatusCode::OK, shaped("GET", &path, 200, listing))
        }
        (&Method::GET, ["git", "blobs", sha]) => {
            use base64::Engine as _;
            let found = s.trees.values().flatten().find(|(_, text)| blob_sha(text) == *sha);
            let Some((_, text)) = found else { return not_found() };
            let content = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            // GitHub wraps the base64 at 60 characters.
            let wrapped: Vec<String> =
                content.as_bytes().chunks(60).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
            let blob = json!({"sha": sha, "size": text.len(), "encoding": "base64", "content": wrapped.join("\n") + "\n",
                              "url": format!("{base}{path}")});
            json_response(StatusCode::OK, shaped("GET", &path, 200, blob))
        }
        (&Method::GET, ["collaborators", user, "permission"]) => {
            let user = form_urlencoded::parse(format!("u={user}").as_bytes()).next().unwrap().1.into_owned();
            match s.permissions.get(&user) {
                Some(p) => {
                    let role = if p == "none" { "none" } else { p.as_str() };
                    // (GitHub's own example lacks the user's `role_name`, which its schema requires.)
                    let permission =
                        json!({"permission": p, "role_name": role, "user": {"login": user, "role_name": role}});
                    json_response(StatusCode::OK, shaped("GET", &path, 200, permission))
                }
                None => not_found(),
            }
        }
        (&Method::GET, ["deployments"]) => {
            let found: Vec<Value> = s
                .deployments
                .iter()
                .rev()
                .filter(|d| d.repository == repository)
                .filter(|d| q.get("sha").is_none_or(|sha| *sha == d.sha))
                .filter(|d| q.get("environment").is_none_or(|e| *e == d.environment))
                .map(|d| {
                    let fields = json!({"id": d.id, "sha": d.sha, "ref": d.sha, "environment": d.environment});
                    shaped("GET", &path, 200, fields)
                })
                .collect();
            page(found, &base, &path, &q)
        }
        (&Method::POST, ["deployments"]) => {
            let id = s.id();
            let sha = body["ref"].as_str().unwrap_or("").to_owned();
            let environment = body["environment"].as_str().unwrap_or("production").to_owned();
            s.deployments.push(Deployment {
                id,
                repository,
                sha: sha.clone(),
                environment: environment.clone(),
                body,
                statuses: Vec::new(),
            });
            let fields = json!({"id": id, "sha": sha, "ref": sha, "environment": environment});
            json_response(StatusCode::CREATED, shaped("POST", &path, 201, fields))
        }
        (&Method::GET, ["deployments", id, "statuses"]) => {
            let Some(d) = s.deployments.iter().find(|d| d.id.to_string() == *id) else { return not_found() };
            let statuses = d.statuses.iter().rev().map(|st| shaped("GET", &path, 200, st.clone())).collect();
            page(statuses, &base, &path, &q)
        }
        (&Method::POST, ["deployments", id, "statuses"]) => {
            let status_id = s.id();
            let Some(d) = s.deployments.iter_mut().find(|d| d.id.to_string() == *id) else { return not_found() };
            // What the request set, over the documented example.
            let mut status = json!({"id": status_id, "state": body["state"]});
            for field in ["description", "environment", "environment_url", "log_url"] {
                if let Some(value) = body.get(field) {
                    status[field] = value.clone();
                }
            }
            d.statuses.push(status.clone());
            json_response(StatusCode::CREATED, shaped("POST", &path, 201, status))
        }
        (&Method::POST, ["statuses", sha]) => {
            let status_id = s.id();
            let mut status = body.clone();
            status["id"] = json!(status_id);
            s.commit_statuses.push((sha.to_string(), status.clone()));
            json_response(StatusCode::CREATED, shaped("POST", &path, 201, status))
        }
        (&Method::GET, ["commits", sha, "check-runs"]) => {
            // Each run in the shape of the description's example run.
            let template = shaped("GET", &path, 200, json!({}))["check_runs"][0].clone();
            let runs: Vec<Value> = s
                .check_runs
                .get(*sha)
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, (name, status, conclusion))| {
                    let mut run = template.clone();
                    for (k, v) in [
                        ("id", json!(i + 1)),
                        ("head_sha", json!(sha)),
                        ("name", json!(name)),
                        ("status", json!(status)),
                        ("conclusion", json!(conclusion)),
                        ("pull_requests", json!([])),
                    ] {
                        run[k] = v;
                    }
                    run
                })
                .collect();
            let listing = json!({"total_count": runs.len(), "check_runs": runs});
            json_response(StatusCode::OK, shaped("GET", &path, 200, listing))
        }
        (&Method::GET, ["commits", sha, "status"]) => {
            // The newest status of each context, as GitHub combines them.
            let template = shaped("GET", &path, 200, json!({}))["statuses"][0].clone();
            let mut newest: Vec<Value> = Vec::new();
            for (_, status) in s.commit_statuses.iter().rev().filter(|(at, _)| at == sha) {
                if !newest.iter().any(|n| n["context"] == status["context"]) {
                    let mut entry = template.clone();
                    for k in ["context", "state", "id"] {
                        entry[k] = status[k].clone();
                    }
                    newest.push(entry);
                }
            }
            let state = if newest.iter().all(|n| n["state"] == "success") { "success" } else { "pending" };
            let combined = json!({"state": state, "sha": sha, "total_count": newest.len(), "statuses": newest});
            json_response(StatusCode::OK, shaped("GET", &path, 200, combined))
        }
        (&Method::GET, ["actions", "runs"]) => {
            json_response(StatusCode::OK, shaped("GET", &path, 200, json!({"total_count": 0, "workflow_runs": []})))
        }
        (&Method::GET, ["commits", _, "check-suites"]) => {
            json_response(StatusCode::OK, shaped("GET", &path, 200, json!({"total_count": 0, "check_suites": []})))
        }
        (&Method::POST, ["issues", "comments", id, "reactions"]) => {
            let Some(comment) = id.parse::<u64>().ok() else { return not_found() };
            let content = body["content"].as_str().unwrap_or("").to_owned();
            s.reactions.push((comment, content.clone(), login.to_owned()));
            let reaction = json!({"id": s.id(), "content": content, "user": {"login": login, "type": kind}});
            json_response(StatusCode::CREATED, shaped("POST", &path, 201, reaction))
        }
        (&Method::GET, ["issues", number, "comments"]) => {
            let number: u64 = number.parse().unwrap_or(0);
            let found: Vec<Value> = s
                .comments
                .iter()
                .filter(|c| c.repository == repository && c.number == number)
                .map(|c| {
                    let fields = json!({"id": c.id, "body": c.body, "user": {"login": c.login, "type": c.kind}});
                    shaped("GET", &path, 200, fields)
                })
                .collect();
            page(found, &base, &path, &q)
        }
        (&Method::POST, ["issues", number, "comments"]) => {
            let id = s.id();
            let number: u64 = number.parse().unwrap_or(0);
            let text = body["body"].as_str().unwrap_or("").to_owned();
            s.comments.push(Comment {
                id,
                repository,
                number,
                body: text.clone(),
                login: login.into(),
                kind: kind.into(),
            });
            let fields = json!({"id": id, "body": text, "user": {"login": login, "type": kind}});
            json_response(StatusCode::CREATED, shaped("POST", &path, 201, fields))
        }
        (&Method::PATCH, ["issues", "comments", id]) => {
            let Some(c) = s.comments.iter_mut().find(|c| c.id.to_string() == *id) else { return not_found() };
            c.body = body["body"].as_str().unwrap_or("").to_owned();
            json_response(
                StatusCode::OK,
                shaped(
                    "PATCH",
                    &path,
                    200,
                    json!({"id": c.id, "body": c.body, "user": {"login": c.login, "type": c.kind}}),
                ),
            )
        }
        _ => not_found(),
    }
}
