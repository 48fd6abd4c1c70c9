//! Schema sources besides SQL, each read into the same tables the generator fills:
//!
//! - JSON Schema (a document, and its `$defs` / `definitions`): each object schema is a table,
//!   its scalar properties columns (`required` → NOT NULL);
//! - OpenAPI (`components.schemas`; Swagger 2's `definitions`): the same, per schema;
//! - protobuf (`.proto`, parsed with `protox-parse`): each message is a table, its scalar and
//!   enum fields columns.
//!
//! Types, `enum`, `maxLength`, `minLength`, `minimum`/`maximum` (exclusive too) and `const`
//! are kept; nested objects, arrays, `$ref`s, repeated and map fields are listed as skipped (a
//! data set is flat rows). A property or field named `id` is unique.

use serde_json::Value;

use super::SeedError;
use super::schema::{Check, Column, Kind, Schema, Table};

/// What a schema file is, by its name and (for JSON and YAML) its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Sql,
    JsonSchema,
    OpenApi,
    Proto,
}

/// Reads `files` (path, text), in order, into one schema. SQL files are read together, as
/// migrations build on each other; the other kinds add their tables.
pub fn read(files: &[(String, &str)]) -> Result<Schema, SeedError> {
    let mut sql = String::new();
    let mut others: Vec<Table> = Vec::new();
    let mut skipped = Vec::new();
    for (path, text) in files {
        match kind_of(path, text)? {
            SourceKind::Sql => {
                sql.push_str(text);
                sql.push('\n');
            }
            SourceKind::JsonSchema => json_schema(path, &document(path, text)?, &mut others, &mut skipped),
            SourceKind::OpenApi => open_api(&document(path, text)?, &mut others, &mut skipped),
            SourceKind::Proto => proto(path, text, &mut others, &mut skipped)?,
        }
    }
    let mut schema = if sql.trim().is_empty() { Schema::default() } else { super::schema::parse(&sql)? };
    for table in others {
        if schema.tables.iter().any(|t| t.name == table.name) {
            return Err(SeedError::Schema(format!("table {} is defined twice", table.name)));
        }
        schema.tables.push(table);
    }
    schema.skipped.extend(skipped);
    Ok(schema)
}

pub fn kind_of(path: &str, text: &str) -> Result<SourceKind, SeedError> {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".sql") {
        return Ok(SourceKind::Sql);
    }
    if lower.ends_with(".proto") {
        return Ok(SourceKind::Proto);
    }
    if [".json", ".yaml", ".yml"].iter().any(|e| lower.ends_with(e)) {
        let doc = document(path, text)?;
        let api = doc.get("openapi").is_some() || doc.get("swagger").is_some();
        return Ok(if api { SourceKind::OpenApi } else { SourceKind::JsonSchema });
    }
    Err(SeedError::Schema(format!("{path}: a .sql, .json, .yaml, .yml or .proto file")))
}

fn document(path: &str, text: &str) -> Result<Value, SeedError> {
    let parsed = if path.to_ascii_lowercase().ends_with(".json") {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        serde_norway::from_str(text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| SeedError::Schema(format!("{path}: {e}")))
}

/// A table name from a schema's title or key: lower snake case.
fn table_name(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

fn json_schema(path: &str, doc: &Value, tables: &mut Vec<Table>, skipped: &mut Vec<String>) {
    let stem = path.rsplit('/').next().unwrap_or(path).split('.').next().unwrap_or(path);
    if doc.get("properties").is_some() {
        let name = doc.get("title").and_then(Value::as_str).unwrap_or(stem);
        tables.push(object_table(&table_name(name), doc, skipped));
    }
    for key in ["$defs", "definitions"] {
        for (name, schema) in doc.get(key).and_then(Value::as_object).into_iter().flatten() {
            if schema.get("properties").is_some() {
                tables.push(object_table(&table_name(name), schema, skipped));
            }
        }
    }
}

fn open_api(doc: &Value, tables: &mut Vec<Table>, skipped: &mut Vec<String>) {
    let schemas = doc.pointer("/components/schemas").or_else(|| doc.get("definitions"));
    for (name, schema) in schemas.and_then(Value::as_object).into_iter().flatten() {
        if schema.get("properties").is_some() {
            tables.push(object_table(&table_name(name), schema, skipped));
        } else {
            skipped.push(format!("{name}: not an object with properties"));
        }
    }
}

fn object_table(name: &str, schema: &Value, skipped: &mut Vec<String>) -> Table {
    let required: Vec<&str> =
        schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let mut table = Table { name: name.to_owned(), ..Table::default() };
    for (property, spec) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
        let Some((kind, checks)) = property_kind(property, spec) else {
            skipped.push(format!("{name}.{property}: not a scalar (nested object, array or $ref)"));
            continue;
        };
        let column =
            Column { name: property.clone(), kind, nullable: !required.contains(&property.as_str()), defaulted: false };
        if property == "id" {
            table.unique.push(vec![property.clone()]);
        }
        table.checks.extend(checks);
        table.columns.push(column);
    }
    table
}

/// A JSON Schema property's column kind and checks (`None`: not a scalar).
fn property_kind(name: &str, spec: &Value) -> Option<(Kind, Vec<Check>)> {
    let number = |key: &str| spec.get(key).and_then(Value::as_f64);
    let mut checks = Vec::new();
    if let Some(values) = spec.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
        return (!values.is_empty()).then_some((Kind::Enum(values), checks));
    }
    if let Some(constant) = spec.get("const").and_then(Value::as_str) {
        return Some((Kind::Enum(vec![constant.to_owned()]), checks));
    }
    // `type: [string, "null"]` (JSON Schema) or `nullable: true` (OpenAPI 3.0) name one type.
    let ty = match spec.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).find(|t| *t != "null")?,
        _ => return None,
    };
    let (min, max) = (
        number("minimum").or(number("exclusiveMinimum").map(|m| m + 1e-6)),
        number("maximum").or(number("exclusiveMaximum").map(|m| m - 1e-6)),
    );
    if min.is_some() || max.is_some() {
        checks.push(Check::Range { column: name.to_owned(), min, max });
    }
    let kind = match ty {
        "integer" => {
            Kind::Int { bits: if spec.get("format").and_then(Value::as_str) == Some("int64") { 64 } else { 32 } }
        }
        "number" => Kind::Decimal { precision: 12, scale: 2 },
        "boolean" => Kind::Bool,
        "string" => {
            if number("minLength").is_some_and(|m| m >= 1.0) {
                checks.push(Check::NotEmpty { column: name.to_owned() });
            }
            match spec.get("format").and_then(Value::as_str) {
                Some("date-time") => Kind::Timestamp,
                Some("date") => Kind::Date,
                Some("uuid") => Kind::Uuid,
                _ => Kind::Text { max: number("maxLength").map(|m| m.clamp(1.0, 1e6) as u32) },
            }
        }
        _ => return None,
    };
    Some((kind, checks))
}

