//! Synthetic test data from a schema (pure): PostgreSQL DDL in ([`schema::parse`]), rows out
//! ([`generate::generate`]), as SQL a loader runs or as JSON. Deterministic for a given
//! (schema, seed, rows). `previewd seed` is the offline entry point (docs/seed.md).

pub mod generate;
pub mod schema;
pub mod source;
mod values;

use std::fmt::Write as _;

pub use generate::{Datum, Rows};
pub use schema::Schema;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeedError {
    #[error("SQL: {0}")]
    Sql(String),
    #[error("schema: {0}")]
    Schema(String),
    #[error("even one row per table makes {bytes} bytes, more than the {max} allowed")]
    TooLarge { bytes: usize, max: usize },
}

/// Values to pick from, per table and column (the AI's proposals, checked: `ai::vocabulary`).
pub type Vocabularies = std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>>;

/// What a preview's data set is made with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub rows: usize,
    pub seed: u64,
    pub max_bytes: usize,
    pub format: Format,
    pub vocabularies: Vocabularies,
}

/// What a data set is written as.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "camelCase")]
pub enum Format {
    /// One transaction of INSERTs, parents first (what `psql` loads).
    #[default]
    Sql,
    /// `{table: [{column: value}]}`, tables parents first.
    Json,
}

/// Reads the schema (PostgreSQL DDL) and generates `rows` rows per table.
pub fn from_sql(sql: &str, rows: usize, seed: u64) -> Result<(Schema, Vec<Rows>), SeedError> {
    from_files(&[("schema.sql".to_owned(), sql)], rows, seed)
}

/// Reads the schema files (SQL, JSON Schema, OpenAPI, protobuf: `source`) and generates `rows`
/// rows per table.
pub fn from_files(files: &[(String, &str)], rows: usize, seed: u64) -> Result<(Schema, Vec<Rows>), SeedError> {
    let schema = generable(source::read(files)?)?;
    let data = generate::generate(&schema, rows, seed)?;
    Ok((schema, data))
}

/// The schema of `files`, if the generator can fill it.
pub fn schema_of(files: &[(String, &str)]) -> Result<Schema, SeedError> {
    generable(source::read(files)?)
}

/// A schema the generator can fill: every NOT NULL column without a default has a known type.
fn generable(schema: Schema) -> Result<Schema, SeedError> {
    for table in &schema.tables {
        if let Some(column) =
            table.columns.iter().find(|c| matches!(c.kind, schema::Kind::Other(_)) && !c.nullable && !c.defaulted)
        {
            return Err(SeedError::Schema(format!(
                "{}.{}: NOT NULL of a type the generator does not know ({:?})",
                table.name, column.name, column.kind
            )));
        }
    }
    Ok(schema)
}

/// A data set for a preview's loader, within a size: SQL that replaces the tables' rows, or
/// JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub sql: String,
    /// Rows per table, parents first.
    pub tables: Vec<(String, usize)>,
}

/// Generates up to `rows` rows per table, halving the count until the data set fits
/// `max_bytes`. SQL empties the tables first (a reseed after a schema change replaces the old
/// rows).
pub fn dataset(files: &[(String, &str)], options: &Options) -> Result<Dataset, SeedError> {
    let schema = generable(source::read(files)?)?;
    let (seed, max_bytes) = (options.seed, options.max_bytes);
    let mut count = options.rows.max(1);
    loop {
        let data = generate::generate_with(&schema, count, seed, &options.vocabularies)?;
        let sql = match options.format {
            Format::Sql => write_sql(&data, true),
            Format::Json => format!("{}\n", to_json(&data)),
        };
        if sql.len() <= max_bytes {
            let tables = data.iter().map(|t| (t.table.clone(), t.rows.len())).collect();
            return Ok(Dataset { sql, tables });
        }
        if count == 1 {
            return Err(SeedError::TooLarge { bytes: sql.len(), max: max_bytes });
        }
        count /= 2;
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(datum: &Datum) -> String {
    match datum {
        Datum::Null => "NULL".to_owned(),
        Datum::Int(n) => n.to_string(),
        Datum::Decimal(d) => d.clone(),
        Datum::Bool(b) => b.to_string(),
        Datum::Text(t) => format!("'{}'", t.replace('\'', "''")),
    }
}

/// The data set as SQL: one transaction, parents first, sequences (serial and identity) moved
/// past the rows.
pub fn to_sql(data: &[Rows]) -> String {
    write_sql(data, false)
}

fn write_sql(data: &[Rows], replace: bool) -> String {
    let mut out = String::from("BEGIN;\n");
    if replace && !data.is_empty() {
        let tables: Vec<String> = data.iter().map(|t| quote(&t.table)).collect();
        let _ = writeln!(out, "TRUNCATE {} RESTART IDENTITY CASCADE;", tables.join(", "));
    }
    for table in data.iter().filter(|t| !t.rows.is_empty()) {
        let columns: Vec<String> = table.columns.iter().map(|c| quote(c)).collect();
        // Identity columns (`GENERATED ALWAYS AS IDENTITY`) take the generated ids too.
        let _ = writeln!(
            out,
            "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES",
            quote(&table.table),
            columns.join(", ")
        );
        let rows: Vec<String> = table
            .rows
            .iter()
            .map(|row| format!("  ({})", row.iter().map(literal).collect::<Vec<_>>().join(", ")))
            .collect();
        let _ = writeln!(out, "{};", rows.join(",\n"));
        for serial in &table.serials {
            let _ = writeln!(
                out,
                "SELECT setval(pg_get_serial_sequence('{}', '{}'), (SELECT max({}) FROM {}));",
                table.table.replace('\'', "''"),
                serial.replace('\'', "''"),
                quote(serial),
                quote(&table.table)
            );
        }
    }
    out.push_str("COMMIT;\n");
    out
}

/// The data set as JSON: `{table: [{column: value}]}`, tables parents first.
pub fn to_json(data: &[Rows]) -> serde_json::Value {
    let tables = data
        .iter()
        .map(|t| {
            let rows: Vec<serde_json::Value> = t
                .rows
                .iter()
                .map(|row| {
                    let fields = t.columns.iter().zip(row).map(|(c, d)| {
                        let value = match d {
                            Datum::Null => serde_json::Value::Null,
                            Datum::Int(n) => serde_json::json!(n),
                            // A JSON number: what a `number` in a JSON Schema or OpenAPI is.
                            Datum::Decimal(s) => {
                                s.parse::<f64>().map_or_else(|_| serde_json::json!(s), |n| serde_json::json!(n))
                            }
                            Datum::Text(s) => serde_json::json!(s),
                            Datum::Bool(b) => serde_json::json!(b),
                        };
                        (c.clone(), value)
                    });
                    serde_json::Value::Object(fields.collect())
                })
                .collect();
            (t.table.clone(), serde_json::Value::Array(rows))
        })
        .collect();
    serde_json::Value::Object(tables)
}

#[cfg(test)]
mod tests;
