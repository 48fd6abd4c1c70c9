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
    /// What a preview does with the services a PR does not change: `omit` them (the default),
    /// `deploy` them too, so the preview is the whole app, or route them to the `baseline`.
    #[serde(default)]
    pub unchanged_services: UnchangedServices,
    /// With `unchangedServices: baseline`: the namespace whose Services stand in for the
    /// services a PR does not change (e.g. the shared staging deployment of `main`).
    #[serde(default)]
    pub baseline_namespace: Option<String>,
    /// `optIn` or `optOut` for this repository (default: `policy.mode`).
    #[serde(default)]
    pub mode: Option<super::PolicyMode>,
    /// Who may open this repository's previews (default: anyone with the URL).
    #[serde(default)]
    pub protect: Option<Protection>,
    /// Deploy a commit only after these GitHub checks passed for it (default: at once).
    #[serde(default)]
    pub build_gate: Option<BuildGate>,
    /// Secrets every preview of the repository gets (references: see `secrets`).
    #[serde(default)]
    pub secrets: Vec<super::SecretRef>,
    /// Fork PRs get the secrets too (default: no; their code is not the team's).
    #[serde(default)]
    pub secrets_for_forks: bool,
    /// Synthetic data loaded into each preview's database (default: none).
    #[serde(default)]
    pub seed: Option<super::SeedConfig>,
    /// An A/B experiment over this repository's PRs (default: none).
    #[serde(default)]
    pub experiment: Option<super::ExperimentConfig>,
    /// The clusters its previews try, in order: the first reachable one with room (default:
    /// `defaultClusters`). A preview stays in the cluster it was placed in.
    #[serde(default)]
    pub clusters: Vec<String>,
}

/// The checks a commit must pass before its preview deploys it, by name: check runs, workflow
/// runs and check suites by their names (a suite by its app's), commit statuses by context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildGate {
    /// Every one must pass (`success`, `neutral` or `skipped`).
    #[schemars(length(min = 1))]
    pub checks: Vec<String>,
    /// How long a commit may wait before the wait is reported as failed.
    #[serde(default = "BuildGate::default_timeout", with = "humantime_serde")]
    #[schemars(with = "super::types::HumanDuration")]
    pub timeout: std::time::Duration,
}

impl BuildGate {
    fn default_timeout() -> std::time::Duration {
        std::time::Duration::from_secs(30 * 60)
    }

    /// Whether `name` is one of the gate's checks (GitHub compares check names exactly).
    pub fn names(&self, name: &str) -> bool {
        self.checks.iter().any(|c| c == name)
    }
}

/// Access control in front of a repository's previews, enforced by the ingress controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Protection {
    /// An external auth endpoint (oauth2-proxy style), asked before every request.
    #[serde(default)]
    pub external_auth: Option<ExternalAuth>,
    /// HTTP basic auth against an htpasswd file (key `auth`) in a Secret copied into the
    /// preview (`from` a source namespace in `secrets.sourceNamespaces`).
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    pub secret: super::SecretRef,
    /// What the browser's prompt says (default `Preview`).
    #[serde(default)]
    pub realm: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalAuth {
    /// Answers 2xx to let a request through, 401/403 to refuse it
    /// (e.g. `https://oauth2.example.com/oauth2/auth`).
    pub url: String,
    /// Where a refused browser signs in (e.g.
    /// `https://oauth2.example.com/oauth2/start?rd=$scheme://$host$escaped_request_uri`).
    #[serde(default)]
    pub signin: Option<String>,
    /// Headers of the auth answer passed on to the service (e.g. `X-Auth-Request-Email`).
    #[serde(default)]
    pub response_headers: Vec<String>,
}

impl ExternalAuth {
    /// URLs go into ingress-nginx annotations, which end up in its configuration: only plain
    /// http(s) URLs, without characters that could end a directive.
    fn check(&self) -> Result<(), String> {
        let plain = |value: &str, what: &str| {
            let scheme = value.starts_with("https://") || value.starts_with("http://");
            let clean = !value.chars().any(|c| c.is_whitespace() || c.is_control() || ";{}\"'`\\".contains(c));
            if scheme && clean && value.parse::<http::Uri>().is_ok() {
                Ok(())
            } else {
                Err(format!("{what} {value:?}: an http(s) URL without spaces, quotes, ';' or braces"))
            }
        };
        if self.url.contains('$') {
            return Err(format!("url {:?}: no nginx variables in the auth URL", self.url));
        }
        plain(&self.url, "url")?;
        if let Some(signin) = &self.signin {
            plain(signin, "signin")?;
        }
        match self
            .response_headers
            .iter()
            .find(|h| h.is_empty() || !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            Some(bad) => Err(format!("responseHeaders {bad:?}: a header name")),
            None => Ok(()),
        }
    }
}