fn proto(path: &str, text: &str, tables: &mut Vec<Table>, skipped: &mut Vec<String>) -> Result<(), SeedError> {
    use prost_types::field_descriptor_proto::{Label, Type};
    let file = protox_parse::parse(path, text).map_err(|e| SeedError::Schema(format!("{path}: {e}")))?;
    // Enums by name, top level and nested one level (the common case), for enum fields.
    let mut enums: Vec<(String, Vec<String>)> = Vec::new();
    let values = |e: &prost_types::EnumDescriptorProto| e.value.iter().map(|v| v.name().to_owned()).collect::<Vec<_>>();
    enums.extend(file.enum_type.iter().map(|e| (e.name().to_owned(), values(e))));
    for message in &file.message_type {
        enums.extend(message.enum_type.iter().map(|e| (e.name().to_owned(), values(e))));
    }
    for message in &file.message_type {
        let name = table_name(message.name());
        let mut table = Table { name: name.clone(), ..Table::default() };
        for field in &message.field {
            let field_name = field.name().to_owned();
            let repeated = field.label() == Label::Repeated;
            // The parser leaves a named type's kind unset (nothing is resolved across files):
            // an enum of this file, a well-known Timestamp, or a message.
            let short = field.type_name().rsplit('.').next().unwrap_or_default();
            let named = || {
                if field.type_name().ends_with("google.protobuf.Timestamp") {
                    return Some(Kind::Timestamp);
                }
                enums.iter().find(|(n, _)| n == short).map(|(_, v)| Kind::Enum(v.clone()))
            };
            let kind = match field.r#type() {
                _ if repeated => None,
                _ if field.r#type.is_none() => named(),
                Type::String => Some(Kind::Text { max: None }),
                Type::Bool => Some(Kind::Bool),
                Type::Int32 | Type::Sint32 | Type::Sfixed32 | Type::Uint32 | Type::Fixed32 => {
                    Some(Kind::Int { bits: 32 })
                }
                Type::Int64 | Type::Sint64 | Type::Sfixed64 | Type::Uint64 | Type::Fixed64 => {
                    Some(Kind::Int { bits: 64 })
                }
                Type::Float | Type::Double => Some(Kind::Decimal { precision: 15, scale: 4 }),
                Type::Enum | Type::Message => named(),
                _ => None,
            };
            let Some(kind) = kind else {
                skipped.push(format!("{name}.{field_name}: repeated, map, bytes or message field"));
                continue;
            };
            if field.r#type.is_some()
                && matches!(field.r#type(), Type::Uint32 | Type::Uint64 | Type::Fixed32 | Type::Fixed64)
            {
                table.checks.push(Check::Range { column: field_name.clone(), min: Some(0.0), max: None });
            }
            if field_name == "id" {
                table.unique.push(vec![field_name.clone()]);
            }
            // proto3 has no NULL: an unset scalar reads as its zero value, so every field gets one.
            table.columns.push(Column { name: field_name, kind, nullable: false, defaulted: false });
        }
        tables.push(table);
    }
    Ok(())
}
