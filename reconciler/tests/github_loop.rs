//! GitHub in the loop, end to end inside the reconciler: the consumer (changed files, fork
//! opt-in) and the controller (deployment statuses, the sticky comment, "destroyed") against
//! an in-memory Kubernetes API and a local stand-in for the GitHub API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::Api;
use previewd::argo::ApplicationSet;
use previewd::config::Config;
use previewd::consumer::{Consumer, Outcome as Consumed};
use previewd::controller::{Context, Outcome, reconcile_at};
use previewd::crd::{Phase, PreviewEnvironment, SelectedBy};
use previewd::github::comment::MARKER;
use previewd::github::notify::Notifier;
use previewd::github::view;
use previewd::policy::Reason;
use previewd_events::{PrAction, PreviewEvent};
use serde_json::{Value, json};
use support::config;
use support::github::FakeGitHub;

const NAME: &str = "preview-shop-pr-42";

fn changed(paths: &[&str]) -> Vec<Value> {
    paths.iter().map(|p| json!({"sha": "x", "filename": p, "status": "modified"})).collect()
}

struct World {
    github: FakeGitHub,
    kube: Client,
    config: Arc<Config>,
    notifier: Arc<Notifier>,
    consumer: Consumer,
    ctx: Context,
}

impl World {
    async fn new() -> World {
        World::with_config(config()).await
    }

    async fn with_config(config: Config) -> World {
        let github = FakeGitHub::start().await;
        let kube = support::fake_cluster().await;
        let config = Arc::new(config);
        let notifier = Arc::new(Notifier::new(Arc::new(github.client()), config.github.clone()));
        let consumer = Consumer::new(support::unused_sqs(), "unused".into(), kube.clone(), Arc::clone(&config))
            .with_github(Arc::clone(&notifier));
        let ctx = Context::new(kube.clone(), Arc::clone(&config)).with_github(Arc::clone(&notifier));
        World { github, kube, config, notifier, consumer, ctx }
    }

    async fn preview(&self, name: &str) -> Option<PreviewEnvironment> {
        Api::<PreviewEnvironment>::all(self.kube.clone()).get_opt(name).await.unwrap()
    }

    /// A pass over the preview as the API holds it (and the pass after adding the finalizer).
    async fn reconcile(&self, name: &str, now: DateTime<Utc>) -> Outcome {
        previewd::controller::reconcile_named(&self.ctx, name, now).await.unwrap().unwrap()
    }

    /// What Argo CD would report once every service of the preview runs.
    async fn services_healthy(&self, name: &str) {
        let pe = self.preview(name).await.unwrap();
        for service in &pe.spec.services {
            support::healthy_application(&self.kube, name, service, &pe.spec.head_sha).await;
        }
    }

    /// Builds the preview, tells GitHub, lets Argo CD report it healthy, and tells GitHub again.
    async fn deploy_until_ready(&self, name: &str, now: DateTime<Utc>) {
        self.reconcile(name, now).await;
        self.notifier.flush(false).await;
        self.services_healthy(name).await;
        self.reconcile(name, now).await;
        self.notifier.flush(false).await;
    }

    /// What the API server does on `kubectl delete` while the finalizer is there.
    async fn deleting(&self, name: &str, reason: Reason) -> PreviewEnvironment {
        support::deleting(self.preview(name).await.unwrap(), reason.as_str())
    }

    /// POST and PATCH requests GitHub received so far.
    fn writes(&self) -> usize {
        let state = self.github.lock();
        state.count("POST", "/repos/") + state.count("PATCH", "/repos/")
    }
}

/// Every test's exchanges are held to GitHub's published REST description: a request GitHub
/// would refuse, or an answer it would never send, fails the test that made it.
impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let problems = previewd_testkit::github_api::problems(&self.github.lock().exchanges);
        assert!(problems.is_empty(), "GitHub contract:\n{}", problems.join("\n"));
    }
}

/// An example queue message, as if the PR had just been updated.
fn event(name: &str) -> PreviewEvent {
    let mut e = support::event(name);
    e.pull_request.updated_at = Utc::now() - chrono::Duration::minutes(1);
    e.received_at = Utc::now() - chrono::Duration::seconds(50);
    e
}

fn later(mut e: PreviewEvent, seconds: i64, delivery: &str) -> PreviewEvent {
    e.pull_request.updated_at += chrono::Duration::seconds(seconds);
    e.received_at += chrono::Duration::seconds(seconds);
    e.delivery_id = delivery.into();
    e
}

