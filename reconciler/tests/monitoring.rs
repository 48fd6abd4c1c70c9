//! Observability as a platform team sees it: a reconciler drives a preview through its life
//! (queue -> consumer -> controller -> GitHub -> deletion) against the local SQS emulator, the
//! in-memory Kubernetes API and the GitHub stand-in, then its `/metrics` endpoint is scraped
//! over HTTP and checked for names, types and labels. The Grafana dashboard and the alert
//! rules shipped in the chart must parse (PromQL) and use only metrics found in that scrape.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::Utc;
use kube::api::Api;
use previewd::ai::engine::AiEngine;
use previewd::consumer::{Consumer, Outcome as Consumed};
use previewd::controller::{Context, Outcome, reconcile, reconcile_at};
use previewd::crd::PreviewEnvironment;
use previewd::github::notify::Notifier;
use previewd::metrics::Metrics;
use previewd::serve::{Health, router};
use previewd_testkit::Stack;
use promql_parser::parser::{Expr, parse};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::{Value, json};
use support::github::FakeGitHub;
use support::openai::FakeOpenAi;
use support::root;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAME: &str = "preview-shop-pr-42";

/// One metric family of the text exposition format.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    /// Label names seen on its samples (without `le`).
    labels: BTreeSet<String>,
    /// Sample lines (name{labels} value).
    samples: Vec<String>,
}

fn parse_exposition(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.entry(name.to_owned()).or_default().kind = kind.to_owned();
        } else if !line.starts_with('#') && !line.is_empty() {
            let name_end = line.find(['{', ' ']).unwrap();
            let sample = &line[..name_end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| sample.strip_suffix(suffix).filter(|base| families.contains_key(*base)))
                .unwrap_or(sample);
            let entry = families.get_mut(family).unwrap_or_else(|| panic!("sample without TYPE: {line}"));
            if let (Some(open), Some(close)) = (line.find('{'), line.find('}')) {
                for pair in line[open + 1..close].split("\",") {
                    let key = pair.split('=').next().unwrap().trim_matches(',');
                    if key != "le" && !key.is_empty() {
                        entry.labels.insert(key.to_owned());
                    }
                }
            }
            entry.samples.push(line.to_owned());
        }
    }
    families
}

/// Serves the reconciler's health and metrics endpoints, as `previewd run` does.
async fn serve(metrics: Metrics) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(Health { metrics, ready: Arc::new(AtomicBool::new(true)) });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// GET /metrics over HTTP.
async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: previewd\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    body.to_owned()
}

