//! Evaluating service detection on a labelled set of changes (`docs/eval/`): precision and
//! recall of the path globs alone and with the AI, micro-averaged over every (change,
//! service) decision. `cargo run -p previewd --example evaluate` prints the table.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::answer;
use super::engine::AiEngine;
use super::excerpt::ChangedFile;
use crate::config::{AiMode, RepositoryConfig};
use crate::github::detect::ServiceMatcher;

#[derive(Debug, Clone, Deserialize)]
pub struct Dataset {
    pub repository: RepositoryConfig,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub name: String,
    /// Path -> patch.
    pub files: BTreeMap<String, String>,
    pub expected: Vec<String>,
}

impl Case {
    pub fn changed(&self) -> Vec<ChangedFile> {
        self.files.iter().map(|(path, patch)| ChangedFile { path: path.clone(), patch: Some(patch.clone()) }).collect()
    }
}

/// Counts over every decision.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    pub true_positives: usize,
    pub predicted: usize,
    pub expected: usize,
    pub exact: usize,
    pub cases: usize,
    /// Cases where the AI failed and the path globs decided.
    pub fallbacks: usize,
}

impl Score {
    pub fn precision(&self) -> f64 {
        if self.predicted == 0 { 1.0 } else { self.true_positives as f64 / self.predicted as f64 }
    }
    pub fn recall(&self) -> f64 {
        if self.expected == 0 { 1.0 } else { self.true_positives as f64 / self.expected as f64 }
    }
    pub fn exact_rate(&self) -> f64 {
        if self.cases == 0 { 0.0 } else { self.exact as f64 / self.cases as f64 }
    }

    fn add(&mut self, predicted: &[String], expected: &[String]) {
        self.cases += 1;
        self.predicted += predicted.len();
        self.expected += expected.len();
        self.true_positives += predicted.iter().filter(|p| expected.contains(p)).count();
        let mut a = predicted.to_vec();
        let mut b = expected.to_vec();
        a.sort();
        b.sort();
        if a == b {
            self.exact += 1;
        }
    }
}

pub fn load(yaml: &str) -> Result<Dataset, String> {
    serde_norway::from_str(yaml).map_err(|e| format!("evaluation set: {e}"))
}

/// The path globs alone.
pub fn score_static(data: &Dataset) -> Result<Score, String> {
    let matcher = ServiceMatcher::new(&data.repository);
    let mut score = Score::default();
    for case in &data.cases {
        let predicted = matcher.services_for(case.files.keys().map(String::as_str));
        score.add(&predicted, &case.expected);
    }
    Ok(score)
}

/// The path globs merged with `engine`'s answers per `mode` (failures fall back, and count).
pub async fn score_with_ai(
    data: &Dataset,
    engine: &AiEngine,
    mode: AiMode,
    min_confidence: f64,
) -> Result<Score, String> {
    let matcher = ServiceMatcher::new(&data.repository);
    let repo = &data.repository;
    let mut score = Score::default();
    for case in &data.cases {
        let static_choice = matcher.services_for(case.files.keys().map(String::as_str));
        let predicted = match engine.detect(repo, &case.changed()).await {
            Ok(detection) => answer::merge_for(repo, &static_choice, &detection.answer, mode, min_confidence).services,
            Err(_) => {
                score.fallbacks += 1;
                static_choice
            }
        };
        score.add(&predicted, &case.expected);
    }
    Ok(score)
}

/// One Markdown table row.
pub fn row(label: &str, score: &Score) -> String {
    format!(
        "| {label} | {:.2} | {:.2} | {}/{} | {} |",
        score.precision(),
        score.recall(),
        score.exact,
        score.cases,
        score.fallbacks
    )
}
