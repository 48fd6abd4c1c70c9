//! The build gate end to end: signed `pull_request` and check deliveries through the real
//! webhook front (its ledger and queue in the local AWS emulator), the consumer reading the
//! queue, the GitHub stand-in answering the reads, and the controller building what the
//! preview deploys in an in-memory Kubernetes API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use kube::Client;
use kube::api::Api;
use previewd::argo::ApplicationSet;
use previewd::config::{BuildGate, Config};
use previewd::consumer::{Consumer, Outcome};
use previewd::controller::{Context, reconcile_named};
use previewd::crd::{Phase, PreviewEnvironment};
use previewd::github::notify::Notifier;
use previewd_testkit::Stack;
use previewd_webhook::signature::sign;
use previewd_webhook::{Delivery, Outcome as Answer, Webhook};
use serde_json::{Value, json};
use support::github::FakeGitHub;

const SECRET: &str = "gate-secret";
const NAME: &str = "preview-shop-pr-42";
const CHECK: &str = "build-images";

struct World {
    stack: Stack,
    front: Webhook,
    github: FakeGitHub,
    kube: Client,
    consumer: Consumer,
    ctx: Context,
    notifier: Arc<Notifier>,
    deliveries: std::cell::Cell<u32>,
}

fn sha(n: u8) -> String {
    format!("{n:x}").repeat(40)
}

fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn repository() -> Value {
    json!({"id": 1296269, "full_name": "acme/shop", "name": "shop", "owner": {"login": "acme"}})
}

impl World {
    async fn new() -> World {
        let stack = Stack::new("build-gate").await;
        let front = support::front(&stack, SECRET);

        let mut config: Config = support::config();
        config.repositories[0].build_gate =
            Some(BuildGate { checks: vec![CHECK.into()], timeout: std::time::Duration::from_secs(1800) });
        let config = Arc::new(config);
        let github = FakeGitHub::start().await;
        github.lock().files = vec![json!({"sha": "x", "filename": "web/src/cart.ts", "status": "modified"})];
        let kube = support::fake_cluster().await;
        let notifier = Arc::new(Notifier::new(Arc::new(github.client()), config.github.clone()));
        let mut consumer = Consumer::new(stack.sqs.clone(), stack.queue_url.clone(), kube.clone(), Arc::clone(&config))
            .with_github(Arc::clone(&notifier));
        consumer.wait_seconds = 0;
        let ctx = Context::new(kube.clone(), Arc::clone(&config)).with_github(Arc::clone(&notifier));
        World { stack, front, github, kube, consumer, ctx, notifier, deliveries: std::cell::Cell::new(0) }
    }

    /// Signs and delivers a payload through the front; it must be accepted.
    async fn deliver(&self, event: &str, payload: &Value) {
        self.deliveries.set(self.deliveries.get() + 1);
        let id = format!("{}-{:04}-{}", Utc::now().timestamp_millis(), self.deliveries.get(), event);
        let body = payload.to_string().into_bytes();
        let signature = sign(SECRET.as_bytes(), &body);
        let delivery = Delivery {
            event: Some(event),
            delivery_id: Some(&id),
            signature: Some(&signature),
            content_type: Some("application/json"),
            body: &body,
        };
        let reply = Box::pin(self.front.handle(&delivery)).await;
        assert_eq!(reply.outcome, Answer::Accepted, "{event}: {reply:?}");
    }

    async fn push(&self, action: &str, head: &str, minutes: i64) {
        let updated = Utc::now() - Duration::minutes(30) + Duration::minutes(minutes);
        let payload = json!({
            "action": action,
            "pull_request": {
                "number": 42, "state": "open", "draft": false, "merged": false, "title": "Cart",
                "html_url": "https://github.com/acme/shop/pull/42", "updated_at": at(updated),
                "author_association": "MEMBER", "user": {"login": "octocat"}, "labels": [],
                "head": {"sha": head, "ref": "feature/cart", "repo": {"full_name": "acme/shop"}},
                "base": {"ref": "main", "repo": {"full_name": "acme/shop"}}
            },
            "repository": repository(), "installation": {"id": 987654}, "sender": {"login": "octocat"}
        });
        self.deliver("pull_request", &payload).await;
    }

    async fn check_run(&self, head: &str, conclusion: &str) {
        let payload = json!({
            "action": "completed",
            "check_run": {"head_sha": head, "name": CHECK, "status": "completed", "conclusion": conclusion,
                          "completed_at": at(Utc::now()), "pull_requests": [{"number": 42}]},
            "repository": repository(), "installation": {"id": 987654}
        });
        self.deliver("check_run", &payload).await;
    }

    /// Receives what the front put on the queue and handles it.
    async fn consume(&self) -> Vec<Outcome> {
        let outcomes = Box::pin(self.consumer.poll_once()).await.unwrap();
        assert!(!outcomes.is_empty(), "nothing on the queue");
        outcomes
    }

    async fn preview(&self) -> PreviewEnvironment {
        Api::<PreviewEnvironment>::all(self.kube.clone()).get(NAME).await.unwrap()
    }

