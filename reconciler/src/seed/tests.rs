use std::collections::BTreeSet;

use proptest::prelude::*;

use super::schema::{Check, Kind, Schema};
use super::*;

const SHOP: &str = r#"
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped');
CREATE TABLE customers (
    id serial PRIMARY KEY,
    email varchar(40) NOT NULL UNIQUE,
    full_name text NOT NULL,
    country_code char(2),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE products (
    id bigserial PRIMARY KEY,
    sku varchar(12) NOT NULL UNIQUE,
    title text NOT NULL,
    price numeric(8, 2) NOT NULL CHECK (price > 0),
    stock integer NOT NULL CHECK (stock >= 0 AND stock <= 500)
);
CREATE TABLE orders (
    id uuid PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    status order_status NOT NULL,
    channel text NOT NULL CHECK (channel IN ('web', 'app')),
    placed_on date NOT NULL
);
CREATE TABLE order_items (
    order_id uuid NOT NULL,
    product_id bigint NOT NULL,
    quantity smallint NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
ALTER TABLE order_items ADD CONSTRAINT items_order FOREIGN KEY (order_id) REFERENCES orders (id);
ALTER TABLE order_items ADD FOREIGN KEY (product_id) REFERENCES products (id);
CREATE INDEX orders_by_customer ON orders (customer_id);
"#;

/// Every constraint the generator claims to keep, checked on its output (NULLs as SQL sees
/// them: never equal, so never duplicates).
fn violations(schema: &Schema, data: &[Rows]) -> Vec<String> {
    let mut problems = Vec::new();
    for table in &schema.tables {
        let Some(rows) = data.iter().find(|r| r.table == table.name) else {
            problems.push(format!("{}: no rows", table.name));
            continue;
        };
        let at = |column: &str| rows.columns.iter().position(|c| c == column);
        for column in &table.columns {
            let Some(i) = at(&column.name) else { continue };
            for row in &rows.rows {
                let value = &row[i];
                if !column.nullable && *value == Datum::Null {
                    problems.push(format!("{}.{}: NULL in a NOT NULL column", table.name, column.name));
                }
                match (&column.kind, value) {
                    (Kind::Text { max: Some(max) }, Datum::Text(t)) if t.chars().count() > *max as usize => {
                        problems.push(format!("{}.{}: {t:?} longer than {max}", table.name, column.name));
                    }
                    (Kind::Enum(labels), Datum::Text(t)) if !labels.contains(t) => {
                        problems.push(format!("{}.{}: {t:?} not in the enum", table.name, column.name));
                    }
                    (Kind::Int { bits: 16 }, Datum::Int(n)) if i16::try_from(*n).is_err() => {
                        problems.push(format!("{}.{}: {n} is not a smallint", table.name, column.name));
                    }
                    _ => {}
                }
            }
        }
        for set in &table.unique {
            let mut seen = BTreeSet::new();
            let indexes: Vec<usize> = set.iter().filter_map(|c| at(c)).collect();
            for row in &rows.rows {
                let key: Vec<String> = indexes.iter().map(|i| format!("{:?}", row[*i])).collect();
                if !key.iter().any(|k| k == "Null") && !seen.insert(key.clone()) {
                    problems.push(format!("{}: duplicate {set:?} = {key:?}", table.name));
                }
            }
        }
        for fk in &table.foreign_keys {
            let Some(parent) = data.iter().find(|r| r.table == fk.table) else { continue };
            let parent_keys: BTreeSet<Vec<String>> = parent
                .rows
                .iter()
                .map(|row| {
                    fk.references
                        .iter()
                        .filter_map(|r| parent.columns.iter().position(|c| c == r))
                        .map(|i| format!("{:?}", row[i]))
                        .collect()
                })
                .collect();
            for row in &rows.rows {
                let key: Vec<String> =
                    fk.columns.iter().filter_map(|c| at(c)).map(|i| format!("{:?}", row[i])).collect();
                if !key.iter().any(|k| k == "Null") && !parent_keys.contains(&key) {
                    problems.push(format!("{}: {key:?} not in {}", table.name, fk.table));
                }
            }
        }
        for check in &table.checks {
            for row in &rows.rows {
                let ok = match check {
                    Check::Range { column, min, max } => match at(column).map(|i| &row[i]) {
                        Some(Datum::Int(n)) => min.is_none_or(|m| *n as f64 >= m) && max.is_none_or(|m| *n as f64 <= m),
                        Some(Datum::Decimal(d)) => {
                            let v: f64 = d.parse().unwrap_or(f64::NAN);
                            min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)
                        }
                        _ => true,
                    },
                    Check::OneOf { column, values } => match at(column).map(|i| &row[i]) {
                        Some(Datum::Text(t)) => values.contains(t),
                        _ => true,
                    },
                    Check::NotEmpty { column } => at(column).is_none_or(|i| row[i] != Datum::Text(String::new())),
                };
                if !ok {
                    problems.push(format!("{}: {check:?} violated", table.name));
                }
            }
        }
    }
    problems
}

#[test]
fn the_same_seed_gives_the_same_data() {
    let (schema, first) = from_sql(SHOP, 25, 7).unwrap_or_else(|e| panic!("{e}"));
    let (_, again) = from_sql(SHOP, 25, 7).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(to_sql(&first), to_sql(&again));
    let (_, other) = from_sql(SHOP, 25, 8).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(to_sql(&first), to_sql(&other), "another seed, other data");
    // Parents first, every table full, every claimed constraint kept.
    let order: Vec<&str> = first.iter().map(|t| t.table.as_str()).collect();
    assert_eq!(order, ["customers", "products", "orders", "order_items"]);
    assert!(first.iter().all(|t| t.rows.len() == 25), "{:?}", first.iter().map(|t| t.rows.len()).collect::<Vec<_>>());
    assert_eq!(violations(&schema, &first), Vec::<String>::new());
    // Plausible values, from the column names.
    let customers = &first[0];
    let email = customers.columns.iter().position(|c| c == "email").unwrap_or(0);
    assert!(customers.rows.iter().all(|r| matches!(&r[email], Datum::Text(e) if e.ends_with("@example.com"))));
    // The index statement was read and skipped, and said so.
    assert!(schema.skipped.iter().any(|s| s.contains("orders_by_customer")), "{:?}", schema.skipped);
    assert!(to_sql(&first).contains("setval(pg_get_serial_sequence('customers', 'id')"));
}

#[test]
fn a_cycle_is_broken_at_a_nullable_key_and_refused_through_not_null_ones() {
    let nullable = "CREATE TABLE a (id int PRIMARY KEY, b_id int);
                    CREATE TABLE b (id int PRIMARY KEY, a_id int NOT NULL REFERENCES a (id));
                    ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b (id);";
    let (schema, data) = from_sql(nullable, 5, 1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(violations(&schema, &data), Vec::<String>::new());
    assert_eq!(data[0].table, "a");
    let strict = nullable.replace("b_id int)", "b_id int NOT NULL)");
    assert!(matches!(from_sql(&strict, 5, 1), Err(SeedError::Schema(m)) if m.contains("cycle")));
    assert!(matches!(from_sql("CREATE TABLE (", 5, 1), Err(SeedError::Sql(_))));
}

#[test]
fn migrations_that_add_and_drop_columns_are_followed() {
    let sql =
        "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL UNIQUE, legacy text CHECK (legacy <> ''));
               ALTER TABLE users ADD COLUMN age int NOT NULL CHECK (age >= 18 AND age <= 99);
               ALTER TABLE users DROP COLUMN legacy;";
    let (schema, data) = from_sql(sql, 20, 3).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(violations(&schema, &data), Vec::<String>::new());
    let names: Vec<&str> = schema.tables[0].columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "email", "age"]);
    assert!(schema.tables[0].checks.iter().all(|c| c.column() != "legacy"));
}

