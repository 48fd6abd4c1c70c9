//! `previewd run` as the deployed process: against the local SQS emulator and the in-memory
//! Kubernetes API served over HTTP (through a kubeconfig), it takes the leader Lease, consumes
//! an event, builds the preview, serves /readyz and /metrics, and on SIGTERM finishes what it
//! holds and exits cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use previewd_testkit::Stack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP/1.0 GET on loopback: (status line, body).
async fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await.ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previewd_run_consumes_reconciles_serves_and_stops_on_sigterm() {
    let stack = Stack::new("run").await;
    let kube = support::fake_cluster().await;
    let dir = std::env::temp_dir().join(format!("previewd-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = support::serve_over_http(kube.clone(), &dir).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // The in-memory API cannot serve watches, so the controller sees what its first list
    // returns: the PR's preview exists before the process starts. The queued event must not
    // change it (a change would leave the controller's cache, never updated without a watch,
    // stale): it is from a repository Previewd does not serve, consumed and dropped.
    let mut event = support::event("opened.json");
    event.pull_request.updated_at = Utc::now();
    event.received_at = Utc::now();
    let consumer = previewd::consumer::Consumer::new(
        support::unused_sqs(),
        String::new(),
        kube.clone(),
        std::sync::Arc::new(support::config()),
    );
    assert!(matches!(consumer.handle_event(&event).await, previewd::consumer::Outcome::Applied { .. }));
    event.delivery_id = "run-elsewhere".into();
    event.repository.full_name = "someone/else".into();
    stack.send_event(&event).await;

    let logs = dir.join("run.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_previewd"))
        .args(["run", "--config"])
        .arg(support::root().join("docs/examples/config.yaml"))
        .env("KUBECONFIG", &kubeconfig)
        .env("PREVIEWD_QUEUE_URL", &stack.queue_url)
        .env("PREVIEWD_LISTEN", format!("127.0.0.1:{port}"))
        .env("PREVIEWD_CONSUMERS", "1")
        .env("POD_NAMESPACE", "previewd")
        .env("HOSTNAME", "replica-a")
        .env("AWS_ENDPOINT_URL", previewd_testkit::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("PREVIEWD_GITHUB_TOKEN")
        .env_remove("PREVIEWD_GITHUB_APP_ID")
        .stdout(Stdio::from(std::fs::File::create(&logs).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(dir.join("run.err")).unwrap()))
        .spawn()
        .unwrap();

    let namespaces: Api<Namespace> = Api::all(kube.clone());
    eventually("the preview's namespace", || async { namespaces.get_opt("preview-shop-pr-42").await.unwrap() }).await;
    let lease = Api::<Lease>::namespaced(kube.clone(), "previewd").get("previewd-leader").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("replica-a"));
    let (status, _) = eventually("/readyz", || get(port, "/readyz")).await;
    assert!(status.contains("200"), "{status}");
    let metrics = eventually("the consumed event in /metrics", || async {
        get(port, "/metrics")
            .await
            .map(|(_, body)| body)
            .filter(|b| b.contains(r#"previewd_queue_messages_total{outcome="ignored"} 1"#))
    })
    .await;
    assert!(metrics.contains("previewd_environments"), "{metrics}");

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // The consumer finishes its long poll (20 s at most) and the controller its reconciles.
    let status = eventually("a clean exit after SIGTERM", || {
        let exited = child.try_wait().unwrap();
        async move { exited }
    })
    .await;
    let log = std::fs::read_to_string(&logs).unwrap() + &std::fs::read_to_string(dir.join("run.err")).unwrap();
    assert!(status.success(), "exit {status}: {log}");
    assert!(log.contains("previewd stopped"), "{log}");
    let attrs = stack
        .sqs
        .get_queue_attributes()
        .queue_url(&stack.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    assert_eq!(
        attrs
            .attributes
            .unwrap()
            .get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .map(String::as_str),
        Some("0")
    );
}
