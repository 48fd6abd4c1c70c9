//! An open-loop load generator for the webhook over HTTP: signed `pull_request` deliveries
//! (each a new delivery id and PR, so none is a duplicate or stale) sent at a fixed rate per
//! stage. Latency is measured from each request's scheduled send time, so a server that falls
//! behind shows it in the percentiles instead of slowing the generator (no coordinated
//! omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// What one stage achieved.
#[derive(Debug, Clone)]
pub struct Stage {
    pub target_per_second: u32,
    pub sent: u64,
    pub accepted: u64,
    /// Transport errors and answers other than 202.
    pub errors: u64,
    pub achieved_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Stage {
    /// Kept up: no error, and at least 95% of the target rate.
    pub fn sustained(&self) -> bool {
        self.errors == 0 && self.achieved_per_second >= 0.95 * f64::from(self.target_per_second)
    }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A signed, GitHub-shaped `pull_request` delivery: (delivery id, body, signature header).
pub fn delivery(secret: &str, repositories: u64) -> (String, Vec<u8>, String) {
    use hmac::{Hmac, KeyInit, Mac};
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let repo = format!("acme/load-{}", n % repositories.max(1));
    let at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let body = serde_json::json!({
        "action": "opened",
        "number": n + 1,
        "pull_request": {
            "number": n + 1, "state": "open", "draft": false, "merged": false,
            "title": "Load", "body": "x".repeat(2_000),
            "html_url": format!("https://github.com/{repo}/pull/{}", n + 1),
            "updated_at": at, "author_association": "MEMBER", "user": {"login": "octocat"}, "labels": [],
            "head": {"sha": format!("{:040x}", n + 1), "ref": "load", "repo": {"full_name": repo}},
            "base": {"ref": "main", "repo": {"full_name": repo}}
        },
        "repository": {"id": 1, "full_name": repo, "name": repo.split('/').nth(1), "owner": {"login": "acme"}},
        "sender": {"login": "octocat"}
    })
    .to_string()
    .into_bytes();
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    (format!("load-{pid}-{n}"), body, signature)
}

fn unreachable_hmac() -> ! {
    // HMAC takes keys of any length.
    panic!("HMAC-SHA256 refused a key")
}

/// Sends deliveries to `url` at `rate` per second for `duration`; waits for every answer.
pub async fn run_stage(url: &str, secret: &str, rate: u32, duration: Duration) -> Stage {
    let client: Client<HttpConnector, Full<axum::body::Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(HttpConnector::new());
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as u64;
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let (id, body, signature) = delivery(secret, 50);
        let request = http::Request::post(url)
            .header("content-type", "application/json")
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", signature)
            .body(Full::new(axum::body::Bytes::from(body)));
        let (client, latencies, accepted, errors) =
            (client.clone(), Arc::clone(&latencies), Arc::clone(&accepted), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let ok = match request {
                Ok(request) => match client.request(request).await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.into_body().collect().await;
                        status == 202
                    }
                    Err(_) => false,
                },
                Err(_) => false,
            };
            let counter = if ok { &accepted } else { &errors };
            counter.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut l) = latencies.lock() {
                l.push(scheduled.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if latencies.is_empty() { 0.0 } else { latencies[((latencies.len() - 1) as f64 * p).round() as usize] }
    };
    let accepted = accepted.load(Ordering::Relaxed);
    Stage {
        target_per_second: rate,
        sent: total,
        accepted,
        errors: errors.load(Ordering::Relaxed),
        achieved_per_second: accepted as f64 / elapsed.max(f64::EPSILON),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
    }
}

/// One table row.
pub fn row(stage: &Stage) -> String {
    format!(
        "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
        stage.target_per_second,
        stage.sent,
        stage.accepted,
        stage.errors,
        stage.achieved_per_second,
        stage.p50_ms,
        stage.p99_ms,
        stage.max_ms,
        if stage.sustained() { "yes" } else { "no" }
    )
}
