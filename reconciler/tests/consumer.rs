//! The queue consumer against the local SQS emulator (real AWS SDK) and an in-memory
//! Kubernetes API (kube-memory).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use chrono::Duration;
use kube::Client;
use kube::api::Api;
use previewd::config::Config;
use previewd::consumer::{Consumer, Outcome};
use previewd::crd::PreviewEnvironment;
use previewd::policy::Reason;
use previewd_events::{PrAction, PrState, PreviewEvent};
use previewd_testkit::Stack;
use support::{event, root};

async fn kube(fail_patches: bool) -> Client {
    let api = support::memory_api();
    if fail_patches {
        api.fail(|r| r.verb == "patch", 500, usize::MAX);
    }
    support::client_of(&api)
}

struct Setup {
    stack: Stack,
    kube: Client,
    consumer: Consumer,
    config: Arc<Config>,
}

async fn setup(name: &str, fail_patches: bool) -> Setup {
    let stack = Stack::new(name).await;
    let kube = kube(fail_patches).await;
    let config = Arc::new(Config::load(&root().join("docs/examples/config.yaml")).unwrap());
    let mut consumer = Consumer::new(stack.sqs.clone(), stack.queue_url.clone(), kube.clone(), Arc::clone(&config));
    consumer.wait_seconds = 0;
    Setup { stack, kube, consumer, config }
}

impl Setup {
    async fn send(&self, event: &PreviewEvent) {
        self.stack.send_event(event).await;
    }

    async fn poll(&self) -> Vec<Outcome> {
        self.consumer.poll_once().await.unwrap()
    }

    async fn preview(&self, name: &str) -> Option<PreviewEnvironment> {
        Api::<PreviewEnvironment>::all(self.kube.clone()).get_opt(name).await.unwrap()
    }

    async fn queued(&self, url: &str) -> (i64, i64) {
        self.stack.queued(url).await
    }
}

fn later(mut event: PreviewEvent, minutes: i64, delivery: &str) -> PreviewEvent {
    event.pull_request.updated_at += Duration::minutes(minutes);
    event.received_at += Duration::minutes(minutes);
    event.delivery_id = delivery.to_owned();
    event
}

const NAME: &str = "preview-shop-pr-42";

#[tokio::test]
async fn create_update_and_delete_follow_the_pr() {
    let s = setup("lifecycle", false).await;
    let opened = event("opened.json");
    s.send(&opened).await;
    assert_eq!(s.poll().await, vec![Outcome::Applied { name: NAME.into() }]);
    assert_eq!(s.preview(NAME).await.unwrap().spec.head_sha, opened.pull_request.head_sha);
    assert_eq!(s.queued(&s.stack.queue_url).await, (0, 0), "deleted after the cluster write");

    let mut pushed = later(opened.clone(), 5, "d-sync");
    pushed.action = PrAction::Synchronize;
    pushed.pull_request.head_sha = "1111111111111111111111111111111111111111".into();
    s.send(&pushed).await;
    assert_eq!(s.poll().await, vec![Outcome::Applied { name: NAME.into() }]);
    let pe = s.preview(NAME).await.unwrap();
    assert_eq!(pe.spec.head_sha, pushed.pull_request.head_sha);
    assert_eq!(pe.spec.last_event.delivery_id, "d-sync");

    let mut closed = later(pushed, 5, "d-closed");
    closed.action = PrAction::Closed;
    closed.pull_request.state = PrState::Closed;
    s.send(&closed).await;
    assert_eq!(s.poll().await, vec![Outcome::Removed { name: NAME.into(), reason: Reason::Closed }]);
    assert!(s.preview(NAME).await.is_none());
}

#[tokio::test]
async fn stale_and_duplicate_events_do_not_win() {
    let s = setup("stale", false).await;
    let opened = event("opened.json");
    let newer = later(opened.clone(), 10, "d-newer");
    s.send(&newer).await;
    s.poll().await;
    // The older event arrives late (e.g. redelivered after an outage).
    s.send(&opened).await;
    assert_eq!(s.poll().await, vec![Outcome::Stale]);
    assert_eq!(s.preview(NAME).await.unwrap().spec.last_event.delivery_id, "d-newer");
    assert_eq!(s.queued(&s.stack.queue_url).await, (0, 0), "stale messages are deleted too");
    // The same event again (SQS redelivers at least once) is applied idempotently.
    let mut again = newer.clone();
    again.delivery_id = "d-newer-redelivered".into();
    s.send(&again).await;
    assert_eq!(s.poll().await, vec![Outcome::Applied { name: NAME.into() }]);
    assert_eq!(s.preview(NAME).await.unwrap().spec.head_sha, newer.pull_request.head_sha);
}

