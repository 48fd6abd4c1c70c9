//! The AI engine against a local stand-in for an OpenAI-compatible chat-completions endpoint:
//! a valid answer, unknown names dropped, malformed answers, a timeout, 429 and 500, each time
//! falling back to the path globs; a cache hit on the second identical diff; the request rate
//! limit under a burst; nothing secret or ignored in what is sent. Then the whole consumer
//! with GitHub and AI stand-ins.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::Api;
use previewd::ai::engine::{AiEngine, AiError};
use previewd::ai::excerpt::ChangedFile;
use previewd::config::{AiMode, Config};
use previewd::consumer::{Consumer, Outcome};
use previewd::crd::{PreviewEnvironment, SelectedBy};
use previewd::github::notify::Notifier;
use previewd::metrics::Metrics;
use serde_json::json;
use support::github::FakeGitHub;
use support::openai::{FakeOpenAi, Reply};

const ANSWER: &str = r#"{"services": [{"name": "api", "confidence": 0.9, "reason": "cart handler changed"}], "tests": ["api-integration"]}"#;

fn config(base_url: &str) -> Config {
    let mut config = support::config();
    config.ai.enabled = true;
    config.ai.base_url = base_url.to_owned();
    config.ai.model = "test-model".into();
    config.ai.timeout = Duration::from_secs(2);
    config.ai.features.test_selection = true;
    config.repositories[0].test_suites = vec!["api-integration".into(), "web-e2e".into()];
    config
}

fn engine(config: &Config, metrics: &Metrics) -> AiEngine {
    AiEngine::new(&config.ai, "sk-test-key").unwrap().with_metrics(metrics.clone())
}

fn change(path: &str, patch: &str) -> ChangedFile {
    ChangedFile { path: path.into(), patch: Some(patch.into()) }
}

fn files() -> Vec<ChangedFile> {
    vec![
        change("api/handlers/cart.go", "@@ -10,3 +10,4 @@\n+\treturn cart.Total()\n+password = \"hunter2hunter2\""),
        change("package-lock.json", "+    \"left-pad\": \"1.3.0\""),
    ]
}

