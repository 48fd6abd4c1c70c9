//! AI as augmentation, never a dependency: service detection from the PR's diff through any
//! OpenAI-compatible chat-completions endpoint (cached, rate-limited, with a timeout), test
//! suggestions, and a TTL prediction from PR activity. On any failure, or with AI off, the
//! static path-glob mapping decides, exactly as without this module.

pub mod answer;
pub mod engine;
pub mod eval;
pub mod excerpt;
pub mod ttl;
pub mod vocabulary;

/// The prompt, versioned with its file name: a new wording is a new version, so cached
/// answers to the old one are not reused.
pub const PROMPT: &str = include_str!("../../prompts/service-detection.v1.md");
pub const PROMPT_VERSION: &str = "service-detection.v1";