#[tokio::test]
async fn a_burst_of_pushes_collapses_to_the_newest_head() {
    let s = setup("burst", false).await;
    let opened = event("opened.json");
    let mut shas = Vec::new();
    for i in 1..=4 {
        let mut push = later(opened.clone(), i, &format!("d-push-{i}"));
        push.action = PrAction::Synchronize;
        push.pull_request.head_sha = format!("{i}").repeat(40);
        shas.push(push.pull_request.head_sha.clone());
        s.send(&push).await;
    }
    let outcomes = s.poll().await;
    assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Superseded).count(), 3, "{outcomes:?}");
    assert_eq!(outcomes.last(), Some(&Outcome::Applied { name: NAME.into() }));
    assert_eq!(&s.preview(NAME).await.unwrap().spec.head_sha, shas.last().unwrap());
    assert_eq!(s.queued(&s.stack.queue_url).await, (0, 0));
}

#[tokio::test]
async fn fork_draft_and_label_policy() {
    let s = setup("policy", false).await;
    let stranger = event("fork-unlabeled.json");
    s.send(&stranger).await;
    assert_eq!(
        s.poll().await,
        vec![Outcome::Removed { name: "preview-shop-pr-78".into(), reason: Reason::ForkAwaitingLabel }]
    );
    assert!(s.preview("preview-shop-pr-78").await.is_none());

    let mut labelled = later(stranger.clone(), 1, "d-label");
    labelled.action = PrAction::Labeled;
    labelled.pull_request.labels = vec!["preview-fork".into()];
    labelled.label = Some("preview-fork".into());
    s.send(&labelled).await;
    // Without GitHub credentials nobody can tell who added the label: fail closed. (Who may
    // opt a fork in is tested with a GitHub stand-in in tests/github_loop.rs.)
    assert_eq!(
        s.poll().await,
        vec![Outcome::Removed { name: "preview-shop-pr-78".into(), reason: Reason::ForkLabelUntrusted }]
    );
    assert!(s.preview("preview-shop-pr-78").await.is_none());

    let mut draft = later(labelled, 1, "d-draft");
    draft.action = PrAction::ConvertedToDraft;
    draft.pull_request.draft = true;
    s.send(&draft).await;
    assert_eq!(s.poll().await, vec![Outcome::Removed { name: "preview-shop-pr-78".into(), reason: Reason::Draft }]);
    assert!(s.preview("preview-shop-pr-78").await.is_none());

    let mut elsewhere = event("opened.json");
    elsewhere.repository.full_name = "someone/else".into();
    s.send(&elsewhere).await;
    assert_eq!(s.poll().await, vec![Outcome::Ignored { reason: Reason::RepositoryNotConfigured }]);
}

#[tokio::test]
async fn a_failed_cluster_write_keeps_the_message() {
    let s = setup("kube-down", true).await;
    s.send(&event("opened.json")).await;
    let outcomes = s.poll().await;
    assert!(matches!(&outcomes[..], [Outcome::Failed { error }] if error.contains("injected 500")), "{outcomes:?}");
    assert_eq!(s.queued(&s.stack.queue_url).await, (0, 1), "in flight, back after the visibility timeout");
}

#[tokio::test]
async fn malformed_messages_end_in_the_dead_letter_queue() {
    let s = setup("malformed", false).await;
    s.stack
        .sqs
        .send_message()
        .queue_url(&s.stack.queue_url)
        .message_body("{\"version\": 1, \"delivery_id\": 7}")
        .message_group_id("garbage")
        .message_deduplication_id("garbage-1")
        .send()
        .await
        .unwrap();
    // maxReceiveCount is 5: the sixth receive moves it to the DLQ.
    for _ in 0..5 {
        assert!(matches!(&s.poll().await[..], [Outcome::Malformed { .. }]));
    }
    assert!(s.poll().await.is_empty());
    assert_eq!(s.queued(&s.stack.dlq_url).await.0, 1);
}

