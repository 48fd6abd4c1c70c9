//! The reconciler's configuration: one YAML document (a ConfigMap in the chart, a file
//! locally), read once at start and validated with errors that name the field. Secrets never
//! live here: they come from the environment / a Kubernetes Secret.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use crate::cidr;
use crate::names;
use crate::quantity;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {message}")]
    Read { path: String, message: String },
    #[error("config field `{field}`: {message}")]
    Parse { field: String, message: String },
    #[error("config field `{field}`: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The organisation's domain; previews live under `previewZone`.
    pub domain: String,
    /// The zone whose wildcard record and certificate serve every preview
    /// (default `preview.<domain>`). Hosts are `<slug>-pr-<n>.<previewZone>`.
    #[serde(default)]
    pub preview_zone: Option<String>,
    #[serde(default = "defaults::namespace_prefix")]
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
    pub repositories: Vec<RepositoryConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressConfig {
    #[serde(default)]
    pub class_name: Option<String>,
    /// Namespace of the ingress controller: the only source admitted into previews.
    #[serde(default = "defaults::ingress_namespace")]
    pub controller_namespace: String,
    #[serde(default)]
    pub tls: TlsMode,
    /// With `certManager` TLS: the ClusterIssuer.
    #[serde(default)]
    pub cluster_issuer: Option<String>,
    /// Removed: a wildcard certificate's Secret in every preview namespace puts the private key
    /// of every preview host within reach of each PR's code. Still parsed, so that a config
    /// that sets it is refused with the fix rather than as an unknown field.
    #[serde(default)]
    pub wildcard_secret: Option<String>,
    #[serde(default)]
    pub dns: DnsMode,
    /// Extra annotations on every preview Ingress.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            class_name: None,
            controller_namespace: defaults::ingress_namespace(),
            tls: TlsMode::default(),
            cluster_issuer: None,
            wildcard_secret: None,
            dns: DnsMode::default(),
            annotations: BTreeMap::new(),
        }
    }
}

/// How previews get certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DnsMode {
    /// One wildcard record `*.<previewZone>` points at the ingress controller.
    #[default]
    Wildcard,
    /// external-dns creates a record per preview from the Ingress annotation.
    ExternalDns,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgoCdConfig {
    #[serde(default = "defaults::argocd_namespace")]
    pub namespace: String,
    /// The AppProject every preview Application belongs to: the chart creates it, confined
    /// to preview namespaces and the configured repositories. Never Argo CD's `default`.
    #[serde(default = "defaults::argocd_project")]
    pub project: String,
    /// The destination cluster of preview Applications.
    #[serde(default = "defaults::destination_server")]
    pub destination_server: String,
    /// ApplicationSets created per minute, at most (the brief's protection of Argo CD).
    #[serde(default = "defaults::application_sets_per_minute")]
    pub application_sets_per_minute: u32,
}