/// A reconciler's life with one preview, all metrics on; returns the scrapes taken while the
/// preview was live and after it was deleted.
async fn drive_a_preview(metrics: &Metrics) -> (String, String) {
    let addr = serve(metrics.clone()).await;
    let stack = Stack::new("metrics").await;
    let github = FakeGitHub::start().await;
    github.lock().files = vec![json!({"filename": "web/a.ts", "status": "modified"})];
    let kube = support::fake_cluster().await;
    let mut config = support::config();
    // A preview cluster no repository uses yet, whose Secret is missing.
    config.clusters.push(serde_json::from_value(json!({"name": "east", "argocdSecret": "cluster-east"})).unwrap());
    let config = Arc::new(config);
    let client = github.client().with_request_counter(metrics.github_requests.clone());
    let notifier = Arc::new(
        Notifier::new(Arc::new(client), config.github.clone()).with_update_counter(metrics.github_updates.clone()),
    );
    let openai = FakeOpenAi::start(r#"{"services": [{"name": "web", "confidence": 0.9, "reason": "ui"}]}"#).await;
    let mut ai_config = config.ai.clone();
    ai_config.base_url = openai.base_url.clone();
    let engine = Arc::new(AiEngine::new(&ai_config, "").unwrap().with_metrics(metrics.clone()));
    let mut consumer = Consumer::new(stack.sqs.clone(), stack.queue_url.clone(), kube.clone(), Arc::clone(&config))
        .with_github(Arc::clone(&notifier))
        .with_ai(engine)
        .with_metrics(metrics.clone());
    consumer.wait_seconds = 0;
    let ctx = Arc::new(
        Context::new(kube.clone(), Arc::clone(&config))
            .with_github(Arc::clone(&notifier))
            .with_metrics(metrics.clone()),
    );

    let mut event = support::event("opened.json");
    event.pull_request.updated_at = Utc::now() - chrono::Duration::seconds(30);
    event.received_at = Utc::now() - chrono::Duration::seconds(20);
    stack.send_event(&event).await;
    assert_eq!(consumer.poll_once().await.unwrap(), [Consumed::Applied { name: NAME.into() }]);

    let api: Api<PreviewEnvironment> = Api::all(kube.clone());
    // The first pass adds the finalizer, the next builds the preview.
    reconcile(Arc::new(api.get(NAME).await.unwrap()), Arc::clone(&ctx)).await.unwrap();
    reconcile(Arc::new(api.get(NAME).await.unwrap()), Arc::clone(&ctx)).await.unwrap();
    support::healthy_application(&kube, NAME, "web", &event.pull_request.head_sha).await;
    reconcile(Arc::new(api.get(NAME).await.unwrap()), Arc::clone(&ctx)).await.unwrap();
    notifier.flush(false).await;
    // Its health, as the first preview that tries it finds it.
    assert!(ctx.clusters.reach("east").await.is_err());
    let live = scrape(addr).await;

    let deleting = support::deleting(api.get(NAME).await.unwrap(), "merged");
    reconcile_at(&deleting, &ctx, Utc::now()).await.unwrap();
    notifier.flush(false).await;
    assert_eq!(reconcile_at(&deleting, &ctx, Utc::now()).await.unwrap(), Outcome::Finalized);
    (live, scrape(addr).await)
}

#[tokio::test]
async fn metrics_are_served_with_the_documented_names_types_and_labels() {
    let metrics = Metrics::new().unwrap();
    let (live, after) = drive_a_preview(&metrics).await;
    let live = parse_exposition(&live);
    let families = parse_exposition(&after);

    let expected: &[(&str, &str, &[&str])] = &[
        ("previewd_environments_total", "gauge", &["status"]),
        ("previewd_environment_creation_duration_seconds", "histogram", &[]),
        ("previewd_environment_deletion_duration_seconds", "histogram", &[]),
        ("previewd_webhook_to_ready_seconds", "histogram", &[]),
        ("previewd_reconcile_duration_seconds", "histogram", &["controller"]),
        ("previewd_reconcile_errors_total", "counter", &["controller", "error"]),
        ("previewd_queue_messages_received_total", "counter", &[]),
        ("previewd_queue_messages_total", "counter", &["outcome"]),
        ("previewd_queue_lag_seconds", "histogram", &[]),
        ("previewd_queue_last_poll_timestamp_seconds", "gauge", &[]),
        ("previewd_cost_monthly_projection_usd", "gauge", &[]),
        ("previewd_cost_monthly_budget_usd", "gauge", &[]),
        ("previewd_cost_budget_exceeded", "gauge", &[]),
        ("previewd_github_requests_total", "counter", &["operation", "outcome"]),
        ("previewd_ai_requests_total", "counter", &["provider", "cache_hit"]),
        ("previewd_ai_failures_total", "counter", &["reason"]),
        ("previewd_ai_tokens_total", "counter", &["kind"]),
        ("previewd_ai_cost_usd_total", "counter", &[]),
        ("previewd_github_updates_total", "counter", &["outcome"]),
        ("previewd_github_rate_limit_remaining", "gauge", &[]),
        ("previewd_github_pending_updates", "gauge", &[]),
    ];
    for (name, kind, labels) in expected {
        let family = families.get(*name).unwrap_or_else(|| panic!("{name} not exported: {families:#?}"));
        assert_eq!(family.kind, *kind, "{name}");
        let want: BTreeSet<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        assert_eq!(family.labels, want, "{name}: {:#?}", family.samples);
    }
    let sample = |family: &str, needle: &str| {
        let samples = &families[family].samples;
        assert!(samples.iter().any(|s| s.contains(needle)), "{family}: no sample with {needle}: {samples:#?}");
    };
    // The life of the preview, as the metrics tell it.
    sample("previewd_queue_messages_total", r#"outcome="applied"} 1"#);
    sample("previewd_queue_messages_received_total", " 1");
    sample("previewd_queue_lag_seconds", "_count 1");
    sample("previewd_environment_creation_duration_seconds", "_count 1");
    sample("previewd_webhook_to_ready_seconds", "_count 1");
    sample("previewd_environment_deletion_duration_seconds", "_count 1");
    sample("previewd_reconcile_duration_seconds", r#"_count{controller="previewenvironment"} 3"#); // finalizer, build, ready
    sample("previewd_reconcile_errors_total", r#"error="kube"} 0"#);
    sample("previewd_environments_total", r#"status="active"} 0"#);
    sample("previewd_github_updates_total", r#"outcome="delivered"}"#);
    sample("previewd_github_requests_total", r#"operation="create deployment",outcome="ok"} 1"#);
    sample("previewd_cost_monthly_budget_usd", " 2000");
    sample("previewd_ai_requests_total", r#"{cache_hit="false",provider="openai"} 1"#);
    sample("previewd_ai_tokens_total", r#"{kind="input"} 1200"#);
    // While the preview was live: its cost per preview, per repository and team, its status.
    for (name, needle) in [
        ("previewd_environment_cost_estimate_usd", r#"{pr_number="42",repository="acme/shop"}"#),
        ("previewd_cost_hourly_usd", r#"{repository="acme/shop",team="checkout"}"#),
        ("previewd_environments_total", r#"{status="active"} 1"#),
    ] {
        let family = live.get(name).unwrap_or_else(|| panic!("{name} not exported while live"));
        assert_eq!(family.kind, "gauge");
        assert!(family.samples.iter().any(|s| s.contains(needle)), "{name}: {:#?}", family.samples);
    }
    assert!(live["previewd_cost_monthly_projection_usd"].samples.iter().all(|s| !s.ends_with(" 0")));
    // Once it is gone, its series go with it.
    for name in ["previewd_environment_cost_estimate_usd", "previewd_cost_hourly_usd"] {
        assert!(families.get(name).is_none_or(|f| f.samples.is_empty()), "{name} kept after deletion");
    }
}

/// Every metric name a PromQL expression selects.
struct Names(BTreeSet<String>);

impl ExprVisitor for Names {
    type Error = ();
    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
        match expr {
            Expr::VectorSelector(vs) => self.0.extend(vs.name.clone()),
            Expr::MatrixSelector(ms) => self.0.extend(ms.vs.name.clone()),
            _ => {}
        }
        Ok(true)
    }
}

fn selected_metrics(expr: &str) -> BTreeSet<String> {
    // Grafana substitutes its interval variable before the query reaches Prometheus.
    let query = expr.replace("$__rate_interval", "5m");
    let ast = parse(&query).unwrap_or_else(|e| panic!("{expr:?} is not PromQL: {e}"));
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &ast).unwrap();
    names.0
}

/// A family name for a selected series name (`x_bucket` of histogram `x` -> `x`).
fn family_of(name: &str, families: &BTreeMap<String, Family>) -> Option<String> {
    if families.contains_key(name) {
        return Some(name.to_owned());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        name.strip_suffix(suffix)
            .filter(|base| families.get(*base).is_some_and(|f| f.kind == "histogram"))
            .map(str::to_owned)
    })
}

#[tokio::test]
async fn the_dashboard_and_alerts_use_only_exported_metrics() {
    let metrics = Metrics::new().unwrap();
    // While a preview is live every family has series.
    let (live, _) = drive_a_preview(&metrics).await;
    let mut families = parse_exposition(&live);
    // The in-cluster front's own /metrics (previewd webhook-server), after one answer.
    let front = previewd::cmd::webhook_server::FrontMetrics::new().unwrap();
    front.count("accepted", std::time::Duration::from_millis(3));
    families.extend(parse_exposition(&front.render()));
    let chart = root().join("charts/previewd/files");

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(chart.join("dashboard.json")).unwrap()).unwrap();
    let mut used = BTreeSet::new();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let names = selected_metrics(expr);
            assert!(!names.is_empty(), "{expr}");
            used.extend(names);
        }
    }

    let alerts: Value = serde_norway::from_str(&std::fs::read_to_string(chart.join("alerts.yaml")).unwrap()).unwrap();
    let rules: Vec<&Value> = alerts.as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    let alert_names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    for wanted in
        ["PreviewdReconcileErrors", "PreviewdConsumerStalled", "PreviewdBudgetExceeded", "PreviewdPreviewsFailing"]
    {
        assert!(alert_names.contains(&wanted), "{wanted} missing from {alert_names:?}");
    }
    for rule in &rules {
        assert!(rule["labels"]["severity"].is_string() && rule["annotations"]["summary"].is_string(), "{rule}");
        used.extend(selected_metrics(rule["expr"].as_str().unwrap()));
    }
    // The SLO rules read the same metrics (and their own recorded series, named `a:b:c`).
    for rule in rule_groups(&chart.join("slo.yaml")) {
        used.extend(selected_metrics(rule["expr"].as_str().unwrap()).into_iter().filter(|n| !n.contains(':')));
    }

    let unknown: Vec<&String> = used.iter().filter(|name| family_of(name, &families).is_none()).collect();
    assert!(unknown.is_empty(), "not exported by the reconciler or the webhook server: {unknown:?}");
}

/// The rules of a rule-group file of the chart (a list of groups).
fn rule_groups(path: &std::path::Path) -> Vec<Value> {
    let groups: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    groups.as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect()
}

fn promtool(args: &[&str], dir: &std::path::Path) -> String {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("promtool: {e} (install the `prometheus` package: make test does)"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The chart's alert and SLO rules, as Prometheus loads them, pass `promtool check rules`, and
/// their unit tests pass `promtool test rules` (the real promtool, Debian's `prometheus`). Every
/// recording rule's value is tested, and every alert both firing and not.
#[test]
fn slo_rules_pass_promtool() {
    let chart = root().join("charts/previewd");
    let dir = std::env::temp_dir().join(format!("previewd-promtool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut groups = Vec::new();
    for file in ["alerts.yaml", "slo.yaml"] {
        let parsed: Value =
            serde_norway::from_str(&std::fs::read_to_string(chart.join("files").join(file)).unwrap()).unwrap();
        groups.extend(parsed.as_array().unwrap().clone());
    }
    let rules_file = serde_norway::to_string(&json!({"groups": groups})).unwrap();
    std::fs::write(dir.join("previewd-rules.yaml"), rules_file).unwrap();
    let tests = ["slo.test.yaml", "alerts.test.yaml"];
    for test in tests {
        std::fs::copy(chart.join("tests").join(test), dir.join(test)).unwrap();
    }
    let rules: Vec<Value> = groups.iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect();
    let checked = promtool(&["check", "rules", "previewd-rules.yaml"], &dir);
    assert!(checked.contains(&format!("SUCCESS: {} rules found", rules.len())), "{checked}");
    let tested = promtool(&["test", "rules", tests[0], tests[1]], &dir);
    assert_eq!(tested.matches("SUCCESS").count(), 2, "{tested}");

    // Coverage: each recorded series has a value test, each alert a firing and a quiet test.
    let cases: Vec<Value> = tests
        .iter()
        .flat_map(|t| {
            let doc: Value = serde_norway::from_str(&std::fs::read_to_string(dir.join(t)).unwrap()).unwrap();
            doc["tests"].as_array().unwrap().clone()
        })
        .collect();
    let exprs: Vec<String> = cases
        .iter()
        .flat_map(|c| c["promql_expr_test"].as_array().cloned().unwrap_or_default())
        .map(|e| e["expr"].as_str().unwrap().replace(' ', ""))
        .collect();
    let alert_tests: Vec<(String, bool)> = cases
        .iter()
        .flat_map(|c| c["alert_rule_test"].as_array().cloned().unwrap_or_default())
        .map(|a| (a["alertname"].as_str().unwrap().to_owned(), !a["exp_alerts"].as_array().unwrap().is_empty()))
        .collect();
    let mut untested = Vec::new();
    for rule in &rules {
        if let Some(record) = rule["record"].as_str() {
            let selector = match rule["labels"]["slo"].as_str() {
                Some(slo) => format!("{record}{{slo=\"{slo}\"}}"),
                None => record.to_owned(),
            };
            if !exprs.contains(&selector) {
                untested.push(selector);
            }
        }
        if let Some(alert) = rule["alert"].as_str() {
            for firing in [true, false] {
                if !alert_tests.contains(&(alert.to_owned(), firing)) {
                    untested.push(format!("{alert} ({})", if firing { "firing" } else { "quiet" }));
                }
            }
        }
    }
    assert!(untested.is_empty(), "rules without a unit test: {untested:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}
