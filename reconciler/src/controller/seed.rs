//! Synthetic data for a preview's database (`repositories[].seed`), a step of the dereference
//! phase: once the service that migrates the database is Healthy at the head commit, the
//! schema files are read there, and a schema not loaded yet is generated into a data set and
//! loaded by a Job. While the Job runs, each pass reads how it ended. An unchanged schema at a
//! new commit is not loaded again; a changed one gets a Job of its own (an older one is
//! removed by its TTL a day after it ended). The outcome is the status's `seed` (the plan turns it into
//! the `Seeded` condition, an Event and the PR comment's line).

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use super::observe::Observed;
use super::{Context, Error};
use crate::config::SeedConfig;
use crate::crd::{PreviewEnvironment, SeedState, SeedStatus, SeededTable};
use crate::render::Preview;
use crate::render::seed as render;

/// What the database holds now, after this pass's seeding work (`None`: no seed configured).
/// The loader runs in `here`, the cluster of the preview's namespace.
pub(super) async fn step(
    ctx: &Context,
    here: &kube::Client,
    pe: &PreviewEnvironment,
    preview: &Preview<'_>,
    observed: &Observed,
) -> Result<Option<SeedStatus>, Error> {
    let Some(seed) = &preview.repo.seed else { return Ok(None) };
    let mut current = pe.status.as_ref().and_then(|s| s.seed.clone());
    if let Some(loading) = current.as_mut().filter(|s| s.state == SeedState::Loading) {
        let job: Api<Job> = Api::namespaced(here.clone(), &preview.name);
        match job.get_opt(&loading.job).await? {
            Some(job) => {
                if let Some((state, message)) = finished(&job) {
                    loading.state = state;
                    loading.message = message;
                }
            }
            None => {
                loading.state = SeedState::Failed;
                loading.message = format!("the loader Job {} is gone", loading.job);
            }
        }
        // One load at a time: a newer commit's schema is looked at once this one ended.
        if loading.state == SeedState::Loading {
            return Ok(current);
        }
    }
    let head = &pe.spec.head_sha;
    if head.is_empty() || current.as_ref().is_some_and(|s| &s.sha == head) || !migrated(preview, seed, observed) {
        return Ok(current);
    }
    let Some(github) = &ctx.github else {
        return Ok(Some(failed(head, current.as_ref(), "GitHub is not configured: the schema cannot be read")));
    };
    let repository = &pe.spec.repository;
    let files = match crate::github::source::read_matching(
        github.github(),
        &ctx.schema_blobs,
        pe.spec.installation_id,
        repository,
        head,
        &seed.schema,
    )
    .await
    {
        Ok(files) => files,
        Err(err) => {
            // GitHub may be back next pass (the resync): nothing is recorded for this commit.
            tracing::warn!(preview = %preview.name, error = %err, "could not read the seed schema");
            return Ok(current);
        }
    };
    if files.is_empty() {
        let why = format!("no file at {} matches seed.schema {:?}", short(head), seed.schema.patterns());
        return Ok(Some(failed(head, current.as_ref(), &why)));
    }
    let digest = render::digest(&files);
    if let Some(same) = current.as_mut().filter(|s| s.digest == digest) {
        same.sha = head.clone();
        return Ok(current);
    }
    let (vocabularies, vocabulary) = vocabularies_for(ctx, &files).await;
    let loader = match render::loader(preview, seed, &files, vocabularies) {
        Ok(loader) => loader,
        Err(err) => return Ok(Some(SeedStatus { digest, ..failed(head, current.as_ref(), &err.to_string()) })),
    };
    let bytes = loader.bytes as u64;
    let tables = loader.tables.clone();
    let job = load(here, preview, loader).await?;
    tracing::info!(preview = %preview.name, job = %job, bytes, "loading synthetic data");
    Ok(Some(SeedStatus {
        sha: head.clone(),
        digest,
        job,
        state: SeedState::Loading,
        tables: tables.into_iter().map(|(name, rows)| SeededTable { name, rows: rows as u64 }).collect(),
        bytes,
        message: String::new(),
        vocabulary,
    }))
}

