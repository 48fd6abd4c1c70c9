//! Reads usage from Prometheus's HTTP API (`/api/v1/query`, instant vectors): the p95 CPU and
//! memory of each preview container (cAdvisor's `container_cpu_usage_seconds_total` and
//! `container_memory_working_set_bytes`, labelled `namespace` and the service label), and the
//! experiment arms' counters for `previewd experiments report`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::Usage;
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("Prometheus URL {0:?}: an http(s) URL")]
    Url(String),
    #[error("querying Prometheus: {0}")]
    Http(#[from] reqwest::Error),
    #[error("Prometheus answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("Prometheus's answer: {0}")]
    Malformed(String),
}

/// A Prometheus server's query API.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    kind: String,
    result: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// A Prometheus range (`7d`, `90m`), whole minutes at least.
fn range(window: Duration) -> String {
    format!("{}m", (window.as_secs() / 60).max(1))
}

impl Prometheus {
    pub fn new(url: &str) -> Result<Prometheus, PrometheusError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.parse::<http::Uri>().is_err() {
            return Err(PrometheusError::Url(url.to_owned()));
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Prometheus { base: url.trim_end_matches('/').to_owned(), http })
    }

    /// An instant query: each series' labels and value.
    pub async fn query(&self, promql: &str) -> Result<Vec<(BTreeMap<String, String>, f64)>, PrometheusError> {
        let query: String = form_urlencoded::Serializer::new(String::new()).append_pair("query", promql).finish();
        let response = self.http.get(format!("{}/api/v1/query?{query}", self.base)).send().await?;
        let status = response.status();
        let answer: Answer = response.json().await.map_err(|e| PrometheusError::Malformed(e.to_string()))?;
        if answer.status != "success" {
            return Err(PrometheusError::Refused {
                status: status.as_u16(),
                message: answer.error.unwrap_or_else(|| answer.status.clone()),
            });
        }
        let data = answer.data.ok_or_else(|| PrometheusError::Malformed("no data".into()))?;
        if data.kind != "vector" {
            return Err(PrometheusError::Malformed(format!("a {} where a vector was expected", data.kind)));
        }
        Ok(data
            .result
            .into_iter()
            .filter_map(|s| s.value.1.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| (s.metric, v)))
            .collect())
    }

    /// The p95 CPU (cores) and memory (bytes) of every container in a preview namespace over
    /// `sizing.window`: each pod's p95, the highest across pods, per (namespace, service).
    pub async fn usage(&self, config: &Config) -> Result<Vec<Usage>, PrometheusError> {
        let (cpu, memory) = queries(config);
        let label = &config.sizing.service_label;
        let mut by_key: BTreeMap<(String, String), Usage> = BTreeMap::new();
        for (query, is_cpu) in [(cpu, true), (memory, false)] {
            for (labels, value) in self.query(&query).await? {
                let (Some(namespace), Some(service)) = (labels.get("namespace"), labels.get(label)) else { continue };
                let usage = by_key.entry((namespace.clone(), service.clone())).or_insert_with(|| Usage {
                    namespace: namespace.clone(),
                    service: service.clone(),
                    cpu_cores: 0.0,
                    memory_bytes: 0.0,
                });
                if is_cpu {
                    usage.cpu_cores = value;
                } else {
                    usage.memory_bytes = value;
                }
            }
        }
        Ok(by_key.into_values().collect())
    }

    /// Each arm's counters increased over `window`: (experiment, arm) → (metric, increase).
    pub async fn experiment_totals(&self, window: Duration) -> Result<Totals, PrometheusError> {
        let mut totals = Totals::new();
        for metric in [
            "previewd_experiment_previews_total",
            "previewd_experiment_corrections_total",
            "previewd_experiment_ai_spend_usd_total",
        ] {
            let query = format!("sum by (experiment, arm) (increase({metric}[{}]))", range(window));
            for (labels, value) in self.query(&query).await? {
                let (Some(experiment), Some(arm)) = (labels.get("experiment"), labels.get("arm")) else { continue };
                totals.entry((experiment.clone(), arm.clone())).or_default().insert(metric.to_owned(), value);
            }
        }
        Ok(totals)
    }
}

/// Counter increases by (experiment, arm), then by metric name.
pub type Totals = BTreeMap<(String, String), BTreeMap<String, f64>>;

/// The CPU and memory queries (PromQL) for `config`: preview namespaces by prefix, the
/// service by `sizing.serviceLabel`, the pause container and pod-level series left out.
pub fn queries(config: &Config) -> (String, String) {
    let label = &config.sizing.service_label;
    // The prefix is letters, digits and '-' (validated): nothing to escape in the regex.
    let selector = format!(r#"namespace=~"{}.+", {label}!="", {label}!="POD""#, config.namespace_prefix);
    let window = range(config.sizing.window);
    let cpu = format!(
        "max by (namespace, {label}) (quantile_over_time(0.95, (sum by (namespace, pod, {label}) \
         (rate(container_cpu_usage_seconds_total{{{selector}}}[5m])))[{window}:1m]))"
    );
    let memory = format!(
        "max by (namespace, {label}) (quantile_over_time(0.95, container_memory_working_set_bytes{{{selector}}}[{window}]))"
    );
    (cpu, memory)
}
