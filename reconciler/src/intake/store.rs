//! Where PreviewEnvironments live: the cluster (`previewd run`, and `previewd consume` with a
//! cluster), a folder with one directory per preview (`previewd consume` without one), or memory
//! (`previewd render`). The event path is the same for all three.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::config::Config;
use crate::crd::{PreviewEnvironment, REMOVAL_REASON};
use crate::policy::Reason;
use crate::render;

/// The field manager of PreviewEnvironment specs (the controller owns their status).
pub const FIELD_MANAGER: &str = "previewd-consumer";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error("writing YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
}

fn io(path: &Path, err: impl std::fmt::Display) -> StoreError {
    StoreError::Io { path: path.display().to_string(), message: err.to_string() }
}

#[derive(Clone)]
pub enum PreviewStore {
    Cluster(kube::Client),
    /// Under `root`, per preview: `previewenvironment.json` (as the controller would show it:
    /// URL, cost, expiry) and `objects.yaml` (everything it would apply).
    Folder {
        root: PathBuf,
        config: Arc<Config>,
        /// A checkout of the repository standing in for its head commit: with `seed`
        /// configured, the loader Job and its data set are rendered too.
        checkout: Option<PathBuf>,
    },
    Memory(Arc<Mutex<BTreeMap<String, PreviewEnvironment>>>),
}

impl std::fmt::Debug for PreviewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PreviewStore::Cluster(_) => f.write_str("PreviewStore::Cluster"),
            PreviewStore::Folder { root, .. } => write!(f, "PreviewStore::Folder({})", root.display()),
            PreviewStore::Memory(_) => f.write_str("PreviewStore::Memory"),
        }
    }
}

/// The loader Job and data set a preview of a seeded repository gets, from the schema in
/// `checkout` (as the controller would apply them once the migrating service is Healthy), and
/// the `seed` status it would show while it runs.
fn seed_loader(
    config: &Config,
    shown: &mut PreviewEnvironment,
    checkout: &Path,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let Some(seed) = config.repository(&shown.spec.repository).and_then(|r| r.seed.as_ref()) else {
        return Ok(Vec::new());
    };
    // Nothing deployed yet, or the migrating service not deployed: nothing to load into.
    if shown.spec.head_sha.is_empty() || !shown.spec.services.contains(&seed.service) {
        return Ok(Vec::new());
    }
    let files = render::seed::read_checkout(checkout, &seed.schema).map_err(|e| io(checkout, e))?;
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let preview = render::Preview::resolve(config, shown)?;
    let loader = render::seed::loader(&preview, seed, &files, Default::default()).map_err(|e| io(checkout, e))?;
    let status = crate::crd::SeedStatus {
        sha: shown.spec.head_sha.clone(),
        digest: loader.digest.clone(),
        job: loader.job.metadata.name.clone().unwrap_or_default(),
        state: crate::crd::SeedState::Loading,
        tables: loader
            .tables
            .iter()
            .map(|(name, rows)| crate::crd::SeededTable { name: name.clone(), rows: *rows as u64 })
            .collect(),
        bytes: loader.bytes as u64,
        message: String::new(),
        vocabulary: None,
    };
    let objects = [serde_json::to_value(&loader.job), serde_json::to_value(&loader.data)];
    if let Some(shown_status) = shown.status.as_mut() {
        shown_status.seed = Some(status);
    }
    Ok(objects.into_iter().filter_map(Result::ok).collect())
}

impl PreviewStore {
    pub fn memory() -> PreviewStore {
        PreviewStore::Memory(Arc::default())
    }

    fn state(dir: &Path) -> PathBuf {
        dir.join("previewenvironment.json")
    }

    pub async fn get(&self, name: &str) -> Result<Option<PreviewEnvironment>, StoreError> {
        match self {
            PreviewStore::Cluster(client) => Ok(Api::<PreviewEnvironment>::all(client.clone()).get_opt(name).await?),
            PreviewStore::Folder { root, .. } => {
                let path = PreviewStore::state(&root.join(name));
                match std::fs::read_to_string(&path) {
                    Ok(text) => Ok(serde_json::from_str(&text).ok()),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(err) => Err(io(&path, err)),
                }
            }
            PreviewStore::Memory(map) => Ok(map.lock().ok().and_then(|m| m.get(name).cloned())),
        }
    }

