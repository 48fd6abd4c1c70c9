//! Secrets for previews: references only. A preview gets copies of existing Secrets from
//! allow-listed namespaces, or ExternalSecrets when the External Secrets Operator is there.
//! No secret value is ever part of the configuration, the queue, a PreviewEnvironment, a
//! comment, a log line or an AI prompt.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};
use crate::names;

/// Where preview secrets may come from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretsConfig {
    /// The only namespaces Secrets are copied from (the chart grants read access there and
    /// nowhere else).
    #[serde(default)]
    pub source_namespaces: Vec<String>,
    /// The External Secrets Operator's store, when its CRDs are installed: references with a
    /// `remoteKey` become ExternalSecret objects in the preview.
    #[serde(default)]
    pub external_secrets: Option<ExternalSecretsConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalSecretsConfig {
    /// `SecretStore` or `ClusterSecretStore` (default).
    #[serde(default = "ExternalSecretsConfig::default_kind")]
    pub store_kind: String,
    pub store_name: String,
    /// How often the operator refreshes the secret (default `1h`).
    #[serde(default = "ExternalSecretsConfig::default_refresh")]
    pub refresh_interval: String,
}

impl ExternalSecretsConfig {
    fn default_kind() -> String {
        "ClusterSecretStore".into()
    }

    fn default_refresh() -> String {
        "1h".into()
    }
}

/// One Secret a preview gets, under `name`: copied `from` a source namespace (the Secret of
/// the same name there), or fetched by the operator from `remoteKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    pub name: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub remote_key: Option<String>,
}

/// A Kubernetes object name (a DNS-1123 subdomain).
fn object_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(names::is_dns_label)
}

impl SecretsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (i, ns) in self.source_namespaces.iter().enumerate() {
            if !names::is_dns_label(ns) || ns == "kube-system" {
                return Err(invalid(
                    format!("secrets.sourceNamespaces[{i}]"),
                    format!("{ns:?}: a namespace other than kube-system"),
                ));
            }
        }
        if let Some(eso) = &self.external_secrets {
            if !matches!(eso.store_kind.as_str(), "SecretStore" | "ClusterSecretStore") {
                return Err(invalid("secrets.externalSecrets.storeKind", "SecretStore or ClusterSecretStore"));
            }
            if !object_name(&eso.store_name) {
                return Err(invalid("secrets.externalSecrets.storeName", "a Kubernetes object name"));
            }
        }
        Ok(())
    }

    /// Checks one reference against these settings; `field` names it in the error.
    pub(super) fn check(&self, field: &str, secret: &SecretRef) -> Result<(), ConfigError> {
        if !object_name(&secret.name) {
            return Err(invalid(format!("{field}.name"), format!("{:?}: a Secret name", secret.name)));
        }
        match (&secret.from, &secret.remote_key) {
            (Some(from), None) if self.source_namespaces.contains(from) => Ok(()),
            (Some(from), None) => Err(invalid(
                format!("{field}.from"),
                format!("{from:?} is not in secrets.sourceNamespaces (the only namespaces Secrets are copied from)"),
            )),
            (None, Some(key)) if self.external_secrets.is_some() && !key.trim().is_empty() => Ok(()),
            (None, Some(_)) => Err(invalid(format!("{field}.remoteKey"), "needs secrets.externalSecrets (and a key)")),
            _ => Err(invalid(field.to_owned(), "exactly one of `from` (copy) or `remoteKey` (External Secrets)")),
        }
    }
}
