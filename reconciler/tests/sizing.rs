//! Right-sizing against a real Prometheus server (Debian's `prometheus` package, installed by
//! `.ci/run`). The usage is cAdvisor's container series, as a kubelet exposes them, written as
//! OpenMetrics with timestamps over the last three hours and loaded with `promtool tsdb
//! create-blocks-from openmetrics` (Prometheus's own backfill): the server then answers the
//! same PromQL it would over scraped data, without a test waiting hours for samples.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use previewd::config::{Config, SizingMode};

const MIB: f64 = 1024.0 * 1024.0;

/// A Prometheus server of its own on a free port, over the TSDB in `dir`; killed when dropped.
struct Server {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn binary(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.exists()))
        .unwrap_or_default();
    found.unwrap_or_else(|| panic!("`{name}` not found: install the `prometheus` package (.ci/run does)"))
}

/// One sample line: `name{labels} value timestamp`.
fn sample(out: &mut String, name: &str, namespace: &str, pod: &str, container: &str, value: f64, at: u64) {
    let _ = writeln!(out, r#"{name}{{namespace="{namespace}",pod="{pod}",container="{container}"}} {value} {at}"#);
}

/// Three hours of usage, every 30 s, ending five minutes ago.
fn usage(now: u64) -> String {
    let start = now - 3 * 3600;
    let steps: Vec<u64> = (start..now - 300).step_by(30).collect();
    // (namespace, pod, container, CPU cores used, memory at step i)
    type Memory = fn(usize) -> f64;
    let series: [(&str, &str, &str, f64, Memory); 7] = [
        ("preview-shop-pr-1", "web-a", "web", 0.05, |_| 100.0 * MIB),
        // A short spike (2% of the samples) is above the p95 and does not count.
        ("preview-shop-pr-2", "web-b", "web", 0.10, |i| if i % 50 == 0 { 400.0 * MIB } else { 150.0 * MIB }),
        ("preview-shop-pr-2", "api-b", "api", 3.00, |_| 6144.0 * MIB),
        ("preview-shop-pr-2", "worker-b", "worker", 0.001, |_| 5.0 * MIB),
        // Not a preview, not a configured service, the pod sandbox: ignored.
        ("kube-system", "api-x", "api", 9.0, |_| 9000.0 * MIB),
        ("preview-shop-pr-2", "sidecar-b", "unknown", 9.0, |_| 9000.0 * MIB),
        ("preview-shop-pr-2", "web-b", "POD", 9.0, |_| 9000.0 * MIB),
    ];
    let mut out = String::from("# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed.\n");
    out.push_str("# TYPE container_cpu_usage_seconds_total counter\n");
    for (namespace, pod, container, cores, _) in series {
        for &t in &steps {
            sample(
                &mut out,
                "container_cpu_usage_seconds_total",
                namespace,
                pod,
                container,
                (t - start) as f64 * cores,
                t,
            );
        }
    }
    out.push_str("# HELP container_memory_working_set_bytes Current working set.\n");
    out.push_str("# TYPE container_memory_working_set_bytes gauge\n");
    for (namespace, pod, container, _, memory) in series {
        for (i, &t) in steps.iter().enumerate() {
            sample(&mut out, "container_memory_working_set_bytes", namespace, pod, container, memory(i), t);
        }
    }
    out.push_str("# EOF\n");
    out
}

fn start(now: u64) -> Server {
    backfilled(&usage(now))
}

/// A server over a TSDB backfilled from `openmetrics`.
fn backfilled(openmetrics: &str) -> Server {
    static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("previewd-prometheus-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (input, data) = (dir.join("usage.om"), dir.join("data"));
    std::fs::write(&input, openmetrics).unwrap();
    let backfill = Command::new(binary("promtool"))
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data)
        .output()
        .unwrap();
    assert!(backfill.status.success(), "promtool: {}", String::from_utf8_lossy(&backfill.stderr));
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\nscrape_configs: []\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(binary("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Server { child, url: format!("http://127.0.0.1:{port}"), dir }
}

async fn ready(server: &Server) {
    let ready = format!("{}/-/ready", server.url);
    for _ in 0..200 {
        if reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(server.dir.join("prometheus.log")).unwrap_or_default();
    panic!("Prometheus did not become ready:\n{log}");
}

fn config(url: &str, quota: &str) -> Config {
    let mut value = support::chart::example_config();
    value["sizing"] = serde_json::json!({"mode": "auto", "prometheusUrl": url, "window": "1d", "headroomPercent": 20});
    value["quota"] = serde_norway::from_str(quota).unwrap();
    Config::from_yaml(&serde_norway::to_string(&value).unwrap()).unwrap()
}

fn near(actual: u64, expected: f64, what: &str) {
    assert!((actual as f64 - expected).abs() <= expected * 0.02 + 1.0, "{what}: {actual}, expected about {expected}");
}

#[tokio::test]
async fn right_sizing_reads_prometheus_and_stays_within_bounds() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let server = start(now);
    ready(&server).await;
    let roomy = config(&server.url, "{cpu: '8', memory: 16Gi}");
    let prometheus = previewd::sizing::prometheus::Prometheus::new(&server.url).unwrap();
    let usage = prometheus.usage(&roomy).await.unwrap();
    assert!(usage.iter().all(|u| u.namespace.starts_with("preview-") && u.service != "POD"), "{usage:?}");
    let proposals = previewd::sizing::propose(&roomy, &usage);
    let key = |service: &str| ("acme/shop".to_owned(), service.to_owned());
    assert_eq!(proposals.keys().map(|(_, s)| s.as_str()).collect::<Vec<_>>(), ["api", "web", "worker"]);

    // web: the highest p95 across its previews (0.10 cores; 150Mi, the spike left out), +20%.
    let web = proposals[&key("web")];
    assert_eq!(web.previews, 2);
    near(web.observed_cpu_millis, 100.0, "web p95 CPU");
    near(web.cpu_millis, 120.0, "web CPU");
    near(web.observed_memory_bytes, 150.0 * MIB, "web p95 memory");
    assert_eq!(web.memory_bytes as f64, 180.0 * MIB, "web memory: 150Mi + 20%");
    // api: past the ceiling (2 cores, 4Gi) it stops there; worker: below the floor (10m, 32Mi).
    let (api, worker) = (proposals[&key("api")], proposals[&key("worker")]);
    assert_eq!((api.cpu_millis, api.memory_bytes), (2000, (4096.0 * MIB) as u64));
    near(api.observed_cpu_millis, 3000.0, "api p95 CPU");
    assert_eq!((worker.cpu_millis, worker.memory_bytes), (10, (32.0 * MIB) as u64));

    // Applied (`auto`) to a preview of all three: in the Helm values and the cost estimate.
    let repo = &roomy.repositories[0];
    let services: Vec<String> = ["web", "api", "worker"].map(str::to_owned).to_vec();
    let sized = previewd::sizing::for_preview(&roomy, repo, SizingMode::Auto, &proposals, &services).unwrap();
    let mut event = support::event("opened.json");
    event.pull_request.updated_at = chrono::Utc::now();
    let previewd::policy::Decision::Upsert(mut spec) = previewd::policy::decide_offline(&event, &roomy) else {
        panic!("expected an upsert")
    };
    spec.services = services.clone();
    let unsized_pe = previewd::render::as_applied(&roomy, (*spec).clone()).unwrap();
    spec.sizing = Some(sized.clone());
    let pe = previewd::render::as_applied(&roomy, *spec).unwrap();
    let objects = previewd::render::render(&roomy, &pe).unwrap();
    let app_set = objects.iter().find(|o| o["kind"] == "ApplicationSet").unwrap();
    let elements = app_set["spec"]["generators"][0]["list"]["elements"].as_array().unwrap();
    let requests = |service: &str| {
        let element = elements.iter().find(|e| e["service"] == service).unwrap();
        element["values"]["resources"]["requests"].clone()
    };
    assert_eq!(requests("api"), serde_json::json!({"cpu": "2000m", "memory": "4096Mi"}));
    assert_eq!(requests("worker"), serde_json::json!({"cpu": "10m", "memory": "32Mi"}));
    let cost = |pe: &previewd::crd::PreviewEnvironment| pe.status.as_ref().unwrap().cost_estimate.clone().unwrap();
    let (before, after) = (cost(&unsized_pe), cost(&pe));
    // Configured: 1 core, 1.75Gi. Sized: 2.13 cores, 4.3Gi: the estimate follows the sizes.
    assert_eq!((before.cpu.as_str(), after.cpu.as_str()), ("1", "2.13"));
    assert!(after.hourly_usd > before.hourly_usd);

    // A tighter quota: the sizes shrink together to fit it, none below its floor.
    let tight = config(&server.url, "{cpu: '2', memory: 3Gi}");
    let fitted =
        previewd::sizing::for_preview(&tight, &tight.repositories[0], SizingMode::Auto, &proposals, &services).unwrap();
    let total_cpu: u64 = fitted.services.iter().map(|s| s.cpu_millis).sum();
    let total_memory: u64 = fitted.services.iter().map(|s| s.memory_bytes).sum();
    assert!(total_cpu <= 2000 && total_memory as f64 <= 3072.0 * MIB, "{fitted:?}");
    assert!(fitted.services.iter().all(|s| s.cpu_millis >= 10 && s.memory_bytes as f64 >= 32.0 * MIB), "{fitted:?}");
    // Floors that do not fit: the configured requests stay.
    let tiny = config(&server.url, "{cpu: 20m, memory: 64Mi}");
    assert!(
        previewd::sizing::for_preview(&tiny, &tiny.repositories[0], SizingMode::Auto, &proposals, &services).is_none()
    );
    // `manual` sizes nothing; `suggest` sizes, but the Helm values keep the configured requests.
    assert!(previewd::sizing::for_preview(&roomy, repo, SizingMode::Manual, &proposals, &services).is_none());
    let suggested = previewd::sizing::for_preview(&roomy, repo, SizingMode::Suggest, &proposals, &services).unwrap();
    assert!(previewd::cost::applied(Some(&suggested), "api").is_none());
    // `previewd cost` shows them beside the configured requests.
    let table = previewd::sizing::render(&roomy, &proposals);
    assert!(table.contains("acme/shop  api  1  3000m  6144Mi  500m/1Gi  2000m/4096Mi"), "{table}");
}

/// The arms' counters as `previewd run` exports them, growing over three hours.
fn counters(now: u64) -> String {
    let start = now - 3 * 3600;
    let series: [(&str, &str, f64); 5] = [
        ("previewd_experiment_previews_total", "rules", 10.0),
        ("previewd_experiment_previews_total", "ai", 30.0),
        ("previewd_experiment_corrections_total", "rules", 4.0),
        ("previewd_experiment_corrections_total", "ai", 3.0),
        ("previewd_experiment_ai_spend_usd_total", "ai", 0.09),
    ];
    let mut out = String::new();
    for name in [
        "previewd_experiment_previews_total",
        "previewd_experiment_corrections_total",
        "previewd_experiment_ai_spend_usd_total",
    ] {
        let _ = writeln!(out, "# TYPE {} counter", name.trim_end_matches("_total"));
        for (metric, arm, total) in series.iter().filter(|(m, _, _)| *m == name) {
            for t in (start..=now - 300).step_by(60) {
                let value = total * (t - start) as f64 / (now - 300 - start) as f64;
                let _ = writeln!(out, r#"{metric}{{experiment="ai-detection",arm="{arm}"}} {value} {t}"#);
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

#[tokio::test]
async fn the_experiment_report_reads_the_arms_counters_from_prometheus() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let server = backfilled(&counters(now));
    ready(&server).await;
    let prometheus = previewd::sizing::prometheus::Prometheus::new(&server.url).unwrap();
    let window = Duration::from_secs(30 * 86_400);
    let totals = prometheus.experiment_totals(window).await.unwrap();
    let get = |arm: &str, metric: &str| totals[&("ai-detection".to_owned(), arm.to_owned())].get(metric).copied();
    // increase() extrapolates a little past the first and last samples: within 2%.
    let near = |value: Option<f64>, expected: f64| {
        let value = value.unwrap_or(f64::NAN);
        assert!((value - expected).abs() <= expected * 0.02, "{value} not about {expected}");
    };
    near(get("rules", "previewd_experiment_previews_total"), 10.0);
    near(get("ai", "previewd_experiment_previews_total"), 30.0);
    near(get("rules", "previewd_experiment_corrections_total"), 4.0);
    near(get("ai", "previewd_experiment_ai_spend_usd_total"), 0.09);
    assert_eq!(get("rules", "previewd_experiment_ai_spend_usd_total"), None, "no series: no spend");
    let table = previewd::experiment::render_totals(&totals, window);
    assert!(table.starts_with("From the metrics, over the last 30.0 days:"), "{table}");
    let ai = table.lines().find(|l| l.starts_with("ai-detection  ai ")).unwrap();
    assert_eq!(ai.split_whitespace().collect::<Vec<_>>()[2..5], ["30", "3", "0.100"], "{table}");
}
