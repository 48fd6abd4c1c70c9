//! `previewd consume`: works off the queue once and exits (the main job locally, one-off
//! catch-ups). With a cluster (`KUBECONFIG`) it does what `previewd run` does for each event,
//! with one reconcile of each preview it wrote. Without one it renders what it would apply into
//! a folder, one directory per preview, and keeps it in step with the events (a removed
//! preview's directory goes). Either way it returns a row per event for the summary table.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_sqs::error::DisplayErrorContext;
use chrono::{DateTime, Utc};
use previewd_events::PreviewEvent;

use crate::config::Config;
use crate::consumer::{Consumer, Outcome};
use crate::controller::{Context, reconcile_at};
use crate::crd::{PreviewEnvironment, SelectedBy, ServiceSelection};
use crate::names;
use crate::offline::{OfflineError, preview_resource};
use crate::policy::{Decision, assumed_approval, decide, is_stale};
use crate::render::{render, to_yaml};

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("SQS: {0}")]
    Sqs(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error(transparent)]
    Offline(#[from] OfflineError),
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error("Kubernetes: {0}")]
    Kube(String),
}

/// One event, as the summary table shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Row {
    pub pr: String,
    pub action: String,
    pub delivery: String,
    pub result: String,
    pub url: String,
    pub monthly: String,
    pub expires: String,
}

fn io(path: &Path, err: impl std::fmt::Display) -> LocalError {
    LocalError::Io { path: path.display().to_string(), message: err.to_string() }
}

/// Receives until the queue has been empty twice in a row, handing each message (in queue
/// order) to `handle`; a message is deleted once handled.
async fn drain<F, Fut>(sqs: &aws_sdk_sqs::Client, queue_url: &str, mut handle: F) -> Result<Vec<Row>, LocalError>
where
    F: FnMut(Result<PreviewEvent, String>) -> Fut,
    Fut: std::future::Future<Output = Result<Row, LocalError>>,
{
    let mut rows = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| LocalError::Sqs(DisplayErrorContext(&e).to_string()))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        for message in messages {
            let event = PreviewEvent::from_json(message.body().unwrap_or_default()).map_err(|e| e.to_string());
            rows.push(handle(event).await?);
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .map_err(|e| LocalError::Sqs(DisplayErrorContext(&e).to_string()))?;
        }
    }
    Ok(rows)
}

fn row(event: &PreviewEvent, result: String) -> Row {
    Row {
        pr: format!("{}#{}", event.repository.full_name, event.pull_request.number),
        action: event.action.to_string(),
        delivery: event.delivery_id.chars().take(8).collect(),
        result,
        ..Row::default()
    }
}

