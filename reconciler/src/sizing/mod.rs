//! Right-sizing (pure, but for `prometheus`): requests proposed per (repository, service) from
//! the p95 CPU and memory its pods used in recent previews, with headroom, within the
//! configured floors and ceilings; and a preview's sizes, which together never ask for more
//! than its namespace quota. `auto` applies them to the Helm values and the cost estimate.

pub mod prometheus;

use std::collections::BTreeMap;
use std::sync::RwLock;

use crate::config::{Config, RepositoryConfig, SizingMode};
use crate::crd::{ServiceSize, Sizing};

/// What one service's pods used in one preview namespace (p95 over the window).
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub namespace: String,
    pub service: String,
    pub cpu_cores: f64,
    pub memory_bytes: f64,
}

/// The requests proposed for a service, and what they come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub observed_cpu_millis: u64,
    pub observed_memory_bytes: u64,
    /// Preview namespaces the usage was seen in.
    pub previews: u32,
}

/// Proposals by (repository, service).
pub type Proposals = BTreeMap<(String, String), Proposal>;

const MIB: f64 = 1024.0 * 1024.0;

/// The repository whose preview namespace `namespace` is (`<prefix><slug>-pr-<n>`).
fn repository_of<'a>(config: &'a Config, namespace: &str) -> Option<&'a RepositoryConfig> {
    let rest = namespace.strip_prefix(&config.namespace_prefix)?;
    let (slug, number) = rest.rsplit_once("-pr-")?;
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    config.repositories.iter().find(|r| r.slug() == slug)
}

/// The proposals `usage` supports: the highest p95 across a service's previews, plus the
/// headroom, clamped to `sizing.floor` and `sizing.ceiling` (CPU to whole millicores, memory to
/// whole MiB). Usage of namespaces or services not configured is ignored.
pub fn propose(config: &Config, usage: &[Usage]) -> Proposals {
    let sizing = &config.sizing;
    let mut peaks: BTreeMap<(String, String), (f64, f64, std::collections::BTreeSet<&str>)> = BTreeMap::new();
    for u in usage {
        let Some(repo) = repository_of(config, &u.namespace) else { continue };
        if !repo.services.iter().any(|s| s.name == u.service) || !u.cpu_cores.is_finite() || !u.memory_bytes.is_finite()
        {
            continue;
        }
        let entry = peaks.entry((repo.name.clone(), u.service.clone())).or_insert((0.0, 0.0, Default::default()));
        entry.0 = entry.0.max(u.cpu_cores.max(0.0));
        entry.1 = entry.1.max(u.memory_bytes.max(0.0));
        entry.2.insert(&u.namespace);
    }
    let factor = 1.0 + f64::from(sizing.headroom_percent) / 100.0;
    let (floor, ceiling) = (&sizing.floor, &sizing.ceiling);
    peaks
        .into_iter()
        .map(|(key, (cpu, memory, namespaces))| {
            let cpu_cores = (cpu * factor).clamp(floor.cpu.cores(), ceiling.cpu.cores());
            let sized_memory = (memory * factor).clamp(floor.memory.bytes(), ceiling.memory.bytes());
            let proposal = Proposal {
                cpu_millis: (cpu_cores * 1000.0).ceil() as u64,
                // Whole MiB, rounded up, but never past the ceiling.
                memory_bytes: ((sized_memory / MIB).ceil() * MIB).min(ceiling.memory.bytes()) as u64,
                observed_cpu_millis: (cpu * 1000.0).round() as u64,
                observed_memory_bytes: memory.round() as u64,
                previews: u32::try_from(namespaces.len()).unwrap_or(u32::MAX),
            };
            (key, proposal)
        })
        .collect()
}

/// The mode that applies to a preview: its experiment arm's, else `sizing.mode`.
pub fn mode_for(config: &Config, arm: Option<&crate::config::Arm>) -> SizingMode {
    arm.and_then(|a| a.sizing).unwrap_or(config.sizing.mode)
}