/// `previewd consume` with KUBECONFIG: the binary works the queue off into a cluster (the
/// in-memory API served over HTTP), reconciles each preview once, and exits.
#[tokio::test]
async fn consume_applies_the_queue_to_the_cluster_in_kubeconfig_and_exits() {
    let stack = Stack::new("consume").await;
    let kube = support::fake_cluster().await;
    let dir = std::env::temp_dir().join(format!("previewd-consume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = support::serve_over_http(kube.clone(), &dir).await;

    let mut opened = event("opened.json");
    opened.pull_request.updated_at = chrono::Utc::now();
    opened.received_at = chrono::Utc::now();
    let mut other = later(opened.clone(), 0, "other-pr");
    other.pull_request.number = 43;
    let mut merged = later(other.clone(), 1, "other-merged");
    merged.action = PrAction::Closed;
    merged.pull_request.state = PrState::Closed;
    merged.pull_request.merged = true;
    for e in [&opened, &other, &merged] {
        stack.send_event(e).await;
    }
    let endpoint = previewd_testkit::endpoint();
    let (queue_url, config) = (stack.queue_url.clone(), root().join("docs/examples/config.yaml"));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_previewd"))
            .args(["consume", "--config", config.to_str().unwrap()])
            .env("KUBECONFIG", kubeconfig)
            .env("PREVIEWD_QUEUE_URL", queue_url)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("3 events handled; previews written to the cluster in KUBECONFIG"), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("acme/shop#42")).unwrap();
    assert!(
        line.contains("applied: preview-shop-pr-42") && line.contains("https://shop-pr-42.preview.example.com"),
        "{line}"
    );
    assert!(line.contains('$'), "the reconcile wrote the cost: {line}");
    assert!(stdout.lines().any(|l| l.starts_with("acme/shop#43") && l.contains("removed: merged")), "{stdout}");
    // The cluster holds what the table says, and the queue is empty.
    let pe = Api::<PreviewEnvironment>::all(kube.clone()).get(NAME).await.unwrap();
    assert!(pe.status.unwrap().cost_estimate.is_some());
    assert!(Api::<PreviewEnvironment>::all(kube).get_opt("preview-shop-pr-43").await.unwrap().is_none());
    assert_eq!(stack.queued(&stack.queue_url).await, (0, 0));
}

#[tokio::test]
async fn a_maintainers_approval_in_a_burst_is_not_superseded() {
    let mut s = setup("approval-burst", false).await;
    let github = support::github::FakeGitHub::start().await;
    {
        let mut gh = github.lock();
        gh.files = vec![serde_json::json!({"filename": "web/a.ts", "status": "modified"})];
        gh.permissions.insert("maintainer".into(), "write".into());
    }
    let notifier =
        Arc::new(previewd::github::notify::Notifier::new(Arc::new(github.client()), s.config.github.clone()));
    s.consumer = s.consumer.clone().with_github(notifier);
    // The maintainer labels commit x, then the author pushes y: both in one receive.
    let approved = event("fork-labeled.json");
    let mut pushed = later(approved.clone(), 1, "d-push");
    pushed.action = PrAction::Synchronize;
    pushed.label = None;
    pushed.sender = "contributor".into();
    pushed.pull_request.head_sha = "1111111111111111111111111111111111111111".into();
    s.send(&approved).await;
    s.send(&pushed).await;
    let name = "preview-shop-pr-77";
    assert_eq!(s.poll().await, vec![Outcome::Applied { name: name.into() }, Outcome::Applied { name: name.into() }]);
    let spec = s.preview(name).await.unwrap().spec;
    assert_eq!(spec.head_sha, approved.pull_request.head_sha, "x, approved, runs");
    assert_eq!(spec.awaiting_approval.map(|a| a.sha), Some(pushed.pull_request.head_sha), "y waits");
    assert_eq!(s.queued(&s.stack.queue_url).await, (0, 0));
}

/// Receives until `polls` receives returned something, waiting for delayed messages to come
/// back in between; returns every outcome.
async fn poll_received(s: &Setup, polls: usize) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut received = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while received < polls {
        assert!(std::time::Instant::now() < deadline, "only {received} receives returned a message: {outcomes:?}");
        let batch = s.poll().await;
        if batch.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        received += 1;
        outcomes.extend(batch);
    }
    outcomes
}

fn quick_backoff(consumer: &mut Consumer) {
    consumer.backoff = previewd::consumer::Backoff {
        first: std::time::Duration::from_secs(1),
        max: std::time::Duration::from_secs(1),
    };
}

#[tokio::test]
async fn a_newer_schema_version_is_returned_not_dead_lettered() {
    let mut s = setup("newer-version", false).await;
    quick_backoff(&mut s.consumer);
    let mut newer = serde_json::to_value(event("opened.json")).unwrap();
    newer["version"] = serde_json::json!(previewd_events::CONTRACT_VERSION + 1);
    let group = event("opened.json").message_group_id();
    s.stack
        .sqs
        .send_message()
        .queue_url(&s.stack.queue_url)
        .message_body(newer.to_string())
        .message_group_id(&group)
        .message_deduplication_id("from-a-newer-front")
        .send()
        .await
        .unwrap();
    // Twice the queue's maxReceiveCount (5): a malformed message would be in the DLQ by now.
    let outcomes = poll_received(&s, 10).await;
    assert_eq!(outcomes.len(), 10, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::NewerVersion { .. })), "{outcomes:?}");
    assert_eq!(s.queued(&s.stack.dlq_url).await, (0, 0), "nothing dead-lettered");
    assert_eq!(s.queued(&s.stack.queue_url).await.0 + s.queued(&s.stack.queue_url).await.1, 1, "still queued, once");
    // It is the same message for whoever can read it: its body is unchanged.
    let mut reader = s.stack.sqs.receive_message().queue_url(&s.stack.queue_url).wait_time_seconds(3);
    reader = reader.max_number_of_messages(10);
    let bodies: Vec<String> =
        reader.send().await.unwrap().messages.unwrap_or_default().into_iter().filter_map(|m| m.body).collect();
    assert_eq!(
        bodies.iter().map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap()).collect::<Vec<_>>(),
        vec![newer]
    );
}