#[tokio::test]
async fn a_preview_shows_on_the_pr_from_opened_to_destroyed() {
    let w = World::new().await;
    w.github.lock().files = changed(&["web/src/cart.ts", "README.md"]);
    let opened = event("opened.json");
    assert_eq!(w.consumer.handle_event(&opened).await, Consumed::Applied { name: NAME.into() });
    let spec = w.preview(NAME).await.unwrap().spec;
    assert_eq!(spec.services, ["web"], "only the service whose files changed");
    let selection = spec.selection.unwrap();
    assert_eq!((selection.by, selection.changed_files), (SelectedBy::Paths, Some(2)));

    let now = Utc::now();
    assert!(matches!(w.reconcile(NAME, now).await, Outcome::Applied { .. }));
    let (report, _) = w.notifier.flush(false).await;
    assert_eq!((report.delivered, report.failed), (1, 0));
    {
        let gh = w.github.lock();
        let [deployment] = &gh.deployments[..] else { panic!("one deployment: {:?}", gh.deployments) };
        assert_eq!(deployment.sha, opened.pull_request.head_sha);
        assert_eq!(deployment.environment, "preview/pr-42");
        assert_eq!(deployment.body["transient_environment"], true);
        assert_eq!(deployment.body["production_environment"], false);
        assert_eq!(gh.status_states(), [["in_progress"]]);
        let comments = gh.comments_on(42);
        assert_eq!(comments.len(), 1);
        assert!(comments[0].body.starts_with(MARKER) && comments[0].body.contains("Preview deploying"));
    }

    w.services_healthy(NAME).await;
    w.reconcile(NAME, now).await;
    w.notifier.flush(false).await;
    {
        let gh = w.github.lock();
        assert_eq!(gh.status_states(), [["in_progress", "success"]]);
        let success = &gh.deployments[0].statuses[1];
        assert_eq!(success["environment_url"], "https://shop-pr-42.preview.example.com");
        let comments = gh.comments_on(42);
        assert_eq!(comments.len(), 1, "edited, not repeated");
        assert!(comments[0].body.contains("Preview ready") && comments[0].body.contains("| web | ✅ ready |"));
    }

    // Nothing changed: reconciling again sends GitHub nothing.
    let writes = w.writes();
    w.reconcile(NAME, now + chrono::Duration::minutes(5)).await;
    w.notifier.flush(true).await;
    assert_eq!(w.writes(), writes);

    // Merged: the finalizer deletes the preview's objects, waits for GitHub, then lets go.
    let deleting = w.deleting(NAME, Reason::Merged).await;
    assert_eq!(
        reconcile_at(&deleting, &w.ctx, now).await.unwrap(),
        Outcome::Finalizing { retry_in: Duration::from_secs(2) }
    );
    assert!(Api::<Namespace>::all(w.kube.clone()).get_opt(NAME).await.unwrap().is_none(), "namespace deleted first");
    assert!(Api::<ApplicationSet>::namespaced(w.kube.clone(), "argocd").get_opt(NAME).await.unwrap().is_none());
    w.notifier.flush(false).await;
    assert_eq!(reconcile_at(&deleting, &w.ctx, now).await.unwrap(), Outcome::Finalized);
    let gh = w.github.lock();
    assert_eq!(gh.status_states(), [["in_progress", "success", "inactive"]]);
    let comments = gh.comments_on(42);
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].body.contains("Preview destroyed") && comments[0].body.contains("merged"),
        "{}",
        comments[0].body
    );
}

#[tokio::test]
async fn a_new_commit_gets_its_own_deployment() {
    let w = World::new().await;
    w.github.lock().files = changed(&["api/handler.go"]);
    let opened = event("opened.json");
    w.consumer.handle_event(&opened).await;
    let now = Utc::now();
    w.reconcile(NAME, now).await;
    w.notifier.flush(false).await;
    let mut pushed = later(opened, 60, "push-2");
    pushed.action = PrAction::Synchronize;
    pushed.pull_request.head_sha = "0123456789abcdef0123456789abcdef01234567".into();
    w.github.lock().files = changed(&["api/handler.go", "worker/jobs.go"]);
    assert_eq!(w.consumer.handle_event(&pushed).await, Consumed::Applied { name: NAME.into() });
    assert_eq!(w.preview(NAME).await.unwrap().spec.services, ["api", "worker"]);
    w.reconcile(NAME, now).await;
    w.notifier.flush(false).await;
    let gh = w.github.lock();
    let shas: Vec<&str> = gh.deployments.iter().map(|d| d.sha.as_str()).collect();
    assert_eq!(shas, [opened_sha(), "0123456789abcdef0123456789abcdef01234567"]);
    assert_eq!(gh.status_states(), [["in_progress"], ["in_progress"]]);
    assert_eq!(gh.comments_on(42).len(), 1);
}

fn opened_sha() -> &'static str {
    "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
}

