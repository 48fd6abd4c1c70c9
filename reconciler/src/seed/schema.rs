//! The schema a data set is generated from, read from PostgreSQL DDL with `sqlparser`.
//!
//! Supported: `CREATE TABLE` (column types, `NOT NULL`, `PRIMARY KEY`, `UNIQUE`,
//! `REFERENCES`, `CHECK`, and the same as table constraints), `CREATE TYPE … AS ENUM`, and
//! `ALTER TABLE … ADD [CONSTRAINT …] FOREIGN KEY | UNIQUE | CHECK`. Everything else in a
//! migration (indexes, grants, functions, data changes) is skipped and listed.

use sqlparser::ast::{
    AlterTableOperation, BinaryOperator, ColumnDef, ColumnOption, CreateTable, DataType, Expr, InTarget, ObjectName,
    Statement, TableConstraint, UserDefinedTypeRepresentation, Value,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::SeedError;

/// What a column holds, as far as generation cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Integers of this many bits (a serial is an integer the database would fill).
    Int {
        bits: u8,
    },
    /// `numeric(precision, scale)`; `real` and `double` as `(15, 4)`.
    Decimal {
        precision: u32,
        scale: u32,
    },
    Bool,
    /// Text of at most this many characters.
    Text {
        max: Option<u32>,
    },
    Uuid,
    Date,
    Timestamp,
    Json,
    Enum(Vec<String>),
    /// A type the generator does not know: the column is left to its default (NULL).
    Other(String),
}

/// A CHECK the generator evaluates: its column stays within it.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// `col > n`, `col >= n`, `col < n`, `col <= n` (bounds, inclusive).
    Range { column: String, min: Option<f64>, max: Option<f64> },
    /// `col IN ('a', 'b')`.
    OneOf { column: String, values: Vec<String> },
    /// `col <> ''`.
    NotEmpty { column: String },
}

