//! Rows for a schema (pure, deterministic): the same (schema, seed, rows) gives the same data
//! on any machine. Tables are filled parents first; a cycle is broken at a nullable foreign
//! key. Values fit their types and lengths, `NOT NULL`, `UNIQUE`, foreign keys and the CHECKs
//! in [`Check`]; they are plausible for their column names, and made up: nothing is copied
//! from anywhere.

use std::collections::{BTreeMap, BTreeSet};

use super::SeedError;
use super::schema::{Check, Column, Kind, Schema, Table};
use super::values;

/// One generated value.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Null,
    Int(i64),
    /// A decimal, as text with its scale (`12.50`).
    Decimal(String),
    Bool(bool),
    Text(String),
}

/// The rows of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub table: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Datum>>,
    /// Serial columns given explicit values: their sequences must be moved past them.
    pub serials: Vec<String>,
}

/// A deterministic generator (splitmix64): small, fast and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, scope: &str) -> Rng {
        // FNV-1a of the scope, so one table's values do not move when another is added.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in scope.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(seed ^ hash)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Parents before children; a cycle is broken at a table whose foreign keys into the rest
/// are all nullable (those columns are left NULL).
fn order(schema: &Schema) -> Result<Vec<&Table>, SeedError> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut ordered = Vec::new();
    while ordered.len() < schema.tables.len() {
        let pending = || schema.tables.iter().filter(|t| !done.contains(t.name.as_str()));
        let ready = |t: &&Table, nullable_ok: bool| {
            t.foreign_keys.iter().all(|fk| {
                fk.table == t.name
                    || done.contains(fk.table.as_str())
                    || (nullable_ok && fk.columns.iter().all(|c| t.column(c).is_some_and(|c| c.nullable)))
            })
        };
        let next = pending().find(|t| ready(t, false)).or_else(|| pending().find(|t| ready(t, true)));
        let Some(table) = next else {
            let stuck: Vec<&str> = pending().map(|t| t.name.as_str()).collect();
            return Err(SeedError::Schema(format!(
                "the foreign keys between {} form a cycle through NOT NULL columns",
                stuck.join(", ")
            )));
        };
        done.insert(&table.name);
        ordered.push(table);
    }
    Ok(ordered)
}

/// The (min, max) a column's CHECKs allow.
fn bounds(table: &Table, column: &str) -> (Option<f64>, Option<f64>) {
    let mut range = (None::<f64>, None::<f64>);
    for check in &table.checks {
        if let Check::Range { column: c, min, max } = check
            && c == column
        {
            range.0 = match (range.0, *min) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            range.1 = match (range.1, *max) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    range
}

fn one_of<'a>(table: &'a Table, column: &str) -> Option<&'a [String]> {
    table.checks.iter().find_map(|c| match c {
        Check::OneOf { column: col, values } if col == column => Some(values.as_slice()),
        _ => None,
    })
}

/// Whether the column must be unique on its own.
fn unique_alone(table: &Table, column: &str) -> bool {
    table.unique.iter().any(|set| set.len() == 1 && set[0] == column)
}

/// Generates `rows` rows per table.
pub fn generate(schema: &Schema, rows: usize, seed: u64) -> Result<Vec<Rows>, SeedError> {
    generate_with(schema, rows, seed, &super::Vocabularies::new())
}

/// [`generate`], picking a free-text column's values from `vocabularies` where it has some
/// (values already checked against the column: `ai::vocabulary`).
pub fn generate_with(
    schema: &Schema,
    rows: usize,
    seed: u64,
    vocabularies: &super::Vocabularies,
) -> Result<Vec<Rows>, SeedError> {
    let mut out: Vec<Rows> = Vec::new();
    let ordered = order(schema)?;
    for table in ordered {
        let mut rng = Rng::new(seed, &table.name);
        let columns: Vec<&Column> = table.columns.iter().filter(|c| !matches!(c.kind, Kind::Other(_))).collect();
        let mut data: Vec<Vec<Datum>> = Vec::new();
        let mut seen: Vec<BTreeSet<Vec<String>>> = vec![BTreeSet::new(); table.unique.len()];
        let mut attempts = 0;
        while data.len() < rows && attempts < rows.saturating_mul(20).max(20) {
            attempts += 1;
            let index = data.len();
            let mut row: BTreeMap<&str, Datum> = BTreeMap::new();
            for fk in &table.foreign_keys {
                let parent_rows = if fk.table == table.name {
                    Some((&table.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>(), &data))
                } else {
                    out.iter().find(|r| r.table == fk.table).map(|r| (&r.columns, &r.rows))
                };
                let picked = parent_rows.filter(|(_, rows)| !rows.is_empty()).map(|(cols, rows)| {
                    let at = rng.below(rows.len() as u64) as usize;
                    fk.references
                        .iter()
                        .map(|r| cols.iter().position(|c| c == r).map_or(Datum::Null, |i| rows[at][i].clone()))
                        .collect::<Vec<_>>()
                });
                for (i, col) in fk.columns.iter().enumerate() {
                    let value = picked.as_ref().and_then(|p| p.get(i).cloned()).unwrap_or(Datum::Null);
                    row.insert(col.as_str(), value);
                }
            }
            for column in &columns {
                if row.contains_key(column.name.as_str()) {
                    continue;
                }
                let unique = unique_alone(table, &column.name);
                let listed = one_of(table, &column.name).or_else(|| {
                    let words = vocabularies.get(&table.name)?.get(&column.name)?;
                    // Only where any of its values fits the column: the constraints decide.
                    let fits = matches!(column.kind, Kind::Text { max } if words.iter().all(|w| max.is_none_or(|m| w.chars().count() <= m as usize)));
                    (fits && !unique && !words.is_empty()).then_some(words.as_slice())
                });
                let value = values::value(&mut rng, column, index, unique, bounds(table, &column.name), listed);
                row.insert(column.name.as_str(), value);
            }
            // A required foreign key with no parent row: nothing can be inserted.
            if columns.iter().any(|c| !c.nullable && row.get(c.name.as_str()) == Some(&Datum::Null)) {
                return Err(SeedError::Schema(format!(
                    "{}: a NOT NULL column has no value (its parent table has no rows)",
                    table.name
                )));
            }
            let keys: Vec<Vec<String>> = table
                .unique
                .iter()
                .map(|set| set.iter().map(|c| format!("{:?}", row.get(c.as_str()).unwrap_or(&Datum::Null))).collect())
                .collect();
            // NULLs never collide in a UNIQUE constraint.
            let clash =
                keys.iter().zip(&seen).any(|(key, seen)| !key.iter().any(|k| k == "Null") && seen.contains(key));
            if clash {
                continue;
            }
            for (key, seen) in keys.into_iter().zip(&mut seen) {
                seen.insert(key);
            }
            data.push(columns.iter().map(|c| row.remove(c.name.as_str()).unwrap_or(Datum::Null)).collect());
        }
        let serials = columns
            .iter()
            .filter(|c| c.defaulted && matches!(c.kind, Kind::Int { .. }) && unique_alone(table, &c.name))
            .map(|c| c.name.clone())
            .collect();
        out.push(Rows {
            table: table.name.clone(),
            columns: columns.iter().map(|c| c.name.clone()).collect(),
            rows: data,
            serials,
        });
    }
    Ok(out)
}
