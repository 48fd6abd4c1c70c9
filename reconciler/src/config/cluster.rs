//! What every preview namespace gets: ingress, Argo CD, quota and container defaults, network
//! isolation.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::{Bytes, Cidr, Cpu, GIB, HumanDuration, MIB};
use super::{ConfigError, invalid};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IngressConfig {
    /// IngressClass of preview Ingresses (the cluster default when unset).
    pub class_name: Option<String>,
    /// Namespace of the ingress controller: the only source admitted into previews.
    pub controller_namespace: String,
    /// How previews get certificates.
    pub tls: TlsMode,
    /// With `certManager` TLS: the ClusterIssuer.
    pub cluster_issuer: Option<String>,
    /// Removed: a wildcard certificate's Secret in every preview namespace puts the private key
    /// of every preview host within reach of each PR's code. Still parsed, so that a config
    /// that sets it is refused with the fix rather than as an unknown field.
    pub wildcard_secret: Option<String>,
    /// How previews get DNS records.
    pub dns: DnsMode,
    /// Extra annotations on every preview Ingress.
    pub annotations: BTreeMap<String, String>,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            class_name: None,
            controller_namespace: "ingress-nginx".into(),
            tls: TlsMode::default(),
            cluster_issuer: None,
            wildcard_secret: None,
            dns: DnsMode::default(),
            annotations: BTreeMap::new(),
        }
    }
}

impl IngressConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.tls == TlsMode::CertManager && self.cluster_issuer.as_deref().unwrap_or("").is_empty() {
            return Err(invalid("ingress.clusterIssuer", "required with ingress.tls: certManager"));
        }
        if self.wildcard_secret.is_some() {
            return Err(invalid(
                "ingress.wildcardSecret",
                "no longer supported: the wildcard key would sit in every preview namespace, readable by \
                 each PR's code. Remove it and make the wildcard certificate the ingress controller's \
                 default certificate, or use `tls: certManager` (docs/configuration.md#tls)",
            ));
        }
        Ok(())
    }
}

/// How previews get certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TlsMode {
    /// One wildcard certificate for `*.<previewZone>`, served by the ingress controller as its
    /// default certificate: no per-preview issuance, no CA rate limits.
    #[default]
    Wildcard,
    /// A certificate per preview from cert-manager (mind the CA's weekly limits).
    CertManager,
}

/// How previews get DNS records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DnsMode {
    /// One wildcard record `*.<previewZone>` points at the ingress controller.
    #[default]
    Wildcard,
    /// external-dns creates a record per preview from the Ingress annotation.
    ExternalDns,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ArgoCdConfig {
    /// Where ApplicationSets and Applications live.
    pub namespace: String,
    /// The AppProject every preview Application belongs to: the chart creates it, confined
    /// to preview namespaces and the configured repositories. Never Argo CD's `default`.
    pub project: String,
    /// The destination cluster of preview Applications.
    pub destination_server: String,
    /// ApplicationSets created per minute, at most (the brief's protection of Argo CD).
    #[schemars(range(min = 1))]
    pub application_sets_per_minute: u32,
}

impl Default for ArgoCdConfig {
    fn default() -> Self {
        ArgoCdConfig {
            namespace: "argocd".into(),
            project: "previews".into(),
            destination_server: "https://kubernetes.default.svc".into(),
            application_sets_per_minute: 10,
        }
    }
}

impl ArgoCdConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let project = self.project.trim();
        if project.is_empty() || project == "default" {
            return Err(invalid(
                "argocd.project",
                format!(
                    "{project:?} would let a PR's chart deploy cluster-wide objects into any namespace (Argo CD's \
                     `default` project allows every destination and kind). Set it to the AppProject the chart \
                     creates (chart value argocd.appProject.name, by default `previews`; docs/security.md)"
                ),
            ));
        }
        if self.application_sets_per_minute == 0 {
            return Err(invalid("argocd.applicationSetsPerMinute", "must be at least 1"));
        }
        Ok(())
    }
}

