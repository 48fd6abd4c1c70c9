//! `/preview` commands on a PR, end to end inside the reconciler: the consumer (permission
//! checked with GitHub, the command carried out, the comment acknowledged) against an
//! in-memory Kubernetes API and the GitHub stand-in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use kube::Client;
use kube::api::Api;
use previewd::config::{Config, PolicyMode};
use previewd::consumer::{Consumer, Outcome};
use previewd::crd::{PreviewEnvironment, SelectedBy};
use previewd::github::notify::Notifier;
use previewd::policy::Reason;
use previewd_events::{CommandEvent, Message, PreviewEvent};
use serde_json::json;
use support::github::FakeGitHub;

const NAME: &str = "preview-shop-pr-42";
const HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

struct World {
    github: FakeGitHub,
    kube: Client,
    config: Arc<Config>,
    consumer: Consumer,
    next: std::cell::Cell<u64>,
}

impl World {
    async fn new(mutate: impl FnOnce(&mut Config)) -> World {
        let mut config = support::config();
        mutate(&mut config);
        let github = FakeGitHub::start().await;
        {
            let mut gh = github.lock();
            gh.permissions.insert("maintainer".into(), "write".into());
            gh.permissions.insert("reader".into(), "read".into());
            gh.files = vec![json!({"sha": "x", "filename": "web/src/cart.ts", "status": "modified"})];
            gh.pull = Some(json!({
                "number": 42, "state": "open", "draft": false, "merged": false, "title": "Cart",
                "html_url": "https://github.com/acme/shop/pull/42", "updated_at": (Utc::now() - Duration::minutes(2)).to_rfc3339(),
                "author_association": "CONTRIBUTOR", "user": {"login": "octocat"}, "labels": [],
                "head": {"sha": HEAD, "ref": "feature/cart", "repo": {"full_name": "acme/shop"}},
                "base": {"ref": "main", "repo": {"full_name": "acme/shop"}}
            }));
        }
        let kube = support::fake_cluster().await;
        let config = Arc::new(config);
        let notifier = Arc::new(Notifier::new(Arc::new(github.client()), config.github.clone()));
        let consumer = Consumer::new(support::unused_sqs(), "unused".into(), kube.clone(), Arc::clone(&config))
            .with_github(notifier);
        World { github, kube, config, consumer, next: std::cell::Cell::new(0) }
    }

    async fn preview(&self) -> Option<PreviewEnvironment> {
        Api::<PreviewEnvironment>::all(self.kube.clone()).get_opt(NAME).await.unwrap()
    }

    /// The PR event of the example, as if it had just happened.
    async fn push(&self, labels: &[&str]) -> Outcome {
        let mut e: PreviewEvent = support::event("opened.json");
        self.next.set(self.next.get() + 1);
        e.delivery_id = format!("pr-{}", self.next.get());
        e.pull_request.labels = labels.iter().map(|l| (*l).to_owned()).collect();
        e.pull_request.updated_at = Utc::now() - Duration::seconds(30) + Duration::milliseconds(self.next.get() as i64);
        e.received_at = Utc::now();
        self.consumer.handle_message(&Message::PullRequest(Box::new(e))).await
    }

    /// `author` comments `text` on the PR; returns what happened and the comment's id.
    async fn comment(&self, author: &str, text: &str) -> (Outcome, u64) {
        self.next.set(self.next.get() + 1);
        let id = 5000 + self.next.get();
        let command = CommandEvent {
            delivery_id: format!("command-{id}"),
            received_at: Utc::now(),
            repository: support::event("opened.json").repository,
            installation_id: Some(987654),
            number: 42,
            comment_id: id,
            author: author.to_owned(),
            command: text.to_owned(),
            created_at: Utc::now(),
        };
        (self.consumer.handle_message(&Message::Command(Box::new(command))).await, id)
    }

    fn reaction(&self, comment: u64) -> Option<String> {
        self.github.lock().reactions.iter().find(|(id, _, _)| *id == comment).map(|(_, content, _)| content.clone())
    }

    fn last_reply(&self) -> String {
        self.github.lock().comments_on(42).last().map(|c| c.body.clone()).unwrap_or_default()
    }

    fn replies(&self) -> usize {
        self.github.lock().comments_on(42).len()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        support::assert_github_contract(&self.github);
    }
}

