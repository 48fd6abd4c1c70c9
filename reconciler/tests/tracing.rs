//! Traces reach an OpenTelemetry collector over OTLP/HTTP when the standard variables ask for
//! it: a local collector stand-in decodes what the exporter sends (protobuf
//! `ExportTraceServiceRequest`), and the brief's spans are there with the delivery id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use chrono::Utc;
use kube::api::{Api, PostParams};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use previewd::controller::{Context, reconcile_at};
use previewd::crd::PreviewEnvironment;
use previewd::policy::{Decision, decide_offline};
use prost::Message;
use support::github::FakeGitHub;

/// (span name, attributes, service name) of every span received.
type Received = Arc<Mutex<Vec<(String, HashMap<String, String>, String)>>>;

async fn collector() -> (String, Received) {
    let received: Received = Arc::default();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                let request = ExportTraceServiceRequest::decode(body).unwrap();
                for resource_spans in request.resource_spans {
                    let service = resource_spans
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| a.value.as_ref()?.value.clone())
                        .map(|v| match v {
                            AnyValue::StringValue(s) => s,
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_default();
                    for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                        let attributes = span
                            .attributes
                            .into_iter()
                            .map(|a| {
                                let value = match a.value.and_then(|v| v.value) {
                                    Some(AnyValue::StringValue(s)) => s,
                                    other => format!("{other:?}"),
                                };
                                (a.key, value)
                            })
                            .collect();
                        sink.lock().unwrap().push((span.name, attributes, service.clone()));
                    }
                }
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_with_the_delivery_id() {
    let (endpoint, received) = collector().await;
    let mut telemetry = previewd::telemetry::init_with(|name| match name {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(endpoint.clone()),
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
    let spans = received.lock().unwrap().clone();
    let find = |name: &str| {
        spans
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no {name} span in {:?}", spans.iter().map(|s| &s.0).collect::<Vec<_>>()))
    };
    let (_, reconcile, service) = find("reconcile");
    assert_eq!(reconcile["delivery_id"], event.delivery_id);
    assert_eq!(reconcile["preview"], "preview-shop-pr-42");
    assert_eq!(service, "previewd");
    find("argocd.create_applicationset");
    find("cost.calculate");
    find("github.fetch_diff");
    assert_eq!(find("github.request").1["operation"], "list pull request files");
    assert_eq!(find("ai.analyze_code").1["model"], "gpt-4o-mini");
}
