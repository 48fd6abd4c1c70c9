//! `previewd seed`: synthetic test data from schema files, offline.

use std::path::PathBuf;

pub use crate::seed::Format;

/// The most rows per table one run makes (a data set is held in memory, then printed).
pub const MAX_ROWS: usize = 100_000;

/// Reads the schema files in order and prints `rows` rows per table.
pub fn seed(schema: &[PathBuf], rows: usize, seed: u64, format: Format) -> Result<String, String> {
    if rows > MAX_ROWS {
        return Err(format!("--rows {rows}: at most {MAX_ROWS} rows per table"));
    }
    let mut texts = Vec::new();
    for path in schema {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        texts.push((path.display().to_string(), text));
    }
    let files: Vec<(String, &str)> = texts.iter().map(|(p, t)| (p.clone(), t.as_str())).collect();
    let (_, data) = crate::seed::from_files(&files, rows, seed).map_err(|e| e.to_string())?;
    match format {
        Format::Sql => Ok(crate::seed::to_sql(&data)),
        Format::Json => serde_json::to_string_pretty(&crate::seed::to_json(&data))
            .map(|j| format!("{j}\n"))
            .map_err(|e| e.to_string()),
    }
}
