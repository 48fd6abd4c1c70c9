//! The `PreviewEnvironment` custom resource: one per pull request that gets a preview.
//!
//! Cluster-scoped, so it can own both the preview's Namespace and its ApplicationSet in the
//! Argo CD namespace: Kubernetes garbage collection then removes them with it (a namespaced
//! owner can own neither). The YAML (`previewd crd`) is generated from these types; the copy in
//! the chart is checked against it by a test.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "preview.previewd.io";
pub const FINALIZER: &str = "preview.previewd.io/cleanup";
/// Why a PreviewEnvironment was deleted (set just before the delete; the PR comment says it).
pub const REMOVAL_REASON: &str = "preview.previewd.io/removal-reason";

/// What the consumer knows about the pull request; everything the controller builds follows
/// from this and the configuration.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    derive = "Default",
    derive = "PartialEq",
    group = "preview.previewd.io",
    version = "v1alpha1",
    kind = "PreviewEnvironment",
    plural = "previewenvironments",
    singular = "previewenvironment",
    shortname = "preview",
    shortname = "pe",
    category = "previewd",
    status = "PreviewEnvironmentStatus",
    printcolumn = r#"{"name":"Repo","type":"string","jsonPath":".spec.repository"}"#,
    printcolumn = r#"{"name":"PR","type":"integer","jsonPath":".spec.prNumber"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".status.cluster","priority":1}"#,
    printcolumn = r#"{"name":"Cost/mo","type":"string","jsonPath":".status.costEstimate.estimatedMonthlyCost"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PreviewEnvironmentSpec {
    /// `owner/name` of the base repository.
    pub repository: String,
    pub pr_number: u64,
    /// The commit the services are deployed at.
    pub head_sha: String,
    pub head_ref: String,
    pub base_ref: String,
    /// Services to deploy (names from the repository's configuration).
    pub services: Vec<String>,
    /// How `services` was chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<ServiceSelection>,
    /// Labels on the PR.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The PR comes from a fork (untrusted code).
    #[serde(default)]
    pub fork: bool,
    /// For a fork: the maintainer's approval, bound to the commit it was given for
    /// (`headSha`, while no newer commit is approved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_approval: Option<ForkApproval>,
    /// For a fork: a newer head commit that waits for a maintainer's approval. The preview
    /// keeps running `headSha` meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_approval: Option<AwaitingApproval>,
    pub author: String,
    /// GitHub App installation, for GitHub API calls about this PR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html_url: Option<String>,
    /// Last activity on the PR (its `updated_at`): the TTL counts from here.
    pub last_activity: DateTime<Utc>,
    /// A shorter idle TTL for a quiet PR (`ai.features.ttlPrediction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_prediction: Option<TtlPrediction>,
    /// The event this spec was last written from; older events are stale.
    pub last_event: EventRef,
    /// What writers asked for with `/preview` commands; kept across pushes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<Requested>,
    /// A head commit that waits for its build (the repository's `buildGate`). The preview keeps
    /// running `headSha` meanwhile; a new preview deploys nothing until a commit passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_build: Option<AwaitingBuild>,
    /// The experiment arm the PR is in, when its repository runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentArm>,
    /// Requests sized from observed usage (`sizing`): applied with `mode: Auto`, shown only
    /// with `Suggest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizing: Option<Sizing>,
}

/// A preview's right-sized requests.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sizing {
    pub mode: crate::config::SizingMode,
    pub services: Vec<ServiceSize>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSize {
    pub name: String,
    /// Proposed CPU request, in millicores.
    pub cpu_millis: u64,
    /// Proposed memory request, in bytes.
    pub memory_bytes: u64,
    /// The p95 it was proposed from.
    pub observed_cpu_millis: u64,
    pub observed_memory_bytes: u64,
}

/// What `/preview` commands asked for.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Requested {
    /// Who asked for the preview with `/preview` (the way in for opt-in repositories, and a
    /// writer's approval of a fork's head commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// `/preview services`: exactly these services, whatever the PR changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// `/preview extend`: the preview lives at least until then (within `ttl.max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_until: Option<DateTime<Utc>>,
    /// `/preview redeploy`: when it was last asked (passed to the charts as
    /// `previewd.redeployedAt`, so their pods roll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeployed_at: Option<DateTime<Utc>>,
    /// When the preview was last woken (its sleep link or `/preview wake`): the sleep clock
    /// and the idle TTL count from here too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub woken_at: Option<DateTime<Utc>>,
}

/// A commit that waits for the checks the repository's build gate names.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwaitingBuild {
    pub sha: String,
    /// When the wait began (the PR's `updated_at` in that event): the timeout counts from here.
    pub since: DateTime<Utc>,
    /// What each named check said so far (absent: not finished).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub checks: std::collections::BTreeMap<String, String>,
    /// Set when a check failed or the wait timed out: the commit will not deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// The services chosen for this commit, deployed when it passes.
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<ServiceSelection>,
}

/// A maintainer's approval of a fork's code: the opt-in label, added by someone with push
/// access, approves the head commit of that `labeled` event and nothing pushed after it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForkApproval {
    /// The GitHub login that added the label.
    pub by: String,
    /// The commit approved.
    pub sha: String,
}

/// A fork's head commit that no maintainer has approved yet.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwaitingApproval {
    pub sha: String,
    /// When it was pushed (the PR's `updated_at` in that event).
    pub since: DateTime<Utc>,
}

