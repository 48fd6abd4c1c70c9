//! The AI engine: asks an OpenAI-compatible chat-completions endpoint which services a PR's
//! diff touches. Answers are cached by (diff, services, model, prompt version); requests are
//! rate-limited and time-limited; token usage is priced into a metric. Every failure is an
//! [`AiError`] the caller answers with the static mapping.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs,
    ResponseFormat,
};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::answer::{self, Answer};
use super::excerpt::{ChangedFile, Excerpt, Filter};
use super::{PROMPT, PROMPT_VERSION};
use crate::config::{AiConfig, RepositoryConfig};
use crate::limiter::RateLimiter;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum AiError {
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("over ai.requestsPerMinute; next slot in {} s", .0.as_secs())]
    RateLimited(Duration),
    #[error("the AI endpoint failed: {0}")]
    Api(String),
    #[error("the AI's answer was unusable: {0}")]
    Malformed(String),
    #[error("AI configuration: {0}")]
    Config(String),
}

impl AiError {
    /// Every value of [`AiError::label`].
    pub const LABELS: [&'static str; 5] = ["timeout", "rate_limited", "api", "malformed", "config"];

    pub fn label(&self) -> &'static str {
        match self {
            AiError::Timeout(_) => "timeout",
            AiError::RateLimited(_) => "rate_limited",
            AiError::Api(_) => "api",
            AiError::Malformed(_) => "malformed",
            AiError::Config(_) => "config",
        }
    }
}

/// An answer, and whether it came from the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub answer: Answer,
    pub cached: bool,
    /// What was left out of the diff (ignored or over the byte budget).
    pub omitted: usize,
    /// What the question cost, priced per `ai.prices` (0 from the cache).
    pub spend_usd: f64,
}

/// At most this many answers are cached (the oldest go first).
const CACHE_ENTRIES: usize = 10_000;
/// At most this many file names go into a prompt.
const MAX_FILE_NAMES: usize = 300;

pub struct AiEngine {
    client: Client<OpenAIConfig>,
    config: AiConfig,
    filter: Filter,
    cache: Mutex<HashMap<String, (Instant, Answer)>>,
    limiter: RateLimiter,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for AiEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AiEngine").field("base_url", &self.config.base_url).field("model", &self.config.model).finish()
    }
}

impl AiEngine {
    /// `api_key` from `PREVIEWD_AI_API_KEY` (empty for endpoints without keys, e.g. Ollama).
    pub fn new(config: &AiConfig, api_key: &str) -> Result<AiEngine, AiError> {
        let filter = Filter::new(&config.ignore_paths).map_err(|e| AiError::Config(e.to_string()))?;
        let openai = OpenAIConfig::new().with_api_base(config.base_url.trim_end_matches('/')).with_api_key(api_key);
        // No retries inside the client (its default retries 429 and 5xx up to 3 times): a
        // failed answer falls back to the path globs at once, and every request counts
        // against ai.requestsPerMinute.
        let client = Client::with_config(openai).with_http_service(ReqwestService::default());
        Ok(AiEngine {
            client,
            config: config.clone(),
            filter,
            cache: Mutex::default(),
            limiter: RateLimiter::new(config.requests_per_minute),
            metrics: None,
        })
    }

    pub fn with_metrics(mut self, metrics: Metrics) -> AiEngine {
        for cache_hit in ["true", "false"] {
            metrics.ai_requests.with_label_values(&[self.config.provider.as_str(), cache_hit]);
        }
        for reason in AiError::LABELS {
            metrics.ai_failures.with_label_values(&[reason]);
        }
        self.metrics = Some(metrics);
        self
    }

    pub fn config(&self) -> &AiConfig {
        &self.config
    }

    /// Which of `repo`'s services (and test suites) the change touches, per the model.
    pub async fn detect(&self, repo: &RepositoryConfig, files: &[ChangedFile]) -> Result<Detection, AiError> {
        self.detect_with_evidence(repo, files, &[], None).await
    }

