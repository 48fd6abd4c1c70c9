//! The reconciler's configuration: one YAML document (a ConfigMap in the chart, a file
//! locally), read once at start into typed values (quantities, durations, CIDRs and globs are
//! parsed here, never again) and validated with errors that name the field. Secrets never live
//! here: they come from the environment / a Kubernetes Secret.
//!
//! Every default is written once: in the section's `Default`, which serde uses for what a
//! document leaves out. The JSON Schema (`previewd config schema`, embedded in the chart's
//! `values.schema.json`) is generated from these types.

mod ai;
mod cluster;
mod cost;
mod experiment;
mod images;
mod people;
mod placement;
mod repository;
mod secrets;
mod seed;
mod sizing;
pub mod types;

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use ai::{AiConfig, AiFeatures, AiMode, AiPrices};
pub use cluster::{
    ArgoCdConfig, ContainerDefaults, DnsMode, IngressConfig, NetworkConfig, QuotaConfig, Resources, TlsMode, TtlConfig,
};
pub use cost::{BudgetConfig, Pricing, SpotConfig};
pub use experiment::{Arm, Detection as ArmDetection, ExperimentConfig};
pub use images::{ImagesConfig, Rewrite};
pub use people::{ForkPolicy, GitHubConfig, PolicyConfig, PolicyMode};
pub use placement::{Capacity, ClusterConfig, ClusterSource, IN_CLUSTER, KubeconfigSecret};
pub use repository::{BasicAuth, BuildGate, ExternalAuth, Protection};
pub use repository::{
    BuildRoot, ComposeRoot, Expose, ImageConfig, ImageValues, RepositoryConfig, ServiceConfig, ServiceResources,
    TagInputs, UnchangedServices,
};
pub use secrets::{ExternalSecretsConfig, SecretRef, SecretsConfig};
pub use seed::{DATA_DIR, Loader, MAX_DATA_BYTES, SeedConfig};
pub use sizing::{SizingConfig, SizingMode};

use crate::names;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {message}")]
    Read { path: String, message: String },
    #[error("config field `{field}`: {message}")]
    Parse { field: String, message: String },
    #[error("config field `{field}`: {message}")]
    Invalid { field: String, message: String },
}