/// The loader's data set empties the tables first, and shrinks to fit its size.
#[test]
fn a_preview_data_set_replaces_rows_and_fits_its_size() {
    let sql = [(
        "schema.sql".to_owned(),
        "CREATE TABLE a (id int PRIMARY KEY, note text); CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a (id));",
    )];
    let sql = &sql[..];
    let full = dataset(sql, &Options { rows: 200, seed: 1, max_bytes: usize::MAX, ..Options::default() })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(full.sql.starts_with("BEGIN;\nTRUNCATE \"a\", \"b\" RESTART IDENTITY CASCADE;\n"), "{}", full.sql);
    assert_eq!(full.tables, [("a".to_owned(), 200), ("b".to_owned(), 200)]);
    let small = dataset(sql, &Options { rows: 200, seed: 1, max_bytes: full.sql.len() / 3, ..Options::default() })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(small.sql.len() <= full.sql.len() / 3);
    assert!(small.tables.iter().all(|(_, rows)| *rows < 200 && *rows > 0), "{:?}", small.tables);
    assert!(matches!(
        dataset(sql, &Options { rows: 200, seed: 1, max_bytes: 10, ..Options::default() }),
        Err(SeedError::TooLarge { .. })
    ));
}

/// Generated JSON rows of `table`, each checked against `schema` (formats asserted too).
fn assert_rows_valid(data: &serde_json::Value, table: &str, schema: &serde_json::Value) -> usize {
    let validator =
        jsonschema::options().should_validate_formats(true).build(schema).unwrap_or_else(|e| panic!("{table}: {e}"));
    let rows = data[table].as_array().unwrap_or_else(|| panic!("no rows for {table} in {data}"));
    for row in rows {
        // A column left NULL is a property left out.
        let present: serde_json::Map<String, serde_json::Value> = row
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let row = serde_json::Value::Object(present);
        let errors: Vec<String> = validator.iter_errors(&row).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{table}: {row} breaks its schema: {errors:?}");
    }
    rows.len()
}

