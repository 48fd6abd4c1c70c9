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

/// `previewd run` with `config`, the cluster in `kubeconfig`, the emulator's queue and a
/// listener on `port`, in an environment of only these (nothing inherited but `PATH`).
fn previewd_run(config: &std::path::Path, kubeconfig: &std::path::Path, stack: &Stack, port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_previewd"));
    command
        .args(["run", "--config"])
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", kubeconfig)
        .env("PREVIEWD_QUEUE_URL", &stack.queue_url)
        .env("PREVIEWD_LISTEN", format!("127.0.0.1:{port}"))
        .env("PREVIEWD_CONSUMERS", "1")
        .env("POD_NAMESPACE", "previewd")
        .env("HOSTNAME", "replica-a")
        .env("AWS_ENDPOINT_URL", previewd_testkit::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    command
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
    let mut child = previewd_run(&support::root().join("docs/examples/config.yaml"), &kubeconfig, &stack, port)
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

/// The remote addresses of `pid`'s sockets now: its socket inodes (`/proc/<pid>/fd`) looked up
/// in the TCP and UDP tables of its network namespace. Sockets on `inbound` (its own listener)
/// are left out: those are callers, not contacts.
fn remote_addresses(pid: u32, inbound: u16) -> Vec<std::net::SocketAddr> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    let inodes: std::collections::HashSet<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    let mut out = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(inode)) = (fields.get(1), fields.get(2), fields.get(9)) else {
                continue;
            };
            if !inodes.contains(*inode) {
                continue;
            }
            let parse = |hex: &str| -> Option<std::net::SocketAddr> {
                let (ip, port) = hex.split_once(':')?;
                let port = u16::from_str_radix(port, 16).ok()?;
                let ip: std::net::IpAddr = if ip.len() == 8 {
                    std::net::Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.swap_bytes()).into()
                } else {
                    let mut bytes = [0u8; 16];
                    for (i, chunk) in ip.as_bytes().chunks(8).enumerate() {
                        let word = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?.swap_bytes();
                        bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
                    }
                    std::net::Ipv6Addr::from(bytes).to_canonical()
                };
                Some(std::net::SocketAddr::new(ip, port))
            };
            let (Some(local), Some(remote)) = (parse(local), parse(remote)) else { continue };
            if remote.port() != 0 && local.port() != inbound {
                out.push(remote);
            }
        }
    }
    out
}

/// A stand-in that answers every request 200 with `body` and counts the requests.
async fn answering(body: &'static str) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&count);
    let app = axum::Router::new().fallback(move || {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { ([("content-type", "application/json")], body) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, count)
}

fn port_of(url: &str) -> u16 {
    url.parse::<http::Uri>().unwrap().port_u16().unwrap()
}

/// The air-gapped promise (docs/air-gapped.md): in a full run, with every outbound endpoint
/// configured, the `previewd run` process opens sockets to those endpoints and nowhere else.
/// Its sockets are sampled from /proc every few milliseconds for the whole run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_contacts_only_configured_hosts() {
    let stack = Stack::new("hosts").await;
    let kube = support::fake_cluster().await;
    let dir = std::env::temp_dir().join(format!("previewd-hosts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = support::serve_over_http(kube.clone(), &dir).await;
    let kube_port = {
        let text = std::fs::read_to_string(&kubeconfig).unwrap();
        let server = text.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap().to_owned();
        port_of(&server)
    };
    let github = support::github::FakeGitHub::start().await;
    github.lock().files = vec![serde_json::json!({"filename": "web/a.ts", "status": "modified", "patch": "+a"})];
    let openai = support::openai::FakeOpenAi::start(r#"{"services": [{"name": "web", "confidence": 0.9}]}"#).await;
    let (prometheus, prometheus_requests) =
        answering(r#"{"status": "success", "data": {"resultType": "vector", "result": []}}"#).await;
    let (otlp, otlp_requests) = answering("{}").await;

    // Every outbound endpoint of the air-gapped table, pointed at its stand-in.
    let mut config = support::chart::example_config();
    config["ai"]["enabled"] = serde_json::json!(true);
    config["ai"]["baseUrl"] = serde_json::json!(openai.base_url);
    config["sizing"] = serde_json::json!({"mode": "suggest", "prometheusUrl": prometheus});
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, serde_norway::to_string(&config).unwrap()).unwrap();
    let mut event = support::event("opened.json");
    event.pull_request.updated_at = Utc::now();
    event.received_at = Utc::now();
    event.delivery_id = "hosts-1".into();
    stack.send_event(&event).await;

    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sqs_port = port_of(&previewd_testkit::endpoint());
    let mut child = previewd_run(&config_path, &kubeconfig, &stack, listen)
        .env("PREVIEWD_GITHUB_API_URL", &github.base)
        .env("PREVIEWD_GITHUB_APP_ID", support::github::APP_ID.to_string())
        .env("PREVIEWD_GITHUB_APP_PRIVATE_KEY", &github.private_pem)
        .env("PREVIEWD_AI_API_KEY", "sk-test")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)
        .stdout(Stdio::from(std::fs::File::create(dir.join("hosts.log")).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(dir.join("hosts.err")).unwrap()))
        .spawn()
        .unwrap();
    let pid = child.id();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = std::sync::Arc::clone(&sampling);
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                seen.extend(remote_addresses(pid, listen));
                std::thread::sleep(Duration::from_millis(2));
            }
            seen
        })
    };

    // A full run: the event consumed (GitHub and the AI asked), the preview written, usage
    // read from Prometheus, the PR told, and traces exported.
    let previews = Api::<previewd::crd::PreviewEnvironment>::all(kube.clone());
    eventually("the preview", || async { previews.get_opt("preview-shop-pr-42").await.unwrap() }).await;
    eventually("the AI asked", || async { (!openai.lock().requests.is_empty()).then_some(()) }).await;
    eventually("Prometheus read", || async {
        (prometheus_requests.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    eventually("the PR told", || async { (!github.lock().comments.is_empty()).then_some(()) }).await;
    assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    let status = eventually("a clean exit after SIGTERM", || {
        let exited = child.try_wait().unwrap();
        async move { exited }
    })
    .await;
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let seen = sampler.join().unwrap();
    let log = std::fs::read_to_string(dir.join("hosts.log")).unwrap_or_default()
        + &std::fs::read_to_string(dir.join("hosts.err")).unwrap_or_default();
    assert!(status.success(), "exit {status}: {log}");
    assert!(otlp_requests.load(std::sync::atomic::Ordering::SeqCst) > 0, "no traces exported: {log}");

    let configured = [
        ("Kubernetes API (KUBECONFIG)", kube_port),
        ("SQS (AWS_ENDPOINT_URL)", sqs_port),
        ("GitHub API (PREVIEWD_GITHUB_API_URL)", port_of(&github.base)),
        ("AI endpoint (ai.baseUrl)", port_of(&openai.base_url)),
        ("Prometheus (sizing.prometheusUrl)", port_of(&prometheus)),
        ("OTLP collector (OTEL_EXPORTER_OTLP_ENDPOINT)", port_of(&otlp)),
    ];
    let unexpected: Vec<&std::net::SocketAddr> = seen
        .iter()
        .filter(|addr| !(addr.ip().is_loopback() && configured.iter().any(|(_, port)| *port == addr.port())))
        .collect();
    assert!(unexpected.is_empty(), "contacted outside the configured endpoints: {unexpected:?} (log: {log})");
    // The sampling saw the run: the long-lived connections are there.
    for (what, port) in &configured[..4] {
        assert!(seen.iter().any(|a| a.port() == *port), "no connection to {what} seen: {seen:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