    /// Writes `spec` over the preview as it was `read`: refused (409 Conflict) if someone wrote
    /// it since, so a check or a command never undoes a newer event's write.
    pub async fn update(
        &self,
        read: &PreviewEnvironment,
        spec: crate::crd::PreviewEnvironmentSpec,
    ) -> Result<(), StoreError> {
        let mut pe = PreviewEnvironment::new(read.metadata.name.as_deref().unwrap_or_default(), spec);
        pe.metadata.resource_version = read.metadata.resource_version.clone();
        self.apply(&pe).await
    }

    /// Every preview of `repository` (the build gate's statuses name a commit, not a PR).
    pub async fn list(&self, repository: &str) -> Result<Vec<PreviewEnvironment>, StoreError> {
        let all = match self {
            PreviewStore::Cluster(client) => {
                Api::<PreviewEnvironment>::all(client.clone()).list(&Default::default()).await?.items
            }
            PreviewStore::Folder { root, .. } => {
                let mut found = Vec::new();
                let entries = match std::fs::read_dir(root) {
                    Ok(entries) => entries,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(found),
                    Err(err) => return Err(io(root, err)),
                };
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    found.extend(self.get(&name).await?);
                }
                found
            }
            PreviewStore::Memory(map) => map.lock().map(|m| m.values().cloned().collect()).unwrap_or_default(),
        };
        Ok(all.into_iter().filter(|pe| pe.spec.repository.eq_ignore_ascii_case(repository)).collect())
    }

    /// Creates or updates the preview's spec.
    pub async fn apply(&self, pe: &PreviewEnvironment) -> Result<(), StoreError> {
        let name = pe.metadata.name.clone().unwrap_or_default();
        match self {
            PreviewStore::Cluster(client) => {
                let params = PatchParams::apply(FIELD_MANAGER).force();
                Api::<PreviewEnvironment>::all(client.clone()).patch(&name, &params, &Patch::Apply(pe)).await?;
            }
            PreviewStore::Folder { root, config, checkout } => {
                let dir = root.join(&name);
                let mut shown = render::as_applied(config, pe.spec.clone())?;
                let mut loader = Vec::new();
                if let Some(checkout) = checkout {
                    loader = seed_loader(config, &mut shown, checkout)?;
                }
                let mut documents = vec![serde_json::to_value(&shown).unwrap_or_default()];
                documents.extend(render::render(config, &shown)?);
                documents.extend(loader);
                std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
                let objects = dir.join("objects.yaml");
                std::fs::write(&objects, render::to_yaml(&documents)?).map_err(|e| io(&objects, e))?;
                let state = PreviewStore::state(&dir);
                let json = serde_json::to_string_pretty(&shown).unwrap_or_default();
                std::fs::write(&state, json).map_err(|e| io(&state, e))?;
            }
            PreviewStore::Memory(map) => {
                if let Ok(mut map) = map.lock() {
                    map.insert(name, pe.clone());
                }
            }
        }
        Ok(())
    }

    /// Deletes the preview (the cluster's noted with why, for the PR comment the controller's
    /// finalizer writes). Nothing to do when it is gone already.
    pub async fn remove(&self, existing: &PreviewEnvironment, reason: Reason) -> Result<(), StoreError> {
        let name = existing.metadata.name.clone().unwrap_or_default();
        match self {
            PreviewStore::Cluster(client) => {
                let api = Api::<PreviewEnvironment>::all(client.clone());
                let gone = |err: &kube::Error| matches!(err, kube::Error::Api(e) if e.code == 404);
                if existing.metadata.deletion_timestamp.is_none() {
                    let note = json!({"metadata": {"annotations": {REMOVAL_REASON: reason.as_str()}}});
                    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&note)).await {
                        Err(err) if gone(&err) => return Ok(()),
                        other => other.map(|_| ())?,
                    }
                }
                match api.delete(&name, &Default::default()).await {
                    Err(err) if gone(&err) => Ok(()),
                    other => other.map(|_| ()).map_err(StoreError::from),
                }
            }
            PreviewStore::Folder { root, .. } => {
                let dir = root.join(&name);
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
                }
                Ok(())
            }
            PreviewStore::Memory(map) => {
                if let Ok(mut map) = map.lock() {
                    map.remove(&name);
                }
                Ok(())
            }
        }
    }
}
