//! The `redeliver` binary as Lambda runs it: cargo-lambda's runtime API emulator, the
//! function's credentials in Secrets Manager (the local emulator), a GitHub API stand-in with
//! a failed delivery, and one scheduled invocation through the Invoke API. The emulator gives
//! an invocation a deadline inside the function's 10 s safety margin, so this run shows the
//! margin honoured: the function answers at once, touches nothing and says why. (What a run
//! with time redelivers is covered by `tests/standin.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use previewd_testkit::Stack;
use support::{Auth, FakeGitHub, ago, app_key};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Stops the runtime API emulator first, so the function exits by itself when it goes away.
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

/// POSTs `body` and returns the raw answer (status line, headers, body).
async fn post(port: u16, path: &str, body: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn a_scheduled_invocation_starts_from_the_secret_and_keeps_the_safety_margin() {
    let key = app_key();
    let now = Utc::now();
    let github = FakeGitHub::start(Auth::App { app_id: 31337, public_pem: key.public_pem.clone() }, now).await;
    github.with(|g| {
        g.push("failed-once", 503, ago(now, 20));
        g.push("fine", 202, ago(now, 10));
    });
    let stack = Stack::new("redeliver-process").await;
    let secrets = aws_sdk_secretsmanager::Client::new(&stack.sdk);
    let credentials = serde_json::json!({"app_id": "31337", "private_key": key.private_pem}).to_string();
    let arn = secrets
        .create_secret()
        .name(format!("{}-github", stack.table))
        .secret_string(credentials)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let venv_bin = previewd_testkit::workspace_root().join(".venv/bin");
    let program =
        if venv_bin.join("cargo-lambda").exists() { venv_bin.join("cargo-lambda") } else { "cargo-lambda".into() };
    let logs = std::env::temp_dir().join(format!("previewd-redeliver-{port}.log"));
    let emulator = Command::new(program)
        .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
        .env("PATH", format!("{}:{}", venv_bin.display(), std::env::var("PATH").unwrap_or_default()))
        .current_dir(previewd_testkit::workspace_root())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&logs).unwrap())
        .spawn()
        .expect("cargo-lambda is needed (infra/setup.sh installs it into .venv/bin)");
    let mut processes = Processes(vec![emulator]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "cargo-lambda did not start: {}", std::fs::read_to_string(&logs).unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let function_logs = logs.with_extension("function.log");
    let function = Command::new(env!("CARGO_BIN_EXE_redeliver"))
        .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_ENDPOINT_URL", previewd_testkit::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("PREVIEWD_TABLE_NAME", &stack.table)
        .env("PREVIEWD_GITHUB_HOOK", "app")
        .env("PREVIEWD_GITHUB_API_URL", &github.url)
        .env("PREVIEWD_GITHUB_CREDENTIALS_SECRET_ARN", &arn)
        .stdout(std::fs::File::create(&function_logs).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    processes.0.push(function);

    // What EventBridge Scheduler sends (the function ignores the payload).
    let invoke = post(port, "/2015-03-31/functions/_/invocations", r#"{"source":"aws.scheduler"}"#);
    let answer = tokio::time::timeout(Duration::from_secs(60), invoke).await.unwrap_or_else(|_| {
        panic!("no answer in 60 s; function log: {}", std::fs::read_to_string(&function_logs).unwrap_or_default())
    });
    // Started: the credentials came from Secrets Manager (a bad secret stops the start).
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""stopped":"time budget spent""#) && answer.contains(r#""complete":false"#), "{answer}");
    assert_eq!(github.with(|g| (g.list_requests(), g.attempts_for("failed-once"))), (0, 0), "nothing started");
    drop(processes);
    let log = std::fs::read_to_string(&function_logs).unwrap();
    assert!(log.contains(r#""Incomplete":1"#), "the EMF line says the run was cut short: {log}");
}