/// The sizes a preview of `services` gets: each service's proposal, scaled down together if
/// they would ask for more than the namespace quota (but never under the floor). `None` when
/// sizing is off or nothing was proposed for these services.
pub fn for_preview(
    config: &Config,
    repo: &RepositoryConfig,
    mode: SizingMode,
    proposals: &Proposals,
    services: &[String],
) -> Option<Sizing> {
    if mode == SizingMode::Manual {
        return None;
    }
    let mut sized: Vec<ServiceSize> = services
        .iter()
        .filter_map(|name| {
            let p = proposals.get(&(repo.name.clone(), name.clone()))?;
            // A request above the service's limit would be refused: the limit caps it.
            let limits = repo.services.iter().find(|s| &s.name == name).and_then(|s| s.resources.limits.as_ref());
            let cpu_cap = limits.map_or(u64::MAX, |l| (l.cpu.cores() * 1000.0).floor() as u64);
            let memory_cap = limits.map_or(u64::MAX, |l| l.memory.bytes() as u64);
            Some(ServiceSize {
                name: name.clone(),
                cpu_millis: p.cpu_millis.min(cpu_cap),
                memory_bytes: p.memory_bytes.min(memory_cap),
                observed_cpu_millis: p.observed_cpu_millis,
                observed_memory_bytes: p.observed_memory_bytes,
            })
        })
        .collect();
    if sized.is_empty() {
        return None;
    }
    // The room the quota leaves: what it allows, less the services that are not sized.
    let replicas: Vec<f64> = sized
        .iter()
        .map(|z| repo.services.iter().find(|s| s.name == z.name).map_or(1.0, |s| f64::from(s.resources.replicas)))
        .collect();
    let configured: (f64, f64) = repo
        .services
        .iter()
        .filter(|s| services.contains(&s.name) && !sized.iter().any(|z| z.name == s.name))
        .map(|s| {
            let n = f64::from(s.resources.replicas);
            (s.resources.requests.cpu.cores() * 1000.0 * n, s.resources.requests.memory.bytes() * n)
        })
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let cpu_room = config.quota.cpu.cores() * 1000.0 - configured.0;
    let memory_room = config.quota.memory.bytes() - configured.1;
    let floor_cpu = (config.sizing.floor.cpu.cores() * 1000.0).ceil();
    let floor_memory = config.sizing.floor.memory.bytes();
    let mut cpu: Vec<f64> = sized.iter().map(|s| s.cpu_millis as f64).collect();
    let mut memory: Vec<f64> = sized.iter().map(|s| s.memory_bytes as f64).collect();
    // Floors alone past the quota: the configured requests stay (the quota was sized for them).
    if !fit(&mut cpu, &replicas, floor_cpu, cpu_room, 1.0)
        || !fit(&mut memory, &replicas, floor_memory, memory_room, MIB)
    {
        return None;
    }
    for ((s, cpu), memory) in sized.iter_mut().zip(cpu).zip(memory) {
        s.cpu_millis = cpu as u64;
        s.memory_bytes = memory as u64;
    }
    Some(Sizing { mode, services: sized })
}

/// Scales `values` (each times its `replicas`) down to fit `room`, in whole `unit`s, none
/// below `floor`: values that reach the floor stay there and the rest share what is left.
/// False when even the floors do not fit.
fn fit(values: &mut [f64], replicas: &[f64], floor: f64, room: f64, unit: f64) -> bool {
    let total = |values: &[f64]| values.iter().zip(replicas).map(|(v, n)| v * n).sum::<f64>();
    let mut floored = vec![false; values.len()];
    for _ in 0..=values.len() {
        if total(values) <= room {
            return true;
        }
        let fixed: f64 = values.iter().zip(replicas).zip(&floored).filter(|(_, f)| **f).map(|((v, n), _)| v * n).sum();
        let free = total(values) - fixed;
        if free <= 0.0 {
            return false;
        }
        let scale = ((room - fixed) / free).max(0.0);
        for (value, at_floor) in values.iter_mut().zip(floored.iter_mut()).filter(|(_, f)| !**f) {
            let scaled = ((*value * scale) / unit).floor() * unit;
            if scaled <= floor {
                *value = floor;
                *at_floor = true;
            } else {
                *value = scaled;
            }
        }
    }
    total(values) <= room
}