/// What a preview does with the services the PR does not change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum UnchangedServices {
    /// Only the services the change reaches are deployed.
    #[default]
    Omit,
    /// Every service is deployed (at the PR's commit) once the change reaches one of them.
    Deploy,
    /// Each unchanged service resolves, inside the preview, to the same service in
    /// `baselineNamespace` (a Service of type ExternalName under the service's own name).
    Baseline,
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

    /// Every Secret a preview deploying `services` gets: the repository's, then each
    /// service's, each name once.
    pub fn secrets_for<'a>(&'a self, services: &[String]) -> Vec<&'a super::SecretRef> {
        let mut all: Vec<&super::SecretRef> = Vec::new();
        let per_service = self.services.iter().filter(|s| services.contains(&s.name)).flat_map(|s| &s.secrets);
        for secret in self.secrets.iter().chain(per_service) {
            if !all.iter().any(|s| s.name == secret.name) {
                all.push(secret);
            }
        }
        all
    }

    /// The htpasswd Secret basic auth needs (copied for forks too: it guards the preview).
    pub fn basic_auth_secret(&self) -> Option<&super::SecretRef> {
        self.protect.as_ref()?.basic_auth.as_ref().map(|b| &b.secret)
    }

    /// The baseline namespace, when unchanged services are routed there.
    pub fn baseline(&self) -> Option<&str> {
        match self.unchanged_services {
            UnchangedServices::Baseline => self.baseline_namespace.as_deref(),
            UnchangedServices::Omit | UnchangedServices::Deploy => None,
        }
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
        if let Some(protect) = &self.protect {
            match (&protect.external_auth, &protect.basic_auth) {
                (Some(auth), None) => auth.check().map_err(|why| invalid(field("protect.externalAuth"), why))?,
                (None, Some(basic)) => {
                    if basic.secret.from.is_none() {
                        return Err(invalid(
                            field("protect.basicAuth.secret.from"),
                            "the source namespace of the htpasswd Secret",
                        ));
                    }
                    let realm = basic.realm.as_deref().unwrap_or("Preview");
                    if realm.is_empty()
                        || realm.len() > 64
                        || !realm.chars().all(|c| c.is_ascii_alphanumeric() || " -_.".contains(c))
                    {
                        return Err(invalid(
                            field("protect.basicAuth.realm"),
                            "1-64 letters, digits, spaces, '-', '_' or '.'",
                        ));
                    }
                }
                _ => return Err(invalid(field("protect"), "exactly one of externalAuth or basicAuth")),
            }
        }
        match (&self.unchanged_services, &self.baseline_namespace) {
            (UnchangedServices::Baseline, None) => {
                return Err(invalid(field("baselineNamespace"), "required with unchangedServices: baseline"));
            }
            (UnchangedServices::Baseline, Some(ns)) if !names::is_dns_label(ns) || ns == "kube-system" => {
                return Err(invalid(
                    field("baselineNamespace"),
                    format!("{ns:?}: a namespace name other than kube-system"),
                ));
            }
            (UnchangedServices::Omit | UnchangedServices::Deploy, Some(_)) => {
                return Err(invalid(field("baselineNamespace"), "only used with unchangedServices: baseline"));
            }
            _ => {}
        }
        if let Some(gate) = &self.build_gate {
            if gate.checks.is_empty() || gate.checks.iter().any(|c| c.trim().is_empty() || c.chars().count() > 128) {
                return Err(invalid(field("buildGate.checks"), "one or more check names of 1-128 characters"));
            }
            if gate.timeout.is_zero() {
                return Err(invalid(field("buildGate.timeout"), "must be longer than 0s"));
            }
        }
        if let Some(seed) = &self.seed {
            let services: Vec<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
            seed.check(&services).map_err(|(f, why)| invalid(field(&format!("seed.{f}")), why))?;
        }
        if let Some(experiment) = &self.experiment {
            experiment.check().map_err(|(f, why)| invalid(field(&format!("experiment.{f}")), why))?;
        }
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
            if let Some(image) = &service.image {
                image.check().map_err(|why| invalid(field("image"), why))?;
            }
            for (k, root) in service.build.iter().enumerate() {
                root.check().map_err(|why| invalid(field(&format!("build[{k}]")), why))?;
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
    /// Secrets the service needs, besides the repository's.
    #[serde(default)]
    pub secrets: Vec<super::SecretRef>,
    /// Routed from the preview's host, when set.
    #[serde(default)]
    pub expose: Option<Expose>,
    /// What the service is built from: the detector follows each root's build graph to the
    /// files that reach the deployed artifact (docs/detection.md). A root missing at a commit
    /// is skipped.
    #[serde(default)]
    pub build: Vec<BuildRoot>,
    /// Globs of the Kubernetes manifests and chart values that belong to the service.
    #[serde(default)]
    pub manifests: Globs,
    /// The image CI builds for each commit, written into the chart's values.
    #[serde(default)]
    pub image: Option<ImageConfig>,
}

/// Where a service's image for a commit is, and which Helm values take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageConfig {
    /// e.g. `ghcr.io/acme/shop-web`.
    #[schemars(length(min = 1))]
    pub repository: String,
    /// The tag CI pushes, from `{sha}`, `{shortSha}` (7 characters), `{pr}` and `{branch}`
    /// (sanitised to a valid tag).
    #[serde(default = "default_tag")]
    pub tag: String,
    /// The Helm value paths (dotted) the repository and tag are written to.
    #[serde(default)]
    pub values: ImageValues,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ImageValues {
    pub repository: String,
    pub tag: String,
}

impl Default for ImageValues {
    fn default() -> Self {
        ImageValues { repository: "image.repository".into(), tag: "image.tag".into() }
    }
}

fn default_tag() -> String {
    "{sha}".into()
}

/// The commit an image tag is rendered for.
#[derive(Debug, Clone, Copy)]
pub struct TagInputs<'a> {
    pub sha: &'a str,
    pub pr: u64,
    pub branch: &'a str,
}

