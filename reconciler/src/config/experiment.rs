//! An A/B experiment per repository (`repositories[].experiment`): each PR is assigned to one
//! arm by a hash of (experiment, repository, PR), with the configured weights. An arm fixes how
//! services are detected (rules only, or with AI and which model) and how services are sized.
//! Ending an experiment is removing it (or renaming it, which assigns PRs afresh).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// At most this many arms: they are metric label values.
const MAX_ARMS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Names the experiment in the PreviewEnvironments, the metrics and the report.
    pub name: String,
    #[schemars(length(min = 2, max = 8))]
    pub arms: Vec<Arm>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Arm {
    pub name: String,
    /// Relative share of PRs (default 1).
    #[serde(default = "Arm::default_weight")]
    pub weight: u32,
    /// How services are detected: `rules` (build graph and globs only) or `ai` (merged with
    /// the AI's answer, when `ai` is configured). Default: as the rest of the config says.
    #[serde(default)]
    pub detection: Option<Detection>,
    /// The AI model this arm asks (with `detection: ai`; default `ai.model`).
    #[serde(default)]
    pub model: Option<String>,
    /// How this arm sizes services (default: `sizing.mode`).
    #[serde(default)]
    pub sizing: Option<super::SizingMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Detection {
    Rules,
    Ai,
}

impl Arm {
    fn default_weight() -> u32 {
        1
    }
}

impl ExperimentConfig {
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, why: &str| Err((field.to_owned(), why.to_owned()));
        if !crate::names::is_dns_label(&self.name) || self.name.len() > 40 {
            return bad("name", "a DNS label of at most 40 characters");
        }
        if self.arms.len() < 2 || self.arms.len() > MAX_ARMS {
            return bad("arms", "2 to 8 arms");
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, arm) in self.arms.iter().enumerate() {
            if !crate::names::is_dns_label(&arm.name) || arm.name.len() > 40 || !seen.insert(arm.name.as_str()) {
                return Err((format!("arms[{i}].name"), "a distinct DNS label of at most 40 characters".into()));
            }
            if arm.model.as_ref().is_some_and(|m| m.trim().is_empty() || m.len() > 100) {
                return Err((format!("arms[{i}].model"), "a model name of 1-100 characters".into()));
            }
            if arm.weight > 1_000_000 {
                return Err((format!("arms[{i}].weight"), "at most 1000000".into()));
            }
        }
        if self.arms.iter().all(|a| a.weight == 0) {
            return bad("arms", "at least one arm needs a weight above 0");
        }
        Ok(())
    }
}