/// How long previews live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TtlConfig {
    /// After the PR's last activity.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "HumanDuration")]
    pub idle: Duration,
    /// After the last activity, for PRs labelled `policy.doNotExpireLabel`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "HumanDuration")]
    pub do_not_expire: Duration,
    /// Absolute maximum after the preview was created.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "HumanDuration")]
    pub max: Duration,
    /// Safety-net sweep for expired previews (expiry is otherwise scheduled exactly).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "HumanDuration")]
    pub sweep_interval: Duration,
    /// After this long without activity a preview sleeps: its services scale to zero, its
    /// namespace and URL stay (default: never; shorter than `idle`).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<HumanDuration>")]
    pub sleep_after: Option<Duration>,
    /// Where Previewd's sleep page is served (its `/asleep/…` and `/wake/…` routes), e.g.
    /// `https://previewd.preview.example.com`; required with `sleepAfter`.
    #[serde(default)]
    pub wake_url: Option<String>,
}

impl Default for TtlConfig {
    fn default() -> Self {
        TtlConfig {
            idle: Duration::from_secs(4 * 3600),
            do_not_expire: Duration::from_secs(24 * 3600),
            max: Duration::from_secs(7 * 24 * 3600),
            sweep_interval: Duration::from_secs(300),
            sleep_after: None,
            wake_url: None,
        }
    }
}

/// The longest `ttl.max` the configuration accepts.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

impl TtlConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.idle.is_zero() || self.idle > self.do_not_expire || self.do_not_expire > self.max {
            return Err(invalid("ttl", "expected 0 < idle <= doNotExpire <= max"));
        }
        if let Some(after) = self.sleep_after {
            if after.as_secs() < 60 || after >= self.idle {
                return Err(invalid("ttl.sleepAfter", "at least 1m, and shorter than ttl.idle"));
            }
            let url = self.wake_url.as_deref().unwrap_or_default();
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.parse::<http::Uri>().is_err() {
                return Err(invalid(
                    "ttl.wakeUrl",
                    "the http(s) URL Previewd's sleep page is served at (required with sleepAfter)",
                ));
            }
        }
        // A preview is a short-lived thing; the bound also keeps every expiry well inside what
        // timestamps and timers can hold.
        if self.max > MAX_TTL {
            return Err(invalid("ttl.max", "at most 365d"));
        }
        // The controller's timers (a requeue per preview) cannot be set years ahead.
        if self.sweep_interval < Duration::from_secs(10) || self.sweep_interval > Duration::from_secs(24 * 3600) {
            return Err(invalid("ttl.sweepInterval", "between 10s and 24h"));
        }
        Ok(())
    }
}

/// The ResourceQuota of each preview namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// CPU requests and limits.
    pub cpu: Cpu,
    /// Memory requests and limits.
    pub memory: Bytes,
    /// PersistentVolumeClaim requests.
    pub storage: Bytes,
    /// Node-local scratch space (emptyDir, logs, writable layers): requests and limits.
    pub ephemeral_storage: Bytes,
    /// Object counts: each object costs the API server and etcd, whatever its size.
    #[schemars(range(min = 1))]
    pub pods: u32,
    #[schemars(range(min = 1))]
    pub services: u32,
    #[schemars(range(min = 1))]
    pub secrets: u32,
    #[schemars(range(min = 1))]
    pub config_maps: u32,
    #[schemars(range(min = 1))]
    pub persistent_volume_claims: u32,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            cpu: Cpu::known("4", 4.0),
            memory: Bytes::known("8Gi", 8.0 * GIB),
            storage: Bytes::known("20Gi", 20.0 * GIB),
            ephemeral_storage: Bytes::known("10Gi", 10.0 * GIB),
            pods: 30,
            services: 20,
            secrets: 50,
            config_maps: 50,
            persistent_volume_claims: 10,
        }
    }
}

impl QuotaConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (field, count) in [
            ("quota.pods", self.pods),
            ("quota.services", self.services),
            ("quota.secrets", self.secrets),
            ("quota.configMaps", self.config_maps),
            ("quota.persistentVolumeClaims", self.persistent_volume_claims),
        ] {
            if count == 0 {
                return Err(invalid(field, "must be at least 1 (a preview needs one of each)"));
            }
        }
        Ok(())
    }
}

