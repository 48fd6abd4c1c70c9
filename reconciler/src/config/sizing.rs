//! Right-sizing (`sizing`): requests proposed per service from the p95 CPU and memory its pods
//! used in recent previews, read from Prometheus. Proposals are shown (`suggest`), or applied
//! too (`auto`), always within the floors and ceilings and never above the namespace quota.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cluster::Resources;
use super::types::{Bytes, Cpu, MIB};
use super::{ConfigError, invalid};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SizingMode {
    /// No sizing: each service's configured requests. (Not `off`: YAML 1.1 readers, Helm's
    /// among them, take that for `false`.)
    #[default]
    Manual,
    /// Proposals in the PR comment and `previewd cost`; the configured requests still apply.
    Suggest,
    /// Proposals applied to the Helm values (and the cost estimate).
    Auto,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SizingConfig {
    pub mode: SizingMode,
    /// Prometheus's base URL (e.g. `http://prometheus-operated.monitoring:9090`); required
    /// unless `mode: manual`.
    pub prometheus_url: Option<String>,
    /// How far back usage is read.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::types::HumanDuration")]
    pub window: std::time::Duration,
    /// The container metrics' label that names the service (cAdvisor's `container`).
    pub service_label: String,
    /// Added to the p95, in percent.
    pub headroom_percent: u32,
    /// No proposal goes below this.
    pub floor: Resources,
    /// No proposal goes above this.
    pub ceiling: Resources,
    /// How often proposals are read again.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::types::HumanDuration")]
    pub refresh: std::time::Duration,
}

impl Default for SizingConfig {
    fn default() -> SizingConfig {
        SizingConfig {
            mode: SizingMode::Manual,
            prometheus_url: None,
            window: std::time::Duration::from_secs(7 * 24 * 3600),
            service_label: "container".into(),
            headroom_percent: 20,
            floor: Resources {
                cpu: Cpu::known("10m", 0.01),
                memory: Bytes::known("32Mi", 32.0 * MIB),
                ephemeral_storage: None,
            },
            ceiling: Resources {
                cpu: Cpu::known("2", 2.0),
                memory: Bytes::known("4Gi", 4096.0 * MIB),
                ephemeral_storage: None,
            },
            refresh: std::time::Duration::from_secs(3600),
        }
    }
}

impl SizingConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.mode != SizingMode::Manual {
            let url = self.prometheus_url.as_deref().unwrap_or_default();
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.parse::<http::Uri>().is_err() {
                return Err(invalid(
                    "sizing.prometheusUrl",
                    "an http(s) URL of Prometheus (required unless mode: manual)",
                ));
            }
        }
        let label = &self.service_label;
        if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid("sizing.serviceLabel", "a Prometheus label name"));
        }
        if self.window.as_secs() < 3600 {
            return Err(invalid("sizing.window", "at least 1h"));
        }
        if self.refresh.as_secs() < 60 {
            return Err(invalid("sizing.refresh", "at least 1m"));
        }
        if self.headroom_percent > 400 {
            return Err(invalid("sizing.headroomPercent", "at most 400"));
        }
        if self.floor.cpu.cores() > self.ceiling.cpu.cores() || self.floor.memory.bytes() > self.ceiling.memory.bytes()
        {
            return Err(invalid("sizing.floor", "at most the ceiling"));
        }
        Ok(())
    }
}