impl ConfigError {
    /// The field the error is about (`repositories[0].services[1].name`).
    pub fn field(&self) -> &str {
        match self {
            ConfigError::Read { .. } => "",
            ConfigError::Parse { field, .. } | ConfigError::Invalid { field, .. } => field,
        }
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The organisation's domain; previews live under `previewZone`.
    pub domain: String,
    /// The zone whose wildcard record and certificate serve every preview
    /// (default `preview.<domain>`). Hosts are `<slug>-pr-<n>.<previewZone>`.
    #[serde(default)]
    pub preview_zone: Option<String>,
    /// Namespaces are `<prefix><slug>-pr-<n>`; the Argo CD project and the admission policy
    /// confine previews and Previewd to namespaces with this prefix.
    #[serde(default = "namespace_prefix")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]{0,19}$"))]
    pub namespace_prefix: String,
    #[serde(default)]
    pub ingress: IngressConfig,
    #[serde(default)]
    pub argocd: ArgoCdConfig,
    #[serde(default)]
    pub ttl: TtlConfig,
    #[serde(default)]
    pub quota: QuotaConfig,
    #[serde(default)]
    pub container_defaults: ContainerDefaults,
    #[serde(default)]
    pub network: NetworkConfig,
    #[serde(default)]
    pub pricing: Pricing,
    /// The organisation's monthly budget for previews.
    #[serde(default)]
    pub budget: BudgetConfig,
    #[serde(default)]
    pub spot: SpotConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// What Previewd shows on the PR (credentials come from the environment, never from here).
    #[serde(default)]
    pub github: GitHubConfig,
    /// Optional AI augmentation (the key comes from the environment, never from here).
    #[serde(default)]
    pub ai: AiConfig,
    /// Where the Secrets previews get may come from (references only, never values).
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// Requests proposed from observed usage (default: off).
    #[serde(default)]
    pub sizing: SizingConfig,
    /// Prefix rewrites of the images Previewd writes (an air-gapped mirror).
    #[serde(default)]
    pub images: ImagesConfig,
    /// Preview clusters besides Previewd's own (`in-cluster`), by reference to a Secret.
    #[serde(default)]
    pub clusters: Vec<ClusterConfig>,
    /// The clusters a repository's previews try, in order, when it lists none: the first
    /// reachable one with room (default: `[in-cluster]`).
    #[serde(default)]
    pub default_clusters: Vec<String>,
    #[schemars(length(min = 1))]
    pub repositories: Vec<RepositoryConfig>,
}

fn namespace_prefix() -> String {
    "preview-".into()
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), message: e.to_string() })?;
        Config::from_yaml(&text)
    }

    /// Parses and validates a YAML document.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let deserializer = serde_norway::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let field = err.path().to_string();
            ConfigError::Parse { field, message: err.into_inner().to_string() }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The JSON Schema of the configuration document (draft-07, self-contained), as the chart
    /// embeds it under `config` in `values.schema.json`.
    pub fn schema() -> serde_json::Value {
        let mut settings = schemars::generate::SchemaSettings::draft07();
        settings.inline_subschemas = true;
        let mut schema =
            serde_json::to_value(settings.into_generator().into_root_schema_for::<Config>()).unwrap_or_default();
        if let Some(map) = schema.as_object_mut() {
            map.remove("$schema");
            map.remove("title");
        }
        schema
    }

    pub fn preview_zone(&self) -> String {
        self.preview_zone.clone().unwrap_or_else(|| format!("preview.{}", self.domain))
    }

    /// The clusters `repo`'s previews try, in order.
    pub fn clusters_for<'a>(&'a self, repo: &'a RepositoryConfig) -> Vec<&'a str> {
        let order = if repo.clusters.is_empty() { &self.default_clusters } else { &repo.clusters };
        if order.is_empty() { vec![IN_CLUSTER] } else { order.iter().map(String::as_str).collect() }
    }

    /// A registered preview cluster (not `in-cluster`).
    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }

    pub fn repository(&self, full_name: &str) -> Option<&RepositoryConfig> {
        self.repositories.iter().find(|r| r.name.eq_ignore_ascii_case(full_name))
    }

    /// The rules a type cannot express: each section checks its own, then what spans sections.
    fn validate(&self) -> Result<(), ConfigError> {
        if !names::is_dns_name(&self.domain) {
            return Err(invalid("domain", format!("{:?} is not a DNS name", self.domain)));
        }
        if !names::is_dns_name(&self.preview_zone()) {
            return Err(invalid("previewZone", format!("{:?} is not a DNS name", self.preview_zone())));
        }
        let prefix = &self.namespace_prefix;
        let stem = prefix.trim_end_matches('-');
        if stem.is_empty()
            || prefix.len() > 20
            || names::sanitize_label(stem) != stem
            || !stem.starts_with(|c: char| c.is_ascii_lowercase())
        {
            return Err(invalid(
                "namespacePrefix",
                "1-20 lower-case letters, digits and '-', starting with a letter: the Argo CD project and \
                 the admission policy confine previews and Previewd to namespaces with this prefix",
            ));
        }
        self.ingress.validate()?;
        self.argocd.validate()?;
        self.ttl.validate()?;
        self.quota.validate()?;
        self.network.validate()?;
        self.pricing.validate()?;
        self.budget.validate()?;
        self.github.validate()?;
        self.ai.validate()?;
        self.secrets.validate()?;
        self.sizing.validate()?;
        self.images.validate()?;
        if self.repositories.is_empty() {
            return Err(invalid("repositories", "configure at least one repository"));
        }
        let mut clusters = BTreeSet::new();
        for (i, cluster) in self.clusters.iter().enumerate() {
            cluster.validate(i, &self.quota)?;
            if !clusters.insert(&cluster.name) {
                return Err(invalid(format!("clusters[{i}].name"), format!("{} is registered twice", cluster.name)));
            }
        }
        placement::check_order("defaultClusters", &self.default_clusters, &self.clusters)?;
        let mut names = BTreeSet::new();
        let mut slugs = BTreeMap::new();
        for (i, repo) in self.repositories.iter().enumerate() {
            repo.validate(i)?;
            placement::check_order(&format!("repositories[{i}].clusters"), &repo.clusters, &self.clusters)?;
            for (k, secret) in repo.secrets.iter().enumerate() {
                self.secrets.check(&format!("repositories[{i}].secrets[{k}]"), secret)?;
            }
            if let Some(secret) = repo.basic_auth_secret() {
                self.secrets.check(&format!("repositories[{i}].protect.basicAuth.secret"), secret)?;
            }
            for (j, service) in repo.services.iter().enumerate() {
                for (k, secret) in service.secrets.iter().enumerate() {
                    self.secrets.check(&format!("repositories[{i}].services[{j}].secrets[{k}]"), secret)?;
                }
            }
            // External auth is written as ingress-nginx annotations; another controller would
            // ignore them and serve the preview open.
            if repo.protect.is_some()
                && let Some(class) = &self.ingress.class_name
                && !class.contains("nginx")
            {
                return Err(invalid(
                    format!("repositories[{i}].protect"),
                    format!("needs ingress-nginx; ingress.className is {class:?}"),
                ));
            }
            if !names.insert(repo.name.to_ascii_lowercase()) {
                return Err(invalid(format!("repositories[{i}].name"), format!("{} is configured twice", repo.name)));
            }
            let slug = repo.slug();
            if let Some(other) = slugs.insert(slug.clone(), repo.name.clone()) {
                return Err(invalid(
                    format!("repositories[{i}].slug"),
                    format!(
                        "{} and {other} would share the slug {slug:?} (hosts and namespaces); set `slug` on one",
                        repo.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
