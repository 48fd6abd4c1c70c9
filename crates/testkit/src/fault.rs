//! A fault-injecting HTTP proxy in front of the local AWS emulator: tests point a real SDK
//! client at it and switch faults on and off while the code under test runs. A request is
//! matched by its AWS operation (`X-Amz-Target`, e.g. `DynamoDB_20120810.PutItem`) and,
//! optionally, a fragment of its body (e.g. `rate#` for the rate-window writes only). It also
//! records every request it sees ([`FaultProxy::calls`]): one proxy per principal is how the
//! IAM contract check (`iam`) knows who made which call.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// What a matched request gets instead of the emulator's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An AWS-shaped `ServiceUnavailable` error with this HTTP status (e.g. 503, 500).
    Status(u16),
    /// The emulator's answer, after this many milliseconds (for client timeouts).
    Delay(u64),
    /// No answer, ever, and nothing forwarded: the caller is stuck mid-request (so a test can
    /// kill it there, like a Lambda dying between two calls). Counted in `injected` on arrival.
    Hang,
}

#[derive(Debug, Clone)]
struct Rule {
    /// Matched against the end of `X-Amz-Target` (`PutItem`, `SendMessage`, `GetSecretValue`);
    /// `*` matches every operation.
    operation: String,
    body_contains: Option<String>,
    fault: Fault,
}

impl Rule {
    fn matches(&self, target: &str, body: &[u8]) -> bool {
        let operation = target.rsplit('.').next().unwrap_or(target);
        (self.operation == "*" || self.operation == operation)
            && self.body_contains.as_ref().is_none_or(|needle| contains(body, needle.as_bytes()))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The running proxy. Dropping it leaves the listener task running until the test ends.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`: the endpoint to give the SDK.
    pub endpoint: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    injected: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
    calls: Arc<Mutex<Vec<crate::iam::AwsCall>>>,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream` (the emulator's endpoint).
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let injected = Arc::new(AtomicU64::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let calls: Arc<Mutex<Vec<crate::iam::AwsCall>>> = Arc::default();
        let client: Client<HttpConnector, Full<axum::body::Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let upstream = upstream.trim_end_matches('/').to_owned();
        let state = (Arc::clone(&rules), Arc::clone(&injected), Arc::clone(&forwarded), Arc::clone(&calls));
        let app = axum::Router::new().fallback(move |request: Request| {
            let (rules, injected, forwarded, calls) = state.clone();
            let client = client.clone();
            let upstream = upstream.clone();
            async move {
                let counters = Counters { injected: &injected, forwarded: &forwarded, calls: &calls };
                proxy(request, &rules, counters, &client, &upstream).await
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FaultProxy { endpoint: format!("http://{addr}"), rules, injected, forwarded, calls }
    }

    /// Injects `fault` into every request for `operation` (`*`: all), optionally only those
    /// whose body contains `body_contains`.
    pub fn fail(&self, operation: &str, body_contains: Option<&str>, fault: Fault) {
        self.rules.lock().unwrap().push(Rule {
            operation: operation.to_owned(),
            body_contains: body_contains.map(str::to_owned),
            fault,
        });
    }

    /// Removes every fault: the service is back.
    pub fn heal(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// Removes the faults for requests containing `body_contains` only.
    pub fn heal_matching(&self, body_contains: &str) {
        self.rules.lock().unwrap().retain(|r| r.body_contains.as_deref() != Some(body_contains));
    }

    /// Whether a request for `operation` whose body contains `needle` has arrived.
    pub fn saw(&self, operation: &str, needle: &str) -> bool {
        self.calls.lock().unwrap().iter().any(|c| c.target.ends_with(operation) && c.body.to_string().contains(needle))
    }

    /// Requests answered with a fault so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Requests passed to the emulator so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    /// Every request seen so far (faulted or forwarded), in arrival order.
    pub fn calls(&self) -> Vec<crate::iam::AwsCall> {
        self.calls.lock().unwrap().clone()
    }
}

struct Counters<'a> {
    injected: &'a AtomicU64,
    forwarded: &'a AtomicU64,
    calls: &'a Mutex<Vec<crate::iam::AwsCall>>,
}

async fn proxy(
    request: Request,
    rules: &Mutex<Vec<Rule>>,
    counters: Counters<'_>,
    client: &Client<HttpConnector, Full<axum::body::Bytes>>,
    upstream: &str,
) -> Response {
    let Counters { injected, forwarded, calls } = counters;
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    calls.lock().unwrap().push(crate::iam::AwsCall {
        target: target.clone(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    let fault = rules.lock().unwrap().iter().find(|r| r.matches(&target, &body)).map(|r| r.fault);
    match fault {
        Some(Fault::Status(status)) => {
            injected.fetch_add(1, Ordering::Relaxed);
            let error = serde_json::json!({
                "__type": "ServiceUnavailable",
                "message": format!("injected fault for {target}"),
            });
            return Response::builder()
                .status(status)
                .header("content-type", "application/x-amz-json-1.0")
                .body(Body::from(error.to_string()))
                .unwrap();
        }
        Some(Fault::Delay(ms)) => {
            injected.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        Some(Fault::Hang) => {
            injected.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<()>().await;
        }
        None => {}
    }
    forwarded.fetch_add(1, Ordering::Relaxed);
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut upstream_request = http::Request::builder().method(parts.method.clone()).uri(format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            upstream_request = upstream_request.header(name, value);
        }
    }
    let upstream_request = upstream_request.body(Full::new(body)).unwrap();
    match client.request(upstream_request).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Response::from_parts(parts, Body::from(bytes))
        }
        Err(err) => Response::builder().status(502).body(Body::from(err.to_string())).unwrap(),
    }
}
