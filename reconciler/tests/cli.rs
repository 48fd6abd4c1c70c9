//! The `previewd` binary's offline subcommands and its HTTP endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::process::Command;

use http_body_util::BodyExt;
use tower::ServiceExt;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn previewd(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_previewd")).args(args).current_dir(root()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn crd_prints_what_the_chart_ships() {
    let (ok, out, _) = previewd(&["crd"]);
    assert!(ok);
    let chart =
        std::fs::read_to_string(root().join("charts/previewd/files/previewenvironments.preview.previewd.io.yaml"))
            .unwrap();
    assert_eq!(out, chart);
}

#[test]
fn config_check_accepts_the_example_and_names_bad_fields() {
    let (ok, out, _) = previewd(&["config", "check", "docs/examples/config.yaml"]);
    assert!(ok && out.contains("ok (2 repositories)"), "{out}");
    let bad = std::env::temp_dir().join(format!("previewd-bad-{}.yaml", std::process::id()));
    std::fs::write(&bad, "domain: example.com\nrepositories:\n  - name: acme/shop\n    services: []\n").unwrap();
    let (ok, _, err) = previewd(&["config", "check", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("repositories[0].services"), "{err}");
}

#[test]
fn render_prints_every_object_or_says_why_there_are_none() {
    let (ok, out, err) =
        previewd(&["render", "--config", "docs/examples/config.yaml", "--event", "docs/examples/events/opened.json"]);
    assert!(ok, "{err}");
    let kinds: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("kind: ")).collect();
    assert_eq!(
        kinds,
        [
            "PreviewEnvironment",
            "Namespace",
            "ResourceQuota",
            "LimitRange",
            "NetworkPolicy",
            "NetworkPolicy",
            "Ingress",
            "ApplicationSet"
        ]
    );
    let (ok, out, _) = previewd(&[
        "render",
        "--config",
        "docs/examples/config.yaml",
        "--event",
        "docs/examples/events/fork-unlabeled.json",
    ]);
    assert!(ok && out.contains("fork_awaiting_label"), "{out}");
    let (ok, _, err) = previewd(&["render", "--config", "docs/examples/config.yaml", "--event", "Cargo.toml"]);
    assert!(!ok && err.contains("Cargo.toml"), "{err}");
}

#[test]
fn run_refuses_to_start_without_a_queue() {
    let out = Command::new(env!("CARGO_BIN_EXE_previewd"))
        .args(["run", "--config", "docs/examples/config.yaml"])
        .current_dir(root())
        .env_remove("PREVIEWD_QUEUE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("PREVIEWD_QUEUE_URL"));
}

#[tokio::test]
async fn health_and_metrics_endpoints() {
    let metrics = previewd::metrics::Metrics::new().unwrap();
    metrics.queue_messages.with_label_values(&["applied"]).inc();
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = previewd::serve::router(previewd::serve::Health { metrics, ready: ready.clone() });
    let get = |path: &str| axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
    assert_eq!(app.clone().oneshot(get("/healthz")).await.unwrap().status(), 200);
    assert_eq!(app.clone().oneshot(get("/readyz")).await.unwrap().status(), 503);
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(app.clone().oneshot(get("/readyz")).await.unwrap().status(), 200);
    let response = app.oneshot(get("/metrics")).await.unwrap();
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.contains("# TYPE previewd_queue_messages_total counter"), "{text}");
    assert!(text.contains("previewd_queue_messages_total{outcome=\"applied\"} 1"), "{text}");
}