/// CPU, memory and (optionally) scratch space of a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    pub cpu: Cpu,
    pub memory: Bytes,
    /// Scratch space; required in a namespace whose quota limits it, so the LimitRange
    /// (`containerDefaults`) supplies it to containers that do not ask.
    #[serde(default)]
    pub ephemeral_storage: Option<Bytes>,
}

/// The LimitRange of each preview namespace: what a container gets when it asks for nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ContainerDefaults {
    pub requests: Resources,
    pub limits: Resources,
}

impl Default for ContainerDefaults {
    fn default() -> Self {
        ContainerDefaults {
            requests: Resources {
                cpu: Cpu::known("100m", 0.1),
                memory: Bytes::known("256Mi", 256.0 * MIB),
                ephemeral_storage: Some(Bytes::known("100Mi", 100.0 * MIB)),
            },
            limits: Resources {
                cpu: Cpu::known("500m", 0.5),
                memory: Bytes::known("512Mi", 512.0 * MIB),
                ephemeral_storage: Some(Bytes::known("1Gi", GIB)),
            },
        }
    }
}

impl ContainerDefaults {
    /// The (request, limit) of scratch space a container gets when it asks for none. The quota
    /// limits ephemeral storage, so a container without these would be refused; a config that
    /// sets `requests`/`limits` without `ephemeralStorage` still gets the defaults.
    pub fn ephemeral_storage(&self) -> (Bytes, Bytes) {
        let defaults = ContainerDefaults::default();
        let pick = |set: &Option<Bytes>, default: Option<Bytes>| {
            set.clone().or(default).unwrap_or_else(|| Bytes::known("0", 0.0))
        };
        (
            pick(&self.requests.ephemeral_storage, defaults.requests.ephemeral_storage),
            pick(&self.limits.ephemeral_storage, defaults.limits.ephemeral_storage),
        )
    }
}

/// Network isolation of each preview namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Let pods resolve names through the cluster DNS (kube-system/kube-dns).
    pub allow_dns_egress: bool,
    /// Extra egress destinations (CIDRs), e.g. a shared staging database.
    pub egress_cidrs: Vec<Cidr>,
    /// Ranges cut out of every egress CIDR that contains them: by default the link-local
    /// ranges of the cloud metadata endpoints (169.254.169.254, fd00:ec2::254). Add node
    /// and control-plane ranges here when an egress CIDR covers them.
    pub egress_except: Vec<Cidr>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        // IPv4 and IPv6 link-local (169.254.169.254 on AWS, GCP, Azure; fe80::/10), and AWS's
        // IPv6 metadata address, which is not link-local.
        let except = ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"];
        NetworkConfig {
            allow_dns_egress: true,
            egress_cidrs: Vec::new(),
            egress_except: except.iter().filter_map(|c| Cidr::parse(c).ok()).collect(),
        }
    }
}

impl NetworkConfig {
    /// The entries of `egressExcept` that lie strictly inside `cidr` (a NetworkPolicy `except`
    /// must lie inside its `cidr`). Errors when `cidr` itself lies inside (or equals) one.
    pub fn exceptions_within(&self, cidr: &Cidr) -> Result<Vec<&Cidr>, String> {
        let net = cidr.net();
        let mut inside = Vec::new();
        for excluded in &self.egress_except {
            if excluded.net().contains(&net) {
                return Err(format!(
                    "{cidr} lies inside the excluded range {excluded} (network.egressExcept)",
                    cidr = cidr.as_str(),
                    excluded = excluded.as_str()
                ));
            }
            if net.contains(&excluded.net()) {
                inside.push(excluded);
            }
        }
        Ok(inside)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (i, cidr) in self.egress_cidrs.iter().enumerate() {
            self.exceptions_within(cidr).map_err(|e| invalid(format!("network.egressCidrs[{i}]"), e))?;
        }
        Ok(())
    }
}
