//! The preview clusters: one client each, created the first time a preview needs the cluster
//! (from the Secret that registers it) and health-checked before use, and the choice of a
//! cluster for a new preview.
//!
//! Each cluster has its own lock, so a slow or down cluster holds up only its own previews. A
//! failed health check drops the client: the next attempt reads the Secret again, so rotated
//! credentials are picked up without a restart.

pub mod registration;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::config::{ClusterConfig, ClusterSource, Config, IN_CLUSTER};
use crate::crd::PreviewEnvironment;
use registration::Registration;

/// How long a passed health check is trusted.
const HEALTHY_FOR: Duration = Duration::from_secs(30);
/// How long a failed one is believed (its previews fail fast meanwhile).
const DOWN_FOR: Duration = Duration::from_secs(5);
/// The health check's bound.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds on a request to a preview cluster (no watches go there).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A cluster a preview's namespaced objects go to.
#[derive(Clone)]
pub struct Target {
    /// Its name in the configuration (`in-cluster` for Previewd's own).
    pub name: String,
    /// A client of it (Previewd's own client for `in-cluster`).
    pub client: Client,
    /// Where the preview's Applications deploy to, as Argo CD knows the cluster.
    pub server: String,
    /// The zone of preview hosts there, when it has its own.
    pub zone: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("name", &self.name).field("server", &self.server).finish_non_exhaustive()
    }
}

impl Target {
    /// Previewd's own cluster.
    pub fn is_local(&self) -> bool {
        self.name == IN_CLUSTER
    }
}

/// Why a cluster cannot take a preview now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("cluster {0} is not registered (clusters[])")]
    Unregistered(String),
    #[error("cluster {cluster} is unreachable: {reason}")]
    Unreachable { cluster: String, reason: String },
    #[error("cluster {cluster} is full: {held} previews hold its capacity")]
    Full { cluster: String, held: u64 },
}

/// What is known of one registered cluster.
#[derive(Default)]
struct State {
    client: Option<(Client, String)>,
    checked: Option<(Instant, Result<(), String>)>,
}

/// The registered clusters, and where each preview was placed during this run.
pub struct Clusters {
    control: Client,
    config: Arc<Config>,
    /// Where kubeconfig Secrets are read: Previewd's own namespace.
    home: String,
    states: Mutex<HashMap<String, Arc<tokio::sync::Mutex<State>>>>,
    /// Preview uid → cluster, for placements the cache may not show yet.
    placed: Mutex<HashMap<String, String>>,
    /// `previewd_cluster_up`, when metrics are served.
    up: std::sync::OnceLock<prometheus::IntGaugeVec>,
}

impl std::fmt::Debug for Clusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clusters").field("home", &self.home).finish_non_exhaustive()
    }
}

impl Clusters {
    pub fn new(control: Client, config: Arc<Config>, home: String) -> Clusters {
        Clusters { control, config, home, states: Mutex::default(), placed: Mutex::default(), up: Default::default() }
    }

    /// Sets `previewd_cluster_up{cluster}` on each health check.
    pub fn with_metrics(&self, up: prometheus::IntGaugeVec) {
        let _ = self.up.set(up);
    }

    /// The cluster `pe` is in: placed this run, recorded in its status, or Previewd's own for
    /// a preview built before it recorded one. `None`: not placed yet.
    pub fn holding(&self, pe: &PreviewEnvironment) -> Option<String> {
        let placed = pe.uid().and_then(|uid| self.placed.lock().ok().and_then(|p| p.get(&uid).cloned()));
        let status = pe.status.as_ref();
        placed
            .or_else(|| status.and_then(|s| s.cluster.clone()))
            .or_else(|| status.and_then(|s| s.phase).map(|_| IN_CLUSTER.to_owned()))
    }

    /// Remembers that `pe` was placed in `cluster`.
    pub fn place(&self, pe: &PreviewEnvironment, cluster: &str) {
        if let (Some(uid), Ok(mut placed)) = (pe.uid(), self.placed.lock()) {
            placed.insert(uid, cluster.to_owned());
        }
    }

    /// Forgets a preview that is gone.
    pub fn forget(&self, pe: &PreviewEnvironment) {
        if let (Some(uid), Ok(mut placed)) = (pe.uid(), self.placed.lock()) {
            placed.remove(&uid);
        }
    }

