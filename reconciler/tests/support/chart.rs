//! The project's helm (`infra/setup.sh` puts it in `.tools/bin`) and the chart rendered with
//! the example configuration.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

use super::root;

/// `queue.url`, which the chart requires.
pub const QUEUE: &str = "queue.url=https://sqs.us-east-1.amazonaws.com/123456789012/previewd-events.fifo";

/// Runs helm in the workspace root, with its caches in `.tools/helm`.
pub fn helm(args: &[&str]) -> Output {
    let root = root();
    let helm = root.join(".tools/bin/helm");
    assert!(helm.exists(), "{} missing: run infra/setup.sh", helm.display());
    let home = root.join(".tools/helm");
    Command::new(helm)
        .args(args)
        .current_dir(&root)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .unwrap()
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The example configuration, as values.
pub fn example_config() -> Value {
    serde_norway::from_str(&std::fs::read_to_string(root().join("docs/examples/config.yaml")).unwrap()).unwrap()
}

/// A values file with `config` in it, in a fresh temporary path.
pub fn values_file(config: &Value) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = std::env::temp_dir().join(format!("previewd-values-{}-{n}.yaml", std::process::id()));
    std::fs::write(&file, serde_norway::to_string(&serde_json::json!({"config": config})).unwrap()).unwrap();
    file
}

/// `helm template` in namespace `previewd` with `config`, the queue and extra `--set` values.
pub fn template_config(config: &Value, sets: &[&str]) -> Vec<Value> {
    let file = values_file(config);
    let mut args = vec!["template", "pd", "charts/previewd", "--namespace", "previewd", "--set", QUEUE];
    args.extend(["-f", file.to_str().unwrap()]);
    args.extend(sets.iter().flat_map(|s| ["--set", s]));
    let out = helm(&args);
    assert!(out.status.success(), "{}", text(&out));
    let yaml = String::from_utf8(out.stdout).unwrap();
    serde_norway::Deserializer::from_str(&yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// `helm template` with the example configuration and extra `--set` values.
pub fn template(sets: &[&str]) -> Vec<Value> {
    template_config(&example_config(), sets)
}
