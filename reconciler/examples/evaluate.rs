//! Precision and recall of service detection on the labelled set in `docs/eval/`:
//!
//! ```sh
//! cargo run -p previewd --example evaluate                      # the path globs alone
//! PREVIEWD_AI_BASE_URL=http://localhost:11434/v1 PREVIEWD_AI_MODEL=qwen2.5-coder:7b \
//!   cargo run -p previewd --example evaluate                    # and with an AI endpoint
//! ```
//!
//! `PREVIEWD_AI_API_KEY` is sent when set. Any OpenAI-compatible chat-completions endpoint works.
#![allow(clippy::print_stderr)]

use std::process::ExitCode;

use previewd::ai::engine::AiEngine;
use previewd::ai::eval::{self, row};
use previewd::config::{AiConfig, AiMode};

#[tokio::main]
async fn main() -> ExitCode {
    let path = std::env::args().nth(1).unwrap_or_else(|| "docs/eval/service-detection.yaml".to_owned());
    let data = match std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}")).and_then(|t| eval::load(&t)) {
        Ok(data) => data,
        Err(err) => {
            eprintln!("evaluate: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("{} labelled changes from {path}\n", data.cases.len());
    println!("| detection | precision | recall | exact | AI fallbacks |\n|---|---|---|---|---|");
    match eval::score_static(&data) {
        Ok(score) => println!("{}", row("path globs", &score)),
        Err(err) => {
            eprintln!("evaluate: {err}");
            return ExitCode::FAILURE;
        }
    }
    let Ok(base_url) = std::env::var("PREVIEWD_AI_BASE_URL") else {
        eprintln!("\n(set PREVIEWD_AI_BASE_URL and PREVIEWD_AI_MODEL to score an AI endpoint too)");
        return ExitCode::SUCCESS;
    };
    let config = AiConfig {
        enabled: true,
        base_url,
        model: std::env::var("PREVIEWD_AI_MODEL").unwrap_or_else(|_| AiConfig::default().model),
        requests_per_minute: 1000,
        ..AiConfig::default()
    };
    let key = std::env::var("PREVIEWD_AI_API_KEY").unwrap_or_default();
    let engine = match AiEngine::new(&config, &key) {
        Ok(engine) => engine,
        Err(err) => {
            eprintln!("evaluate: {err}");
            return ExitCode::FAILURE;
        }
    };
    for (label, mode) in
        [("path globs + AI (addOnly)", AiMode::AddOnly), ("path globs + AI (decideAbove)", AiMode::DecideAbove)]
    {
        match eval::score_with_ai(&data, &engine, mode, config.min_confidence).await {
            Ok(score) => println!("{}", row(&format!("{label}, {}", config.model), &score)),
            Err(err) => eprintln!("evaluate: {err}"),
        }
    }
    ExitCode::SUCCESS
}