#[test]
fn json_schema_and_openapi_rows_satisfy_their_schemas() {
    let json = include_str!("../../tests/fixtures/seed/sources/customer.schema.json");
    let yaml = include_str!("../../tests/fixtures/seed/sources/orders.openapi.yaml");
    let files = [("api/customer.schema.json".to_owned(), json), ("api/orders.openapi.yaml".to_owned(), yaml)];
    let (schema, data) = from_files(&files, 40, 9).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    // OpenAPI components in name order.
    assert_eq!(names, ["customer", "address", "buyer", "order"]);
    let skipped = schema.skipped.join("\n");
    assert!(
        skipped.contains("customer.tags") && skipped.contains("order.buyer") && skipped.contains("Problem"),
        "{skipped}"
    );
    let json_data = to_json(&data);
    let document: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    assert_eq!(assert_rows_valid(&json_data, "customer", &document), 40);
    assert_eq!(assert_rows_valid(&json_data, "address", &document["$defs"]["Address"]), 40);
    let api: serde_json::Value = serde_norway::from_str(yaml).unwrap_or_default();
    let mut order = api["components"]["schemas"]["Order"].clone();
    // The `$ref`'d property is skipped (a data set is flat rows): not required, so absent.
    if let Some(properties) = order["properties"].as_object_mut() {
        properties.remove("buyer");
    }
    assert_eq!(assert_rows_valid(&json_data, "order", &order), 40);
    assert_eq!(generate::generate(&schema, 40, 9).ok(), Some(data), "the same seed gives the same data");
}

