//! `previewd consume`: works off the queue once and exits (the main job locally, one-off
//! catch-ups). With a cluster (`KUBECONFIG`) it does what `previewd run` does for each event,
//! with one reconcile of each preview it wrote. Without one it renders what it would apply into
//! a folder, one directory per preview, and keeps it in step with the events (a removed
//! preview's directory goes). Either way it returns a row per event for the summary table.

use std::path::Path;
use std::sync::Arc;

use aws_sdk_sqs::error::DisplayErrorContext;
use chrono::{DateTime, Utc};
use previewd_events::{Message, PreviewEvent};

use crate::config::Config;
use crate::controller::{Context, reconcile_named};
use crate::crd::PreviewEnvironment;
use crate::intake::store::PreviewStore;
use crate::intake::{Approvals, Intake, Outcome};

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("SQS: {0}")]
    Sqs(String),
    #[error(transparent)]
    Store(#[from] crate::intake::store::StoreError),
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

/// Receives until the queue has been empty twice in a row, handing each message (in queue
/// order) to `handle`; a message is deleted once handled.
async fn drain<F, Fut>(sqs: &aws_sdk_sqs::Client, queue_url: &str, mut handle: F) -> Result<Vec<Row>, ConsumeError>
where
    F: FnMut(Result<Message, String>) -> Fut,
    Fut: std::future::Future<Output = Result<Row, ConsumeError>>,
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
            .map_err(|e| ConsumeError::Sqs(DisplayErrorContext(&e).to_string()))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        for message in messages {
            let event = Message::from_json(message.body().unwrap_or_default());
            if let Err(err) = &event
                && err.is_newer_version()
            {
                // For a newer previewd: left on the queue, not lost.
                rows.push(Row { result: format!("not read: {err}; left on the queue"), ..Row::default() });
                continue;
            }
            rows.push(handle(event.map_err(|e| e.to_string())).await?);
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .map_err(|e| ConsumeError::Sqs(DisplayErrorContext(&e).to_string()))?;
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

/// What the build gate holds back, for the result column.
fn gate_note(pe: &PreviewEnvironment) -> String {
    let short = crate::github::comment::short;
    match (&pe.spec.awaiting_build, pe.spec.head_sha.as_str()) {
        (Some(waiting), "") => format!("; {} waits for its build, nothing deployed yet", short(&waiting.sha)),
        (Some(waiting), running) => {
            format!("; {} waits for its build, {} keeps serving", short(&waiting.sha), short(running))
        }
        (None, "") => String::new(),
        (None, running) => format!("; deploys {}", short(running)),
    }
}

/// The services a preview takes from its baseline namespace, for the result column.
fn baseline_note(config: &Config, pe: &PreviewEnvironment) -> String {
    crate::render::baseline::unchanged(config, &pe.spec)
        .map(|(namespace, services)| format!("; {} from baseline {namespace}", services.join(", ")))
        .unwrap_or_default()
}

fn describe(row: &mut Row, pe: &PreviewEnvironment) {
    let status = pe.status.as_ref();
    row.url = status.and_then(|s| s.url.clone()).unwrap_or_default();
    row.monthly =
        status.and_then(|s| s.cost_estimate.as_ref()).map(|c| c.estimated_monthly_cost.clone()).unwrap_or_default();
    row.expires = when(status.and_then(|s| s.expires_at));
}

/// A message's row: a PR event's ([`handled_event`]), or a command's or a check's, with the
/// preview it changed.
async fn handled(intake: &Intake, message: &Message) -> Result<Row, ConsumeError> {
    let (outcome, mut r) = match message {
        Message::PullRequest(event) => return handled_event(intake, event).await,
        Message::Command(command) => (
            intake.handle_command(command).await,
            Row {
                pr: format!("{}#{}", command.repository.full_name, command.number),
                action: command.command.chars().take(40).collect(),
                delivery: command.delivery_id.chars().take(8).collect(),
                ..Row::default()
            },
        ),
        Message::Check(check) => (
            intake.handle_check(check).await,
            Row {
                pr: format!("{}@{}", check.repository.full_name, crate::github::comment::short(&check.sha)),
                action: format!("{} {}: {}", check.source.as_str(), check.name, check.state.as_str()),
                delivery: check.delivery_id.chars().take(8).collect(),
                ..Row::default()
            },
        ),
    };
    r.result = match &outcome {
        Outcome::Applied { name } => match intake.store().get(name).await? {
            Some(pe) => {
                describe(&mut r, &pe);
                format!("applied: {name}{}{}", gate_note(&pe), baseline_note(intake.config(), &pe))
            }
            None => format!("applied: {name}"),
        },
        Outcome::Removed { name, reason } => format!("removed: {name} ({})", reason.as_str()),
        Outcome::Noted { what } => format!("noted: {what}"),
        Outcome::Ignored { reason } => format!("ignored: {}", reason.as_str()),
        Outcome::Failed { error } => format!("failed: {error}"),
        other => other.label().to_owned(),
    };
    Ok(r)
}

/// The event's row: what the intake did, and the preview it wrote (URL, cost, expiry). In a
/// folder the row counts the objects written; in a cluster it names the preview, which the
/// controller then builds.
async fn handled_event(intake: &Intake, event: &PreviewEvent) -> Result<Row, ConsumeError> {
    let name = intake.preview_name(event);
    let before = match &name {
        Some(name) => intake.store().get(name).await?,
        None => None,
    };
    let outcome = intake.handle_event(event).await;
    let mut r = row(event, String::new());
    r.result = match &outcome {
        Outcome::Applied { name } if matches!(intake.store(), PreviewStore::Cluster(_)) => format!("applied: {name}"),
        Outcome::Applied { name } => {
            let written = intake.store().get(name).await?;
            let objects = written.as_ref().map_or(0, |pe| objects_of(intake.config(), pe));
            if let Some(pe) = &written {
                describe(&mut r, pe);
            }
            let verb = if before.is_some() { "updated" } else { "created" };
            let gated = written.as_ref().filter(|pe| pe.spec.awaiting_build.is_some()).map(gate_note);
            let baseline = written.as_ref().map(|pe| baseline_note(intake.config(), pe));
            let seeded = written.as_ref().map(seed_note).unwrap_or_default();
            format!("{verb}: {objects} objects{}{}{seeded}", gated.unwrap_or_default(), baseline.unwrap_or_default())
        }
        Outcome::Removed { reason, .. } => {
            let what = if before.is_some() { "removed" } else { "no preview" };
            format!("{what}: {}", reason.as_str())
        }
        Outcome::Ignored { reason } => format!("ignored: {}", reason.as_str()),
        Outcome::Stale => "stale: dropped".to_owned(),
        Outcome::Failed { error } => format!("failed: {error}"),
        other => other.label().to_owned(),
    };
    Ok(r)
}

/// How many objects a preview consists of: itself and what the controller applies (with a
/// seed's loader Job and data set).
fn objects_of(config: &Config, pe: &PreviewEnvironment) -> usize {
    let loader = if pe.status.as_ref().is_some_and(|s| s.seed.is_some()) { 2 } else { 0 };
    crate::render::render(config, pe).map_or(0, |objects| objects.len() + 1 + loader)
}

/// The synthetic data a preview's loader would put in its database.
fn seed_note(pe: &PreviewEnvironment) -> String {
    let Some(seed) = pe.status.as_ref().and_then(|s| s.seed.as_ref()) else { return String::new() };
    let rows: u64 = seed.tables.iter().map(|t| t.rows).sum();
    format!("; seed: {rows} rows in {} tables ({})", seed.tables.len(), seed.job)
}

/// Without a cluster: each preview rendered into `out/<preview>/` (its PreviewEnvironment as
/// the controller would show it, and every object it would apply), kept in step with the
/// events (a removed preview's directory goes).
pub async fn consume_to_folder(
    config: &Arc<Config>,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    out: &Path,
    checkout: Option<&Path>,
) -> Result<Vec<Row>, ConsumeError> {
    let store = PreviewStore::Folder {
        root: out.to_path_buf(),
        config: Arc::clone(config),
        checkout: checkout.map(Path::to_path_buf),
    };
    // Nothing is deployed, and there is no GitHub to ask who added a fork's label: it counts.
    let intake = Intake::new(store, Arc::clone(config)).with_approvals(Approvals::Assumed);
    let intake = &intake;
    drain(sqs, queue_url, |event| async move {
        match event {
            Ok(event) => handled(intake, &event).await,
            Err(error) => Ok(malformed(&error)),
        }
    })
    .await
}

/// With a cluster: each event takes the path `previewd run` gives it, then each written preview
/// is reconciled once (objects applied, status with URL, cost and expiry).
pub async fn consume_to_cluster(
    config: Arc<Config>,
    sqs: aws_sdk_sqs::Client,
    queue_url: &str,
    kube: kube::Client,
) -> Result<Vec<Row>, ConsumeError> {
    let intake = Intake::new(PreviewStore::Cluster(kube.clone()), Arc::clone(&config));
    let intake = &intake;
    let mut rows = drain(&sqs, queue_url, |event| async move {
        match event {
            Ok(event) => handled(intake, &event).await,
            Err(error) => Ok(malformed(&error)),
        }
    })
    .await?;
    let ctx = Context::new(kube.clone(), Arc::clone(&config));
    let api: kube::Api<PreviewEnvironment> = kube::Api::all(kube);
    for r in &mut rows {
        let Some(name) = r.result.strip_prefix("applied: ").map(str::to_owned) else { continue };
        reconcile_named(&ctx, &name, Utc::now()).await.map_err(|e| ConsumeError::Kube(e.to_string()))?;
        if let Some(pe) = api.get_opt(&name).await.map_err(|e| ConsumeError::Kube(e.to_string()))? {
            describe(r, &pe);
        }
    }
    Ok(rows)
}

/// `previewd consume`: works the queue off into the cluster in `KUBECONFIG`, or else into
/// `out`, and returns the summary table.
pub async fn consume(config: &Path, out: &Path, checkout: Option<&Path>) -> Result<String, String> {
    let config = Arc::new(Config::load(config).map_err(|e| e.to_string())?);
    let queue_url = std::env::var("PREVIEWD_QUEUE_URL").map_err(|_| "PREVIEWD_QUEUE_URL is not set".to_owned())?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let cluster = std::env::var("KUBECONFIG").is_ok_and(|v| !v.trim().is_empty());
    let (rows, target) = if cluster {
        let kube = kube::Client::try_default().await.map_err(|e| format!("Kubernetes: {e}"))?;
        (consume_to_cluster(config, sqs, &queue_url, kube).await, "the cluster in KUBECONFIG".to_owned())
    } else {
        let rows = consume_to_folder(&config, &sqs, &queue_url, out, checkout).await;
        (rows, format!("{} (no cluster configured: set KUBECONFIG to apply)", out.display()))
    };
    let rows = rows.map_err(|e| e.to_string())?;
    Ok(format!("{}\n{} events handled; previews written to {target}\n", table(&rows), rows.len()))
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

    #[tokio::test]
    async fn the_folder_follows_a_prs_life() {
        let config = Arc::new(Config::from_yaml(include_str!("../../../docs/examples/config.yaml")).unwrap());
        let out = std::env::temp_dir().join(format!("previewd-local-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let store = PreviewStore::Folder { root: out.clone(), config: Arc::clone(&config), checkout: None };
        let intake = Intake::new(store, Arc::clone(&config)).with_approvals(Approvals::Assumed);
        let opened = event("opened.json");
        let created = handled_event(&intake, &opened).await.unwrap();
        assert_eq!(created.result, "created: 8 objects");
        assert_eq!(created.url, "https://shop-pr-42.preview.example.com");
        assert!(created.monthly.starts_with('$') && !created.expires.is_empty(), "{created:?}");
        let objects = std::fs::read_to_string(out.join("preview-shop-pr-42/objects.yaml")).unwrap();
        assert_eq!(objects.matches("\nkind: ").count() + usize::from(objects.starts_with("kind: ")), 8);

        let mut older = opened.clone();
        older.pull_request.updated_at -= chrono::Duration::minutes(5);
        assert_eq!(handled_event(&intake, &older).await.unwrap().result, "stale: dropped");
        let mut pushed = opened.clone();
        pushed.pull_request.updated_at += chrono::Duration::minutes(1);
        assert_eq!(handled_event(&intake, &pushed).await.unwrap().result, "updated: 8 objects");

        let mut closed = event("closed-merged.json");
        closed.pull_request.updated_at = pushed.pull_request.updated_at + chrono::Duration::minutes(1);
        assert_eq!(handled_event(&intake, &closed).await.unwrap().result, "removed: merged");
        assert!(!out.join("preview-shop-pr-42").exists());
        let mut elsewhere = opened.clone();
        elsewhere.repository.full_name = "someone/else".into();
        assert!(handled_event(&intake, &elsewhere).await.unwrap().result.starts_with("ignored"));

        let text = table(&[created]);
        assert!(text.starts_with("PR ") && text.lines().nth(1).unwrap().starts_with("acme/shop#42  opened"), "{text}");
        let _ = std::fs::remove_dir_all(&out);
    }
}