#[tokio::test]
async fn the_sticky_comment_is_found_again_after_a_restart() {
    let w = World::new().await;
    {
        let mut gh = w.github.lock();
        // 150 comments first (two pages), and a person quoting the marker.
        gh.chatter("acme/shop", 42, 150);
        gh.comments[7].body = format!("{MARKER}\nI can write this too");
        gh.files = changed(&["web/a.ts"]);
    }
    w.consumer.handle_event(&event("opened.json")).await;
    let now = Utc::now();
    w.reconcile(NAME, now).await;
    w.notifier.flush(false).await;
    let ours = {
        let gh = w.github.lock();
        let bot: Vec<_> = gh.comments_on(42).into_iter().filter(|c| c.kind == "Bot").cloned().collect();
        assert_eq!(bot.len(), 1, "the quoted marker is not ours");
        assert_eq!(gh.comments[7].body, format!("{MARKER}\nI can write this too"), "never edited");
        bot[0].id
    };

    // A restarted reconciler knows nothing: it finds the comment and the deployment again.
    let restarted = Arc::new(Notifier::new(Arc::new(w.github.client()), w.config.github.clone()));
    let ctx = Context::new(w.kube.clone(), Arc::clone(&w.config)).with_github(Arc::clone(&restarted));
    w.services_healthy(NAME).await;
    reconcile_at(&w.preview(NAME).await.unwrap(), &ctx, now).await.unwrap();
    let (report, _) = restarted.flush(false).await;
    assert_eq!(report.delivered, 1);
    let gh = w.github.lock();
    let bot: Vec<_> = gh.comments_on(42).into_iter().filter(|c| c.kind == "Bot").collect();
    assert_eq!(bot.len(), 1, "still one comment");
    assert_eq!(bot[0].id, ours);
    assert!(bot[0].body.contains("Preview ready"));
    assert_eq!(gh.deployments.len(), 1, "the head commit's deployment was found, not created again");
    assert_eq!(gh.status_states(), [["in_progress", "success"]]);
    assert_eq!(gh.count("GET", "/issues/42/comments"), 2 + 2, "two pages per process, once each");
}

#[tokio::test]
async fn github_down_never_blocks_cluster_work() {
    let w = World::new().await;
    w.github.lock().outage = Some(502);
    // The files cannot be read: every service deploys.
    assert_eq!(w.consumer.handle_event(&event("opened.json")).await, Consumed::Applied { name: NAME.into() });
    let spec = w.preview(NAME).await.unwrap().spec;
    assert_eq!(spec.services, ["web", "api", "worker"]);
    assert_eq!(spec.selection.unwrap().by, SelectedBy::Fallback);

    let now = Utc::now();
    assert!(matches!(w.reconcile(NAME, now).await, Outcome::Applied { .. }));
    Api::<Namespace>::all(w.kube.clone()).get(NAME).await.unwrap();
    assert_eq!(w.preview(NAME).await.unwrap().status.unwrap().phase, Some(Phase::Deploying));
    let (report, next) = w.notifier.flush(false).await;
    assert_eq!((report.delivered, report.failed), (0, 1));
    assert_eq!(w.notifier.pending(), 1);
    assert!(next.unwrap() > Duration::from_secs(1), "retried after a backoff");

    // Deleted while GitHub is down: the objects go at once; the finalizer waits for GitHub
    // only within the grace period.
    let deleting = w.deleting(NAME, Reason::Closed).await;
    assert!(matches!(reconcile_at(&deleting, &w.ctx, now).await.unwrap(), Outcome::Finalizing { .. }));
    assert!(Api::<Namespace>::all(w.kube.clone()).get_opt(NAME).await.unwrap().is_none());
    let past_grace = now + chrono::Duration::minutes(11);
    assert_eq!(reconcile_at(&deleting, &w.ctx, past_grace).await.unwrap(), Outcome::Finalized);

    // GitHub back: the newest state is delivered once.
    w.github.lock().outage = None;
    let (report, _) = w.notifier.flush(true).await;
    assert_eq!((report.delivered, report.failed), (1, 0));
    assert_eq!(w.notifier.pending(), 0);
    let gh = w.github.lock();
    assert!(gh.deployments.is_empty(), "a preview GitHub never saw is not deployed after the fact");
    assert!(gh.comments_on(42).is_empty(), "nor does a destroyed preview open a comment");
}

