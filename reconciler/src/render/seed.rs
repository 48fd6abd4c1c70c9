//! The loader of a preview's synthetic data (pure): a ConfigMap holding the data set and a Job
//! that runs the configured client against it, both named for the schema's digest, so one
//! schema is loaded once and a changed schema gets a new Job.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EnvFromSource, EnvVar, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use sha2::{Digest as _, Sha256};

use super::Preview;
use crate::config::SeedConfig;

/// A finished loader Job is removed a day later (its ConfigMap with it, as it owns that).
const KEEP_FINISHED_SECONDS: i32 = 24 * 3600;

/// SHA-256 of the schema files: each path and text, so a renamed file counts as a change.
pub fn digest(files: &[(String, std::sync::Arc<str>)]) -> String {
    let mut hash = Sha256::new();
    for (path, text) in files {
        hash.update(path.as_bytes());
        hash.update([0]);
        hash.update(text.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

/// The loader's name for a schema digest: `previewd-seed-<12 hex>`.
pub fn job_name(digest: &str) -> String {
    format!("previewd-seed-{}", digest.get(..12).unwrap_or(digest))
}

/// The loader Job: one pod, a few retries (the database may still be starting), never root.
pub fn loader_job(p: &Preview<'_>, seed: &SeedConfig, digest: &str) -> Job {
    let name = job_name(digest);
    let loader = &seed.loader;
    let mount = crate::config::DATA_DIR;
    let container = Container {
        name: "load".into(),
        image: Some(p.config.images.rewrite(&loader.image)),
        command: Some(loader.command.clone()),
        env: Some(
            loader
                .env
                .iter()
                .map(|(k, v)| EnvVar { name: k.clone(), value: Some(v.clone()), ..EnvVar::default() })
                .collect(),
        ),
        env_from: loader.env_from_secret.as_ref().map(|secret| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource { name: secret.clone(), optional: Some(false) }),
                ..EnvFromSource::default()
            }]
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: mount.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(quantities("50m", "64Mi")),
            limits: Some(quantities("500m", "256Mi")),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    // Not Previewd's managed-by label: the pods are the Job controller's, not Previewd's.
    let pod_labels = BTreeMap::from([
        (super::LABEL_PREVIEW.to_owned(), p.name.clone()),
        ("preview.previewd.io/seed".to_owned(), name.clone()),
    ]);
    Job {
        metadata: p.meta(&name, Some(&p.name)),
        spec: Some(JobSpec {
            backoff_limit: Some(4),
            active_deadline_seconds: Some(600),
            ttl_seconds_after_finished: Some(KEEP_FINISHED_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(loader.run_as_user),
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "data".into(),
                        config_map: Some(ConfigMapVolumeSource { name: name.clone(), ..Default::default() }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// What loads one schema's data set: the Job, its ConfigMap (not owned yet), and a summary.
#[derive(Debug, Clone)]
pub struct Loader {
    pub digest: String,
    pub job: Job,
    pub data: ConfigMap,
    /// Rows per table, parents first.
    pub tables: Vec<(String, usize)>,
    /// Bytes of SQL in the data set.
    pub bytes: usize,
}

/// The loader of the data set generated from `files` (the schema, in path order).
pub fn loader(
    p: &Preview<'_>,
    seed: &SeedConfig,
    files: &[(String, std::sync::Arc<str>)],
    vocabularies: crate::seed::Vocabularies,
) -> Result<Loader, crate::seed::SeedError> {
    let digest = digest(files);
    let texts: Vec<(String, &str)> = files.iter().map(|(p, t)| (p.clone(), &**t)).collect();
    let options = crate::seed::Options {
        rows: seed.rows,
        seed: seed.seed,
        max_bytes: usize::try_from(seed.max_bytes).unwrap_or(usize::MAX),
        format: seed.format,
        vocabularies,
    };
    let dataset = crate::seed::dataset(&texts, &options)?;
    let bytes = dataset.sql.len();
    Ok(Loader {
        job: loader_job(p, seed, &digest),
        data: data_config_map(p, &digest, seed.format.file_name(), dataset.sql),
        tables: dataset.tables,
        bytes,
        digest,
    })
}

/// The files under `root` whose paths (relative, `/`-separated) match `globs`, in path order:
/// a checkout standing in for the head commit (`previewd consume --checkout`).
pub fn read_checkout(
    root: &std::path::Path,
    globs: &crate::config::types::Globs,
) -> std::io::Result<Vec<(String, std::sync::Arc<str>)>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let Ok(relative) = path.strip_prefix(root) else { continue };
            let name = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            if globs.is_match(&name) {
                found.push((name, std::sync::Arc::<str>::from(std::fs::read_to_string(&path)?)));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The data set's ConfigMap (the controller makes its Job its owner once the Job exists).
pub fn data_config_map(p: &Preview<'_>, digest: &str, key: &str, sql: String) -> ConfigMap {
    let metadata = p.meta(&job_name(digest), Some(&p.name));
    ConfigMap { metadata, data: Some(BTreeMap::from([(key.to_owned(), sql)])), ..ConfigMap::default() }
}

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([("cpu".to_owned(), Quantity(cpu.into())), ("memory".to_owned(), Quantity(memory.into()))])
}