/// The latest proposals, shared by the refresher and the intake.
#[derive(Debug, Default)]
pub struct Book {
    proposals: RwLock<Proposals>,
}

impl Book {
    pub fn replace(&self, proposals: Proposals) {
        if let Ok(mut held) = self.proposals.write() {
            *held = proposals;
        }
    }

    pub fn get(&self) -> Proposals {
        self.proposals.read().map(|p| p.clone()).unwrap_or_default()
    }
}

/// Whether any preview may be sized: `sizing.mode`, or an experiment arm's.
pub fn uses_prometheus(config: &Config) -> bool {
    let arms = config.repositories.iter().filter_map(|r| r.experiment.as_ref()).flat_map(|e| &e.arms);
    config.sizing.prometheus_url.is_some()
        && (config.sizing.mode != SizingMode::Manual
            || arms.into_iter().any(|a| a.sizing.is_some_and(|m| m != SizingMode::Manual)))
}

/// Reads usage from Prometheus into `book` now and every `sizing.refresh`; a failed read keeps
/// the last proposals (and is retried a minute later).
pub async fn refresh(config: std::sync::Arc<Config>, book: std::sync::Arc<Book>) {
    let Some(url) = config.sizing.prometheus_url.as_deref() else { return };
    let prometheus = match prometheus::Prometheus::new(url) {
        Ok(p) => p,
        Err(err) => {
            tracing::warn!(error = %err, "right-sizing off");
            return;
        }
    };
    loop {
        let wait = match prometheus.usage(&config).await {
            Ok(usage) => {
                let proposals = propose(&config, &usage);
                tracing::info!(series = usage.len(), proposals = proposals.len(), "right-sizing proposals read");
                book.replace(proposals);
                config.sizing.refresh
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading usage from Prometheus failed; keeping the last proposals");
                std::time::Duration::from_secs(60)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// CPU as Kubernetes writes it (`250m`).
pub fn cpu_text(millis: u64) -> String {
    format!("{millis}m")
}

/// Memory as Kubernetes writes it, in whole MiB (`320Mi`).
pub fn memory_text(bytes: u64) -> String {
    format!("{}Mi", (bytes as f64 / MIB).ceil() as u64)
}

/// The proposals beside each service's configured requests (`previewd cost`).
pub fn render(config: &Config, proposals: &Proposals) -> String {
    let mut out = String::from("RIGHT-SIZING (p95 over the window + headroom, within floor and ceiling)\n");
    out.push_str("REPOSITORY  SERVICE  PREVIEWS  P95 CPU  P95 MEMORY  CONFIGURED  PROPOSED\n");
    for ((repository, service), p) in proposals {
        let configured = config
            .repository(repository)
            .and_then(|r| r.services.iter().find(|s| &s.name == service))
            .map(|s| format!("{}/{}", s.resources.requests.cpu.as_str(), s.resources.requests.memory.as_str()))
            .unwrap_or_default();
        out.push_str(&format!(
            "{repository}  {service}  {}  {}  {}  {configured}  {}/{}\n",
            p.previews,
            cpu_text(p.observed_cpu_millis),
            memory_text(p.observed_memory_bytes),
            cpu_text(p.cpu_millis),
            memory_text(p.memory_bytes),
        ));
    }
    if proposals.is_empty() {
        out.push_str("(no usage recorded for configured services yet)\n");
    }
    out
}

#[cfg(test)]
mod tests;
