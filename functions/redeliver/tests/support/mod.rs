//! A local stand-in for the GitHub REST API's hook-delivery endpoints, answering with the
//! documented shapes: deliveries newest first with cursor pagination in `Link` headers,
//! redelivery attempts (which, like GitHub, add a new delivery with the same GUID), App JWT or
//! token authentication, and injectable rate limits and errors.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

pub use previewd_testkit::github_app_key as app_key;

#[derive(Clone)]
pub enum Auth {
    App { app_id: u64, public_pem: String },
    Token(String),
}

#[derive(Clone, Debug)]
pub enum Inject {
    /// 429 with `retry-after`.
    SecondaryLimit {
        retry_after: u64,
    },
    /// 403 with `x-ratelimit-remaining: 0` and a reset this many seconds ahead.
    PrimaryLimit {
        reset_in: i64,
    },
    ServerError,
}

pub struct Inner {
    /// Newest first, in GitHub's documented shape.
    pub deliveries: Vec<Value>,
    next_id: u64,
    pub page_size: usize,
    pub auth: Auth,
    /// Requests answered so far: (method, path and query).
    pub requests: Vec<(String, String)>,
    /// Every request with its answer (checked against GitHub's REST description).
    pub exchanges: Vec<previewd_testkit::github_api::Exchange>,
    /// Delivery ids whose redelivery was requested, in order.
    pub attempts: Vec<u64>,
    /// What the receiver answers a redelivery now (202 healthy, 503 down).
    pub receiver_status: u16,
    /// The stand-in's clock: `delivered_at` of redeliveries.
    pub now: DateTime<Utc>,
    /// Answers for the next matching requests (`None`: answer normally).
    pub inject_list: VecDeque<Option<Inject>>,
    pub inject_attempt: VecDeque<Option<Inject>>,
}

impl Inner {
    /// Adds a delivery (as the newest) and returns its id.
    pub fn push(&mut self, guid: &str, status_code: u16, delivered_at: DateTime<Utc>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let status = if status_code == 0 { "Timed out".to_owned() } else { format!("Status {status_code}") };
        self.deliveries.insert(
            0,
            json!({
                "id": id, "guid": guid, "delivered_at": delivered_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "redelivery": false, "duration": 0.27, "status": status, "status_code": status_code,
                "event": "pull_request", "action": "synchronize", "installation_id": 123, "repository_id": 456
            }),
        );
        id
    }

    pub fn attempts_for(&self, guid: &str) -> usize {
        self.attempts.iter().filter(|id| self.deliveries.iter().any(|d| d["id"] == **id && d["guid"] == guid)).count()
    }

    pub fn list_requests(&self) -> usize {
        self.requests.iter().filter(|(m, p)| m == "GET" && p.contains("/deliveries")).count()
    }
}

#[derive(Clone)]
pub struct FakeGitHub {
    pub url: String,
    pub inner: Arc<Mutex<Inner>>,
}