    /// One controller pass, then what the ApplicationSet deploys: (revision, services).
    async fn deployed(&self) -> (String, Vec<String>) {
        Box::pin(reconcile_named(&self.ctx, NAME, Utc::now())).await.unwrap();
        let set = Api::<ApplicationSet>::namespaced(self.kube.clone(), "argocd").get(NAME).await.unwrap();
        let value = serde_json::to_value(set).unwrap();
        let revision = value["spec"]["template"]["spec"]["source"]["targetRevision"].as_str().unwrap().to_owned();
        let elements = value["spec"]["generators"][0]["list"]["elements"].as_array().unwrap();
        (revision, elements.iter().map(|e| e["service"].as_str().unwrap().to_owned()).collect())
    }

    /// The sticky comment, as the notifier last wrote it.
    async fn comment(&self) -> String {
        self.notifier.flush(true).await;
        self.github.lock().comments_on(42).last().map(|c| c.body.clone()).unwrap_or_default()
    }
}

#[tokio::test]
async fn a_commit_waits_for_its_build_then_deploys() {
    let w = Box::pin(World::new()).await;
    let (a, b, c) = (sha(10), sha(11), sha(12));

    // A new PR: its first commit waits; nothing is deployed, and the PR says what for.
    w.push("opened", &a, 0).await;
    assert_eq!(w.consume().await, vec![Outcome::Applied { name: NAME.into() }]);
    let pe = w.preview().await;
    assert_eq!(
        (pe.spec.head_sha.as_str(), pe.spec.awaiting_build.as_ref().map(|b| b.sha.as_str())),
        ("", Some(a.as_str()))
    );
    assert_eq!(w.deployed().await, (String::new(), vec![]), "no Application before the build");
    let status = w.preview().await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Pending));
    assert!(status.conditions.iter().any(|c| c.reason == "WaitingForBuild" && c.message.contains(CHECK)));
    assert!(w.comment().await.contains(&format!("waits for its build (`{CHECK}`); nothing is deployed yet")));
    // The gate read the commit's checks from GitHub once when the wait began.
    assert_eq!(w.github.lock().count("GET", &format!("/commits/{a}/check-runs")), 1);

    // Its check run succeeds (a check_run delivery through the front): it deploys.
    w.check_run(&a, "success").await;
    assert_eq!(w.consume().await, vec![Outcome::Applied { name: NAME.into() }]);
    assert_eq!(w.deployed().await, (a.clone(), vec!["web".to_owned()]));

    // A push waits while the last good commit keeps serving.
    w.push("synchronize", &b, 1).await;
    assert_eq!(w.consume().await, vec![Outcome::Applied { name: NAME.into() }]);
    assert_eq!(w.deployed().await.0, a, "still the last good commit");
    assert!(w.comment().await.contains(&format!("the preview still runs {}", &a[..7])));
    // Its build fails: it will not deploy, and the PR says so.
    w.check_run(&b, "failure").await;
    w.consume().await;
    assert_eq!(w.deployed().await.0, a);
    let failed = w.preview().await.spec.awaiting_build.and_then(|b| b.failed);
    assert_eq!(failed.as_deref(), Some("check `build-images` failed"));
    let comment = w.comment().await;
    assert!(comment.contains("will not deploy: check `build-images` failed"), "{comment}");
    // A check of another name changes nothing; a re-run that passes deploys it.
    let mut other = json!({"action": "completed", "repository": repository(),
        "check_run": {"head_sha": b, "name": "lint", "status": "completed", "conclusion": "success",
                      "completed_at": at(Utc::now()), "pull_requests": [{"number": 42}]}});
    w.deliver("check_run", &other).await;
    assert!(matches!(w.consume().await[..], [Outcome::Noted { .. }]));
    w.check_run(&b, "success").await;
    w.consume().await;
    assert_eq!(w.deployed().await.0, b);

    // A commit whose build finished before its push arrived deploys at once (read from GitHub).
    w.github.lock().check_runs.insert(c.clone(), vec![(CHECK.into(), "completed".into(), Some("success".into()))]);
    w.push("synchronize", &c, 2).await;
    w.consume().await;
    assert_eq!(w.deployed().await.0, c);

    // A missed check event: the resync reads GitHub and deploys the commit.
    let d = sha(13);
    w.push("synchronize", &d, 3).await;
    w.consume().await;
    assert_eq!(w.deployed().await.0, c);
    w.github.lock().check_runs.insert(d.clone(), vec![(CHECK.into(), "completed".into(), Some("success".into()))]);
    assert_eq!(w.consumer.resync_build_gates().await, Ok(1));
    assert_eq!(w.deployed().await.0, d);

    // A commit status of that name counts as well (statuses name no PR: every preview of the
    // repository waiting for the commit is found).
    let e = sha(14);
    w.push("synchronize", &e, 4).await;
    w.consume().await;
    other = json!({"sha": e, "context": CHECK, "state": "success", "updated_at": at(Utc::now()), "repository": repository()});
    w.deliver("status", &other).await;
    w.consume().await;
    assert_eq!(w.deployed().await.0, e);
    assert_eq!(w.stack.queued(&w.stack.queue_url).await, (0, 0));
    support::assert_github_contract(&w.github);
}