#[tokio::test]
async fn an_event_for_a_preview_being_deleted_waits_instead_of_dead_lettering() {
    let mut s = setup("teardown-wait", false).await;
    quick_backoff(&mut s.consumer);
    let opened = event("opened.json");
    s.send(&opened).await;
    assert_eq!(s.poll().await, vec![Outcome::Applied { name: NAME.into() }]);
    // The controller's finalizer holds the preview while its teardown runs.
    let api = Api::<PreviewEnvironment>::all(s.kube.clone());
    let finalizer = serde_json::json!({"metadata": {"finalizers": ["preview.previewd.io/cleanup"]}});
    api.patch(NAME, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&finalizer)).await.unwrap();
    api.delete(NAME, &Default::default()).await.unwrap();
    assert!(s.preview(NAME).await.unwrap().metadata.deletion_timestamp.is_some());

    let mut reopened = later(opened, 5, "d-reopened");
    reopened.action = PrAction::Reopened;
    s.send(&reopened).await;
    let outcomes = poll_received(&s, 8).await;
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Waiting { .. })), "{outcomes:?}");
    assert_eq!(s.queued(&s.stack.dlq_url).await, (0, 0), "never dead-lettered while the teardown runs");

    // The teardown ends: the event that waited builds the new preview.
    let none = serde_json::json!({"metadata": {"finalizers": null}});
    api.patch(NAME, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&none)).await.unwrap();
    assert!(s.preview(NAME).await.is_none());
    assert_eq!(poll_received(&s, 1).await, vec![Outcome::Applied { name: NAME.into() }]);
    let pe = s.preview(NAME).await.unwrap();
    assert_eq!(pe.spec.last_event.delivery_id, "d-reopened");
    assert_eq!(s.queued(&s.stack.queue_url).await, (0, 0));
}

#[tokio::test]
async fn a_slow_event_keeps_its_message_invisible() {
    let s = setup("slow-github", false).await;
    let github = support::github::FakeGitHub::start().await;
    {
        let mut gh = github.lock();
        gh.files = vec![serde_json::json!({"filename": "web/a.ts", "status": "modified"})];
        // Each event reads its PR's files: slower than the messages' visibility timeout.
        gh.latency = std::time::Duration::from_millis(5000);
    }
    let notifier =
        Arc::new(previewd::github::notify::Notifier::new(Arc::new(github.client()), s.config.github.clone()));
    let mut consumer = s.consumer.clone().with_github(notifier);
    consumer.visibility = std::time::Duration::from_secs(2); // renewed every ~0.7 s: room for a slow emulator under CI load
    let prs = [42_u64, 43, 44];
    for (i, number) in prs.iter().enumerate() {
        let mut e = event("opened.json");
        e.pull_request.number = *number;
        e.delivery_id = format!("d-{i}");
        s.send(&e).await;
    }
    // Two replicas' consumers poll side by side until all three are handled, then on for a
    // while: long enough for a message whose visibility lapsed to be handed out again.
    let handled = std::sync::atomic::AtomicUsize::new(0);
    let run = |consumer: Consumer| {
        let handled = &handled;
        async move {
            let mut outcomes = Vec::new();
            let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
            let mut all_done: Option<std::time::Instant> = None;
            while std::time::Instant::now() < give_up
                && all_done.is_none_or(|at| at.elapsed() < std::time::Duration::from_secs(4))
            {
                let batch = consumer.poll_once().await.unwrap();
                handled.fetch_add(batch.len(), std::sync::atomic::Ordering::SeqCst);
                if batch.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                outcomes.extend(batch);
                if all_done.is_none() && handled.load(std::sync::atomic::Ordering::SeqCst) >= prs.len() {
                    all_done = Some(std::time::Instant::now());
                }
            }
            outcomes
        }
    };
    let (a, b) = tokio::join!(run(consumer.clone()), run(consumer.clone()));
    let mut applied: Vec<String> = a
        .iter()
        .chain(&b)
        .map(|o| match o {
            Outcome::Applied { name } => name.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    applied.sort();
    assert_eq!(applied, ["preview-shop-pr-42", "preview-shop-pr-43", "preview-shop-pr-44"], "each handled once");
    assert_eq!(github.lock().count("GET", "/files"), 3, "each event read its files once");
    assert_eq!(s.queued(&s.stack.queue_url).await, (0, 0));
}