impl FakeGitHub {
    pub async fn start(auth: Auth, now: DateTime<Utc>) -> FakeGitHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let inner = Arc::new(Mutex::new(Inner {
            deliveries: Vec::new(),
            next_id: 1000,
            page_size: 100,
            auth,
            requests: Vec::new(),
            exchanges: Vec::new(),
            attempts: Vec::new(),
            receiver_status: 202,
            now,
            inject_list: VecDeque::new(),
            inject_attempt: VecDeque::new(),
        }));
        let app = axum::Router::new().fallback(handle).with_state((Arc::clone(&inner), url.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGitHub { url, inner }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap())
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header("x-ratelimit-limit", "5000")
        .header("x-ratelimit-remaining", "4990")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn injected(inject: Inject, now: i64) -> Response {
    let builder = Response::builder().header("content-type", "application/json");
    match inject {
        Inject::SecondaryLimit { retry_after } => builder
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header("retry-after", retry_after.to_string())
            .body(Body::from(r#"{"message":"You have exceeded a secondary rate limit."}"#)),
        Inject::PrimaryLimit { reset_in } => builder
            .status(StatusCode::FORBIDDEN)
            .header("x-ratelimit-limit", "5000")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", (now + reset_in).to_string())
            .body(Body::from(r#"{"message":"API rate limit exceeded"}"#)),
        Inject::ServerError => {
            builder.status(StatusCode::BAD_GATEWAY).body(Body::from(r#"{"message":"Server Error"}"#))
        }
    }
    .unwrap()
}

fn authorised(auth: &Auth, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    match auth {
        Auth::Token(token) => value == format!("Bearer {token}") || value == format!("token {token}"),
        Auth::App { app_id, public_pem } => {
            let Some(jwt) = value.strip_prefix("Bearer ") else {
                return false;
            };
            let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()) else {
                return false;
            };
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.set_required_spec_claims(&["exp", "iat"]);
            match jsonwebtoken::decode::<Value>(jwt, &key, &validation) {
                // GitHub requires `iss` to be the App id (number or string).
                Ok(data) => {
                    data.claims["iss"] == *app_id || data.claims["iss"].as_str() == Some(app_id.to_string().as_str())
                }
                Err(_) => false,
            }
        }
    }
}

fn hook_prefix(path: &str) -> Option<&str> {
    if path.starts_with("/app/hook/deliveries") {
        return Some("/app/hook");
    }
    let parts: Vec<&str> = path.split('/').collect();
    // /repos/{o}/{r}/hooks/{id}/deliveries... or /orgs/{o}/hooks/{id}/deliveries...
    let len = match parts.get(1) {
        Some(&"repos") if parts.get(4) == Some(&"hooks") => 6,
        Some(&"orgs") if parts.get(3) == Some(&"hooks") => 5,
        _ => return None,
    };
    (parts.get(len) == Some(&"deliveries")).then(|| &path[..parts[..len].join("/").len()])
}

async fn handle(State((inner, base)): State<(Arc<Mutex<Inner>>, String)>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let response = answer(&inner, &base, &method, &path, &query, &parts.headers);
    let (answer_parts, answer_body) = response.into_parts();
    let bytes = axum::body::to_bytes(answer_body, 1 << 24).await.unwrap_or_default();
    inner.lock().unwrap().exchanges.push(previewd_testkit::github_api::Exchange {
        method: method.to_string(),
        path,
        query,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status: answer_parts.status.as_u16(),
        response: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    });
    Response::from_parts(answer_parts, Body::from(bytes))
}

fn answer(inner: &Mutex<Inner>, base: &str, method: &Method, path: &str, query: &str, headers: &HeaderMap) -> Response {
    let (method, path, query) = (method.clone(), path.to_owned(), query.to_owned());
    let mut inner = inner.lock().unwrap();
    inner.requests.push((method.to_string(), format!("{path}?{query}")));
    if !authorised(&inner.auth, headers) {
        return json_response(StatusCode::UNAUTHORIZED, json!({"message": "Bad credentials"}));
    }
    let Some(prefix) = hook_prefix(&path) else {
        return json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"}));
    };
    let now = inner.now.timestamp();
    let rest = &path[prefix.len()..];
    if method == Method::GET && rest == "/deliveries" {
        if let Some(Some(inject)) = inner.inject_list.pop_front() {
            return injected(inject, now);
        }
        let param =
            |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).map(str::to_owned);
        let per_page = param("per_page").and_then(|v| v.parse().ok()).unwrap_or(30usize).min(inner.page_size);
        // Like GitHub's, the cursor names the last delivery seen, so deliveries added meanwhile
        // (redeliveries land at the top) do not shift the pages.
        let after: Option<u64> = param("cursor").and_then(|c| c.strip_prefix("v1_").and_then(|v| v.parse().ok()));
        let start = match after {
            Some(id) => inner.deliveries.iter().position(|d| d["id"] == id).map_or(inner.deliveries.len(), |p| p + 1),
            None => 0,
        };
        let page: Vec<Value> = inner.deliveries.iter().skip(start).take(per_page).cloned().collect();
        let more = start + page.len() < inner.deliveries.len();
        let last_id = page.last().and_then(|d| d["id"].as_u64());
        let mut response = json_response(StatusCode::OK, Value::from(page));
        if let (true, Some(last)) = (more, last_id) {
            let next = format!("<{base}{path}?per_page={per_page}&cursor=v1_{last}>; rel=\"next\"");
            response.headers_mut().insert("link", next.parse().unwrap());
        }
        return response;
    }
    if method == Method::POST
        && let Some(id) = rest.strip_prefix("/deliveries/").and_then(|r| r.strip_suffix("/attempts"))
    {
        if let Some(Some(inject)) = inner.inject_attempt.pop_front() {
            return injected(inject, now);
        }
        let Ok(id) = id.parse::<u64>() else {
            return json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"}));
        };
        let Some(guid) =
            inner.deliveries.iter().find(|d| d["id"] == id).map(|d| d["guid"].as_str().unwrap().to_owned())
        else {
            return json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"}));
        };
        inner.attempts.push(id);
        // GitHub redelivers at once; the receiver's answer becomes a new delivery entry.
        let (status, at) = (inner.receiver_status, inner.now);
        inner.push(&guid, status, at);
        if let Some(newest) = inner.deliveries.first_mut() {
            newest["redelivery"] = json!(true);
        }
        return json_response(StatusCode::ACCEPTED, json!({}));
    }
    json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"}))
}

/// Minutes before `now`.
pub fn ago(now: DateTime<Utc>, minutes: i64) -> DateTime<Utc> {
    now - Duration::minutes(minutes)
}
