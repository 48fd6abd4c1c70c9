//! Credentials never reach the reconciler's logs or errors: canary values for the AI key and
//! the GitHub App's private key (and the installation tokens minted from it) while GitHub and
//! the AI endpoint fail in the ways that produce the most log lines (outages, refusals), with
//! every `previewd` log at TRACE. The webhook's secret has its own canary test over HTTP
//! (`functions/webhook/tests/http.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kube::api::Api;
use previewd::ai::engine::AiEngine;
use previewd::consumer::Consumer;
use previewd::controller::{Context, reconcile_at};
use previewd::crd::PreviewEnvironment;
use previewd::github::notify::Notifier;
use serde_json::json;
use support::github::FakeGitHub;
use support::openai::{FakeOpenAi, Reply};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn no_credential_appears_in_logs_or_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter("previewd=trace,info")
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let ai_key = format!("sk-canary-{}", std::process::id());
    let github = FakeGitHub::start().await;
    github.lock().files = vec![json!({"filename": "web/a.ts", "status": "modified", "patch": "+x"})];
    let ai = FakeOpenAi::start("{}").await;
    let mut config = support::config();
    config.ai.enabled = true;
    config.ai.base_url = ai.base_url.clone();
    config.ai.timeout = Duration::from_secs(2);
    let config = Arc::new(config);
    let kube = support::fake_cluster().await;
    let notifier = Arc::new(Notifier::new(Arc::new(github.client()), config.github.clone()));
    let consumer = Consumer::new(support::unused_sqs(), "unused".into(), kube.clone(), Arc::clone(&config))
        .with_github(Arc::clone(&notifier))
        .with_ai(Arc::new(AiEngine::new(&config.ai, &ai_key).unwrap()));
    let ctx = Context::new(kube.clone(), Arc::clone(&config)).with_github(Arc::clone(&notifier));

    let mut event = support::event("opened.json");
    event.pull_request.updated_at = Utc::now();
    let mut outcomes = Vec::new();
    // GitHub down: the files cannot be read.
    github.lock().outage = Some(502);
    outcomes.push(consumer.handle_event(&event).await);
    // GitHub back, the AI endpoint refuses the key, then is down.
    github.lock().outage = None;
    ai.reply(Reply::Error(401, "Incorrect API key provided"));
    event.pull_request.updated_at = Utc::now() + chrono::Duration::seconds(1);
    event.pull_request.head_sha = "2".repeat(40);
    outcomes.push(consumer.handle_event(&event).await);
    ai.reply(Reply::Error(503, "overloaded"));
    event.pull_request.updated_at = Utc::now() + chrono::Duration::seconds(2);
    event.pull_request.head_sha = "3".repeat(40);
    outcomes.push(consumer.handle_event(&event).await);
    // The controller's updates meet a refusal and an outage.
    let api = Api::<PreviewEnvironment>::all(kube.clone());
    for _ in ["add the finalizer", "build the preview"] {
        reconcile_at(&api.get("preview-shop-pr-42").await.unwrap(), &ctx, Utc::now()).await.unwrap();
    }
    github.lock().outage = Some(401);
    notifier.flush(true).await;
    github.lock().outage = Some(503);
    notifier.flush(true).await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let outcomes = format!("{outcomes:?}");
    assert!(logs.lines().count() >= 6, "not vacuous: the run logged ({} lines)", logs.lines().count());
    assert!(logs.contains("502") && logs.contains("401"), "the failures were logged:\n{logs}");
    let tokens: Vec<String> = github.lock().tokens_minted.iter().map(|(_, t)| t.clone()).collect();
    assert!(!tokens.is_empty(), "installation tokens were minted");
    let key_lines: Vec<&str> = github.private_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut secrets: Vec<&str> = vec![ai_key.as_str()];
    secrets.extend(tokens.iter().map(String::as_str));
    secrets.extend(key_lines.iter().copied());
    for secret in secrets {
        assert!(!logs.contains(secret), "a credential leaked into the logs");
        assert!(!outcomes.contains(secret), "a credential leaked into an outcome");
    }
}