#[tokio::test]
async fn only_writers_can_command_a_preview() {
    let w = World::new(|_| {}).await;
    assert!(matches!(w.push(&[]).await, Outcome::Applied { .. }));
    let before = w.preview().await.unwrap();
    let commands = [
        "/preview destroy",
        "/preview redeploy",
        "/preview extend 3d",
        "/preview services api",
        "/preview",
        "/preview help",
        "/preview nonsense",
    ];
    // A reader, and someone who is not a collaborator at all (GitHub answers 404).
    for author in ["reader", "drive-by"] {
        for text in commands {
            let replies = w.replies();
            let (outcome, id) = w.comment(author, text).await;
            assert!(matches!(outcome, Outcome::Noted { .. }), "{author} {text}: {outcome:?}");
            assert_eq!(w.reaction(id).as_deref(), Some("confused"), "{author} {text}");
            assert_eq!(w.replies(), replies + 1, "one short reply");
            assert!(w.last_reply().contains("only people with write access"), "{}", w.last_reply());
            let after = w.preview().await.expect("the preview is still there");
            assert_eq!(after.spec, before.spec, "{author} {text} changed the preview");
        }
    }
    // The permission was asked of GitHub for each, never taken from the comment.
    assert!(w.github.lock().count("GET", "/collaborators/reader/permission") >= commands.len());
    // A writer's command is carried out.
    let (outcome, id) = w.comment("maintainer", "/preview redeploy").await;
    assert!(matches!(outcome, Outcome::Applied { .. }), "{outcome:?}");
    assert_eq!(w.reaction(id).as_deref(), Some("+1"));
    // Without GitHub nobody can be checked: nothing is done.
    let offline = Consumer::new(support::unused_sqs(), "unused".into(), w.kube.clone(), Arc::clone(&w.config));
    let (before, command) = (w.preview().await.unwrap(), support::event("opened.json").repository);
    let destroy = CommandEvent {
        delivery_id: "offline".into(),
        received_at: Utc::now(),
        repository: command,
        installation_id: Some(987654),
        number: 42,
        comment_id: 1,
        author: "maintainer".into(),
        command: "/preview destroy".into(),
        created_at: Utc::now(),
    };
    assert!(matches!(offline.handle_message(&Message::Command(Box::new(destroy))).await, Outcome::Noted { .. }));
    assert_eq!(w.preview().await.unwrap().spec, before.spec);
}

#[tokio::test]
async fn each_preview_command_does_what_it_says() {
    let w = World::new(|_| {}).await;
    assert!(matches!(w.push(&[]).await, Outcome::Applied { .. }));
    let created = w.preview().await.unwrap();
    assert_eq!(created.spec.services, ["web"], "the change reaches web only");

    // extend: at least that long from now ...
    let (outcome, id) = w.comment("maintainer", "/preview extend 3d").await;
    assert!(matches!(outcome, Outcome::Applied { .. }), "{outcome:?}");
    assert_eq!(w.reaction(id).as_deref(), Some("+1"));
    assert!(w.last_reply().starts_with("Extended until"), "{}", w.last_reply());
    let pe = w.preview().await.unwrap();
    let until = pe.spec.requested.as_ref().and_then(|r| r.extended_until).unwrap();
    assert!((until - (Utc::now() + Duration::days(3))).num_seconds().abs() < 60);
    let created_at = previewd::controller::plan::created_at(&pe, Utc::now());
    assert_eq!(previewd::ttl::expiry(&w.config, &pe.spec, created_at), until, "the expiry follows");
    // ... but never past ttl.max (7 days after creation).
    w.comment("maintainer", "/preview extend 30d").await;
    assert!(w.last_reply().contains("`ttl.max`"), "{}", w.last_reply());
    let pe = w.preview().await.unwrap();
    let until: DateTime<Utc> = pe.spec.requested.as_ref().and_then(|r| r.extended_until).unwrap();
    assert_eq!(until, created_at + Duration::days(7));

    // services: exactly these, and a later push keeps them.
    let (outcome, _) = w.comment("maintainer", "/preview services api, web").await;
    assert!(matches!(outcome, Outcome::Applied { .. }));
    let pe = w.preview().await.unwrap();
    assert_eq!(pe.spec.services, ["web", "api"], "in the configuration's order");
    assert_eq!(pe.spec.selection.as_ref().map(|s| s.by), Some(SelectedBy::Command));
    assert!(matches!(w.push(&[]).await, Outcome::Applied { .. }));
    assert_eq!(w.preview().await.unwrap().spec.services, ["web", "api"]);

    // redeploy: a new value for the charts, so their pods roll and Argo CD syncs again.
    let (outcome, _) = w.comment("maintainer", "/preview redeploy").await;
    assert!(matches!(outcome, Outcome::Applied { .. }));
    let pe = w.preview().await.unwrap();
    let at = pe.spec.requested.as_ref().and_then(|r| r.redeployed_at).unwrap();
    let objects = previewd::render::render(&w.config, &pe).unwrap();
    let app_set = objects.iter().find(|o| o["kind"] == "ApplicationSet").unwrap();
    let values = &app_set["spec"]["generators"][0]["list"]["elements"][0]["values"]["previewd"];
    assert_eq!(values["redeployedAt"], at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));

    // help: a reply, nothing changed.
    let before = w.preview().await.unwrap().spec;
    let (outcome, id) = w.comment("maintainer", "/preview help").await;
    assert!(matches!(outcome, Outcome::Noted { .. }));
    assert_eq!(w.reaction(id).as_deref(), Some("+1"));
    for command in ["/preview extend", "/preview redeploy", "/preview destroy", "/preview services"] {
        assert!(w.last_reply().contains(command), "help lacks {command}");
    }
    assert_eq!(w.preview().await.unwrap().spec, before);

    // Anything else: a polite refusal, nothing done.
    let (outcome, id) = w.comment("maintainer", "/preview deploy-to-prod").await;
    assert!(matches!(outcome, Outcome::Noted { .. }));
    assert_eq!(w.reaction(id).as_deref(), Some("confused"));
    assert!(w.last_reply().contains("Sorry, I don't know `/preview deploy-to-prod`"), "{}", w.last_reply());
    assert_eq!(w.preview().await.unwrap().spec, before);

    // destroy: gone, and the PR is told why.
    let (outcome, _) = w.comment("maintainer", "/preview destroy").await;
    assert_eq!(outcome, Outcome::Removed { name: NAME.into(), reason: Reason::Destroyed });
    assert!(w.preview().await.is_none());
    let (outcome, _) = w.comment("maintainer", "/preview redeploy").await;
    assert!(matches!(outcome, Outcome::Noted { .. }));
    assert!(w.last_reply().contains("no preview"), "{}", w.last_reply());

    // create: the PR as GitHub has it now, asked by the writer.
    let (outcome, id) = w.comment("maintainer", "/preview").await;
    assert_eq!(outcome, Outcome::Applied { name: NAME.into() });
    assert_eq!(w.reaction(id).as_deref(), Some("+1"));
    let pe = w.preview().await.unwrap();
    assert_eq!((pe.spec.head_sha.as_str(), pe.spec.requested.and_then(|r| r.by)), (HEAD, Some("maintainer".into())));
    let (_, id) = w.comment("maintainer", "/preview").await;
    assert_eq!(w.reaction(id).as_deref(), Some("confused"), "it exists already");
}

