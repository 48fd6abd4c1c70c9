//! Prices, the organisation's budget, and spot capacity.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// USD prices of what previews request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Pricing {
    #[schemars(range(min = 0.0))]
    pub cpu_core_hour: f64,
    #[schemars(range(min = 0.0))]
    pub memory_gb_hour: f64,
    #[schemars(range(min = 0.0))]
    pub storage_gb_month: f64,
    /// Fraction taken off compute prices when previews run on spot capacity (0-0.95).
    #[schemars(range(min = 0.0, max = 0.95))]
    pub spot_discount: f64,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing { cpu_core_hour: 0.04, memory_gb_hour: 0.005, storage_gb_month: 0.10, spot_discount: 0.0 }
    }
}

impl Pricing {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (field, v) in [
            ("pricing.cpuCoreHour", self.cpu_core_hour),
            ("pricing.memoryGbHour", self.memory_gb_hour),
            ("pricing.storageGbMonth", self.storage_gb_month),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(field, "must be a non-negative number"));
            }
        }
        if !(0.0..0.95).contains(&self.spot_discount) {
            return Err(invalid("pricing.spotDiscount", "must be between 0 and 0.95"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// USD per month. When the running previews' monthly projection exceeds it, the
    /// `previewd_cost_budget_exceeded` metric is 1 and a `BudgetExceeded` Event is published.
    pub monthly_usd: Option<f64>,
}

impl BudgetConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.monthly_usd.is_some_and(|b| !(b.is_finite() && b > 0.0)) {
            return Err(invalid("budget.monthlyUsd", "must be a positive number"));
        }
        Ok(())
    }
}

/// Prefer spot capacity for preview workloads (passed to the services' Helm values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SpotConfig {
    pub enabled: bool,
    pub node_label_key: String,
    pub node_label_value: String,
    /// Taint key of spot nodes to tolerate (none when unset).
    pub toleration_key: Option<String>,
}

impl Default for SpotConfig {
    fn default() -> Self {
        SpotConfig {
            enabled: false,
            node_label_key: "karpenter.sh/capacity-type".into(),
            node_label_value: "spot".into(),
            toleration_key: None,
        }
    }
}