    /// [`Self::detect`], telling the model what the build graph found (`"<file> -> <how it
    /// reaches a service>"` lines): it may add services the graph missed, within the
    /// configured ones. `model` overrides `ai.model` (an experiment's arm).
    pub async fn detect_with_evidence(
        &self,
        repo: &RepositoryConfig,
        files: &[ChangedFile],
        evidence: &[String],
        model: Option<&str>,
    ) -> Result<Detection, AiError> {
        let model = model.unwrap_or(&self.config.model);
        let mut excerpt = self.filter.excerpt(files, self.config.max_diff_bytes);
        excerpt.evidence = evidence.iter().take(MAX_EVIDENCE_LINES).map(|l| l.chars().take(300).collect()).collect();
        let span = tracing::info_span!("ai.analyze_code", model = %model, files = files.len(),
            cached = tracing::field::Empty);
        let result = self.detect_excerpt(repo, &excerpt, model).instrument(span.clone()).await;
        if let Ok(d) = &result {
            span.record("cached", d.cached);
        }
        if let (Err(err), Some(m)) = (&result, &self.metrics) {
            m.ai_failures.with_label_values(&[err.label()]).inc();
        }
        result
    }

    async fn detect_excerpt(
        &self,
        repo: &RepositoryConfig,
        excerpt: &Excerpt,
        model: &str,
    ) -> Result<Detection, AiError> {
        let services: Vec<&str> = repo.services.iter().map(|s| s.name.as_str()).collect();
        let user = user_message(repo, excerpt);
        let key = cache_key(model, &user);
        let cached = self.cache.lock().ok().and_then(|cache| {
            cache.get(&key).filter(|(at, _)| at.elapsed() < self.config.cache_ttl).map(|(_, a)| a.clone())
        });
        self.count(cached.is_some());
        if let Some(answer) = cached {
            return Ok(Detection { answer, cached: true, omitted: excerpt.omitted.len(), spend_usd: 0.0 });
        }
        let (content, spend_usd) = self.ask(PROMPT, &user, model).await?;
        let answer = answer::parse(&content, &services, &repo.test_suites).map_err(AiError::Malformed)?;
        if !answer.dropped.is_empty() {
            tracing::info!(dropped = ?answer.dropped, "the AI named services or tests the repository does not have");
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES
                && let Some(oldest) = cache.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
            cache.insert(key, (Instant::now(), answer.clone()));
        }
        Ok(Detection { answer, cached: false, omitted: excerpt.omitted.len(), spend_usd })
    }

    /// One chat completion (JSON mode, temperature 0) within the rate limit and the timeout:
    /// the answer's text and what it cost (tokens priced per `ai.prices`, also counted in the
    /// metrics).
    pub(crate) async fn ask(&self, system: &str, user: &str, model: &str) -> Result<(String, f64), AiError> {
        self.limiter.try_acquire(Instant::now()).map_err(AiError::RateLimited)?;
        let request = CreateChatCompletionRequestArgs::default()
            .model(model)
            .messages([
                ChatCompletionRequestSystemMessage::from(system).into(),
                ChatCompletionRequestUserMessage::from(user).into(),
            ])
            .response_format(ResponseFormat::JsonObject)
            .temperature(0.0)
            .max_completion_tokens(600u32)
            .build()
            .map_err(|e| AiError::Config(e.to_string()))?;
        let response = tokio::time::timeout(self.config.timeout, self.client.chat().create(request))
            .await
            .map_err(|_| AiError::Timeout(self.config.timeout))?
            .map_err(api_error)?;
        let prices = &self.config.prices;
        let spend_usd = response.usage.as_ref().map_or(0.0, |usage| {
            f64::from(usage.prompt_tokens) * prices.input_per_million / 1e6
                + f64::from(usage.completion_tokens) * prices.output_per_million / 1e6
        });
        if let (Some(usage), Some(m)) = (&response.usage, &self.metrics) {
            m.ai_tokens.with_label_values(&["input"]).inc_by(u64::from(usage.prompt_tokens));
            m.ai_tokens.with_label_values(&["output"]).inc_by(u64::from(usage.completion_tokens));
            m.ai_cost.inc_by(spend_usd);
        }
        let content = response
            .choices
            .first()
            .and_then(|c| c.message.content.clone())
            .ok_or_else(|| AiError::Malformed("no message in the answer".to_owned()))?;
        Ok((content, spend_usd))
    }

