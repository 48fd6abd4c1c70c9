//! Over HTTP through the real `lambda_http` adapter: the `webhook` binary runs against
//! cargo-lambda's local Lambda runtime API (as on AWS, behind a Function URL), with its own
//! resources in the local AWS emulator. Also hand-written API Gateway events with base64 bodies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageSystemAttributeName;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use previewd_events::{Message, PreviewEvent};
use previewd_webhook::{Outcome, Prepared, lambda, prepare};
use serde_json::{Value, json};
use support::{SECRET, Signed, Stack, WebhookStack, new_delivery_id, pr_payload};

/// Stops the child processes when the test ends, also on failure: the runtime API emulator
/// first, so the function sees its runtime API go away and exits by itself (as it does when
/// Lambda retires an environment), and is killed only if it does not within 5 s.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for (i, child) in self.0.iter_mut().enumerate() {
            if i > 0 {
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts cargo-lambda's runtime API emulator and the `webhook` binary; returns the invoke URL.
async fn start_webhook(stack: &Stack, rate_limit: u32) -> (Processes, String) {
    let (processes, url, _) = start_webhook_with(stack, rate_limit, &[]).await;
    (processes, url)
}

/// As [`start_webhook`], with extra environment; also returns the path of the function's log.
async fn start_webhook_with(
    stack: &Stack,
    rate_limit: u32,
    extra_env: &[(&str, &str)],
) -> (Processes, String, std::path::PathBuf) {
    let port = free_port();
    let function_logs = std::env::temp_dir().join(format!("previewd-http-{port}-function.log"));
    let logs = std::env::temp_dir().join(format!("previewd-http-{port}.log"));
    // The project's own cargo-lambda (infra/setup.sh), else one on PATH.
    let venv_bin = support::workspace_root().join(".venv/bin");
    let program =
        if venv_bin.join("cargo-lambda").exists() { venv_bin.join("cargo-lambda") } else { "cargo-lambda".into() };
    let path = format!("{}:{}", venv_bin.display(), std::env::var("PATH").unwrap_or_default());
    let emulator = Command::new(program)
        .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
        .env("PATH", path)
        .current_dir(support::workspace_root())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&logs).unwrap())
        .spawn()
        .expect("cargo-lambda is needed (infra/setup.sh installs it into .venv/bin; put that on PATH)");
    let mut processes = Processes(vec![emulator]);
    let base = format!("http://127.0.0.1:{port}");
    wait_for_port(port, &logs, &mut processes.0[0]).await;
    let function = Command::new(env!("CARGO_BIN_EXE_webhook"))
        .envs(stack.env(rate_limit))
        .env("AWS_LAMBDA_RUNTIME_API", format!("{base}/.rt"))
        // cargo-lambda's API-only mode serves the function named `_`.
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_ENDPOINT_URL", support::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .envs(extra_env.iter().copied())
        .stdout(std::fs::File::create(&function_logs).unwrap())
        .stderr(std::fs::File::create(function_logs.with_extension("stderr")).unwrap())
        .spawn()
        .unwrap();
    processes.0.push(function);
    (processes, format!("{base}/lambda-url/_/"), function_logs)
}

async fn wait_for_port(port: u16, logs: &std::path::Path, emulator: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if let Ok(Some(status)) = emulator.try_wait() {
            panic!("cargo lambda watch exited ({status}): {}", std::fs::read_to_string(logs).unwrap_or_default());
        }
        assert!(
            Instant::now() < deadline,
            "cargo lambda watch did not listen on {port}: {}",
            std::fs::read_to_string(logs).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    json: Value,
}

async fn post(url: &str, signed: &Signed) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = hyper::Request::post(url)
        .header("content-type", &signed.content_type)
        .header("X-GitHub-Event", &signed.event)
        .header("X-GitHub-Delivery", &signed.id)
        .header("X-Hub-Signature-256", &signed.signature)
        .header("User-Agent", "GitHub-Hookshot/test")
        .body(Full::new(Bytes::from(signed.body.clone())))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .expect("the function did not answer in 30 s")
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body)));
    Answer { status, retry_after, json }
}