#[tokio::test]
async fn cost_prints_every_preview_and_the_totals_from_the_cluster() {
    use kube::api::{Api, PostParams};
    let client = support::fake_cluster().await;
    let config = support::config();
    let api: Api<previewd::crd::PreviewEnvironment> = Api::all(client.clone());
    for name in ["opened.json", "fork-labeled.json"] {
        let previewd::policy::Decision::Upsert(spec) = previewd::policy::decide_offline(&support::event(name), &config)
        else {
            panic!("{name}")
        };
        let pe = previewd::render::as_applied(&config, *spec).unwrap();
        api.create(&PostParams::default(), &pe).await.unwrap();
    }
    let dir = std::env::temp_dir().join(format!("previewd-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = support::serve_over_http(client, &dir).await;
    let cost = |kubeconfig: PathBuf| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_previewd"))
                .args(["cost", "--config", "docs/examples/config.yaml"])
                .env("KUBECONFIG", kubeconfig)
                .env_remove("KUBERNETES_SERVICE_HOST")
                .current_dir(root())
                .output()
                .unwrap()
        })
    };
    let out = cost(kubeconfig).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("PREVIEW"), "{stdout}");
    assert!(stdout.contains("preview-shop-pr-42") && stdout.contains("preview-shop-pr-77"), "{stdout}");
    assert!(stdout.contains("Total: 2 previews") && stdout.contains("budget"), "{stdout}");

    // No cluster: a clear error, not a panic.
    let out = cost(dir.join("missing-kubeconfig")).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.starts_with("previewd: Kubernetes"), "{err}");
}

#[test]
fn detect_prints_the_services_a_change_needs_as_one_json_object() {
    let shop = "reconciler/tests/fixtures/detect/shop";
    let files = std::env::temp_dir().join(format!("previewd-detect-{}.txt", std::process::id()));
    std::fs::write(&files, "lib/go/money/money.go\nsrc/cart/main_test.go\npackages/ui/button.tsx\n").unwrap();
    let config = format!("{shop}/previewd.yaml");
    let base = ["detect", "--config", &config, "--repository", "Acme/Shop", "--files", files.to_str().unwrap()];
    let (ok, out, err) = previewd(&[&base[..], &["--repo-dir", shop]].concat());
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["services"], serde_json::json!(["cart", "web"]), "{out}");
    assert_eq!(json["by"], "graph");
    assert_eq!(json["reasons"]["cart"][0], "lib/go/money/money.go -> Go package lib/go/money imported by cart");
    // Without a checkout, the globs decide: they take the test file and miss the library.
    let (ok, out, _) = previewd(&base);
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["by"], "paths");
    assert_eq!(json["services"], serde_json::json!(["cart", "postgres"]), "{out}");
    // Bad input is named.
    let (ok, _, err) = previewd(&[&base[..], &["--repo-dir", "no/such/dir"]].concat());
    assert!(!ok && err.contains("--repo-dir no/such/dir"), "{err}");
    let (ok, _, err) =
        previewd(&["detect", "--config", &config, "--repository", "acme/other", "--files", files.to_str().unwrap()]);
    assert!(!ok && err.contains("acme/other is not configured"), "{err}");
}

#[test]
fn config_check_names_a_bad_build_root() {
    let bad = std::env::temp_dir().join(format!("previewd-bad-build-{}.yaml", std::process::id()));
    let service = |build: &str| {
        format!(
            "domain: example.com\nrepositories:\n  - name: acme/shop\n    services:\n      - name: cart\n        chartPath: deploy/cart\n        resources: {{requests: {{cpu: 100m, memory: 128Mi}}}}\n        build:\n{build}\n"
        )
    };
    for (build, expected) in [
        ("          - {dockerfile: src/cart/Dockerfile, project: src/cart/go.mod}", "exactly one of"),
        ("          - {context: src}", "exactly one of"),
        ("          - {project: src/cart/Makefile}", "a go.mod, package.json"),
        ("          - {dockerfile: ../outside/Dockerfile}", "inside the repository"),
        ("          - {compose: {files: [], service: cart}}", "compose needs files"),
        ("          - {dockerfile: Dockerfile, image: x}", "unknown field"),
    ] {
        std::fs::write(&bad, service(build)).unwrap();
        let (ok, _, err) = previewd(&["config", "check", bad.to_str().unwrap()]);
        assert!(!ok, "{build}");
        assert!(err.contains("repositories[0].services[0].build") && err.contains(expected), "{build}: {err}");
    }
    std::fs::write(&bad, service("          - {compose: {files: [docker-compose.yml], service: cart, envFiles: [.env]}}\n          - {dockerfile: src/cart/Dockerfile, context: .}")).unwrap();
    let (ok, _, err) = previewd(&["config", "check", bad.to_str().unwrap()]);
    assert!(ok, "{err}");
}