/// The AI's value vocabularies for the schema (`ai.features.seedVocabularies`), and the model
/// that proposed them; none when AI is off or its answer is unusable (the rules do it all).
async fn vocabularies_for(ctx: &Context, files: &[(String, Arc<str>)]) -> (crate::seed::Vocabularies, Option<String>) {
    let Some(engine) = ctx.ai.as_ref().filter(|_| ctx.config.ai.features.seed_vocabularies) else {
        return (Default::default(), None);
    };
    let texts: Vec<(String, &str)> = files.iter().map(|(p, t)| (p.clone(), &**t)).collect();
    let Ok(schema) = crate::seed::schema_of(&texts) else { return (Default::default(), None) };
    match crate::ai::vocabulary::propose(engine, &ctx.vocabularies, &schema).await {
        Ok((vocabularies, _)) => (vocabularies, Some(engine.config().model.clone())),
        Err(err) => {
            tracing::warn!(error = %err, kind = err.label(), "no AI vocabularies for the seed; the rules generate every value");
            (Default::default(), None)
        }
    }
}

/// Whether the service that migrates the database runs the head commit, healthy.
fn migrated(preview: &Preview<'_>, seed: &SeedConfig, observed: &Observed) -> bool {
    if !preview.services.iter().any(|s| s.name == seed.service) {
        return false;
    }
    let app = crate::names::application_name(&preview.name, &seed.service);
    super::status::service_status(&seed.service, observed.application(&app), &preview.resource.spec.head_sha).ready
}

fn failed(head: &str, current: Option<&SeedStatus>, why: &str) -> SeedStatus {
    SeedStatus {
        sha: head.to_owned(),
        digest: current.map(|s| s.digest.clone()).unwrap_or_default(),
        job: current.map(|s| s.job.clone()).unwrap_or_default(),
        state: SeedState::Failed,
        tables: Vec::new(),
        bytes: 0,
        message: why.to_owned(),
        vocabulary: None,
    }
}

/// How a loader Job ended, if it did.
fn finished(job: &Job) -> Option<(SeedState, String)> {
    let status = job.status.as_ref()?;
    let condition = |kind: &str| {
        status.conditions.iter().flatten().find(|c| c.type_ == kind && c.status == "True").map(|c| c.message.clone())
    };
    if status.succeeded.unwrap_or(0) > 0 || condition("Complete").is_some() {
        return Some((SeedState::Loaded, String::new()));
    }
    condition("Failed").map(|message| {
        let why = message.filter(|m| !m.is_empty()).unwrap_or_else(|| "the loader Job failed".into());
        (SeedState::Failed, format!("{why} (kubectl logs job/{})", job.name_any()))
    })
}

/// Applies the loader Job, then its data set as a ConfigMap the Job owns (the pod waits for
/// the volume until it exists). Returns the Job's name.
async fn load(here: &kube::Client, preview: &Preview<'_>, loader: render::Loader) -> Result<String, Error> {
    let params = PatchParams::apply(super::execute::FIELD_MANAGER).force();
    let name = loader.job.name_any();
    let jobs: Api<Job> = Api::namespaced(here.clone(), &preview.name);
    let applied = jobs.patch(&name, &params, &Patch::Apply(&loader.job)).await.map_err(|source| Error::Apply {
        kind: "Job".into(),
        name: name.clone(),
        source: Box::new(source),
    })?;
    let mut data = loader.data;
    data.metadata.owner_references = applied.meta().uid.clone().map(|uid| {
        vec![OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: name.clone(),
            uid,
            ..OwnerReference::default()
        }]
    });
    let maps: Api<ConfigMap> = Api::namespaced(here.clone(), &preview.name);
    maps.patch(&name, &params, &Patch::Apply(&data)).await.map_err(|source| Error::Apply {
        kind: "ConfigMap".into(),
        name: name.clone(),
        source: Box::new(source),
    })?;
    Ok(name)
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// The blob cache of schema reads (schemas are small; their blobs rarely change).
pub(super) fn blob_cache() -> Arc<crate::github::source::BlobCache> {
    Arc::new(crate::github::source::BlobCache::new(4 * 1024 * 1024))
}
