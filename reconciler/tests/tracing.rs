//! Traces reach an OpenTelemetry collector over OTLP/HTTP when the standard variables ask for
//! it: a local collector stand-in decodes what the exporter sends (protobuf
//! `ExportTraceServiceRequest`), and the brief's spans are there with the delivery id. One
//! delivery is one trace from the webhook to Ready.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use chrono::Utc;
use kube::api::{Api, PostParams};
use previewd::consumer::{Consumer, Outcome as Consumed};
use previewd::controller::{Context, reconcile_at};
use previewd::crd::{Phase, PreviewEnvironment};
use previewd::github::notify::Notifier;
use previewd::policy::{Decision, decide_offline};
use previewd::telemetry::Telemetry;
use previewd_testkit::otlp::Collector;
use support::github::FakeGitHub;
use tracing::Dispatch;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_with_the_delivery_id() {
    let collector = Collector::start().await;
    let mut telemetry = previewd::telemetry::init_with(|name| match name {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(collector.endpoint.clone()),
        _ => None,
    })
    .unwrap();
    assert!(telemetry.exporting());

    // A reconcile (with the ApplicationSet created), and a PR's files read from GitHub.
    let kube = support::fake_cluster().await;
    let config = support::config();
    let mut event = support::event("opened.json");
    event.pull_request.updated_at = Utc::now();
    let Decision::Upsert(spec) = decide_offline(&event, &config) else { panic!() };
    let mut pe = previewd::render::as_applied(&config, *spec).unwrap();
    pe.status = None;
    pe.metadata.finalizers = Some(vec![previewd::crd::FINALIZER.to_owned()]);
    let pe = Api::<PreviewEnvironment>::all(kube.clone()).create(&PostParams::default(), &pe).await.unwrap();
    let ctx = Context::new(kube, Arc::new(config));
    reconcile_at(&pe, &ctx, Utc::now()).await.unwrap();
    let github = FakeGitHub::start().await;
    github.client().pr_files(Some(1), "acme/shop", 42).await.unwrap();
    let openai = support::openai::FakeOpenAi::start(r#"{"services": []}"#).await;
    let mut ai = support::config().ai;
    ai.base_url = openai.base_url.clone();
    let engine = previewd::ai::engine::AiEngine::new(&ai, "").unwrap();
    let changed = [previewd::ai::excerpt::ChangedFile { path: "web/a.ts".into(), patch: Some("+a".into()) }];
    engine.detect(&support::config().repositories[0], &changed).await.unwrap();

    tokio::task::spawn_blocking(move || telemetry.shutdown()).await.unwrap();
    let spans = collector.spans();
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>()))
    };
    let reconcile = find("reconcile");
    assert_eq!(reconcile.attributes["delivery_id"], event.delivery_id);
    assert_eq!(reconcile.attributes["preview"], "preview-shop-pr-42");
    assert_eq!(reconcile.service, "previewd");
    find("argocd.create_applicationset");
    find("cost.calculate");
    find("github.fetch_diff");
    assert_eq!(find("github.request").attributes["operation"], "list pull request files");
    assert_eq!(find("ai.analyze_code").attributes["model"], "gpt-4o-mini");
}