#[tokio::test]
async fn opt_in_repositories_need_the_label_or_the_command() {
    let w = World::new(|c| c.policy.mode = PolicyMode::OptIn).await;
    // No label: no preview.
    assert_eq!(w.push(&[]).await, Outcome::Removed { name: NAME.into(), reason: Reason::NotOptedIn });
    assert!(w.preview().await.is_none());
    // Someone without write access cannot ask for one.
    let (outcome, _) = w.comment("reader", "/preview").await;
    assert!(matches!(outcome, Outcome::Noted { .. }));
    assert!(w.preview().await.is_none());
    // A writer's `/preview` is a way in, and it holds for later pushes.
    let (outcome, _) = w.comment("maintainer", "/preview").await;
    assert_eq!(outcome, Outcome::Applied { name: NAME.into() });
    assert!(matches!(w.push(&[]).await, Outcome::Applied { .. }));
    assert_eq!(w.preview().await.unwrap().spec.requested.and_then(|r| r.by).as_deref(), Some("maintainer"));
    // The opt-out label still wins over the request.
    assert!(matches!(w.push(&["no-preview"]).await, Outcome::Removed { reason: Reason::OptedOut, .. }));
    assert!(w.preview().await.is_none());
    // The label is the other way in.
    assert!(matches!(w.push(&["preview"]).await, Outcome::Applied { .. }));
    assert!(w.preview().await.unwrap().spec.requested.is_none());
}

/// `/preview` names no commit, and a fork's head can move between the comment and its
/// handling: a writer's command does not approve a fork's code; the label does.
#[tokio::test]
async fn a_command_does_not_approve_a_forks_code() {
    let w = World::new(|_| {}).await;
    if let Some(pull) = w.github.lock().pull.as_mut() {
        pull["head"]["repo"]["full_name"] = json!("outsider/shop");
    }
    let (outcome, id) = w.comment("maintainer", "/preview").await;
    assert_eq!(outcome, Outcome::Removed { name: NAME.into(), reason: Reason::ForkAwaitingLabel });
    assert!(w.preview().await.is_none());
    assert_eq!(w.reaction(id).as_deref(), Some("confused"));
    assert!(w.last_reply().contains("preview-fork"), "{}", w.last_reply());
}