    /// Answers cached under `key` (another question kind than detection: its own prompt
    /// version in the key), else asked and kept when `parse` accepts them.
    pub(crate) async fn ask_cached<T: Clone + Send + 'static>(
        &self,
        cache: &Mutex<HashMap<String, (Instant, T)>>,
        key: String,
        question: (&str, &str),
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<(T, bool), AiError> {
        let cached = cache
            .lock()
            .ok()
            .and_then(|c| c.get(&key).filter(|(at, _)| at.elapsed() < self.config.cache_ttl).map(|(_, v)| v.clone()));
        self.count(cached.is_some());
        if let Some(value) = cached {
            return Ok((value, true));
        }
        let (system, user) = question;
        let result = self
            .ask(system, user, &self.config.model)
            .await
            .and_then(|(content, _)| parse(&content).map_err(AiError::Malformed));
        match result {
            Ok(value) => {
                if let Ok(mut c) = cache.lock() {
                    if c.len() >= CACHE_ENTRIES
                        && let Some(oldest) = c.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
                    {
                        c.remove(&oldest);
                    }
                    c.insert(key, (Instant::now(), value.clone()));
                }
                Ok((value, false))
            }
            Err(err) => {
                if let Some(m) = &self.metrics {
                    m.ai_failures.with_label_values(&[err.label()]).inc();
                }
                Err(err)
            }
        }
    }

    pub(crate) fn model(&self) -> &str {
        &self.config.model
    }

    fn count(&self, cache_hit: bool) {
        if let Some(m) = &self.metrics {
            m.ai_requests
                .with_label_values(&[self.config.provider.as_str(), if cache_hit { "true" } else { "false" }])
                .inc();
        }
    }
}

fn api_error(err: OpenAIError) -> AiError {
    match err {
        OpenAIError::ApiError(e) if e.status_code.as_u16() == 429 => {
            AiError::Api(format!("429 rate limited by the endpoint: {}", e.api_error.message))
        }
        OpenAIError::ApiError(e) => AiError::Api(format!("{}: {}", e.status_code, e.api_error.message)),
        OpenAIError::JSONDeserialize(e, _) => AiError::Malformed(format!("not a chat completion: {e}")),
        other => AiError::Api(other.to_string()),
    }
}

/// The prompt's user part: the services, the test suites, the files and the diff excerpt. It is
/// also the cache key's input, so any change in what the model sees is a new question.
/// Evidence lines sent at most (a PR can reach every service through thousands of files).
const MAX_EVIDENCE_LINES: usize = 40;

pub fn user_message(repo: &RepositoryConfig, excerpt: &Excerpt) -> String {
    let mut out = String::from("Services:\n");
    for service in &repo.services {
        let paths =
            if service.paths.is_empty() { "(always deployed)".to_owned() } else { service.paths.patterns().join(", ") };
        let _ = write!(out, "- {}: {paths}", service.name);
        if let Some(description) = &service.description {
            let _ = write!(out, " — {description}");
        }
        out.push('\n');
    }
    if !repo.test_suites.is_empty() {
        let _ = writeln!(out, "\nTest suites: {}", repo.test_suites.join(", "));
    }
    let _ = writeln!(out, "\nChanged files ({}):", excerpt.files.len());
    for file in excerpt.files.iter().take(MAX_FILE_NAMES) {
        let _ = writeln!(out, "- {file}");
    }
    if excerpt.files.len() > MAX_FILE_NAMES {
        let _ = writeln!(out, "- ... and {} more", excerpt.files.len() - MAX_FILE_NAMES);
    }
    if !excerpt.omitted.is_empty() {
        let _ = writeln!(out, "\nDiffs left out: {}", excerpt.omitted.len());
    }
    if !excerpt.evidence.is_empty() {
        let _ = writeln!(out, "\nBuild graph evidence (how changed files reach services):");
        for line in &excerpt.evidence {
            let _ = writeln!(out, "- {line}");
        }
    }
    let _ = write!(out, "\nDiff excerpt:\n{}", excerpt.diff);
    out
}

fn cache_key(model: &str, user: &str) -> String {
    key_of(&[PROMPT_VERSION, model, user])
}

/// A cache key over `parts` (each ended, so no two lists of parts share a key).
pub(crate) fn key_of(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}
