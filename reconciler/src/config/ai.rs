//! Optional AI augmentation: any OpenAI-compatible chat-completions endpoint (OpenAI, Azure
//! OpenAI's compatible endpoint, a local Ollama or vLLM). Key: `PREVIEWD_AI_API_KEY`.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::{Globs, HumanDuration};
use super::{ConfigError, invalid};

/// How AI and the static path globs combine when choosing a preview's services.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AiMode {
    /// The AI may add services the path globs missed, never remove one.
    #[default]
    AddOnly,
    /// The AI's answer decides when its confidence is at least `minConfidence`.
    DecideAbove,
    /// The path globs decide; the AI is not asked for services.
    StaticOnly,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AiConfig {
    pub enabled: bool,
    /// The `provider` label of the AI metrics (e.g. `openai`, `ollama`).
    pub provider: String,
    /// The API base, e.g. `https://api.openai.com/v1` or `http://ollama.ai:11434/v1`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub base_url: String,
    pub model: String,
    pub mode: AiMode,
    /// With `mode: decideAbove`: the least confidence (0-1) for the AI's answer to decide.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_confidence: f64,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "HumanDuration")]
    pub timeout: Duration,
    #[schemars(range(min = 1))]
    pub requests_per_minute: u32,
    /// How long an answer is reused for the same diff, services, model and prompt.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "HumanDuration")]
    pub cache_ttl: Duration,
    /// The most diff text sent per request (bytes); the rest is summarised by file name.
    #[schemars(range(min = 1024, max = 262144))]
    pub max_diff_bytes: usize,
    /// Paths whose diffs are never sent (lockfiles, generated and vendored code are left out
    /// by default; these are added).
    pub ignore_paths: Globs,
    /// USD per million input and output tokens, for `previewd_ai_cost_usd_total`.
    pub prices: AiPrices,
    pub features: AiFeatures,
}

impl Default for AiConfig {
    fn default() -> Self {
        AiConfig {
            enabled: false,
            provider: "openai".into(),
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            mode: AiMode::default(),
            min_confidence: 0.7,
            timeout: Duration::from_secs(20),
            requests_per_minute: 100,
            cache_ttl: Duration::from_secs(3600),
            max_diff_bytes: 16 * 1024,
            ignore_paths: Globs::default(),
            prices: AiPrices::default(),
            features: AiFeatures::default(),
        }
    }
}

impl AiConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(invalid("ai.minConfidence", "between 0 and 1"));
        }
        if self.requests_per_minute == 0 {
            return Err(invalid("ai.requestsPerMinute", "must be at least 1"));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(300) {
            return Err(invalid("ai.timeout", "between 1s and 5m"));
        }
        if self.cache_ttl > Duration::from_secs(30 * 24 * 3600) {
            return Err(invalid("ai.cacheTtl", "at most 30d"));
        }
        if !(1024..=256 * 1024).contains(&self.max_diff_bytes) {
            return Err(invalid("ai.maxDiffBytes", "between 1024 and 262144"));
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return Err(invalid("ai.baseUrl", "an http(s) URL"));
        }
        if !(self.prices.input_per_million >= 0.0 && self.prices.output_per_million >= 0.0) {
            return Err(invalid("ai.prices", "non-negative numbers"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AiPrices {
    #[schemars(range(min = 0.0))]
    pub input_per_million: f64,
    #[schemars(range(min = 0.0))]
    pub output_per_million: f64,
}

impl Default for AiPrices {
    fn default() -> Self {
        AiPrices { input_per_million: 0.15, output_per_million: 0.60 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AiFeatures {
    /// Ask which services a PR touches (merged with the path globs per `mode`).
    pub service_detection: bool,
    /// Suggest which of the repository's `testSuites` the change touches (in the PR comment).
    pub test_selection: bool,
    /// Shorten a stale PR's idle TTL from its activity (commits, comments, age), within the
    /// policy's bounds.
    pub ttl_prediction: bool,
    /// Propose example values for synthetic data's text columns (`repositories[].seed`), from
    /// the schema alone; the columns' constraints still decide.
    pub seed_vocabularies: bool,
}

impl Default for AiFeatures {
    fn default() -> Self {
        AiFeatures { service_detection: true, test_selection: false, ttl_prediction: false, seed_vocabularies: false }
    }
}
