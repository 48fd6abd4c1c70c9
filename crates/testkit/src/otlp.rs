//! An OpenTelemetry collector stand-in: serves OTLP/HTTP `POST /v1/traces`, decodes what an
//! exporter sends (protobuf `ExportTraceServiceRequest`), and keeps every span.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

/// One span as the collector received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub name: String,
    /// `service.name` of the resource that sent it.
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: HashMap<String, String>,
}

/// The running stand-in.
#[derive(Debug, Clone)]
pub struct Collector {
    /// `http://127.0.0.1:<port>`: what `OTEL_EXPORTER_OTLP_ENDPOINT` takes.
    pub endpoint: String,
    received: Arc<Mutex<Vec<Span>>>,
}

fn text(value: Option<AnyValue>) -> String {
    match value.and_then(|v| v.value) {
        Some(Value::StringValue(s)) => s,
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

impl Collector {
    pub async fn start() -> Collector {
        let received: Arc<Mutex<Vec<Span>>> = Arc::default();
        let sink = Arc::clone(&received);
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let sink = Arc::clone(&sink);
                async move {
                    let request = ExportTraceServiceRequest::decode(body).unwrap();
                    let mut spans = Vec::new();
                    for resource_spans in request.resource_spans {
                        let service = resource_spans
                            .resource
                            .into_iter()
                            .flat_map(|r| r.attributes)
                            .find(|a| a.key == "service.name")
                            .map(|a| text(a.value))
                            .unwrap_or_default();
                        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                            spans.push(Span {
                                name: span.name,
                                service: service.clone(),
                                trace_id: hex::encode(span.trace_id),
                                span_id: hex::encode(span.span_id),
                                parent_span_id: hex::encode(span.parent_span_id),
                                attributes: span.attributes.into_iter().map(|a| (a.key, text(a.value))).collect(),
                            });
                        }
                    }
                    sink.lock().unwrap().extend(spans);
                    ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Collector { endpoint, received }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until a span named `name` arrived.
    pub async fn wait_for(&self, name: &str) -> Span {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(span) = self.spans().into_iter().find(|s| s.name == name) {
                return span;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {name} span; received {:?}",
                self.spans().iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