#[tokio::test]
async fn signed_deliveries_over_http_get_the_documented_answers() {
    let stack = Stack::new("http").await;
    // A duplicate counts against the window too (both DynamoDB writes run concurrently), so the
    // third distinct delivery is the fourth hit.
    let (_processes, url) = start_webhook(&stack, 3).await;

    // JSON body.
    let first = Signed::json("pull_request", &new_delivery_id(), &pr_payload("opened", "acme/web", 4));
    let answer = post(&url, &first).await;
    assert_eq!(answer.status, 202, "{}", answer.json);
    assert_eq!(answer.json["outcome"], "accepted");
    assert_eq!(answer.json["delivery"], first.id.as_str());

    // The same delivery again.
    let answer = post(&url, &first).await;
    assert_eq!((answer.status, answer.json["outcome"].as_str()), (200, Some("duplicate")));

    // Form-encoded body (arrives base64-encoded through the Function URL event).
    let form = Signed::form("pull_request", &new_delivery_id(), &pr_payload("synchronize", "acme/web", 4));
    let answer = post(&url, &form).await;
    assert_eq!(answer.status, 202, "{}", answer.json);

    // Over the per-repository limit of 3.
    let third = Signed::json("pull_request", &new_delivery_id(), &pr_payload("labeled", "acme/web", 4));
    let answer = post(&url, &third).await;
    // Limited, unless the minute rolled over between the requests.
    if answer.status == 429 {
        let seconds: u64 = answer.retry_after.as_deref().unwrap().parse().unwrap();
        assert!((1..=60).contains(&seconds));
        assert_eq!(answer.json["outcome"], "rate_limited");
        assert_eq!(answer.json["retry_after"], seconds);
    } else {
        assert_eq!(answer.status, 202, "{}", answer.json);
    }

    // Bad signature, ping, ignored event, malformed payload.
    let mut forged = Signed::json("pull_request", &new_delivery_id(), &pr_payload("opened", "acme/web", 5));
    forged.body.push(b' ');
    let answer = post(&url, &forged).await;
    assert_eq!((answer.status, answer.json["outcome"].as_str()), (401, Some("unauthorized")));
    let ping = Signed::json("ping", &new_delivery_id(), &json!({"zen": "Approachable is better than simple."}));
    assert_eq!(post(&url, &ping).await.status, 200);
    let push = Signed::json("push", &new_delivery_id(), &json!({"ref": "refs/heads/main"}));
    let answer = post(&url, &push).await;
    assert_eq!((answer.status, answer.json["outcome"].as_str()), (200, Some("ignored")));
    let broken = Signed::json("pull_request", &new_delivery_id(), &json!({"action": "opened", "number": 1}));
    let answer = post(&url, &broken).await;
    assert_eq!(answer.status, 400);
    assert!(answer.json["reason"].as_str().unwrap().contains("pull_request"), "{}", answer.json);

    let messages = stack.drain().await;
    let ids: Vec<String> =
        messages.iter().map(|m| PreviewEvent::from_json(m.body().unwrap()).unwrap().delivery_id).collect();
    assert!(ids.contains(&first.id) && ids.contains(&form.id), "{ids:?}");
    assert_eq!(ids.iter().filter(|id| **id == first.id).count(), 1);
}