#[test]
fn protobuf_messages_become_rows_of_their_scalar_fields() {
    let proto = include_str!("../../tests/fixtures/seed/sources/catalog.proto");
    let (schema, data) =
        from_files(&[("proto/catalog.proto".to_owned(), proto)], 30, 4).unwrap_or_else(|e| panic!("{e}"));
    let columns = |table: &str| -> Vec<String> {
        schema
            .tables
            .iter()
            .find(|t| t.name == table)
            .map(|t| t.columns.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(columns("product"), ["id", "sku", "title", "price", "availability", "created_at"]);
    assert_eq!(columns("review"), ["id", "rating", "body", "verified", "kind"]);
    assert_eq!(violations(&schema, &data), Vec::<String>::new());
    let json = to_json(&data);
    for row in json["product"].as_array().into_iter().flatten() {
        assert!(
            ["AVAILABILITY_UNSPECIFIED", "IN_STOCK", "BACKORDER"].contains(&row["availability"].as_str().unwrap_or("")),
            "{row}"
        );
        assert!(row["id"].as_i64().is_some_and(|id| id >= 0), "{row}");
        assert!(row["price"].is_number(), "{row}");
    }
    for row in json["review"].as_array().into_iter().flatten() {
        assert!(["KIND_UNSPECIFIED", "TEXT", "PHOTO"].contains(&row["kind"].as_str().unwrap_or("")), "{row}");
        assert!(row["rating"].as_i64().is_some_and(|r| r >= 0), "{row}");
    }
    let skipped = schema.skipped.join("\n");
    assert!(
        skipped.contains("product.tags")
            && skipped.contains("product.attributes")
            && skipped.contains("product.category"),
        "{skipped}"
    );
    assert!(matches!(from_files(&[("bad.proto".to_owned(), "message {")], 3, 1), Err(SeedError::Schema(_))));
}

#[derive(Debug, Clone)]
struct RandomColumn {
    ty: &'static str,
    not_null: bool,
    unique: bool,
    check: Option<&'static str>,
}

fn column() -> impl Strategy<Value = RandomColumn> {
    (
        prop::sample::select(vec![
            "integer",
            "smallint",
            "bigint",
            "text",
            "varchar(3)",
            "varchar(30)",
            "numeric(5, 2)",
            "boolean",
            "uuid",
            "date",
            "timestamp",
            "jsonb",
        ]),
        any::<bool>(),
        prop::bool::weighted(0.3),
        prop::option::weighted(0.3, prop::sample::select(vec![">= 0", "> 10", "<= 50", "IN ('x', 'y')"])),
    )
        .prop_map(|(ty, not_null, unique, check)| RandomColumn { ty, not_null, unique, check })
}

fn render(tables: &[(Vec<RandomColumn>, Option<usize>)]) -> String {
    let mut sql = String::new();
    for (t, (columns, parent)) in tables.iter().enumerate() {
        let mut defs = vec!["id serial PRIMARY KEY".to_owned()];
        for (c, col) in columns.iter().enumerate() {
            let numeric = ["integer", "smallint", "bigint", "numeric(5, 2)"].contains(&col.ty);
            let texty = col.ty.starts_with("varchar") || col.ty == "text";
            let check = match col.check {
                Some(c) if c.starts_with("IN") && texty => format!(" CHECK (c{} {c})", 0),
                Some(c) if !c.starts_with("IN") && numeric => format!(" CHECK (c{} {c})", 0),
                _ => String::new(),
            }
            .replace("c0", &format!("c{c}"));
            defs.push(format!(
                "c{c} {}{}{}{check}",
                col.ty,
                if col.not_null { " NOT NULL" } else { "" },
                if col.unique { " UNIQUE" } else { "" }
            ));
        }
        if let Some(p) = parent.filter(|p| *p < t) {
            defs.push(format!("parent_id integer NOT NULL REFERENCES t{p} (id)"));
        }
        sql.push_str(&format!("CREATE TABLE t{t} ({});\n", defs.join(", ")));
    }
    sql
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random schemas: generation never panics, and what it generates keeps every constraint
    /// it claims to support (a unique column of a small domain may get fewer rows, never a
    /// duplicate).
    #[test]
    fn generated_data_keeps_the_schemas_constraints(
        tables in prop::collection::vec((prop::collection::vec(column(), 0..6), prop::option::of(0usize..4)), 1..5),
        rows in 0usize..40,
        seed in any::<u64>(),
    ) {
        let sql = render(&tables);
        let (schema, data) = from_sql(&sql, rows, seed).map_err(|e| TestCaseError::fail(format!("{e}\n{sql}")))?;
        let problems = violations(&schema, &data);
        prop_assert!(problems.is_empty(), "{problems:?}\n{sql}");
    }

    /// Anything at all as a schema: an error or data, never a panic.
    #[test]
    fn no_text_panics_the_seeder(text in ".{0,200}", rows in 0usize..5) {
        let _ = from_sql(&text, rows, 1);
    }
}