    /// A healthy client of cluster `name`.
    pub async fn reach(&self, name: &str) -> Result<Target, Unavailable> {
        if name == IN_CLUSTER {
            return Ok(Target {
                name: IN_CLUSTER.to_owned(),
                client: self.control.clone(),
                server: self.config.argocd.destination_server.clone(),
                zone: None,
            });
        }
        let cluster = self.config.cluster(name).ok_or_else(|| Unavailable::Unregistered(name.to_owned()))?;
        let state = {
            let Ok(mut states) = self.states.lock() else {
                return Err(unreachable(name, "the cluster registry's lock is poisoned"));
            };
            states.entry(name.to_owned()).or_default().clone()
        };
        let mut state = state.lock().await;
        let fresh = |at: &Instant, ok: bool| at.elapsed() < if ok { HEALTHY_FOR } else { DOWN_FOR };
        let known = match &state.checked {
            Some((at, result)) if fresh(at, result.is_ok()) => Some(result.clone()),
            _ => None,
        };
        let result = match known {
            Some(result) => result,
            None => {
                let result = self.check(cluster, &mut state).await;
                if let Err(reason) = &result {
                    tracing::warn!(cluster = name, %reason, "preview cluster unreachable");
                    state.client = None;
                }
                state.checked = Some((Instant::now(), result.clone()));
                if let Some(up) = self.up.get() {
                    up.with_label_values(&[name]).set(i64::from(result.is_ok()));
                }
                result
            }
        };
        match (result, &state.client) {
            (Ok(()), Some((client, server))) => Ok(Target {
                name: name.to_owned(),
                client: client.clone(),
                server: cluster.destination_server.clone().unwrap_or_else(|| server.clone()),
                zone: cluster.preview_zone.clone(),
            }),
            (Err(reason), _) => Err(unreachable(name, reason)),
            (Ok(()), None) => Err(unreachable(name, "no client")),
        }
    }

    /// Connects (reading the registering Secret) when there is no client, then asks the API
    /// server its version.
    async fn check(&self, cluster: &ClusterConfig, state: &mut State) -> Result<(), String> {
        if state.client.is_none() {
            let registration = self.registration(cluster).await?;
            let server = registration.server.clone();
            state.client = Some((connect(registration).await?, server));
        }
        let Some((client, _)) = &state.client else { return Err("no client".into()) };
        match tokio::time::timeout(CHECK_TIMEOUT, client.apiserver_version()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(format!("health check: {err}")),
            Err(_) => Err(format!("health check: no answer within {}s", CHECK_TIMEOUT.as_secs())),
        }
    }

    /// Reads the Secret that registers `cluster`, from Previewd's own cluster.
    async fn registration(&self, cluster: &ClusterConfig) -> Result<Registration, String> {
        let (namespace, name, key) = match cluster.source() {
            Some(ClusterSource::ArgoCd { secret }) => (self.config.argocd.namespace.as_str(), secret, None),
            Some(ClusterSource::Kubeconfig { secret, key }) => (self.home.as_str(), secret, Some(key)),
            None => return Err("no Secret registers it".into()),
        };
        let secrets: Api<Secret> = Api::namespaced(self.control.clone(), namespace);
        let secret = secrets
            .get_opt(name)
            .await
            .map_err(|e| format!("reading Secret {namespace}/{name}: {e}"))?
            .ok_or_else(|| format!("Secret {namespace}/{name} not found"))?;
        let data = secret.data.unwrap_or_default();
        let parsed = match key {
            None => registration::from_argocd_secret(&data),
            Some(key) => {
                let text = data.get(key).map(|b| String::from_utf8_lossy(&b.0).into_owned());
                let text = text.ok_or_else(|| format!("Secret {namespace}/{name} has no key {key:?}"))?;
                registration::from_kubeconfig(&text)
            }
        };
        parsed.map_err(|e| format!("Secret {namespace}/{name}: {e}"))
    }

    /// Chooses a cluster for a new preview of `repository`: the first in its order that is
    /// reachable and has room, given the previews in `previews`.
    pub async fn choose(
        &self,
        repository: &crate::config::RepositoryConfig,
        previews: &[PreviewEnvironment],
    ) -> Result<Target, Vec<Unavailable>> {
        let mut passed = Vec::new();
        for name in self.config.clusters_for(repository) {
            let held = previews.iter().filter(|pe| self.holding(pe).as_deref() == Some(name)).count() as u64;
            if let Some(fit) = self.config.cluster(name).and_then(|c| c.capacity.as_ref())
                && held >= fit.previews(&self.config.quota)
            {
                passed.push(Unavailable::Full { cluster: name.to_owned(), held });
                continue;
            }
            match self.reach(name).await {
                Ok(target) => return Ok(target),
                Err(why) => passed.push(why),
            }
        }
        Err(passed)
    }
}

fn unreachable(cluster: &str, reason: impl Into<String>) -> Unavailable {
    Unavailable::Unreachable { cluster: cluster.to_owned(), reason: reason.into() }
}

/// A client from a registration, with bounds that keep a hung cluster from holding a
/// reconcile for long.
async fn connect(registration: Registration) -> Result<Client, String> {
    let options = kube::config::KubeConfigOptions::default();
    let mut config = kube::Config::from_custom_kubeconfig(registration.kubeconfig, &options)
        .await
        .map_err(|e| format!("kubeconfig: {e}"))?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    // kube retries 429/503/504 up to 15 times over minutes; a preview cluster that answers
    // so fails the pass at once instead, and the controller's backoff tries again.
    config.default_retry = false;
    Client::try_from(config).map_err(|e| format!("client: {e}"))
}