#[tokio::test]
async fn a_valid_answer_is_used_and_what_is_sent_is_bounded_and_clean() {
    let ai = FakeOpenAi::start(ANSWER).await;
    let (config, metrics) = (config(&ai.base_url), Metrics::new().unwrap());
    let engine = engine(&config, &metrics);
    let detection = engine.detect(&config.repositories[0], &files()).await.unwrap();
    assert!(!detection.cached);
    assert_eq!(detection.answer.services[0].name, "api");
    assert_eq!(detection.answer.tests, ["api-integration"]);

    let request = ai.lock().requests[0].clone();
    assert_eq!(request["model"], "test-model");
    assert_eq!(request["response_format"], json!({"type": "json_object"}));
    assert_eq!(request["messages"][0]["content"], previewd::ai::PROMPT);
    let user = request["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("api/handlers/cart.go") && user.contains("return cart.Total()"), "{user}");
    assert!(user.contains("package-lock.json"), "names are listed");
    assert!(!user.contains("left-pad"), "lockfile diffs are not sent");
    assert!(!user.contains("hunter2"), "credential-like lines are not sent");
    assert!(!request.to_string().contains("sk-test-key"), "the key is a header, never content");

    let text = metrics.render();
    assert!(text.contains(r#"previewd_ai_requests_total{cache_hit="false",provider="openai"} 1"#), "{text}");
    assert!(text.contains(r#"previewd_ai_tokens_total{kind="input"} 1200"#), "{text}");
    // 1200 input tokens at $0.15/M + 80 output at $0.60/M.
    let cost = 1200.0 * 0.15 / 1e6 + 80.0 * 0.60 / 1e6;
    assert!(text.contains(&format!("previewd_ai_cost_usd_total {cost}")), "{text}");
}

#[tokio::test]
async fn every_failure_is_an_error_the_path_globs_answer() {
    let ai = FakeOpenAi::start(ANSWER).await;
    let (config, metrics) = (config(&ai.base_url), Metrics::new().unwrap());
    let engine = engine(&config, &metrics);
    let repo = &config.repositories[0];
    let cases: Vec<(Reply, &str)> = vec![
        (Reply::Content("Sure! The api service changed.".into()), "malformed"),
        (Reply::Content(r#"{"services": [{"name": "api"}]}"#.into()), "malformed"),
        (Reply::Error(429, "Rate limit reached for requests"), "api"),
        (Reply::Error(500, "The server had an error"), "api"),
        (Reply::Error(503, "Overloaded"), "api"),
        (Reply::Delay(Duration::from_secs(4)), "timeout"),
    ];
    for (i, (reply, label)) in cases.into_iter().enumerate() {
        ai.reply(reply.clone());
        // A different diff each time, so the cache does not answer.
        let files = vec![change(&format!("api/x{i}.go"), "+x")];
        let err = engine.detect(repo, &files).await.unwrap_err();
        assert_eq!(err.label(), label, "{reply:?}: {err}");
    }
    assert_eq!(ai.requests(), 6, "no retries behind our back");
    let text = metrics.render();
    assert!(text.contains(r#"previewd_ai_failures_total{reason="api"} 3"#), "{text}");

    // Unknown names are dropped, not failures.
    ai.reply(Reply::Content(r#"{"services": [{"name": "billing", "confidence": 1.0, "reason": ""}, {"name": "web", "confidence": 0.8, "reason": ""}]}"#.into()));
    let detection = engine.detect(repo, &[change("web/a.ts", "+a")]).await.unwrap();
    assert_eq!(detection.answer.services.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["web"]);
    assert_eq!(detection.answer.dropped, ["billing"]);
}

#[tokio::test]
async fn the_same_diff_is_answered_from_the_cache() {
    let ai = FakeOpenAi::start(ANSWER).await;
    let (config, metrics) = (config(&ai.base_url), Metrics::new().unwrap());
    let engine = engine(&config, &metrics);
    let repo = &config.repositories[0];
    assert!(!engine.detect(repo, &files()).await.unwrap().cached);
    assert!(engine.detect(repo, &files()).await.unwrap().cached);
    assert_eq!(ai.requests(), 1);
    // Another model is another question.
    let mut other = config.clone();
    other.ai.model = "other-model".into();
    let other_engine = AiEngine::new(&other.ai, "").unwrap();
    assert!(!other_engine.detect(repo, &files()).await.unwrap().cached);
    assert!(metrics.render().contains(r#"previewd_ai_requests_total{cache_hit="true",provider="openai"} 1"#));
    // Past the TTL the question is asked again.
    let mut short = config.clone();
    short.ai.cache_ttl = Duration::from_millis(50);
    let short_engine = AiEngine::new(&short.ai, "").unwrap();
    short_engine.detect(repo, &files()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(!short_engine.detect(repo, &files()).await.unwrap().cached);
}

#[tokio::test]
async fn the_request_rate_limit_holds_under_a_burst() {
    let ai = FakeOpenAi::start(ANSWER).await;
    let mut config = config(&ai.base_url);
    config.ai.requests_per_minute = 3;
    let engine = Arc::new(engine(&config, &Metrics::new().unwrap()));
    let repo = Arc::new(config.repositories[0].clone());
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let (engine, repo) = (Arc::clone(&engine), Arc::clone(&repo));
            tokio::spawn(async move { engine.detect(&repo, &[change(&format!("api/f{i}.go"), "+x")]).await })
        })
        .collect();
    let mut limited = 0;
    for task in burst {
        match task.await.unwrap() {
            Ok(_) => {}
            Err(AiError::RateLimited(wait)) => {
                assert!(wait <= Duration::from_secs(60));
                limited += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((ai.requests(), limited), (3, 17));
}

/// The consumer with GitHub (files and patches) and AI stand-ins.
async fn with_stand_ins(config: Config) -> (Consumer, FakeGitHub, kube::Client) {
    let github = FakeGitHub::start().await;
    github.lock().files = vec![
        json!({"filename": "web/src/cart.tsx", "status": "modified", "patch": "@@ -1 +1 @@\n-total\n+cart.total()"}),
        json!({"filename": "yarn.lock", "status": "modified", "patch": "+left-pad@1.3.0"}),
    ];
    let kube = support::fake_cluster().await;
    let config = Arc::new(config);
    let notifier = Arc::new(Notifier::new(Arc::new(github.client()), config.github.clone()));
    let engine = Arc::new(AiEngine::new(&config.ai, "").unwrap());
    let consumer = Consumer::new(support::unused_sqs(), "unused".into(), kube.clone(), Arc::clone(&config))
        .with_github(notifier)
        .with_ai(engine);
    (consumer, github, kube)
}

fn event(delivery: &str) -> previewd_events::PreviewEvent {
    let mut e = support::event("opened.json");
    e.pull_request.updated_at = Utc::now();
    e.received_at = Utc::now();
    e.delivery_id = delivery.into();
    e
}

#[tokio::test]
async fn the_consumer_merges_the_ai_answer_or_falls_back_to_the_paths() {
    let ai = FakeOpenAi::start(ANSWER).await;
    let (consumer, _github, kube) = with_stand_ins(config(&ai.base_url)).await;
    let api: Api<PreviewEnvironment> = Api::all(kube);
    assert!(matches!(consumer.handle_event(&event("d1")).await, Outcome::Applied { .. }));
    let spec = api.get("preview-shop-pr-42").await.unwrap().spec;
    assert_eq!(spec.services, ["web", "api"], "addOnly: the path globs' web, plus the AI's api");
    let selection = spec.selection.unwrap();
    assert_eq!(selection.by, SelectedBy::PathsAndAi);
    let verdict = selection.ai.unwrap();
    assert_eq!(
        (verdict.added.as_slice(), verdict.tests.as_slice()),
        (&["api".to_owned()][..], &["api-integration".to_owned()][..])
    );
    assert_eq!(verdict.services, ["api (0.90)"]);
    let user = ai.lock().requests[0]["messages"][1]["content"].as_str().unwrap().to_owned();
    assert!(user.contains("cart.total()") && !user.contains("left-pad"), "{user}");

    // Each failure: the path globs decide, and the status says why the AI was not used.
    let failures = [
        Reply::Content("not json".into()),
        Reply::Error(429, "Rate limit reached"),
        Reply::Error(500, "The server had an error"),
        Reply::Delay(Duration::from_secs(4)),
    ];
    for (i, failure) in failures.into_iter().enumerate() {
        let mut config = config(&ai.base_url);
        config.ai.cache_ttl = Duration::from_millis(1);
        let (consumer, _github, kube) = with_stand_ins(config).await;
        ai.reply(failure.clone());
        let outcome = consumer.handle_event(&event(&format!("f{i}"))).await;
        assert!(matches!(outcome, Outcome::Applied { .. }), "{failure:?}: {outcome:?}");
        let spec = Api::<PreviewEnvironment>::all(kube).get("preview-shop-pr-42").await.unwrap().spec;
        assert_eq!(spec.services, ["web"], "{failure:?}");
        let selection = spec.selection.unwrap();
        assert_eq!(selection.by, SelectedBy::Paths);
        assert!(selection.ai.unwrap().error.is_some(), "{failure:?}");
    }

    // staticOnly: the AI may suggest tests but never changes the services.
    let mut config = config(&ai.base_url);
    config.ai.mode = AiMode::StaticOnly;
    let (consumer, _github, kube) = with_stand_ins(config).await;
    consumer.handle_event(&event("s1")).await;
    let spec = Api::<PreviewEnvironment>::all(kube).get("preview-shop-pr-42").await.unwrap().spec;
    assert_eq!(spec.services, ["web"]);
    assert_eq!(spec.selection.unwrap().ai.unwrap().tests, ["api-integration"]);
}

#[tokio::test]
async fn quiet_prs_get_a_predicted_shorter_ttl() {
    let ai = FakeOpenAi::start(ANSWER).await;
    let mut config = config(&ai.base_url);
    config.ai.features.ttl_prediction = true;
    let (consumer, github, kube) = with_stand_ins(config).await;
    github.lock().pull = Some(json!({
        "number": 42, "commits": 1, "comments": 0, "review_comments": 0,
        "created_at": (Utc::now() - chrono::Duration::days(10)).to_rfc3339()
    }));
    consumer.handle_event(&event("t1")).await;
    let spec = Api::<PreviewEnvironment>::all(kube).get("preview-shop-pr-42").await.unwrap().spec;
    let prediction = spec.ttl_prediction.unwrap();
    assert_eq!(prediction.idle_seconds, 7200, "half of the 4 h idle TTL");
    assert_eq!(prediction.reason, "1 commits and 0 comments in 10 days");
}

#[tokio::test]
async fn the_evaluation_harness_scores_the_labelled_set() {
    let text = std::fs::read_to_string(support::root().join("docs/eval/service-detection.yaml")).unwrap();
    let data = previewd::ai::eval::load(&text).unwrap();
    assert!(data.cases.len() >= 20);
    let paths = previewd::ai::eval::score_static(&data).unwrap();
    // The figures docs/ai.md reports are the ones this code computes.
    let docs = std::fs::read_to_string(support::root().join("docs/ai.md")).unwrap();
    let static_row = previewd::ai::eval::row("path globs", &paths);
    assert!(docs.contains(&static_row), "docs/ai.md lacks {static_row:?}");

    // Plumbing with an oracle stand-in (it answers each case's label): what the AI adds or
    // decides flows into the score. (Not a model's quality: docs/ai.md says how to measure one.)
    let ai = FakeOpenAi::start(r#"{"services": []}"#).await;
    let queue_labels = |ai: &FakeOpenAi| {
        for case in &data.cases {
            let picks: Vec<_> =
                case.expected.iter().map(|s| json!({"name": s, "confidence": 0.9, "reason": "label"})).collect();
            ai.reply(Reply::Content(json!({"services": picks}).to_string()));
        }
    };
    let mut ai_config = config(&ai.base_url).ai;
    ai_config.requests_per_minute = 1000;
    queue_labels(&ai);
    let engine = AiEngine::new(&ai_config, "").unwrap();
    let add = previewd::ai::eval::score_with_ai(&data, &engine, AiMode::AddOnly, 0.7).await.unwrap();
    assert_eq!((add.recall(), add.fallbacks), (1.0, 0));
    assert!(add.predicted >= paths.predicted, "addOnly never removes a service the globs chose");
    queue_labels(&ai);
    let engine = AiEngine::new(&ai_config, "").unwrap();
    let decide = previewd::ai::eval::score_with_ai(&data, &engine, AiMode::DecideAbove, 0.7).await.unwrap();
    assert!(decide.exact > paths.exact && decide.precision() > paths.precision(), "{decide:?} vs {paths:?}");
}

#[tokio::test]
async fn the_model_is_told_what_the_build_graph_found() {
    let ai = FakeOpenAi::start(ANSWER).await;
    let (config, metrics) = (config(&ai.base_url), Metrics::new().unwrap());
    let engine = engine(&config, &metrics);
    let evidence = ["shared/money/money.go -> Go package shared/money imported by api".to_owned()];
    engine.detect_with_evidence(&config.repositories[0], &files(), &evidence, None).await.unwrap();
    engine.detect(&config.repositories[0], &files()).await.unwrap();
    let requests = ai.lock().requests.clone();
    assert_eq!(requests.len(), 2, "evidence is part of what is cached: a different question");
    let with = requests[0]["messages"][1]["content"].as_str().unwrap();
    assert!(
        with.contains("Build graph evidence (how changed files reach services):\n- shared/money/money.go -> Go package shared/money imported by api"),
        "{with}"
    );
    let without = requests[1]["messages"][1]["content"].as_str().unwrap();
    assert!(!without.contains("Build graph evidence"), "{without}");
}