#[tokio::test]
async fn rate_limits_delay_updates_without_losing_them() {
    let w = World::new().await;
    w.github.lock().files = changed(&["web/a.ts"]);
    w.consumer.handle_event(&event("opened.json")).await;
    let now = Utc::now();
    w.reconcile(NAME, now).await;
    // A secondary limit (429, retry-after 1): sat out inside the call.
    let secondary = Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header("retry-after", "1")
        .body(Body::from(r#"{"message":"You have exceeded a secondary rate limit"}"#))
        .unwrap();
    w.github.lock().inject.push(("/deployments".into(), secondary));
    let (report, _) = w.notifier.flush(false).await;
    assert_eq!(report.delivered, 1);

    // The primary limit exhausted for 20 minutes: the update waits for the reset, not lost.
    w.services_healthy(NAME).await;
    let exhausted = Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset", (Utc::now().timestamp() + 1200).to_string())
        .body(Body::from(r#"{"message":"API rate limit exceeded"}"#))
        .unwrap();
    w.github.lock().inject.push(("/statuses".into(), exhausted));
    w.reconcile(NAME, now).await;
    let (report, next) = w.notifier.flush(false).await;
    assert_eq!(report.failed, 1);
    assert!(next.unwrap() > Duration::from_secs(1100), "{next:?}");
    assert_eq!(w.notifier.github().remaining_quota(), Some(0));
    assert_eq!(w.notifier.pending(), 1);
}

#[tokio::test]
async fn fork_opt_in_counts_only_from_people_with_write_access() {
    let w = World::new().await;
    {
        let mut gh = w.github.lock();
        gh.files = changed(&["web/a.ts"]);
        gh.permissions.insert("maintainer".into(), "write".into());
        gh.permissions.insert("contributor".into(), "read".into());
    }
    let fork = event("fork-unlabeled.json");
    let name = "preview-shop-pr-78";
    assert_eq!(
        w.consumer.handle_event(&fork).await,
        Consumed::Removed { name: name.into(), reason: Reason::ForkAwaitingLabel }
    );

    // The author labels their own PR: not enough.
    let mut self_labelled = later(fork.clone(), 1, "self-label");
    self_labelled.action = PrAction::Labeled;
    self_labelled.pull_request.labels = vec!["preview-fork".into()];
    self_labelled.label = Some("preview-fork".into());
    self_labelled.sender = "contributor".into();
    assert_eq!(
        w.consumer.handle_event(&self_labelled).await,
        Consumed::Removed { name: name.into(), reason: Reason::ForkLabelUntrusted }
    );
    assert!(w.preview(name).await.is_none(), "no namespace for an untrusted fork");
    w.notifier.flush(false).await;
    {
        let gh = w.github.lock();
        let comments = gh.comments_on(78);
        assert_eq!(comments.len(), 1);
        assert!(comments[0].body.contains("someone with write access"), "{}", comments[0].body);
    }

    // A maintainer adds it: deployed, and the approval is recorded with the commit.
    let mut approved = later(self_labelled, 1, "maintainer-label");
    approved.sender = "maintainer".into();
    assert_eq!(w.consumer.handle_event(&approved).await, Consumed::Applied { name: name.into() });
    let approval = w.preview(name).await.unwrap().spec.fork_approval.unwrap();
    assert_eq!((approval.by.as_str(), approval.sha.as_str()), ("maintainer", approved.pull_request.head_sha.as_str()));

    // GitHub down while a fork label is checked: the message is kept for later (fail closed).
    w.github.lock().outage = Some(503);
    let mut other = later(approved, 1, "other");
    other.pull_request.number = 79;
    assert!(matches!(w.consumer.handle_event(&other).await, Consumed::Failed { .. }));
    assert!(w.preview("preview-shop-pr-79").await.is_none());
}

/// The ApplicationSet's revision: what Argo CD deploys.
async fn deployed_revision(w: &World, name: &str) -> String {
    let set = Api::<ApplicationSet>::namespaced(w.kube.clone(), "argocd").get(name).await.unwrap();
    let value = serde_json::to_value(set).unwrap();
    value["spec"]["template"]["spec"]["source"]["targetRevision"].as_str().unwrap().to_owned()
}

fn push(e: &PreviewEvent, seconds: i64, sha: &str, delivery: &str) -> PreviewEvent {
    let mut pushed = later(e.clone(), seconds, delivery);
    pushed.action = PrAction::Synchronize;
    pushed.label = None;
    pushed.sender = "contributor".into();
    pushed.pull_request.head_sha = sha.into();
    pushed
}

fn labelled_by(e: &PreviewEvent, seconds: i64, who: &str, delivery: &str) -> PreviewEvent {
    let mut labelled = later(e.clone(), seconds, delivery);
    labelled.action = PrAction::Labeled;
    labelled.label = Some("preview-fork".into());
    labelled.pull_request.labels = vec!["preview-fork".into()];
    labelled.sender = who.into();
    labelled
}

#[tokio::test]
async fn a_fork_push_after_approval_waits_for_a_new_approval() {
    let w = World::new().await;
    {
        let mut gh = w.github.lock();
        gh.files = changed(&["web/a.ts"]);
        gh.permissions.insert("maintainer".into(), "write".into());
        gh.permissions.insert("contributor".into(), "read".into());
    }
    let name = "preview-shop-pr-77";
    let (x, y, z) = (
        "de9f2c7fd25e1b3afad3e85a0bd17d9b100db4b3",
        "1111111111111111111111111111111111111111",
        "2222222222222222222222222222222222222222",
    );
    // A maintainer labels the fork at commit x: x deploys.
    let approved = event("fork-labeled.json");
    assert_eq!(approved.pull_request.head_sha, x);
    assert_eq!(w.consumer.handle_event(&approved).await, Consumed::Applied { name: name.into() });
    let now = Utc::now();
    w.reconcile(name, now).await;
    w.services_healthy(name).await;
    w.reconcile(name, now).await;
    w.notifier.flush(false).await;
    assert_eq!(deployed_revision(&w, name).await, x);
    assert_eq!(w.github.lock().status_states(), [["success"]]);

    // The author pushes y: nothing of y runs, the preview keeps x, and the PR says why.
    let checks = w.github.lock().count("GET", "/permission");
    let pushed = push(&approved, 60, y, "push-y");
    assert_eq!(w.consumer.handle_event(&pushed).await, Consumed::Applied { name: name.into() });
    let spec = w.preview(name).await.unwrap().spec;
    assert_eq!((spec.head_sha.as_str(), spec.awaiting_approval.as_ref().map(|a| a.sha.as_str())), (x, Some(y)));
    assert_eq!(spec.fork_approval.as_ref().map(|a| a.sha.as_str()), Some(x));
    w.reconcile(name, now).await;
    w.notifier.flush(false).await;
    assert_eq!(deployed_revision(&w, name).await, x, "the unapproved commit is not deployed");
    assert_eq!(w.github.lock().count("GET", "/permission"), checks, "a push approves nothing: nobody is asked");
    {
        let gh = w.github.lock();
        let shas: Vec<&str> = gh.deployments.iter().map(|d| d.sha.as_str()).collect();
        assert_eq!(shas, [x, y]);
        assert_eq!(gh.status_states(), [vec!["success"], vec!["pending"]]);
        assert!(gh.deployments[1].statuses[0]["description"].as_str().unwrap().contains("approve"));
        let comments = gh.comments_on(77);
        assert_eq!(comments.len(), 1);
        let body = &comments[0].body;
        assert!(body.contains("Commit 1111111 comes from a fork and waits for a maintainer's approval"), "{body}");
        assert!(body.contains("still runs the approved commit de9f2c7"), "{body}");
    }

    // The author (no push access) labels it themselves: still waiting.
    let self_approved = labelled_by(&pushed, 10, "contributor", "self-label");
    assert_eq!(w.consumer.handle_event(&self_approved).await, Consumed::Applied { name: name.into() });
    assert_eq!(w.preview(name).await.unwrap().spec.head_sha, x);

    // The maintainer removes and adds the label again: that approves y, and y deploys.
    let mut unlabelled = later(self_approved, 10, "unlabel");
    unlabelled.action = PrAction::Unlabeled;
    unlabelled.pull_request.labels = vec![];
    unlabelled.sender = "maintainer".into();
    assert_eq!(w.consumer.handle_event(&unlabelled).await, Consumed::Applied { name: name.into() });
    assert_eq!(w.preview(name).await.unwrap().spec.head_sha, x, "removing the label to add it again keeps x");
    let reapproved = labelled_by(&unlabelled, 10, "maintainer", "relabel");
    assert_eq!(w.consumer.handle_event(&reapproved).await, Consumed::Applied { name: name.into() });
    let spec = w.preview(name).await.unwrap().spec;
    assert_eq!((spec.head_sha.as_str(), spec.awaiting_approval), (y, None));
    assert_eq!(spec.fork_approval.map(|a| (a.by, a.sha)), Some(("maintainer".into(), y.into())));
    w.reconcile(name, now).await;
    w.notifier.flush(false).await;
    assert_eq!(deployed_revision(&w, name).await, y);
    let states = w.github.lock().status_states();
    assert_eq!(states[1][0], "pending");
    assert_ne!(states[1].last().map(String::as_str), Some("pending"), "y's own deployment moved on: {states:?}");

    // The preview expires; the label stays on the PR. A later push still waits for approval.
    assert_eq!(w.reconcile(name, now + chrono::Duration::days(8)).await, Outcome::Expired);
    // The finalizer tells GitHub "destroyed", then lets it go.
    w.reconcile(name, now).await;
    w.notifier.flush(false).await;
    assert_eq!(w.reconcile(name, now).await, Outcome::Finalized);
    assert!(w.preview(name).await.is_none(), "expired and deleted");
    let mut after_expiry = push(&reapproved, 60, z, "push-z");
    after_expiry.pull_request.labels = vec!["preview-fork".into()];
    assert_eq!(
        w.consumer.handle_event(&after_expiry).await,
        Consumed::Removed { name: name.into(), reason: Reason::ForkCommitUnapproved }
    );
    assert!(w.preview(name).await.is_none(), "no preview of an unapproved commit");
    w.notifier.flush(false).await;
    let body = w.github.lock().comments_on(77)[0].body.clone();
    assert!(body.contains("no maintainer has approved its latest commit"), "{body}");
    // Approved again: z deploys.
    let approved_z = labelled_by(&after_expiry, 10, "maintainer", "label-z");
    assert_eq!(w.consumer.handle_event(&approved_z).await, Consumed::Applied { name: name.into() });
    assert_eq!(w.preview(name).await.unwrap().spec.head_sha, z);
}

#[tokio::test]
async fn a_label_on_the_pr_approves_no_commit_by_itself() {
    let w = World::new().await;
    {
        let mut gh = w.github.lock();
        gh.files = changed(&["web/a.ts"]);
        gh.permissions.insert("maintainer".into(), "admin".into());
    }
    // An event that carries the label but is not its `labeled` event (here: a push) cannot
    // say which commit the label was added for, so it approves none.
    let mut pushed = event("fork-labeled.json");
    pushed.action = PrAction::Synchronize;
    pushed.label = None;
    pushed.sender = "contributor".into();
    let name = "preview-shop-pr-77";
    assert_eq!(
        w.consumer.handle_event(&pushed).await,
        Consumed::Removed { name: name.into(), reason: Reason::ForkCommitUnapproved }
    );
    assert_eq!(w.github.lock().count("GET", "/permission"), 0);
    // A label added for another fork label name approves nothing either.
    let mut other_label = later(pushed, 1, "other-label");
    other_label.action = PrAction::Labeled;
    other_label.label = Some("do-not-expire".into());
    other_label.sender = "maintainer".into();
    assert_eq!(
        w.consumer.handle_event(&other_label).await,
        Consumed::Removed { name: name.into(), reason: Reason::ForkCommitUnapproved }
    );
}

#[tokio::test]
async fn docs_only_changes_get_no_preview_and_are_told_why() {
    let w = World::new().await;
    w.github.lock().files = changed(&["docs/guide.md", "README.md", ".github/workflows/ci.yml"]);
    let opened = event("opened.json");
    assert_eq!(
        w.consumer.handle_event(&opened).await,
        Consumed::Removed { name: NAME.into(), reason: Reason::NoServicesAffected }
    );
    assert!(w.preview(NAME).await.is_none());
    w.notifier.flush(false).await;
    {
        let gh = w.github.lock();
        assert!(gh.comments_on(42)[0].body.contains("nothing to deploy"));
        assert!(gh.deployments.is_empty());
    }
    // A later commit touches code: now there is a preview, in the same comment.
    w.github.lock().files = changed(&["docs/guide.md", "shared/money.go"]);
    let mut pushed = later(opened, 10, "push");
    pushed.pull_request.head_sha = "2222222222222222222222222222222222222222".into();
    assert_eq!(w.consumer.handle_event(&pushed).await, Consumed::Applied { name: NAME.into() });
    assert_eq!(w.preview(NAME).await.unwrap().spec.services, ["api", "worker"]);
    // Labels change, the commit does not: the files are not read again.
    let files_read = w.github.lock().count("GET", "/files");
    let mut labelled = later(pushed, 10, "label");
    labelled.action = PrAction::Labeled;
    labelled.pull_request.labels.push("do-not-expire".into());
    w.consumer.handle_event(&labelled).await;
    assert_eq!(w.github.lock().count("GET", "/files"), files_read);

    w.reconcile(NAME, Utc::now()).await;
    w.notifier.flush(false).await;
    let gh = w.github.lock();
    let comments = gh.comments_on(42);
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.contains("Preview deploying"));
    assert!(comments[0].body.contains("The `do-not-expire` label keeps it longer"));
}

/// A whole life through every endpoint Previewd calls (changed files, a collaborator's
/// permission, deployments and their statuses, a commit status, the sticky comment, the
/// App's installation tokens), each request and each stand-in answer checked against GitHub's
/// published REST description (`@octokit/openapi`).
#[tokio::test]
async fn every_github_request_matches_the_published_api() {
    let mut config = config();
    config.github.commit_status = true;
    let w = World::with_config(config).await;
    {
        let mut gh = w.github.lock();
        gh.files = changed(&["web/a.ts", "README.md"]);
        gh.permissions.insert("maintainer".into(), "write".into());
    }
    w.consumer.handle_event(&event("opened.json")).await;
    let now = Utc::now();
    w.deploy_until_ready(NAME, now).await;
    // A fork, labelled by a maintainer: their permission is asked.
    let mut labelled = event("fork-labeled.json");
    labelled.sender = "maintainer".into();
    assert!(matches!(w.consumer.handle_event(&labelled).await, Consumed::Applied { .. }));
    // Merged: destroyed.
    let deleting = w.deleting(NAME, Reason::Merged).await;
    reconcile_at(&deleting, &w.ctx, now).await.unwrap();
    w.notifier.flush(false).await;
    reconcile_at(&deleting, &w.ctx, now).await.unwrap();

    let exchanges = w.github.lock().exchanges.clone();
    previewd_testkit::github_api::assert_contract(
        &exchanges,
        &[
            "POST /app/installations/{installation_id}/access_tokens",
            "GET /repos/{owner}/{repo}/pulls/{pull_number}/files",
            "GET /repos/{owner}/{repo}/collaborators/{username}/permission",
            "POST /repos/{owner}/{repo}/deployments",
            "POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
            "POST /repos/{owner}/{repo}/statuses/{sha}",
            "GET /repos/{owner}/{repo}/issues/{issue_number}/comments",
            "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
            "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}",
        ],
    );
}

#[tokio::test]
async fn an_optional_commit_status_follows_the_deployment() {
    let mut config = config();
    config.github.commit_status = true;
    let w = World::with_config(config).await;
    w.github.lock().files = changed(&["web/a.ts"]);
    w.consumer.handle_event(&event("opened.json")).await;
    let now = Utc::now();
    w.deploy_until_ready(NAME, now).await;
    let gh = w.github.lock();
    let states: Vec<(&str, &str, &str)> = gh
        .commit_statuses
        .iter()
        .map(|(sha, s)| (sha.as_str(), s["state"].as_str().unwrap(), s["context"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [(opened_sha(), "pending", "previewd/preview"), (opened_sha(), "success", "previewd/preview")]);
    assert_eq!(gh.commit_statuses[1].1["target_url"], "https://shop-pr-42.preview.example.com");
}

#[test]
fn a_destroyed_update_is_the_same_on_every_retry() {
    let config = config();
    let pe = previewd::render::as_applied(&config, {
        let previewd::policy::Decision::Upsert(spec) = previewd::policy::decide_offline(&event("opened.json"), &config)
        else {
            panic!()
        };
        *spec
    })
    .unwrap();
    let at = "2026-11-27T09:00:00Z".parse().unwrap();
    assert_eq!(view::destroyed(&config, &pe, None, at), view::destroyed(&config, &pe, None, at));
}

/// A monorepo whose services have build roots: web (a Dockerfile over a JS workspace), api and
/// worker (Go modules; api imports a shared module through a `replace`).
fn graph_config(budget: u32) -> Config {
    let resources = "resources: {requests: {cpu: 100m, memory: 128Mi}}";
    let yaml = format!(
        "domain: example.com\ngithub: {{detectionBudget: {budget}}}\nrepositories:\n  - name: acme/shop\n    services:\n\
         \x20     - {{name: web, paths: [\"web/**\"], build: [{{dockerfile: web/Dockerfile}}], chartPath: deploy/web, {resources}}}\n\
         \x20     - {{name: api, paths: [\"api/**\"], build: [{{project: api/go.mod}}], chartPath: deploy/api, {resources}}}\n\
         \x20     - {{name: worker, paths: [\"worker/**\"], build: [{{project: worker/go.mod}}], chartPath: deploy/worker, {resources}}}\n"
    );
    Config::from_yaml(&yaml).unwrap()
}

fn graph_tree() -> Vec<(String, String)> {
    [
        ("package.json", r#"{"private": true, "workspaces": ["web", "shared/ui"]}"#),
        ("web/Dockerfile", "FROM node:22\nCOPY . .\nRUN npm ci\n"),
        ("web/package.json", r#"{"name": "web", "dependencies": {"@shop/ui": "*"}}"#),
        ("web/src/app.tsx", "export const App = 1;\n"),
        ("web/README.md", "# web\n"),
        ("shared/ui/package.json", r#"{"name": "@shop/ui"}"#),
        ("shared/ui/button.tsx", "export const Button = 1;\n"),
        ("api/go.mod", "module shop/api\n\nreplace shop/lib => ../shared/go\n"),
        ("api/main.go", "package main\n\nimport \"shop/lib/money\"\n\nfunc main() { _ = money.Zero }\n"),
        ("shared/go/go.mod", "module shop/lib\n"),
        ("shared/go/money/money.go", "package money\n\nconst Zero = 0\n"),
        ("worker/go.mod", "module shop/worker\n"),
        ("worker/main.go", "package main\n\nfunc main() {}\n"),
    ]
    .into_iter()
    .map(|(p, t)| (p.to_owned(), t.to_owned()))
    .collect()
}

/// A world whose GitHub holds `graph_tree()` at the example PR's head commit and says the PR
/// changed `files`; returns it with that PR's `opened` event.
async fn graph_world(config: Config, files: &[&str]) -> (World, PreviewEvent) {
    let w = World::with_config(config).await;
    let opened = event("opened.json");
    {
        let mut github = w.github.lock();
        github.trees.insert(opened.pull_request.head_sha.clone(), graph_tree());
        github.files = changed(files);
    }
    (w, opened)
}

#[tokio::test]
async fn the_build_graph_chooses_services_from_githubs_tree_and_blobs() {
    // The globs would take web (its README) and miss api (a shared module it imports).
    let (w, opened) = graph_world(graph_config(300), &["shared/go/money/money.go", "web/README.md"]).await;
    assert_eq!(w.consumer.handle_event(&opened).await, Consumed::Applied { name: NAME.into() });
    let spec = w.preview(NAME).await.unwrap().spec;
    assert_eq!(spec.services, ["api"]);
    let selection = spec.selection.unwrap();
    assert_eq!(selection.by, SelectedBy::Graph, "{selection:?}");
    assert_eq!(selection.reasons["api"], ["shared/go/money/money.go -> Go package shared/go/money imported by api"]);
    let blobs = w.github.lock().count("GET", "/git/blobs/");
    assert!(blobs > 0 && blobs < graph_tree().len(), "only the build files are read: {blobs}");

    // Another PR at the same commit: one tree listing, every blob from the cache.
    let mut other = later(event("opened.json"), 5, "other-delivery");
    other.pull_request.number = 43;
    w.github.lock().files = changed(&["shared/ui/button.tsx"]);
    let outcome = w.consumer.handle_event(&other).await;
    assert!(matches!(outcome, Consumed::Applied { .. }), "{outcome:?}");
    let spec = w.preview("preview-shop-pr-43").await.unwrap().spec;
    assert_eq!(spec.services, ["web"]);
    assert_eq!(
        spec.selection.unwrap().reasons["web"],
        ["shared/ui/button.tsx -> workspace package @shop/ui, a dependency of web"]
    );
    assert_eq!(w.github.lock().count("GET", "/git/blobs/"), blobs, "no blob read twice");
    assert_eq!(w.github.lock().count("GET", "/git/trees/"), 2);

    // The PR comment says why each service runs.
    w.deploy_until_ready(NAME, Utc::now()).await;
    let comment = w.github.lock().comments_on(42)[0].body.clone();
    assert!(
        comment
            .contains("| api | ✅ ready | `shared/go/money/money.go` → Go package shared/go/money imported by api |"),
        "{comment}"
    );
}

#[tokio::test]
async fn a_file_the_pr_deletes_is_placed_by_the_base_commits_graph() {
    let w = World::with_config(graph_config(300)).await;
    let opened = event("opened.json");
    let base_sha = "b".repeat(40);
    {
        let mut github = w.github.lock();
        github.trees.insert(opened.pull_request.head_sha.clone(), graph_tree());
        let mut base = graph_tree();
        base.push(("shared/go/money/round.go".into(), "package money\n".into()));
        github.trees.insert(base_sha.clone(), base);
        github.pull = Some(
            json!({"number": 42, "base": {"sha": base_sha, "ref": "main"}, "head": {"sha": opened.pull_request.head_sha}}),
        );
        github.files = vec![json!({"sha": "x", "filename": "shared/go/money/round.go", "status": "removed"})];
    }
    assert_eq!(w.consumer.handle_event(&opened).await, Consumed::Applied { name: NAME.into() });
    let spec = w.preview(NAME).await.unwrap().spec;
    assert_eq!(spec.services, ["api"], "{:?}", spec.selection);
    let selection = spec.selection.unwrap();
    assert_eq!(selection.reasons["api"], ["shared/go/money/round.go -> Go package shared/go/money imported by api"]);
    assert_eq!(w.github.lock().count("GET", "/git/trees/"), 2, "head and base listed once each");
}

#[tokio::test]
async fn an_exhausted_detection_budget_falls_back_to_the_globs() {
    let (w, opened) = graph_world(graph_config(3), &["shared/go/money/money.go", "web/README.md"]).await;
    assert_eq!(w.consumer.handle_event(&opened).await, Consumed::Applied { name: NAME.into() });
    let spec = w.preview(NAME).await.unwrap().spec;
    assert_eq!(spec.services, ["web"], "the globs decided");
    let selection = spec.selection.unwrap();
    assert_eq!(selection.by, SelectedBy::Paths);
    assert!(selection.note.as_deref().is_some_and(|n| n.contains("budget of 3")), "{selection:?}");
    assert!(w.github.lock().count("GET", "/git/") <= 3, "the budget holds");

    // GitHub cannot list the tree (404): the globs decide too.
    let w = World::with_config(graph_config(300)).await;
    w.github.lock().files = changed(&["api/main.go"]);
    assert_eq!(w.consumer.handle_event(&event("opened.json")).await, Consumed::Applied { name: NAME.into() });
    let spec = w.preview(NAME).await.unwrap().spec;
    assert_eq!(spec.services, ["api"]);
    assert!(spec.selection.unwrap().note.is_some_and(|n| n.contains("build graph unavailable")));

    // Without globs to fall back on, every service deploys (and the next event tries again).
    let mut config = graph_config(300);
    for service in &mut config.repositories[0].services {
        service.paths = previewd::config::types::Globs::new(&[]).unwrap();
    }
    let w = World::with_config(config).await;
    w.github.lock().files = changed(&["api/main.go"]);
    assert_eq!(w.consumer.handle_event(&event("opened.json")).await, Consumed::Applied { name: NAME.into() });
    let spec = w.preview(NAME).await.unwrap().spec;
    assert_eq!(spec.services, ["web", "api", "worker"]);
    assert_eq!(spec.selection.unwrap().by, SelectedBy::Fallback);
}

#[tokio::test]
async fn unchanged_services_are_deployed_for_the_whole_app() {
    let mut config = graph_config(300);
    config.repositories[0].unchanged_services = previewd::config::UnchangedServices::Deploy;
    let (w, opened) = graph_world(config, &["shared/go/money/money.go"]).await;
    assert_eq!(w.consumer.handle_event(&opened).await, Consumed::Applied { name: NAME.into() });
    let spec = w.preview(NAME).await.unwrap().spec;
    assert_eq!(spec.services, ["web", "api", "worker"], "the whole app");
    assert_eq!(spec.selection.as_ref().unwrap().changed, ["api"], "and what the change reached");

    w.deploy_until_ready(NAME, Utc::now()).await;
    let comment = w.github.lock().comments_on(42)[0].body.clone();
    assert!(comment.contains("| api | ✅ ready | `shared/go/money/money.go` → Go package"), "{comment}");
    assert!(comment.contains("| web | ✅ ready | unchanged by this PR: deployed for the whole app |"), "{comment}");
}