impl Check {
    /// The column the check bounds.
    pub fn column(&self) -> &str {
        match self {
            Check::Range { column, .. } | Check::OneOf { column, .. } | Check::NotEmpty { column } => column,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    pub nullable: bool,
    /// A default or a serial: the column may be left out.
    pub defaulted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForeignKey {
    pub columns: Vec<String>,
    pub table: String,
    pub references: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    /// Column sets whose values are unique together (the primary key among them).
    pub unique: Vec<Vec<String>>,
    pub foreign_keys: Vec<ForeignKey>,
    pub checks: Vec<Check>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schema {
    pub tables: Vec<Table>,
    /// What was read but not used (statements and CHECKs the generator does not evaluate).
    pub skipped: Vec<String>,
}

fn name_of(name: &ObjectName) -> String {
    // `public.orders` and `orders` are the same table to a migration.
    name.0.last().map(|part| part.to_string().trim_matches('"').to_owned()).unwrap_or_default()
}

fn ident(text: &str) -> String {
    text.trim_matches('"').to_owned()
}

fn kind_of(data_type: &DataType, enums: &[(String, Vec<String>)]) -> (Kind, bool) {
    let text = data_type.to_string().to_ascii_lowercase();
    let number = |s: &str| s.trim().parse::<u32>().ok();
    let args: Vec<&str> =
        text.split_once('(').map(|(_, rest)| rest.trim_end_matches(')').split(',').collect()).unwrap_or_default();
    let base = text.split('(').next().unwrap_or("").trim();
    let serial = base.contains("serial");
    let kind = match base {
        "smallint" | "int2" | "smallserial" => Kind::Int { bits: 16 },
        "int" | "integer" | "int4" | "serial" | "serial4" => Kind::Int { bits: 32 },
        "bigint" | "int8" | "bigserial" | "serial8" => Kind::Int { bits: 64 },
        "numeric" | "decimal" => Kind::Decimal {
            precision: args.first().and_then(|a| number(a)).unwrap_or(12).clamp(1, 30),
            scale: args.get(1).and_then(|a| number(a)).unwrap_or(2).min(10),
        },
        "real" | "float4" | "double precision" | "float8" | "float" => Kind::Decimal { precision: 15, scale: 4 },
        "boolean" | "bool" => Kind::Bool,
        "text" | "citext" => Kind::Text { max: None },
        "varchar" | "character varying" | "char" | "character" | "bpchar" => {
            Kind::Text { max: args.first().and_then(|a| number(a)).filter(|n| *n > 0) }
        }
        "uuid" => Kind::Uuid,
        "date" => Kind::Date,
        b if b.starts_with("timestamp") => Kind::Timestamp,
        "json" | "jsonb" => Kind::Json,
        other => match enums.iter().find(|(name, _)| name.eq_ignore_ascii_case(other.trim_matches('"'))) {
            Some((_, labels)) => Kind::Enum(labels.clone()),
            None => Kind::Other(other.to_owned()),
        },
    };
    (kind, serial)
}

/// Reads the checks the generator can keep; the rest are returned as text.
fn checks_of(expr: &Expr, out: &mut Vec<Check>) -> Result<(), String> {
    let column = |e: &Expr| match e {
        Expr::Identifier(i) => Some(ident(&i.value)),
        _ => None,
    };
    let number = |e: &Expr| match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<f64>().ok(),
            _ => None,
        },
        Expr::UnaryOp { op: sqlparser::ast::UnaryOperator::Minus, expr } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n.parse::<f64>().ok().map(|n| -n),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    match expr {
        Expr::Nested(inner) => checks_of(inner, out),
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            checks_of(left, out)?;
            checks_of(right, out)
        }
        Expr::BinaryOp { left, op, right } => {
            let (Some(col), Some(n)) = (column(left), number(right)) else {
                if let (Some(col), Expr::Value(v), BinaryOperator::NotEq) = (column(left), right.as_ref(), op)
                    && matches!(&v.value, Value::SingleQuotedString(s) if s.is_empty())
                {
                    out.push(Check::NotEmpty { column: col });
                    return Ok(());
                }
                return Err(expr.to_string());
            };
            // Integers: a strict bound moves by one; decimals by a hundredth.
            let (min, max) = match op {
                BinaryOperator::Gt => (Some(n + 0.01), None),
                BinaryOperator::GtEq => (Some(n), None),
                BinaryOperator::Lt => (None, Some(n - 0.01)),
                BinaryOperator::LtEq => (None, Some(n)),
                _ => return Err(expr.to_string()),
            };
            out.push(Check::Range { column: col, min, max });
            Ok(())
        }
        Expr::In { expr: inner, target: InTarget::List(list), negated: false, .. } => {
            let Some(col) = column(inner) else { return Err(expr.to_string()) };
            let mut values = Vec::new();
            for item in list {
                match item {
                    Expr::Value(v) => match &v.value {
                        Value::SingleQuotedString(s) => values.push(s.clone()),
                        _ => return Err(expr.to_string()),
                    },
                    _ => return Err(expr.to_string()),
                }
            }
            out.push(Check::OneOf { column: col, values });
            Ok(())
        }
        _ => Err(expr.to_string()),
    }
}

fn add_constraint(table: &mut Table, constraint: &TableConstraint, skipped: &mut Vec<String>) {
    let cols = |columns: &[sqlparser::ast::IndexColumn]| -> Vec<String> {
        columns.iter().map(|c| ident(&c.column.expr.to_string())).collect()
    };
    match constraint {
        TableConstraint::PrimaryKey(pk) => {
            let columns = cols(&pk.columns);
            for c in &mut table.columns {
                if columns.contains(&c.name) {
                    c.nullable = false;
                }
            }
            table.unique.push(columns);
        }
        TableConstraint::Unique(unique) => table.unique.push(cols(&unique.columns)),
        TableConstraint::ForeignKey(fk) => table.foreign_keys.push(ForeignKey {
            columns: fk.columns.iter().map(|c| ident(&c.value)).collect(),
            table: name_of(&fk.foreign_table),
            references: fk.referred_columns.iter().map(|c| ident(&c.value)).collect(),
        }),
        TableConstraint::Check(check) => {
            if let Err(text) = checks_of(&check.expr, &mut table.checks) {
                skipped.push(format!("{}: CHECK ({text})", table.name));
            }
        }
        other => skipped.push(format!("{}: {other}", table.name)),
    }
}

/// Adds a column as `CREATE TABLE` or `ALTER TABLE … ADD COLUMN` defines it.
fn add_column(table: &mut Table, def: &ColumnDef, enums: &[(String, Vec<String>)], skipped: &mut Vec<String>) {
    let name = ident(&def.name.value);
    let (kind, serial) = kind_of(&def.data_type, enums);
    // A computed column (`GENERATED ALWAYS AS (expr) STORED`) takes no value at all.
    if def.options.iter().any(|o| matches!(&o.option, ColumnOption::Generated { generation_expr: Some(_), .. })) {
        return;
    }
    let mut column = Column { name: name.clone(), kind, nullable: true, defaulted: serial };
    let mut constraints = Vec::new();
    for option in &def.options {
        match &option.option {
            ColumnOption::NotNull => column.nullable = false,
            ColumnOption::Default(_) | ColumnOption::Generated { .. } => column.defaulted = true,
            ColumnOption::PrimaryKey(_) => {
                column.nullable = false;
                table.unique.push(vec![name.clone()]);
            }
            ColumnOption::Unique(_) => table.unique.push(vec![name.clone()]),
            ColumnOption::ForeignKey(fk) => table.foreign_keys.push(ForeignKey {
                columns: vec![name.clone()],
                table: name_of(&fk.foreign_table),
                references: fk.referred_columns.iter().map(|c| ident(&c.value)).collect(),
            }),
            ColumnOption::Check(check) => constraints.push(check.expr.clone()),
            _ => {}
        }
    }
    table.columns.retain(|c| c.name != name);
    table.columns.push(column);
    for expr in constraints {
        if let Err(text) = checks_of(&expr, &mut table.checks) {
            skipped.push(format!("{}.{name}: CHECK ({text})", table.name));
        }
    }
}

/// Drops a column, and every key and check that names it (PostgreSQL drops those with it).
fn drop_column(table: &mut Table, name: &str) {
    table.columns.retain(|c| c.name != name);
    table.unique.retain(|u| !u.iter().any(|c| c == name));
    table.foreign_keys.retain(|fk| !fk.columns.iter().any(|c| c == name));
    table.checks.retain(|check| check.column() != name);
}

fn table_of(create: &CreateTable, enums: &[(String, Vec<String>)], skipped: &mut Vec<String>) -> Table {
    let mut table = Table { name: name_of(&create.name), ..Table::default() };
    for def in &create.columns {
        add_column(&mut table, def, enums, skipped);
    }
    for constraint in &create.constraints {
        add_constraint(&mut table, constraint, skipped);
    }
    table
}

/// Reads PostgreSQL DDL (one migration, or several concatenated in order).
pub fn parse(sql: &str) -> Result<Schema, SeedError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| SeedError::Sql(e.to_string()))?;
    let mut schema = Schema::default();
    let mut enums: Vec<(String, Vec<String>)> = Vec::new();
    for statement in &statements {
        match statement {
            Statement::CreateType { name, representation: Some(UserDefinedTypeRepresentation::Enum { labels }) } => {
                enums.push((name_of(name), labels.iter().map(|l| l.value.clone()).collect()));
            }
            Statement::CreateTable(create) => {
                let table = table_of(create, &enums, &mut schema.skipped);
                schema.tables.retain(|t| t.name != table.name);
                schema.tables.push(table);
            }
            Statement::AlterTable(alter) => {
                let name = name_of(&alter.name);
                let Some(table) = schema.tables.iter_mut().find(|t| t.name == name) else {
                    schema.skipped.push(format!("ALTER TABLE {name}: no such table yet"));
                    continue;
                };
                for operation in &alter.operations {
                    match operation {
                        AlterTableOperation::AddConstraint { constraint, .. } => {
                            add_constraint(table, constraint, &mut schema.skipped);
                        }
                        AlterTableOperation::AddColumn { column_def, .. } => {
                            add_column(table, column_def, &enums, &mut schema.skipped);
                        }
                        AlterTableOperation::DropColumn { column_names, .. } => {
                            for column in column_names {
                                drop_column(table, &ident(&column.value));
                            }
                        }
                        other => schema.skipped.push(format!("ALTER TABLE {name}: {other}")),
                    }
                }
            }
            other => {
                let text = other.to_string();
                schema.skipped.push(text.chars().take(80).collect());
            }
        }
    }
    for table in &schema.tables {
        for fk in &table.foreign_keys {
            if !schema.tables.iter().any(|t| t.name == fk.table) {
                return Err(SeedError::Schema(format!("{} references {}, which is not defined", table.name, fk.table)));
            }
        }
    }
    Ok(schema)
}