/// One delivery, one trace, across the queue: the webhook's `delivery` span (service
/// `previewd-webhook`) is the root; the consumer's `event` span continues it from the SQS
/// message's `traceparent`; every reconcile up to Ready is a child of that, and `preview.ready`
/// ends it. A reconcile after Ready starts a trace of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_spans_front_to_ready() {
    const SECRET: &str = "trace-secret";
    const NAME: &str = "preview-shop-pr-42";
    let collector = Collector::start().await;
    let otlp = |name: &str| (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| collector.endpoint.clone());
    // Two processes' exporters in one test: each part runs under its own subscriber.
    let mut front_traces = Telemetry::from_lookup(&otlp, "previewd-webhook").unwrap();
    let front = Dispatch::new(tracing_subscriber::registry().with(front_traces.layer("previewd-webhook")));
    let mut back_traces = Telemetry::from_lookup(&otlp, "previewd").unwrap();
    let back = Dispatch::new(tracing_subscriber::registry().with(back_traces.layer("previewd")));

    // GitHub delivers; the webhook enqueues the event with its span's traceparent.
    let stack = previewd_testkit::Stack::new("trace").await;
    let payload = previewd_testkit::pr_payload("opened", "acme/shop", 42);
    let head_sha = payload["pull_request"]["head"]["sha"].as_str().unwrap().to_owned();
    let body = payload.to_string().into_bytes();
    let signature = previewd_webhook::signature::sign(SECRET.as_bytes(), &body);
    let delivery = previewd_webhook::Delivery {
        event: Some("pull_request"),
        delivery_id: Some("trace-delivery-1"),
        signature: Some(&signature),
        content_type: Some("application/json"),
        body: &body,
    };
    let reply = support::front(&stack, SECRET).handle(&delivery).with_subscriber(front.clone()).await;
    assert_eq!(reply.outcome, previewd_webhook::Outcome::Accepted, "{reply:?}");

    // The reconciler takes it off the queue; reconciles bring the preview to Ready.
    let kube = support::fake_cluster().await;
    let github = FakeGitHub::start().await;
    github.lock().files = vec![serde_json::json!({"filename": "web/a.ts", "status": "modified"})];
    let config = Arc::new(support::config());
    let notifier = Arc::new(Notifier::new(Arc::new(github.client()), config.github.clone()));
    let mut consumer = Consumer::new(stack.sqs.clone(), stack.queue_url.clone(), kube.clone(), Arc::clone(&config))
        .with_github(Arc::clone(&notifier));
    consumer.wait_seconds = 1;
    let outcomes = consumer.poll_once().with_subscriber(back.clone()).await.unwrap();
    assert_eq!(outcomes, vec![Consumed::Applied { name: NAME.into() }]);
    let ctx = Context::new(kube.clone(), Arc::clone(&config)).with_github(notifier);
    let api = Api::<PreviewEnvironment>::all(kube.clone());
    let reconcile = || async {
        let pe = api.get(NAME).await.unwrap();
        reconcile_at(&pe, &ctx, Utc::now()).with_subscriber(back.clone()).await.unwrap();
    };
    // The finalizer, the preview's objects, then (the Application healthy) Ready.
    reconcile().await;
    reconcile().await;
    support::healthy_application(&kube, NAME, "web", &head_sha).await;
    reconcile().await;
    let status = api.get(NAME).await.unwrap().status.unwrap();
    assert_eq!(status.phase, Some(Phase::Ready));
    reconcile().await;

    tokio::task::spawn_blocking(move || {
        front_traces.shutdown();
        back_traces.shutdown();
    })
    .await
    .unwrap();
    let spans = collector.spans();
    let named = |name: &'static str| spans.iter().filter(move |s| s.name == name);
    let only = |name: &'static str| {
        let found: Vec<_> = named(name).collect();
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        found[0].clone()
    };
    let root = only("delivery");
    assert_eq!((root.service.as_str(), root.parent_span_id.as_str()), ("previewd-webhook", ""));
    assert_eq!(root.attributes["delivery_id"], "trace-delivery-1");
    let event = only("event");
    assert_eq!((event.service.as_str(), event.attributes["delivery_id"].as_str()), ("previewd", "trace-delivery-1"));
    assert_eq!((&event.trace_id, &event.parent_span_id), (&root.trace_id, &root.span_id), "continued from SQS");
    let (in_trace, after): (Vec<_>, Vec<_>) = named("reconcile").partition(|s| s.trace_id == root.trace_id);
    assert_eq!(in_trace.len(), 3, "every reconcile up to Ready: {in_trace:?}");
    assert!(in_trace.iter().all(|s| s.parent_span_id == event.span_id), "{in_trace:?}");
    assert_eq!(after.len(), 1, "the reconcile after Ready starts its own trace");
    let ready = only("preview.ready");
    assert_eq!(ready.trace_id, root.trace_id);
    assert!(in_trace.iter().any(|s| s.span_id == ready.parent_span_id), "{ready:?}");
    let services: std::collections::BTreeSet<&str> =
        spans.iter().filter(|s| s.trace_id == root.trace_id).map(|s| s.service.as_str()).collect();
    assert_eq!(services, ["previewd", "previewd-webhook"].into());
}