impl ImageConfig {
    /// The tag for a commit: placeholders filled, the branch made a valid tag component
    /// (`[A-Za-z0-9_.-]`, no leading `.` or `-`), at most 128 characters.
    pub fn tag_for(&self, inputs: TagInputs<'_>) -> String {
        let branch: String = inputs
            .branch
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' })
            .collect();
        let branch = branch.trim_start_matches(['.', '-']);
        let tag = self
            .tag
            .replace("{sha}", inputs.sha)
            .replace("{shortSha}", &inputs.sha.chars().take(7).collect::<String>())
            .replace("{pr}", &inputs.pr.to_string())
            .replace("{branch}", branch);
        tag.chars().take(128).collect()
    }

    fn check(&self) -> Result<(), String> {
        let mut rest = self.tag.clone();
        for placeholder in ["{sha}", "{shortSha}", "{pr}", "{branch}"] {
            rest = rest.replace(placeholder, "");
        }
        if rest.contains(['{', '}']) {
            return Err(format!("{:?}: placeholders are {{sha}}, {{shortSha}}, {{pr}} and {{branch}}", self.tag));
        }
        if self.tag.is_empty() || !rest.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return Err(format!("{:?}: a tag is letters, digits, '_', '.' and '-'", self.tag));
        }
        if self.repository.trim().is_empty() || self.repository.contains(char::is_whitespace) {
            return Err("image.repository: an image repository such as ghcr.io/acme/web".into());
        }
        for path in [&self.values.repository, &self.values.tag] {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(format!("{path:?}: a dotted Helm value path such as image.tag"));
            }
        }
        Ok(())
    }
}

/// One build root of a service: exactly one of `dockerfile`, `compose` or `project`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildRoot {
    /// A Dockerfile, built with `context`.
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// The Dockerfile's build context (default: the Dockerfile's folder).
    #[serde(default)]
    pub context: Option<String>,
    /// A service of a docker compose project.
    #[serde(default)]
    pub compose: Option<ComposeRoot>,
    /// A project manifest: `go.mod`, `package.json`, `Cargo.toml`, `pyproject.toml` or a
    /// `.csproj`/`.fsproj`/`.vbproj`.
    #[serde(default)]
    pub project: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComposeRoot {
    /// Compose files, merged in order as `docker compose -f a -f b` does.
    #[schemars(length(min = 1))]
    pub files: Vec<String>,
    pub service: String,
    /// Env files for `${VAR}` interpolation besides the project's `.env`.
    #[serde(default)]
    pub env_files: Vec<String>,
}

impl BuildRoot {
    /// Every repository path the root names (validated as relative, inside the repository).
    pub fn paths(&self) -> Vec<&str> {
        let mut out: Vec<&str> =
            [&self.dockerfile, &self.context, &self.project].into_iter().flatten().map(String::as_str).collect();
        if let Some(compose) = &self.compose {
            out.extend(compose.files.iter().chain(&compose.env_files).map(String::as_str));
        }
        out
    }

    fn check(&self) -> Result<(), String> {
        let kinds = [self.dockerfile.is_some(), self.compose.is_some(), self.project.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err("set exactly one of dockerfile, compose or project".into());
        }
        if self.context.is_some() && self.dockerfile.is_none() {
            return Err("context goes with dockerfile".into());
        }
        if let Some(compose) = &self.compose
            && (compose.files.is_empty() || compose.service.trim().is_empty())
        {
            return Err("compose needs files and a service".into());
        }
        if let Some(project) = &self.project {
            const KNOWN: [&str; 7] =
                ["go.mod", "package.json", "Cargo.toml", "pyproject.toml", ".csproj", ".fsproj", ".vbproj"];
            if !KNOWN.iter().any(|k| project.ends_with(k)) {
                return Err(format!(
                    "{project:?}: a go.mod, package.json, Cargo.toml, pyproject.toml or .NET project file"
                ));
            }
        }
        match self.paths().into_iter().find(|p| p.starts_with('/') || p.split(['/', '\\']).any(|c| c == "..")) {
            Some(bad) => Err(format!("{bad:?}: a relative path inside the repository")),
            None => Ok(()),
        }
    }
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