fn malformed(error: &str) -> Row {
    Row { result: format!("malformed: {error}"), ..Row::default() }
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

fn describe(row: &mut Row, pe: &PreviewEnvironment) {
    let status = pe.status.as_ref();
    row.url = status.and_then(|s| s.url.clone()).unwrap_or_default();
    row.monthly =
        status.and_then(|s| s.cost_estimate.as_ref()).map(|c| c.estimated_monthly_cost.clone()).unwrap_or_default();
    row.expires = when(status.and_then(|s| s.expires_at));
}

/// Without a cluster: each preview's objects rendered into `out/<preview>/`.
pub async fn consume_to_folder(
    config: &Config,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    out: &Path,
) -> Result<Vec<Row>, LocalError> {
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    drain(sqs, queue_url, |event| async move {
        match event {
            Ok(event) => apply_to_folder(config, &event, out),
            Err(error) => Ok(malformed(&error)),
        }
    })
    .await
}

/// One event applied to the folder (its directory kept in step with the event).
pub fn apply_to_folder(config: &Config, event: &PreviewEvent, out: &Path) -> Result<Row, LocalError> {
    let Some(repo) = config.repository(&event.repository.full_name) else {
        return Ok(row(event, "ignored: repository not configured".to_owned()));
    };
    let name = names::preview_name(&config.namespace_prefix, &repo.slug(), event.pull_request.number);
    let dir: PathBuf = out.join(&name);
    let state = dir.join("previewenvironment.json");
    let existing: Option<PreviewEnvironment> =
        std::fs::read_to_string(&state).ok().and_then(|text| serde_json::from_str(&text).ok());
    if existing.as_ref().is_some_and(|e| is_stale(event, &e.spec.last_event)) {
        return Ok(row(event, "stale: dropped".to_owned()));
    }
    let previous = existing.as_ref().map(|e| &e.spec);
    match decide(event, config, previous, assumed_approval(event, config)) {
        Decision::Ignore { reason } => Ok(row(event, format!("ignored: {}", reason.as_str()))),
        Decision::Remove { reason } => {
            let had = dir.exists();
            if had {
                std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
            }
            let what = if had { "removed" } else { "no preview" };
            Ok(row(event, format!("{what}: {}", reason.as_str())))
        }
        Decision::Upsert(spec) => {
            let mut spec = *spec;
            spec.selection = Some(ServiceSelection {
                by: SelectedBy::AllServices,
                head_sha: spec.head_sha.clone(),
                changed_files: None,
                note: Some("local run: no GitHub to read the changed files from".to_owned()),
                ai: None,
            });
            let pe = preview_resource(config, spec)?;
            let objects = render(config, &pe)?;
            let mut documents = vec![serde_json::to_value(&pe).unwrap_or_default()];
            documents.extend(objects);
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            let yaml = to_yaml(&documents).map_err(OfflineError::from)?;
            let objects_path = dir.join("objects.yaml");
            std::fs::write(&objects_path, yaml).map_err(|e| io(&objects_path, e))?;
            let json = serde_json::to_string_pretty(&pe).unwrap_or_default();
            std::fs::write(&state, json).map_err(|e| io(&state, e))?;
            let verb = if existing.is_some() { "updated" } else { "created" };
            let mut r = row(event, format!("{verb}: {} objects", documents.len()));
            describe(&mut r, &pe);
            Ok(r)
        }
    }
}

/// With a cluster: the consumer writes each PreviewEnvironment, then each written preview is
/// reconciled once (objects applied, status with URL, cost and expiry).
pub async fn consume_to_cluster(
    config: Arc<Config>,
    sqs: aws_sdk_sqs::Client,
    queue_url: &str,
    kube: kube::Client,
) -> Result<Vec<Row>, LocalError> {
    let consumer = Consumer::new(sqs.clone(), queue_url.to_owned(), kube.clone(), Arc::clone(&config));
    let consumer = &consumer;
    let mut rows = drain(&sqs, queue_url, |event| async move {
        let event = match event {
            Ok(event) => event,
            Err(error) => return Ok(malformed(&error)),
        };
        let outcome = consumer.handle_event(&event).await;
        let result = match &outcome {
            Outcome::Applied { name } => format!("applied: {name}"),
            Outcome::Removed { reason, .. } => format!("removed: {}", reason.as_str()),
            Outcome::Ignored { reason } => format!("ignored: {}", reason.as_str()),
            Outcome::Failed { error } => format!("failed: {error}"),
            other => other.label().to_owned(),
        };
        Ok(row(&event, result))
    })
    .await?;
    let ctx = Context::new(kube.clone(), Arc::clone(&config));
    let api: kube::Api<PreviewEnvironment> = kube::Api::all(kube);
    for r in &mut rows {
        let Some(name) = r.result.strip_prefix("applied: ").map(str::to_owned) else { continue };
        let Some(pe) = api.get_opt(&name).await.map_err(|e| LocalError::Kube(e.to_string()))? else { continue };
        reconcile_at(&pe, &ctx, Utc::now()).await.map_err(|e| LocalError::Kube(e.to_string()))?;
        if let Some(pe) = api.get_opt(&name).await.map_err(|e| LocalError::Kube(e.to_string()))? {
            describe(r, &pe);
        }
    }
    Ok(rows)
}

/// A column of the summary table: its title and how a row fills it.
type Column = (&'static str, fn(&Row) -> &str);

/// The summary table.
pub fn table(rows: &[Row]) -> String {
    let width = |f: fn(&Row) -> &str, title: &str| {
        rows.iter().map(|r| f(r).chars().count()).max().unwrap_or(0).max(title.len())
    };
    let columns: [Column; 7] = [
        ("PR", |r| &r.pr),
        ("EVENT", |r| &r.action),
        ("DELIVERY", |r| &r.delivery),
        ("RESULT", |r| &r.result),
        ("URL", |r| &r.url),
        ("COST/MO", |r| &r.monthly),
        ("EXPIRES", |r| &r.expires),
    ];
    let widths: Vec<usize> = columns.iter().map(|(title, f)| width(*f, title)).collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(columns.iter().map(|(t, _)| *t).collect());
    for r in rows {
        out.push_str(&line(columns.iter().map(|(_, f)| f(r)).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> PreviewEvent {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/events").join(name))
                .unwrap();
        let mut event = PreviewEvent::from_json(&text).unwrap();
        event.pull_request.updated_at = Utc::now();
        event
    }

    #[test]
    fn the_folder_follows_a_prs_life() {
        let config = Config::from_yaml(include_str!("../../docs/examples/config.yaml")).unwrap();
        let out = std::env::temp_dir().join(format!("previewd-local-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let opened = event("opened.json");
        let created = apply_to_folder(&config, &opened, &out).unwrap();
        assert_eq!(created.result, "created: 8 objects");
        assert_eq!(created.url, "https://shop-pr-42.preview.example.com");
        assert!(created.monthly.starts_with('$') && !created.expires.is_empty(), "{created:?}");
        let objects = std::fs::read_to_string(out.join("preview-shop-pr-42/objects.yaml")).unwrap();
        assert_eq!(objects.matches("\nkind: ").count() + usize::from(objects.starts_with("kind: ")), 8);

        let mut older = opened.clone();
        older.pull_request.updated_at -= chrono::Duration::minutes(5);
        assert_eq!(apply_to_folder(&config, &older, &out).unwrap().result, "stale: dropped");
        let mut pushed = opened.clone();
        pushed.pull_request.updated_at += chrono::Duration::minutes(1);
        assert_eq!(apply_to_folder(&config, &pushed, &out).unwrap().result, "updated: 8 objects");

        let mut closed = event("closed-merged.json");
        closed.pull_request.updated_at = pushed.pull_request.updated_at + chrono::Duration::minutes(1);
        assert_eq!(apply_to_folder(&config, &closed, &out).unwrap().result, "removed: merged");
        assert!(!out.join("preview-shop-pr-42").exists());
        let mut elsewhere = opened.clone();
        elsewhere.repository.full_name = "someone/else".into();
        assert!(apply_to_folder(&config, &elsewhere, &out).unwrap().result.starts_with("ignored"));

        let text = table(&[created]);
        assert!(text.starts_with("PR ") && text.lines().nth(1).unwrap().starts_with("acme/shop#42  opened"), "{text}");
        let _ = std::fs::remove_dir_all(&out);
    }
}