impl Default for ArgoCdConfig {
    fn default() -> Self {
        ArgoCdConfig {
            namespace: defaults::argocd_namespace(),
            project: defaults::argocd_project(),
            destination_server: defaults::destination_server(),
            application_sets_per_minute: defaults::application_sets_per_minute(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TtlConfig {
    /// After the PR's last activity.
    #[serde(default = "defaults::ttl_idle", with = "humantime_serde")]
    pub idle: Duration,
    /// After the last activity, for PRs labelled `policy.doNotExpireLabel`.
    #[serde(default = "defaults::ttl_do_not_expire", with = "humantime_serde")]
    pub do_not_expire: Duration,
    /// Absolute maximum after the preview was created.
    #[serde(default = "defaults::ttl_max", with = "humantime_serde")]
    pub max: Duration,
    /// Safety-net sweep for expired previews (expiry is otherwise scheduled exactly).
    #[serde(default = "defaults::sweep_interval", with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for TtlConfig {
    fn default() -> Self {
        TtlConfig {
            idle: defaults::ttl_idle(),
            do_not_expire: defaults::ttl_do_not_expire(),
            max: defaults::ttl_max(),
            sweep_interval: defaults::sweep_interval(),
        }
    }
}

/// The ResourceQuota of each preview namespace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaConfig {
    #[serde(default = "defaults::quota_cpu")]
    pub cpu: String,
    #[serde(default = "defaults::quota_memory")]
    pub memory: String,
    #[serde(default = "defaults::quota_storage")]
    pub storage: String,
    /// Node-local scratch space (emptyDir, logs, writable layers): requests and limits.
    #[serde(default = "defaults::quota_ephemeral_storage")]
    pub ephemeral_storage: String,
    #[serde(default = "defaults::quota_pods")]
    pub pods: u32,
    /// Object counts: each object costs the API server and etcd, whatever its size.
    #[serde(default = "defaults::quota_services")]
    pub services: u32,
    #[serde(default = "defaults::quota_secrets")]
    pub secrets: u32,
    #[serde(default = "defaults::quota_config_maps")]
    pub config_maps: u32,
    #[serde(default = "defaults::quota_persistent_volume_claims")]
    pub persistent_volume_claims: u32,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            cpu: defaults::quota_cpu(),
            memory: defaults::quota_memory(),
            storage: defaults::quota_storage(),
            ephemeral_storage: defaults::quota_ephemeral_storage(),
            pods: defaults::quota_pods(),
            services: defaults::quota_services(),
            secrets: defaults::quota_secrets(),
            config_maps: defaults::quota_config_maps(),
            persistent_volume_claims: defaults::quota_persistent_volume_claims(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    pub cpu: String,
    pub memory: String,
    /// Scratch space; required in a namespace whose quota limits it, so the LimitRange
    /// (`containerDefaults`) supplies it to containers that do not ask.
    #[serde(default)]
    pub ephemeral_storage: Option<String>,
}

/// The LimitRange of each preview namespace: what a container gets when it asks for nothing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerDefaults {
    #[serde(default = "defaults::default_requests")]
    pub requests: Resources,
    #[serde(default = "defaults::default_limits")]
    pub limits: Resources,
}

impl Default for ContainerDefaults {
    fn default() -> Self {
        ContainerDefaults { requests: defaults::default_requests(), limits: defaults::default_limits() }
    }
}

impl ContainerDefaults {
    /// The (request, limit) of scratch space a container gets when it asks for none. The quota
    /// limits ephemeral storage, so a container without these would be refused; a config that
    /// sets `requests`/`limits` without `ephemeralStorage` still gets the documented defaults.
    pub fn ephemeral_storage(&self) -> (String, String) {
        let pick =
            |set: &Option<String>, default: Resources| set.clone().or(default.ephemeral_storage).unwrap_or_default();
        (
            pick(&self.requests.ephemeral_storage, defaults::default_requests()),
            pick(&self.limits.ephemeral_storage, defaults::default_limits()),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkConfig {
    /// Let pods resolve names through the cluster DNS (kube-system/kube-dns).
    #[serde(default = "defaults::yes")]
    pub allow_dns_egress: bool,
    /// Extra egress destinations (CIDRs), e.g. a shared staging database.
    #[serde(default)]
    pub egress_cidrs: Vec<String>,
    /// Ranges cut out of every egress CIDR that contains them: by default the link-local
    /// ranges of the cloud metadata endpoints (169.254.169.254, fd00:ec2::254). Add node
    /// and control-plane ranges here when an egress CIDR covers them.
    #[serde(default = "defaults::egress_except")]
    pub egress_except: Vec<String>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig { allow_dns_egress: true, egress_cidrs: Vec::new(), egress_except: defaults::egress_except() }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pricing {
    #[serde(default = "defaults::cpu_core_hour")]
    pub cpu_core_hour: f64,
    #[serde(default = "defaults::memory_gb_hour")]
    pub memory_gb_hour: f64,
    #[serde(default = "defaults::storage_gb_month")]
    pub storage_gb_month: f64,
    /// Fraction taken off compute prices when previews run on spot capacity (0-0.9).
    #[serde(default)]
    pub spot_discount: f64,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            cpu_core_hour: defaults::cpu_core_hour(),
            memory_gb_hour: defaults::memory_gb_hour(),
            storage_gb_month: defaults::storage_gb_month(),
            spot_discount: 0.0,
        }
    }
}

/// Prefer spot capacity for preview workloads (passed to the services' Helm values).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpotConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "defaults::spot_label_key")]
    pub node_label_key: String,
    #[serde(default = "defaults::spot_label_value")]
    pub node_label_value: String,
    /// Taint key of spot nodes to tolerate (none when empty).
    #[serde(default)]
    pub toleration_key: Option<String>,
}

impl Default for SpotConfig {
    fn default() -> Self {
        SpotConfig {
            enabled: false,
            node_label_key: defaults::spot_label_key(),
            node_label_value: defaults::spot_label_value(),
            toleration_key: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ForkPolicy {
    /// Deploy fork PRs only once a maintainer adds `forkLabel`.
    #[default]
    RequireLabel,
    /// Deploy fork PRs like any other (only for trusted contributor bases).
    Allow,
    /// Never deploy fork PRs.
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(default)]
    pub forks: ForkPolicy,
    #[serde(default = "defaults::fork_label")]
    pub fork_label: String,
    #[serde(default)]
    pub deploy_drafts: bool,
    #[serde(default = "defaults::opt_out_label")]
    pub opt_out_label: String,
    #[serde(default = "defaults::do_not_expire_label")]
    pub do_not_expire_label: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            forks: ForkPolicy::default(),
            fork_label: defaults::fork_label(),
            deploy_drafts: false,
            opt_out_label: defaults::opt_out_label(),
            do_not_expire_label: defaults::do_not_expire_label(),
        }
    }
}

/// How AI and the static path globs combine when choosing a preview's services.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AiMode {
    /// The AI may add services the path globs missed, never remove one.
    #[default]
    AddOnly,
    /// The AI's answer decides when its confidence is at least `minConfidence`.
    DecideAbove,
    /// The path globs decide; the AI is not asked for services.
    StaticOnly,
}

/// The AI engine: any OpenAI-compatible chat-completions endpoint (OpenAI, Azure OpenAI's
/// compatible endpoint, a local Ollama or vLLM). Key: `PREVIEWD_AI_API_KEY`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AiConfig {
    #[serde(default)]
    pub enabled: bool,
    /// The `provider` label of the AI metrics (e.g. `openai`, `ollama`).
    #[serde(default = "defaults::ai_provider")]
    pub provider: String,
    /// The API base, e.g. `https://api.openai.com/v1` or `http://ollama.ai:11434/v1`.
    #[serde(default = "defaults::ai_base_url")]
    pub base_url: String,
    #[serde(default = "defaults::ai_model")]
    pub model: String,
    #[serde(default)]
    pub mode: AiMode,
    /// With `mode: decideAbove`: the least confidence (0-1) for the AI's answer to decide.
    #[serde(default = "defaults::ai_min_confidence")]
    pub min_confidence: f64,
    #[serde(default = "defaults::ai_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "defaults::ai_requests_per_minute")]
    pub requests_per_minute: u32,
    /// How long an answer is reused for the same diff, services, model and prompt.
    #[serde(default = "defaults::ai_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// The most diff text sent per request (bytes); the rest is summarised by file name.
    #[serde(default = "defaults::ai_max_diff_bytes")]
    pub max_diff_bytes: usize,
    /// Paths whose diffs are never sent (lockfiles, generated and vendored code are left out
    /// by default; these are added).
    #[serde(default)]
    pub ignore_paths: Vec<String>,
    /// USD per million input and output tokens, for `previewd_ai_cost_usd_total`.
    #[serde(default)]
    pub prices: AiPrices,
    #[serde(default)]
    pub features: AiFeatures,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AiPrices {
    #[serde(default = "defaults::ai_input_price")]
    pub input_per_million: f64,
    #[serde(default = "defaults::ai_output_price")]
    pub output_per_million: f64,
}

impl Default for AiPrices {
    fn default() -> Self {
        AiPrices { input_per_million: defaults::ai_input_price(), output_per_million: defaults::ai_output_price() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AiFeatures {
    /// Ask which services a PR touches (merged with the path globs per `mode`).
    #[serde(default = "defaults::yes")]
    pub service_detection: bool,
    /// Suggest which of the repository's `testSuites` the change touches (in the PR comment).
    #[serde(default)]
    pub test_selection: bool,
    /// Shorten a stale PR's idle TTL from its activity (commits, comments, age), within the
    /// policy's bounds.
    #[serde(default)]
    pub ttl_prediction: bool,
}

impl Default for AiFeatures {
    fn default() -> Self {
        AiFeatures { service_detection: true, test_selection: false, ttl_prediction: false }
    }
}

impl Default for AiConfig {
    fn default() -> Self {
        AiConfig {
            enabled: false,
            provider: defaults::ai_provider(),
            base_url: defaults::ai_base_url(),
            model: defaults::ai_model(),
            mode: AiMode::default(),
            min_confidence: defaults::ai_min_confidence(),
            timeout: defaults::ai_timeout(),
            requests_per_minute: defaults::ai_requests_per_minute(),
            cache_ttl: defaults::ai_cache_ttl(),
            max_diff_bytes: defaults::ai_max_diff_bytes(),
            ignore_paths: Vec::new(),
            prices: AiPrices::default(),
            features: AiFeatures::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetConfig {
    /// USD per month. When the running previews' monthly projection exceeds it, the
    /// `previewd_cost_budget_exceeded` metric is 1 and a `BudgetExceeded` Event is published.
    #[serde(default)]
    pub monthly_usd: Option<f64>,
}

/// How the preview shows on the pull request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitHubConfig {
    /// A GitHub Deployment per head commit in the PR's transient environment
    /// (`preview/pr-<n>`): the PR shows "View deployment", later "destroyed".
    #[serde(default = "defaults::yes")]
    pub deployments: bool,
    /// Also a commit status on the head commit, for branch protection rules and users who
    /// prefer checks.
    #[serde(default)]
    pub commit_status: bool,
    /// The commit status's context.
    #[serde(default = "defaults::status_context")]
    pub status_context: String,
    /// The one sticky comment (URL, services, cost, expiry; or why there is no preview).
    #[serde(default = "defaults::yes")]
    pub comment: bool,
    /// Concurrent GitHub requests (one shared client).
    #[serde(default = "defaults::github_concurrency")]
    pub concurrency: u32,
    /// How long a deleted preview waits for GitHub to hear "destroyed" before it goes anyway.
    #[serde(default = "defaults::destroy_grace", with = "humantime_serde")]
    pub destroy_grace: Duration,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        GitHubConfig {
            deployments: true,
            commit_status: false,
            status_context: defaults::status_context(),
            comment: true,
            concurrency: defaults::github_concurrency(),
            destroy_grace: defaults::destroy_grace(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepositoryConfig {
    /// `owner/name`, as on GitHub.
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
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    /// What the service is, in a sentence (helps AI service detection).
    #[serde(default)]
    pub description: Option<String>,
    /// Globs of the files whose change means this service must be deployed.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Where the service's Helm chart (or manifests) lives in the repository.
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

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceResources {
    pub requests: Resources,
    #[serde(default)]
    pub limits: Option<Resources>,
    /// Persistent storage the service claims (cost only).
    #[serde(default)]
    pub storage: Option<String>,
    #[serde(default = "defaults::one")]
    pub replicas: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expose {
    /// Kubernetes Service name (default: the service name).
    #[serde(default)]
    pub service: Option<String>,
    pub port: u16,
    #[serde(default = "defaults::root_path")]
    pub path: String,
}

mod defaults {
    use std::time::Duration;

    use super::Resources;

    pub(super) fn ai_provider() -> String {
        "openai".into()
    }
    pub(super) fn ai_base_url() -> String {
        "https://api.openai.com/v1".into()
    }
    pub(super) fn ai_model() -> String {
        "gpt-4o-mini".into()
    }
    pub(super) fn ai_min_confidence() -> f64 {
        0.7
    }
    pub(super) fn ai_timeout() -> Duration {
        Duration::from_secs(20)
    }
    pub(super) fn ai_requests_per_minute() -> u32 {
        100
    }
    pub(super) fn ai_cache_ttl() -> Duration {
        Duration::from_secs(3600)
    }
    pub(super) fn ai_max_diff_bytes() -> usize {
        16 * 1024
    }
    pub(super) fn ai_input_price() -> f64 {
        0.15
    }
    pub(super) fn ai_output_price() -> f64 {
        0.60
    }
    pub(super) fn status_context() -> String {
        "previewd/preview".into()
    }
    pub(super) fn github_concurrency() -> u32 {
        4
    }
    pub(super) fn destroy_grace() -> Duration {
        Duration::from_secs(600)
    }
    pub(super) fn namespace_prefix() -> String {
        "preview-".into()
    }
    pub(super) fn ingress_namespace() -> String {
        "ingress-nginx".into()
    }
    pub(super) fn argocd_namespace() -> String {
        "argocd".into()
    }
    pub(super) fn argocd_project() -> String {
        "previews".into()
    }
    pub(super) fn destination_server() -> String {
        "https://kubernetes.default.svc".into()
    }
    pub(super) fn application_sets_per_minute() -> u32 {
        10
    }
    pub(super) fn ttl_idle() -> Duration {
        Duration::from_secs(4 * 3600)
    }
    pub(super) fn ttl_do_not_expire() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    pub(super) fn ttl_max() -> Duration {
        Duration::from_secs(7 * 24 * 3600)
    }
    pub(super) fn sweep_interval() -> Duration {
        Duration::from_secs(300)
    }
    pub(super) fn quota_cpu() -> String {
        "4".into()
    }
    pub(super) fn quota_memory() -> String {
        "8Gi".into()
    }
    pub(super) fn quota_storage() -> String {
        "20Gi".into()
    }
    pub(super) fn quota_ephemeral_storage() -> String {
        "10Gi".into()
    }
    pub(super) fn quota_pods() -> u32 {
        30
    }
    pub(super) fn quota_services() -> u32 {
        20
    }
    pub(super) fn quota_secrets() -> u32 {
        50
    }
    pub(super) fn quota_config_maps() -> u32 {
        50
    }
    pub(super) fn quota_persistent_volume_claims() -> u32 {
        10
    }
    pub(super) fn default_requests() -> Resources {
        Resources { cpu: "100m".into(), memory: "256Mi".into(), ephemeral_storage: Some("100Mi".into()) }
    }
    pub(super) fn default_limits() -> Resources {
        Resources { cpu: "500m".into(), memory: "512Mi".into(), ephemeral_storage: Some("1Gi".into()) }
    }
    /// IPv4 and IPv6 link-local (169.254.169.254 on AWS, GCP, Azure; fe80::/10), and AWS's
    /// IPv6 metadata address, which is not link-local.
    pub(super) fn egress_except() -> Vec<String> {
        vec!["169.254.0.0/16".into(), "fe80::/10".into(), "fd00:ec2::254/128".into()]
    }
    pub(super) fn yes() -> bool {
        true
    }
    pub(super) fn one() -> u32 {
        1
    }
    pub(super) fn cpu_core_hour() -> f64 {
        0.04
    }
    pub(super) fn memory_gb_hour() -> f64 {
        0.005
    }
    pub(super) fn storage_gb_month() -> f64 {
        0.10
    }
    pub(super) fn spot_label_key() -> String {
        "karpenter.sh/capacity-type".into()
    }
    pub(super) fn spot_label_value() -> String {
        "spot".into()
    }
    pub(super) fn fork_label() -> String {
        "preview-fork".into()
    }
    pub(super) fn opt_out_label() -> String {
        "no-preview".into()
    }
    pub(super) fn do_not_expire_label() -> String {
        "do-not-expire".into()
    }
    pub(super) fn root_path() -> String {
        "/".into()
    }
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

    pub fn preview_zone(&self) -> String {
        self.preview_zone.clone().unwrap_or_else(|| format!("preview.{}", self.domain))
    }

    pub fn repository(&self, full_name: &str) -> Option<&RepositoryConfig> {
        self.repositories.iter().find(|r| r.name.eq_ignore_ascii_case(full_name))
    }

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
        if self.ingress.tls == TlsMode::CertManager && self.ingress.cluster_issuer.as_deref().unwrap_or("").is_empty() {
            return Err(invalid("ingress.clusterIssuer", "required with ingress.tls: certManager"));
        }
        if self.ingress.wildcard_secret.is_some() {
            return Err(invalid(
                "ingress.wildcardSecret",
                "no longer supported: the wildcard key would sit in every preview namespace, readable by \
                 each PR's code. Remove it and make the wildcard certificate the ingress controller's \
                 default certificate, or use `tls: certManager` (docs/configuration.md#tls)",
            ));
        }
        let project = self.argocd.project.trim();
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
        let ttl = &self.ttl;
        if ttl.idle.is_zero() || ttl.idle > ttl.do_not_expire || ttl.do_not_expire > ttl.max {
            return Err(invalid("ttl", "expected 0 < idle <= doNotExpire <= max"));
        }
        if ttl.sweep_interval < Duration::from_secs(10) {
            return Err(invalid("ttl.sweepInterval", "at least 10s"));
        }
        let ai = &self.ai;
        if !(0.0..=1.0).contains(&ai.min_confidence) {
            return Err(invalid("ai.minConfidence", "between 0 and 1"));
        }
        if ai.requests_per_minute == 0 {
            return Err(invalid("ai.requestsPerMinute", "must be at least 1"));
        }
        if ai.timeout.is_zero() || ai.timeout > Duration::from_secs(300) {
            return Err(invalid("ai.timeout", "between 1s and 5m"));
        }
        if !(1024..=256 * 1024).contains(&ai.max_diff_bytes) {
            return Err(invalid("ai.maxDiffBytes", "between 1024 and 262144"));
        }
        if !(ai.base_url.starts_with("http://") || ai.base_url.starts_with("https://")) {
            return Err(invalid("ai.baseUrl", "an http(s) URL"));
        }
        if !(ai.prices.input_per_million >= 0.0 && ai.prices.output_per_million >= 0.0) {
            return Err(invalid("ai.prices", "non-negative numbers"));
        }
        for (i, path) in ai.ignore_paths.iter().enumerate() {
            if let Err(err) = globset::Glob::new(path) {
                return Err(invalid(format!("ai.ignorePaths[{i}]"), err.to_string()));
            }
        }
        if self.budget.monthly_usd.is_some_and(|b| !(b.is_finite() && b > 0.0)) {
            return Err(invalid("budget.monthlyUsd", "must be a positive number"));
        }
        if !(1..=32).contains(&self.github.concurrency) {
            return Err(invalid("github.concurrency", "between 1 and 32"));
        }
        if self.github.status_context.trim().is_empty() {
            return Err(invalid("github.statusContext", "must not be empty"));
        }
        if self.argocd.application_sets_per_minute == 0 {
            return Err(invalid("argocd.applicationSetsPerMinute", "must be at least 1"));
        }
        for (field, value) in [
            ("quota.cpu", &self.quota.cpu),
            ("containerDefaults.requests.cpu", &self.container_defaults.requests.cpu),
            ("containerDefaults.limits.cpu", &self.container_defaults.limits.cpu),
        ] {
            quantity::cpu_cores(value).map_err(|e| invalid(field, e))?;
        }
        let (scratch_request, scratch_limit) = self.container_defaults.ephemeral_storage();
        for (field, value) in [
            ("quota.memory", &self.quota.memory),
            ("quota.storage", &self.quota.storage),
            ("quota.ephemeralStorage", &self.quota.ephemeral_storage),
            ("containerDefaults.requests.memory", &self.container_defaults.requests.memory),
            ("containerDefaults.limits.memory", &self.container_defaults.limits.memory),
            ("containerDefaults.requests.ephemeralStorage", &scratch_request),
            ("containerDefaults.limits.ephemeralStorage", &scratch_limit),
        ] {
            quantity::bytes(value).map_err(|e| invalid(field, e))?;
        }
        let q = &self.quota;
        for (field, count) in [
            ("quota.pods", q.pods),
            ("quota.services", q.services),
            ("quota.secrets", q.secrets),
            ("quota.configMaps", q.config_maps),
            ("quota.persistentVolumeClaims", q.persistent_volume_claims),
        ] {
            if count == 0 {
                return Err(invalid(field, "must be at least 1 (a preview needs one of each)"));
            }
        }
        for (i, cidr) in self.network.egress_except.iter().enumerate() {
            cidr::parse(cidr).map_err(|e| invalid(format!("network.egressExcept[{i}]"), e))?;
        }
        for (i, cidr) in self.network.egress_cidrs.iter().enumerate() {
            cidr::exceptions_within(cidr, &self.network.egress_except)
                .map_err(|e| invalid(format!("network.egressCidrs[{i}]"), e))?;
        }
        let p = &self.pricing;
        for (field, v) in [
            ("pricing.cpuCoreHour", p.cpu_core_hour),
            ("pricing.memoryGbHour", p.memory_gb_hour),
            ("pricing.storageGbMonth", p.storage_gb_month),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(field, "must be a non-negative number"));
            }
        }
        if !(0.0..0.95).contains(&p.spot_discount) {
            return Err(invalid("pricing.spotDiscount", "must be between 0 and 0.95"));
        }
        if self.repositories.is_empty() {
            return Err(invalid("repositories", "configure at least one repository"));
        }
        let mut seen_names = BTreeSet::new();
        let mut seen_slugs = BTreeMap::new();
        for (i, repo) in self.repositories.iter().enumerate() {
            let at = |f: &str| format!("repositories[{i}].{f}");
            let valid_name =
                matches!(repo.name.split_once('/'), Some((o, r)) if !o.is_empty() && !r.is_empty() && !r.contains('/'));
            if !valid_name {
                return Err(invalid(at("name"), format!("{:?} is not owner/name", repo.name)));
            }
            if !seen_names.insert(repo.name.to_ascii_lowercase()) {
                return Err(invalid(at("name"), format!("{} is configured twice", repo.name)));
            }
            let slug = repo.slug();
            if slug.is_empty() || slug.len() > 40 {
                return Err(invalid(at("slug"), format!("{slug:?}: 1-40 characters of a DNS label")));
            }
            if let Some(other) = seen_slugs.insert(slug.clone(), repo.name.clone()) {
                return Err(invalid(
                    at("slug"),
                    format!(
                        "{} and {other} would share the slug {slug:?} (hosts and namespaces); set `slug` on one",
                        repo.name
                    ),
                ));
            }
            if repo.services.is_empty() {
                return Err(invalid(at("services"), "configure at least one service"));
            }
            if let Err((j, k, message)) = crate::github::detect::validate(repo) {
                return Err(invalid(format!("repositories[{i}].services[{j}].paths[{k}]"), message));
            }
            let mut services = BTreeSet::new();
            for (j, service) in repo.services.iter().enumerate() {
                let at = |f: &str| format!("repositories[{i}].services[{j}].{f}");
                if !names::is_dns_label(&service.name) || service.name.len() > 30 {
                    return Err(invalid(
                        at("name"),
                        format!("{:?}: a DNS label of at most 30 characters", service.name),
                    ));
                }
                if !services.insert(service.name.clone()) {
                    return Err(invalid(at("name"), format!("{} is configured twice", service.name)));
                }
                if service.chart_path.is_empty()
                    || service.chart_path.starts_with('/')
                    || service.chart_path.contains("..")
                {
                    return Err(invalid(at("chartPath"), "a relative path inside the repository"));
                }
                let r = &service.resources;
                for (kind, resources) in [("requests", Some(&r.requests)), ("limits", r.limits.as_ref())] {
                    let Some(resources) = resources else { continue };
                    let field = |f: &str| at(&format!("resources.{kind}.{f}"));
                    quantity::cpu_cores(&resources.cpu).map_err(|e| invalid(field("cpu"), e))?;
                    quantity::bytes(&resources.memory).map_err(|e| invalid(field("memory"), e))?;
                    if let Some(scratch) = &resources.ephemeral_storage {
                        quantity::bytes(scratch).map_err(|e| invalid(field("ephemeralStorage"), e))?;
                    }
                }
                if let Some(storage) = &r.storage {
                    quantity::bytes(storage).map_err(|e| invalid(at("resources.storage"), e))?;
                }
                if let Some(expose) = &service.expose {
                    if !expose.path.starts_with('/') {
                        return Err(invalid(at("expose.path"), "must start with /"));
                    }
                    if expose.port == 0 {
                        return Err(invalid(at("expose.port"), "must be 1-65535"));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
domain: example.com
repositories:
  - name: acme/shop
    services:
      - name: web
        chartPath: deploy/web
        resources: {requests: {cpu: 250m, memory: 512Mi}}
        expose: {port: 8080}
"#;

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let c = Config::from_yaml(MINIMAL).unwrap();
        assert_eq!(c.preview_zone(), "preview.example.com");
        assert_eq!(c.ttl.idle, Duration::from_secs(4 * 3600));
        assert_eq!(c.ttl.do_not_expire, Duration::from_secs(24 * 3600));
        assert_eq!(c.ttl.max, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(c.argocd.application_sets_per_minute, 10);
        assert_eq!(c.policy.forks, ForkPolicy::RequireLabel);
        assert_eq!(c.policy.opt_out_label, "no-preview");
        assert_eq!(c.pricing.cpu_core_hour, 0.04);
        assert_eq!(c.repositories[0].slug(), "shop");
        assert_eq!(c.repositories[0].repo_url(), "https://github.com/acme/shop.git");
        assert!(c.repository("ACME/Shop").is_some());
    }

    fn error(yaml: &str) -> String {
        Config::from_yaml(yaml).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn errors_name_the_field() {
        assert!(error(&MINIMAL.replace("domain:", "domian:")).contains("domian"), "unknown fields are refused");
        let e = error(&MINIMAL.replace("cpu: 250m", "cpu: lots"));
        assert!(e.contains("repositories[0].services[0].resources.requests.cpu"), "{e}");
        let e = error(&MINIMAL.replace("port: 8080", "port: seventy"));
        assert!(e.contains("repositories[0].services[0].expose.port"), "{e}");
        let e = error(&format!("{MINIMAL}ttl: {{idle: 48h}}\n"));
        assert!(e.contains("`ttl`"), "{e}");
        let e = error(&format!("{MINIMAL}ingress: {{tls: certManager}}\n"));
        assert!(e.contains("ingress.clusterIssuer"), "{e}");
        let e = error(&MINIMAL.replace("name: web", "name: Web_1"));
        assert!(e.contains("services[0].name"), "{e}");
        let e = error(&MINIMAL.replace("chartPath: deploy/web", "chartPath: ../etc"));
        assert!(e.contains("chartPath"), "{e}");
    }

    #[test]
    fn settings_that_open_the_trust_boundary_are_refused() {
        let e = error(&format!("{MINIMAL}argocd: {{project: default}}\n"));
        assert!(e.contains("argocd.project") && e.contains("argocd.appProject.name"), "{e}");
        let e = error(&format!("{MINIMAL}ingress: {{wildcardSecret: preview-wildcard-tls}}\n"));
        assert!(e.contains("ingress.wildcardSecret") && e.contains("default certificate"), "{e}");
        let e = error(&format!("{MINIMAL}namespacePrefix: ''\n"));
        assert!(e.contains("namespacePrefix"), "{e}");
        let e = error(&format!("{MINIMAL}network: {{egressCidrs: [169.254.169.254/32]}}\n"));
        assert!(e.contains("network.egressCidrs[0]") && e.contains("169.254.0.0/16"), "{e}");
        let e = error(&format!("{MINIMAL}network: {{egressExcept: [nowhere]}}\n"));
        assert!(e.contains("network.egressExcept[0]"), "{e}");
        let e = error(&format!("{MINIMAL}quota: {{secrets: 0}}\n"));
        assert!(e.contains("quota.secrets"), "{e}");
        let e = error(&format!("{MINIMAL}quota: {{ephemeralStorage: lots}}\n"));
        assert!(e.contains("quota.ephemeralStorage"), "{e}");
    }

    #[test]
    fn the_defaults_close_the_boundary() {
        let c = Config::from_yaml(MINIMAL).unwrap();
        assert_eq!(c.argocd.project, "previews");
        assert_eq!(c.network.egress_except, ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"]);
        assert_eq!(c.container_defaults.ephemeral_storage(), ("100Mi".to_owned(), "1Gi".to_owned()));
        // Defaults set without ephemeral storage still get it (the quota requires it).
        let partial = format!("{MINIMAL}containerDefaults: {{requests: {{cpu: 50m, memory: 64Mi}}}}\n");
        let c = Config::from_yaml(&partial).unwrap();
        assert_eq!(c.container_defaults.ephemeral_storage(), ("100Mi".to_owned(), "1Gi".to_owned()));
        assert_eq!(
            (c.quota.services, c.quota.secrets, c.quota.config_maps, c.quota.persistent_volume_claims),
            (20, 50, 50, 10)
        );
    }

    #[test]
    fn colliding_slugs_are_refused() {
        let yaml = format!(
            "{MINIMAL}  - name: other/shop\n    services:\n      - name: api\n        chartPath: chart\n        resources: {{requests: {{cpu: '1', memory: 1Gi}}}}\n"
        );
        let e = error(&yaml);
        assert!(e.contains("repositories[1].slug") && e.contains("acme/shop"), "{e}");
        let fixed = yaml.replace("  - name: other/shop\n", "  - name: other/shop\n    slug: other-shop\n");
        assert!(Config::from_yaml(&fixed).is_ok(), "{}", error(&fixed));
    }
}