/// The build gate's events and `/preview` commands take the same path as pull requests: signed,
/// deduplicated, onto the queue as version-2 messages in their own FIFO groups.
#[tokio::test]
async fn check_and_command_deliveries_reach_the_queue_over_http() {
    let stack = Stack::new("httpv2").await;
    let (_processes, url) = start_webhook(&stack, 100).await;
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let sha = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
    let repository = pr_payload("opened", "acme/web", 4)["repository"].clone();
    let check_run = json!({
        "action": "completed", "repository": repository,
        "check_run": {"head_sha": sha, "name": "build-images", "status": "completed", "conclusion": "success",
                      "completed_at": now, "pull_requests": [{"number": 4}]}
    });
    let status =
        json!({"sha": sha, "context": "ci/e2e", "state": "failure", "updated_at": now, "repository": repository});
    let comment = json!({
        "action": "created", "repository": repository,
        "issue": {"number": 4, "pull_request": {"url": "https://api.github.com/repos/acme/web/pulls/4"}},
        "comment": {"id": 77, "body": "/preview extend 2d", "user": {"login": "reviewer"}, "created_at": now}
    });
    let run = Signed::json("check_run", &new_delivery_id(), &check_run);
    let statused = Signed::form("status", &new_delivery_id(), &status);
    let command = Signed::json("issue_comment", &new_delivery_id(), &comment);
    for signed in [&run, &statused, &command] {
        let answer = post(&url, signed).await;
        assert_eq!((answer.status, answer.json["outcome"].as_str()), (202, Some("accepted")), "{}", answer.json);
    }
    let again = post(&url, &run).await;
    assert_eq!((again.status, again.json["outcome"].as_str()), (200, Some("duplicate")));
    let mut unfinished = check_run.clone();
    unfinished["action"] = json!("created");
    let answer = post(&url, &Signed::json("check_run", &new_delivery_id(), &unfinished)).await;
    assert_eq!((answer.status, answer.json["outcome"].as_str()), (200, Some("ignored")));

    let mut seen = Vec::new();
    for message in stack.drain().await {
        let group = message.attributes().and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId)).cloned();
        let body = message.body().unwrap();
        assert!(body.starts_with("{\"version\":2,"), "{body}");
        match Message::from_json(body).unwrap() {
            Message::Check(check) => {
                assert_eq!(group.as_deref(), Some(format!("check:acme/web@{sha}").as_str()));
                seen.push((check.delivery_id, check.name, check.state.as_str().to_owned()));
            }
            Message::Command(c) => {
                assert_eq!(group.as_deref(), Some("acme/web#4"));
                assert_eq!(
                    (c.command.as_str(), c.author.as_str(), c.comment_id),
                    ("/preview extend 2d", "reviewer", 77)
                );
                seen.push((c.delivery_id, "command".into(), String::new()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    seen.sort();
    let mut expected = vec![
        (run.id.clone(), "build-images".to_owned(), "success".to_owned()),
        (statused.id.clone(), "ci/e2e".to_owned(), "failure".to_owned()),
        (command.id.clone(), "command".to_owned(), String::new()),
    ];
    expected.sort();
    assert_eq!(seen, expected);
}

/// With the standard OTLP variable set, the real binary exports its delivery's span before it
/// answers, and the queue message carries that span as its `traceparent` attribute.
#[tokio::test]
async fn the_webhook_binary_exports_its_span_and_passes_the_trace_on() {
    let collector = previewd_testkit::otlp::Collector::start().await;
    let stack = Stack::new("httptrace").await;
    let (_processes, url, _) =
        start_webhook_with(&stack, 100, &[("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str())]).await;
    let signed = Signed::json("pull_request", &new_delivery_id(), &pr_payload("opened", "acme/web", 8));
    let answer = post(&url, &signed).await;
    assert_eq!((answer.status, answer.json["outcome"].as_str()), (202, Some("accepted")), "{}", answer.json);

    // Flushed before the answer: no waiting for a batch timer.
    let spans = collector.spans();
    let delivery = spans.iter().find(|s| s.name == "delivery").unwrap_or_else(|| panic!("{spans:?}"));
    assert_eq!(delivery.service, "previewd-webhook");
    assert_eq!(delivery.attributes["delivery_id"], signed.id);
    assert_eq!(delivery.parent_span_id, "", "a delivery starts its trace");
    let send = spans.iter().find(|s| s.name == "sqs.send_message").unwrap_or_else(|| panic!("{spans:?}"));
    assert_eq!(
        (send.trace_id.as_str(), send.parent_span_id.as_str()),
        (delivery.trace_id.as_str(), delivery.span_id.as_str())
    );

    let received = stack
        .sqs
        .receive_message()
        .queue_url(&stack.queue_url)
        .message_attribute_names("traceparent")
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let message = &received.messages()[0];
    let traceparent = message.message_attributes().unwrap()["traceparent"].string_value().unwrap();
    assert_eq!(traceparent, format!("00-{}-{}-01", delivery.trace_id, delivery.span_id));
}

#[tokio::test]
async fn oversized_body_is_413_over_http() {
    let stack = Stack::new("http413").await;
    let (_processes, url) = start_webhook(&stack, 100).await;
    let mut payload = pr_payload("opened", "acme/web", 6);
    payload["pull_request"]["body"] = Value::from("x".repeat(5 * 1024 * 1024 + 1));
    let big = Signed::json("pull_request", &new_delivery_id(), &payload);
    let answer = post(&url, &big).await;
    assert_eq!((answer.status, answer.json["outcome"].as_str()), (413, Some("too_large")));
}

fn api_gateway_event(version: &str, signed: &Signed, base64_body: bool) -> Value {
    let body = if base64_body {
        base64::engine::general_purpose::STANDARD.encode(&signed.body)
    } else {
        String::from_utf8(signed.body.clone()).unwrap()
    };
    let headers = json!({
        "content-type": signed.content_type,
        "x-github-event": signed.event,
        "x-github-delivery": signed.id,
        "x-hub-signature-256": signed.signature,
    });
    if version == "2.0" {
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012", "apiId": "api", "domainName": "x.lambda-url.us-east-1.on.aws",
                "domainPrefix": "x", "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                "sourceIp": "192.30.252.1", "userAgent": "GitHub-Hookshot/1"}, "requestId": "r",
                "routeKey": "$default", "stage": "$default", "time": "26/Nov/2026:10:00:00 +0000", "timeEpoch": 0
            },
            "body": body, "isBase64Encoded": base64_body
        })
    } else {
        json!({
            "resource": "/webhook", "path": "/webhook", "httpMethod": "POST",
            "headers": headers, "multiValueHeaders": {}, "queryStringParameters": null,
            "multiValueQueryStringParameters": null, "pathParameters": null, "stageVariables": null,
            "requestContext": {"accountId": "123456789012", "resourceId": "r", "stage": "prod", "requestId": "r",
                "identity": {"sourceIp": "192.30.252.1"}, "resourcePath": "/webhook", "httpMethod": "POST",
                "apiId": "api", "path": "/prod/webhook"},
            "body": body, "isBase64Encoded": base64_body
        })
    }
}

/// API Gateway (REST v1, HTTP v2) and Function URLs deliver binary bodies base64-encoded;
/// `lambda_http` must hand the webhook the exact signed bytes either way.
#[test]
fn api_gateway_events_with_base64_bodies_verify_and_parse() {
    let config = previewd_webhook::config::Config::from_lookup(|k| match k {
        "PREVIEWD_WEBHOOK_SECRET" => Some(SECRET.to_owned()),
        "PREVIEWD_QUEUE_URL" => Some("http://127.0.0.1:4566/000000000000/q.fifo".to_owned()),
        "PREVIEWD_TABLE_NAME" => Some("t".to_owned()),
        _ => None,
    })
    .unwrap();
    let secrets = previewd_webhook::signature::Secrets::parse(SECRET).unwrap();
    let payload = pr_payload("reopened", "acme/web", 8);
    for version in ["1.0", "2.0"] {
        for signed in [Signed::json("pull_request", "b-1", &payload), Signed::form("pull_request", "b-2", &payload)] {
            for base64_body in [true, false] {
                let event = api_gateway_event(version, &signed, base64_body);
                let request: lambda_http::request::LambdaRequest = serde_json::from_value(event).unwrap();
                let request: lambda_http::Request = request.into();
                let (prepared, _) = prepare(&config, &secrets, &lambda::delivery(&request), chrono::Utc::now());
                match prepared {
                    Prepared::Enqueue(message) => {
                        assert!(matches!(*message, Message::PullRequest(e) if e.pull_request.number == 8))
                    }
                    other => panic!("v{version} {} base64={base64_body}: {other:?}", signed.content_type),
                }
            }
        }
    }
    // And the reply goes back with its status, JSON body and Retry-After.
    let mut reply = previewd_webhook::Reply::new(Outcome::RateLimited, "slow down");
    reply.retry_after = Some(30);
    let response = lambda::response(&reply);
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "30");
    assert_eq!(response.headers()["content-type"], "application/json");
}

/// A canary secret never shows in a log line, an EMF line or an answer, whatever is sent:
/// good, forged, signed with another secret, malformed, oversized (debug logging on).
#[tokio::test]
async fn the_webhook_secret_never_appears_in_logs_or_answers() {
    let stack = Stack::new("canary").await;
    let canary = format!("canary-{}", new_delivery_id());
    let (processes, url, logs) = start_webhook_with(
        &stack,
        100,
        &[("PREVIEWD_WEBHOOK_SECRET", &canary), ("PREVIEWD_MAX_BODY_BYTES", "20000"), ("RUST_LOG", "debug")],
    )
    .await;
    let signed_with = |secret: &str, payload: &serde_json::Value| {
        let mut signed = Signed::json("pull_request", &new_delivery_id(), payload);
        signed.signature = previewd_webhook::signature::sign(secret.as_bytes(), &signed.body);
        signed
    };
    let good = signed_with(&canary, &pr_payload("opened", "acme/web", 9));
    let mut tampered = signed_with(&canary, &pr_payload("opened", "acme/web", 10));
    tampered.body.extend_from_slice(b" ");
    let other_secret = signed_with("not-the-secret", &pr_payload("opened", "acme/web", 11));
    let mut malformed = signed_with(&canary, &pr_payload("opened", "acme/web", 12));
    malformed.body = format!("{{\"action\": \"opened\", \"secret\": \"{canary}\"").into_bytes();
    malformed.signature = previewd_webhook::signature::sign(canary.as_bytes(), &malformed.body);
    let mut oversized = signed_with(&canary, &pr_payload("opened", "acme/web", 13));
    oversized.body = vec![b' '; 30_000];
    let mut answers = Vec::new();
    for (signed, status) in [(&good, 202), (&tampered, 401), (&other_secret, 401), (&malformed, 400), (&oversized, 413)]
    {
        let answer = post(&url, signed).await;
        assert_eq!(answer.status, status, "{}", answer.json);
        answers.push(answer.json.to_string());
    }
    drop(processes);
    let log =
        std::fs::read_to_string(&logs).unwrap() + &std::fs::read_to_string(logs.with_extension("stderr")).unwrap();
    assert!(log.matches("webhook request").count() >= 5, "the requests were logged: {log}");
    assert!(!log.contains(&canary), "the secret leaked into the function's output");
    for answer in answers {
        assert!(!answer.contains(&canary), "the secret leaked into an answer: {answer}");
    }
}

/// The load generator against the real webhook process, briefly: every delivery accepted at
/// two modest rates (the figures in docs/performance.md come from `make load`).
#[tokio::test]
async fn a_short_load_run_is_accepted_without_errors() {
    let stack = Stack::new("load").await;
    let (_processes, url, _) = start_webhook_with(&stack, 0, &[("PREVIEWD_WEBHOOK_SECRET", "load-secret")]).await;
    let mut sent = 0;
    for rate in [10, 20] {
        let stage = previewd_testkit::load::run_stage(&url, "load-secret", rate, Duration::from_secs(2)).await;
        assert_eq!((stage.sent, stage.errors), (u64::from(rate) * 2, 0), "{stage:?}");
        assert_eq!(stage.accepted, stage.sent, "{stage:?}");
        assert!(stage.p50_ms > 0.0 && stage.p99_ms >= stage.p50_ms, "{stage:?}");
        sent += stage.sent;
    }
    assert_eq!(stack.drain().await.len() as u64, sent, "every accepted delivery is on the queue");
}