/// How the services of a preview were chosen.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSelection {
    pub by: SelectedBy,
    /// The head commit the selection was made for.
    pub head_sha: String,
    /// How many changed files were matched (`Paths`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_files: Option<u64>,
    /// Why every service was taken (`Fallback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What the AI said, when it was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai: Option<AiVerdict>,
    /// Per selected service, how a changed file reaches it (`Graph`; a few per service).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub reasons: std::collections::BTreeMap<String, Vec<String>>,
    /// The services the change reaches, when the unchanged ones are deployed too
    /// (`unchangedServices: deploy`); `spec.services` then lists every service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

/// The AI's part in choosing a preview's services (a suggestion; see `ai.mode`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AiVerdict {
    pub model: String,
    /// The prompt version asked.
    pub prompt: String,
    /// Answered from the cache.
    #[serde(default)]
    pub cached: bool,
    /// The services it named, with its confidence (e.g. `api (0.92)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// Services added to, or removed from, what the path globs chose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Test suites it suggests running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<String>,
    /// Why its answer was not used (the path globs decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the question cost, in millionths of a US dollar (0 from the cache).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub spend_micro_usd: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The arm of an A/B experiment a PR is in (`repositories[].experiment`), and what it showed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentArm {
    pub experiment: String,
    pub arm: String,
    /// Times the selection was corrected: a `/preview services` override, or a push that
    /// added services to the selection.
    #[serde(default)]
    pub corrections: u32,
}

/// A shorter idle TTL predicted from the PR's activity.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TtlPrediction {
    pub idle_seconds: u64,
    pub reason: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SelectedBy {
    /// The PR's changed files matched against each service's `paths`.
    Paths,
    /// The path globs' choice changed by the AI's answer (`ai.mode`).
    PathsAndAi,
    /// Every configured service: the repository's services have no `paths`, or GitHub is not
    /// configured.
    AllServices,
    /// Every configured service because the changed files could not be read (GitHub down or
    /// rate-limited); chosen again on the next event.
    Fallback,
    /// The changed files followed through each service's build graph (docs/detection.md).
    Graph,
    /// The build graph's choice changed by the AI's answer.
    GraphAndAi,
    /// Named by a writer with `/preview services`.
    Command,
}

/// Identifies the queue message a spec was written from.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventRef {
    pub delivery_id: String,
    /// The PR's `updated_at` in that event: the primary order of events.
    pub updated_at: DateTime<Utc>,
    /// When the webhook accepted it: the tie-breaker.
    pub received_at: DateTime<Utc>,
    /// The W3C `traceparent` of the span that wrote this spec, when traces are exported: the
    /// reconciles up to Ready continue the delivery's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Deploying,
    Ready,
    Failed,
    Deleting,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewEnvironmentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Ready`, `Deploying`, `Failed`, Kubernetes-style.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_estimate: Option<CostEstimate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// How the services were chosen (the spec's `selection`, for `kubectl describe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<ServiceSelection>,
    /// When all services were first ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `receivedAt` of the last event applied to the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_event: Option<DateTime<Utc>>,
    /// Since when the preview sleeps (`ttl.sleepAfter`): its services at zero replicas.
    /// Written as `null` when awake, so the status's merge patch clears it.
    #[serde(default)]
    pub asleep_since: Option<DateTime<Utc>>,
    /// The synthetic data loaded into the preview's database (`repositories[].seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<SeedStatus>,
    /// The cluster that holds the preview's namespace (`in-cluster`: Previewd's own). Chosen
    /// once, when the preview is first built; it stays there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// What the loader Job put in the database, and for which schema.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeedStatus {
    /// The head commit last looked at (an unchanged schema there is not seeded again).
    pub sha: String,
    /// SHA-256 of the schema files (paths and contents) the data was generated from.
    pub digest: String,
    /// The loader Job (and its ConfigMap) in the preview namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job: String,
    pub state: SeedState,
    /// Rows per table, in load order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<SeededTable>,
    /// Bytes of SQL in the data set.
    #[serde(default)]
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The AI model whose value vocabularies the data set used (`ai.features.seedVocabularies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocabulary: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SeedState {
    /// The loader Job runs.
    Loading,
    Loaded,
    Failed,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SeededTable {
    pub name: String,
    pub rows: u64,
}

/// A status condition (the shape of `metav1.Condition`, with chrono timestamps).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    pub name: String,
    pub ready: bool,
    /// Argo CD sync status (`Synced`, `OutOfSync`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
    /// Argo CD health status (`Healthy`, `Progressing`, `Degraded`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// The commit Argo CD synced; ready only at the preview's head commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Why it failed at the head commit (degraded, or its sync failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostEstimate {
    /// CPU cores requested, e.g. `1.5`.
    pub cpu: String,
    /// Memory requested, e.g. `3Gi`.
    pub memory: String,
    /// Persistent storage claimed, e.g. `10Gi`.
    pub storage: String,
    /// Priced at the spot discount.
    #[serde(default)]
    pub spot: bool,
    pub hourly_usd: f64,
    pub monthly_usd: f64,
    /// Since the preview was created, at its current services.
    pub accrued_usd: f64,
    /// For the printer column, e.g. `$45.00`.
    pub estimated_monthly_cost: String,
}

/// The CRD as YAML, as `previewd crd` prints it and the chart ships it.
pub fn crd_yaml() -> Result<String, serde_norway::Error> {
    use kube::CustomResourceExt;
    serde_norway::to_string(&PreviewEnvironment::crd())
}
