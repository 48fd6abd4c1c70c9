//! The repositories Previewd serves and their services.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cluster::Resources;
use super::types::{Bytes, Globs};
use super::{ConfigError, invalid};
use crate::names;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepositoryConfig {
    /// `owner/name`, as on GitHub.
    #[schemars(regex(pattern = r"^[^/\s]+/[^/\s]+$"))]
    pub name: String,
    /// Short name in hosts and namespaces (default: the repository name). Must be unique.
    #[serde(default)]
    pub slug: Option<String>,
    /// Team that owns the repository (cost reports).
    #[serde(default)]
    pub team: Option<String>,
    /// Git URL Argo CD clones (default `https://github.com/<name>.git`).
    #[serde(default)]
    pub repo_url: Option<String>,
    /// Test suites the AI may suggest running for a change (`ai.features.testSelection`).
    #[serde(default)]
    pub test_suites: Vec<String>,
    #[schemars(length(min = 1))]
    pub services: Vec<ServiceConfig>,
}

impl RepositoryConfig {
    pub fn slug(&self) -> String {
        let raw = self.slug.clone().unwrap_or_else(|| self.name.rsplit('/').next().unwrap_or(&self.name).to_owned());
        names::sanitize_label(&raw)
    }

    pub fn repo_url(&self) -> String {
        self.repo_url.clone().unwrap_or_else(|| format!("https://github.com/{}.git", self.name))
    }

    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }

    /// `at` is the repository's position in the list, for error messages.
    pub(super) fn validate(&self, at: usize) -> Result<(), ConfigError> {
        let field = |f: &str| format!("repositories[{at}].{f}");
        let valid_name =
            matches!(self.name.split_once('/'), Some((o, r)) if !o.is_empty() && !r.is_empty() && !r.contains('/'));
        if !valid_name {
            return Err(invalid(field("name"), format!("{:?} is not owner/name", self.name)));
        }
        let slug = self.slug();
        if slug.is_empty() || slug.len() > 40 {
            return Err(invalid(field("slug"), format!("{slug:?}: 1-40 characters of a DNS label")));
        }
        if self.services.is_empty() {
            return Err(invalid(field("services"), "configure at least one service"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (j, service) in self.services.iter().enumerate() {
            let field = |f: &str| format!("repositories[{at}].services[{j}].{f}");
            if !names::is_dns_label(&service.name) || service.name.len() > 30 {
                return Err(invalid(
                    field("name"),
                    format!("{:?}: a DNS label of at most 30 characters", service.name),
                ));
            }
            if !seen.insert(service.name.as_str()) {
                return Err(invalid(field("name"), format!("{} is configured twice", service.name)));
            }
            if service.chart_path.is_empty() || service.chart_path.starts_with('/') || service.chart_path.contains("..")
            {
                return Err(invalid(field("chartPath"), "a relative path inside the repository"));
            }
            if let Some(expose) = &service.expose {
                if !expose.path.starts_with('/') {
                    return Err(invalid(field("expose.path"), "must start with /"));
                }
                if expose.port == 0 {
                    return Err(invalid(field("expose.port"), "must be 1-65535"));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceConfig {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 30))]
    pub name: String,
    /// What the service is, in a sentence (helps AI service detection).
    #[serde(default)]
    pub description: Option<String>,
    /// Globs of the files whose change means this service must be deployed.
    #[serde(default)]
    pub paths: Globs,
    /// Where the service's Helm chart (or manifests) lives in the repository.
    #[schemars(length(min = 1))]
    pub chart_path: String,
    /// Helm value files inside the chart path.
    #[serde(default)]
    pub value_files: Vec<String>,
    /// Extra Helm values.
    #[serde(default)]
    pub values: serde_json::Map<String, serde_json::Value>,
    /// What the service's pods request, for quota and cost (passed as `resources` to Helm).
    pub resources: ServiceResources,
    /// Routed from the preview's host, when set.
    #[serde(default)]
    pub expose: Option<Expose>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceResources {
    pub requests: Resources,
    #[serde(default)]
    pub limits: Option<Resources>,
    /// Persistent storage the service claims (cost only).
    #[serde(default)]
    pub storage: Option<Bytes>,
    #[serde(default = "one")]
    pub replicas: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expose {
    /// Kubernetes Service name (default: the service name).
    #[serde(default)]
    pub service: Option<String>,
    #[schemars(range(min = 1))]
    pub port: u16,
    #[serde(default = "root_path")]
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
}

fn root_path() -> String {
    "/".into()
}
