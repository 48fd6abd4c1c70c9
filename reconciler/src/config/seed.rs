//! Synthetic data for a repository's previews (`repositories[].seed`): which schema files to
//! read at the head commit, how much to generate, and the loader Job that puts it in the
//! preview's database once the service that migrates it is Healthy.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::Globs;

/// The most a data set may weigh: it travels in a ConfigMap (1 MiB at most, with room for
/// the object's metadata).
pub const MAX_DATA_BYTES: u64 = 900 * 1024;

/// The most rows per table a preview gets (`previewd seed` allows more, offline).
pub(super) const MAX_PREVIEW_ROWS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedConfig {
    /// The service that migrates the database (its Application must be Healthy at the head
    /// commit before the loader runs): the database has the schema by then.
    pub service: String,
    /// The schema at the head commit, read in path order: PostgreSQL migrations or DDL
    /// (`.sql`), JSON Schema or OpenAPI (`.json`, `.yaml`), protobuf (`.proto`).
    pub schema: Globs,
    /// `sql` (INSERTs, for `psql`) or `json` (`{table: [rows]}`, for a loader of your own).
    #[serde(default)]
    pub format: crate::seed::Format,
    /// Rows per table (fewer when the data set would pass `maxBytes`).
    #[serde(default = "SeedConfig::default_rows")]
    #[schemars(range(min = 1, max = 10000))]
    pub rows: usize,
    /// The generator's seed: the same schema, rows and seed give the same data.
    #[serde(default)]
    pub seed: u64,
    /// The most bytes of SQL a data set may have (at most 900 KiB, the default).
    #[serde(default = "SeedConfig::default_max_bytes")]
    pub max_bytes: u64,
    #[serde(default)]
    pub loader: Loader,
}

impl SeedConfig {
    fn default_rows() -> usize {
        50
    }

    fn default_max_bytes() -> u64 {
        MAX_DATA_BYTES
    }

    pub(super) fn check(&self, services: &[&str]) -> Result<(), (String, String)> {
        let bad = |field: &str, why: String| Err((field.to_owned(), why));
        if !services.contains(&self.service.as_str()) {
            return bad("service", format!("{:?} is not one of the repository's services", self.service));
        }
        if self.schema.is_empty() {
            return bad("schema", "one or more globs of schema files".into());
        }
        if self.rows == 0 || self.rows > MAX_PREVIEW_ROWS {
            return bad("rows", format!("1 to {MAX_PREVIEW_ROWS} rows per table"));
        }
        if self.max_bytes == 0 || self.max_bytes > MAX_DATA_BYTES {
            return bad("maxBytes", format!("1 to {MAX_DATA_BYTES} bytes (the data set travels in a ConfigMap)"));
        }
        if self.format == crate::seed::Format::Json && self.loader.command == Loader::default_command() {
            return bad(
                "loader.command",
                "a JSON data set needs a loader command of its own (the default is psql)".into(),
            );
        }
        self.loader.check().or_else(|why| bad("loader", why))
    }
}

/// The Job that loads the data set, mounted at `/previewd-seed/data.sql` (or `data.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Loader {
    /// An image with the database's client (default: PostgreSQL's `psql`).
    #[serde(default = "Loader::default_image")]
    pub image: String,
    /// The command (default: `psql -v ON_ERROR_STOP=1 -f /previewd-seed/data.sql`; required
    /// for `format: json`).
    #[serde(default = "Loader::default_command")]
    pub command: Vec<String>,
    /// Plain environment (e.g. `PGHOST: db`, `PGDATABASE: shop`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A Secret in the preview namespace whose keys become environment variables (e.g. the
    /// database password, copied in through `secrets`).
    #[serde(default)]
    pub env_from_secret: Option<String>,
    /// The user the loader runs as (it never runs as root).
    #[serde(default = "Loader::default_user")]
    pub run_as_user: i64,
}

impl Default for Loader {
    fn default() -> Loader {
        Loader {
            image: Loader::default_image(),
            command: Loader::default_command(),
            env: BTreeMap::new(),
            env_from_secret: None,
            run_as_user: Loader::default_user(),
        }
    }
}

/// Where the loader finds the data set: `data.sql` or `data.json` in this folder.
pub const DATA_DIR: &str = "/previewd-seed";

impl crate::seed::Format {
    /// The data set's file name in the loader (and its ConfigMap key).
    pub fn file_name(self) -> &'static str {
        match self {
            crate::seed::Format::Sql => "data.sql",
            crate::seed::Format::Json => "data.json",
        }
    }
}

impl Loader {
    fn default_image() -> String {
        "docker.io/library/postgres:16-alpine".into()
    }

    fn default_command() -> Vec<String> {
        ["psql", "-v", "ON_ERROR_STOP=1", "-f", "/previewd-seed/data.sql"].map(str::to_owned).to_vec()
    }

    /// The `postgres` user of the official Alpine image.
    fn default_user() -> i64 {
        70
    }

    fn check(&self) -> Result<(), String> {
        if self.image.trim().is_empty() || self.image.contains(char::is_whitespace) {
            return Err(format!("image {:?}: an image reference", self.image));
        }
        if self.command.is_empty() {
            return Err("command: the loader's command and arguments".into());
        }
        if let Some(bad) = self.env.keys().find(|k| {
            k.is_empty()
                || k.starts_with(|c: char| c.is_ascii_digit())
                || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }) {
            return Err(format!("env {bad:?}: a variable name ([A-Za-z_][A-Za-z0-9_]*)"));
        }
        if let Some(secret) = &self.env_from_secret
            && !crate::names::is_dns_label(secret)
        {
            return Err(format!("envFromSecret {secret:?}: a Secret name"));
        }
        if self.run_as_user <= 0 {
            return Err("runAsUser: a user other than root".into());
        }
        Ok(())
    }
}
