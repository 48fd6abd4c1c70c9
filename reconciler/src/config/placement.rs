//! Where previews run: the preview clusters Previewd may use besides its own, registered by
//! reference to a Secret (never credentials in the config), and the order a repository's
//! previews try them in.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::{Bytes, Cpu};
use super::{ConfigError, QuotaConfig, invalid};
use crate::names;

/// The name of the cluster Previewd runs in (Argo CD's name for it).
pub const IN_CLUSTER: &str = "in-cluster";

/// A preview cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    /// How repositories name it (`clusters` lists); `in-cluster` is Previewd's own cluster.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// An Argo CD cluster Secret in `argocd.namespace` (its `server` and `config`).
    #[serde(default)]
    pub argocd_secret: Option<String>,
    /// A Secret in Previewd's namespace holding a kubeconfig, with inline credentials only.
    #[serde(default)]
    pub kubeconfig_secret: Option<KubeconfigSecret>,
    /// The server Argo CD deploys to, as registered in Argo CD (default: the Secret's server).
    #[serde(default)]
    pub destination_server: Option<String>,
    /// The zone of preview hosts in this cluster, whose wildcard record points at its ingress
    /// controller (default: `previewZone`; not needed with `ingress.dns: externalDns`).
    #[serde(default)]
    pub preview_zone: Option<String>,
    /// What previews may reserve here, counted in their namespace quotas (`quota.cpu`,
    /// `quota.memory`): the cluster is full when one more quota would not fit.
    #[serde(default)]
    pub capacity: Option<Capacity>,
}

/// A kubeconfig in a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeconfigSecret {
    pub name: String,
    /// The key holding the kubeconfig.
    #[serde(default = "kubeconfig_key")]
    pub key: String,
}

fn kubeconfig_key() -> String {
    "kubeconfig".into()
}

/// Room for previews in a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capacity {
    pub cpu: Cpu,
    pub memory: Bytes,
}

impl Capacity {
    /// How many previews, each reserving `quota`, fit.
    pub fn previews(&self, quota: &QuotaConfig) -> u64 {
        let fit = |room: f64, each: f64| if each > 0.0 { (room / each).floor().max(0.0) as u64 } else { u64::MAX };
        fit(self.cpu.cores(), quota.cpu.cores()).min(fit(self.memory.bytes(), quota.memory.bytes()))
    }
}

/// Where a registered cluster's credentials are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterSource<'a> {
    ArgoCd { secret: &'a str },
    Kubeconfig { secret: &'a str, key: &'a str },
}

impl ClusterConfig {
    pub fn source(&self) -> Option<ClusterSource<'_>> {
        match (&self.argocd_secret, &self.kubeconfig_secret) {
            (Some(secret), None) => Some(ClusterSource::ArgoCd { secret }),
            (None, Some(k)) => Some(ClusterSource::Kubeconfig { secret: &k.name, key: &k.key }),
            _ => None,
        }
    }

    pub(super) fn validate(&self, at: usize, quota: &QuotaConfig) -> Result<(), ConfigError> {
        let field = |f: &str| format!("clusters[{at}].{f}");
        if self.name == IN_CLUSTER || !names::is_dns_label(&self.name) {
            return Err(invalid(
                field("name"),
                format!("{:?}: a DNS label other than {IN_CLUSTER:?} (Previewd's own cluster)", self.name),
            ));
        }
        if self.source().is_none() {
            return Err(invalid(field("argocdSecret"), "set exactly one of argocdSecret and kubeconfigSecret"));
        }
        let named = |n: &str| n.len() <= 253 && n.split('.').all(names::is_dns_label);
        if !self.argocd_secret.as_deref().is_none_or(named)
            || !self.kubeconfig_secret.as_ref().is_none_or(|k| named(&k.name) && !k.key.is_empty())
        {
            return Err(invalid(field("argocdSecret"), "a Secret's name (and a key)"));
        }
        if let Some(server) = &self.destination_server
            && !(server.starts_with("https://") || server.starts_with("http://"))
        {
            return Err(invalid(field("destinationServer"), "the http(s) URL Argo CD knows the cluster by"));
        }
        if let Some(zone) = &self.preview_zone
            && !names::is_dns_name(zone)
        {
            return Err(invalid(field("previewZone"), format!("{zone:?} is not a DNS name")));
        }
        if self.capacity.as_ref().is_some_and(|c| c.previews(quota) == 0) {
            return Err(invalid(field("capacity"), "smaller than one preview's quota (quota.cpu, quota.memory)"));
        }
        Ok(())
    }
}

/// Checks a list of cluster names (`defaultClusters`, `repositories[].clusters`): each
/// registered or `in-cluster`, none twice.
pub(super) fn check_order(field: &str, order: &[String], clusters: &[ClusterConfig]) -> Result<(), ConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, name) in order.iter().enumerate() {
        if name != IN_CLUSTER && !clusters.iter().any(|c| &c.name == name) {
            return Err(invalid(
                format!("{field}[{i}]"),
                format!("{name:?} is not in `clusters` (nor {IN_CLUSTER:?})"),
            ));
        }
        if !seen.insert(name) {
            return Err(invalid(format!("{field}[{i}]"), format!("{name:?} is listed twice")));
        }
    }
    Ok(())
}
