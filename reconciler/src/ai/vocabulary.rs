//! Value vocabularies for synthetic data (`ai.features.seedVocabularies`): the model proposes
//! example values for a schema's free-text columns, from the schema alone (never data). The
//! answer is cached per (model, prompt version, schema) like detection. Every value is checked
//! against its column's type and constraints; a column's values that fail are dropped, and a
//! failed or unusable answer leaves the name-based rules to generate everything.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use super::engine::{AiEngine, AiError, key_of};
use crate::seed::Vocabularies;
use crate::seed::schema::{Check, Kind, Schema, Table};

pub const PROMPT: &str = include_str!("../../prompts/seed-vocabulary.v1.md");
pub const PROMPT_VERSION: &str = "seed-vocabulary.v1";

/// At most this many values per column are kept, each at most this long.
const MAX_VALUES: usize = 20;
const MAX_VALUE_CHARS: usize = 60;

/// Answers by schema, shared by every preview of every repository.
#[derive(Debug, Default)]
pub struct VocabularyCache(Mutex<HashMap<String, (Instant, Vocabularies)>>);

/// The columns a vocabulary may fill: free text, not unique on its own (those carry the row
/// number), not already limited to listed values.
fn open_text(table: &Table) -> impl Iterator<Item = (&str, Option<u32>)> {
    table.columns.iter().filter_map(move |c| {
        let Kind::Text { max } = c.kind else { return None };
        let unique = table.unique.iter().any(|set| set.len() == 1 && set[0] == c.name);
        let listed = table.checks.iter().any(|k| matches!(k, Check::OneOf { column, .. } if *column == c.name));
        (!unique && !listed).then_some((c.name.as_str(), max))
    })
}

/// What the model is asked: tables and their open text columns, with limits. No values.
pub fn question(schema: &Schema) -> String {
    let mut out = String::from("Tables and their text columns:\n");
    for table in &schema.tables {
        let columns: Vec<String> = open_text(table)
            .map(|(name, max)| {
                let limit = max.map_or(String::new(), |m| format!(" (at most {m} characters)"));
                let not_empty = table.checks.iter().any(|k| matches!(k, Check::NotEmpty { column } if column == name));
                format!("{name}: text{limit}{}", if not_empty { ", not empty" } else { "" })
            })
            .collect();
        if !columns.is_empty() {
            let _ = writeln!(out, "- {}: {}", table.name, columns.join("; "));
        }
    }
    out
}

/// The usable part of an answer: known tables and open text columns only, each value plain
/// text within the column's limit. An answer with nothing usable is an error.
pub fn parse(content: &str, schema: &Schema) -> Result<Vocabularies, String> {
    let answer: serde_json::Value = serde_json::from_str(content).map_err(|e| format!("not JSON: {e}"))?;
    let tables = answer.get("tables").and_then(serde_json::Value::as_object).ok_or("no \"tables\" object")?;
    let mut out: Vocabularies = BTreeMap::new();
    for table in &schema.tables {
        let Some(proposed) = tables.get(&table.name).and_then(serde_json::Value::as_object) else { continue };
        for (column, max) in open_text(table) {
            let Some(values) = proposed.get(column).and_then(serde_json::Value::as_array) else { continue };
            let limit = max.map_or(MAX_VALUE_CHARS, |m| (m as usize).min(MAX_VALUE_CHARS));
            let mut kept: Vec<String> = values
                .iter()
                .filter_map(serde_json::Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.chars().count() <= limit)
                .filter(|v| !v.chars().any(|c| c.is_control() || matches!(c, '<' | '>' | ';' | '`' | '\\')))
                .take(MAX_VALUES)
                .map(str::to_owned)
                .collect();
            kept.sort();
            kept.dedup();
            if !kept.is_empty() {
                out.entry(table.name.clone()).or_default().insert(column.to_owned(), kept);
            }
        }
    }
    if out.is_empty() { Err("no usable values for any column".into()) } else { Ok(out) }
}

/// The model's vocabularies for `schema` (cached); an error leaves the rules to do it all.
pub async fn propose(
    engine: &AiEngine,
    cache: &VocabularyCache,
    schema: &Schema,
) -> Result<(Vocabularies, bool), AiError> {
    let user = question(schema);
    let key = key_of(&[PROMPT_VERSION, engine.model(), &user]);
    engine.ask_cached(&cache.0, key, (PROMPT, &user), |content| parse(content, schema)).await
}
