//! Outage survival: 2,000 signed deliveries (opened / synchronize / labeled / closed /
//! reopened sequences over many PRs, forks among them, with duplicates, redeliveries and
//! out-of-order arrivals) go through the real webhook handler into the queue (the local AWS
//! emulator) while no reconciler runs. Then the reconciler starts, once cleanly and once
//! killed mid-way and started again, and every PR must end exactly as its newest event says:
//! nothing lost, nothing enqueued twice, per-PR order kept, no namespace for an unapproved fork.
//! Some webhook invocations die between the claim and the enqueue (killed while SendMessage is
//! in flight, so they neither enqueue nor release); their redeliveries inside the claim's lease
//! are told to come back (409), and the ones after it are accepted, or stale if superseded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::Api;
use previewd::config::Config;
use previewd::consumer::{Consumer, Outcome};
use previewd::controller::{Context, reconcile_named};
use previewd::crd::PreviewEnvironment;
use previewd_testkit::Stack;
use previewd_testkit::fault::{Fault, FaultProxy};
use previewd_webhook::budget::Budget;
use previewd_webhook::ledger::Ledger;
use previewd_webhook::queue::EventQueue;
use previewd_webhook::secrets::SecretSource;
use previewd_webhook::signature::{Secrets, sign};
use previewd_webhook::{Delivery, Outcome as Answer, Webhook};
use serde_json::{Value, json};

const SECRET: &str = "outage-secret";
const DELIVERIES: usize = 2_000;
/// Concurrent senders; each PR's deliveries stay in one lane, in their generated order.
const LANES: usize = 8;
const REPOS: [&str; 2] = ["acme/shop", "acme/very-long-repository-name-for-the-platform-team-services"];

/// A deterministic generator (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One event GitHub sends: its delivery id, signed body and what it says.
#[derive(Debug, Clone)]
struct Sent {
    pr: (usize, u64),
    id: String,
    body: Vec<u8>,
    signature: String,
    updated_at: DateTime<Utc>,
    action: &'static str,
    head_sha: String,
    labels: Vec<String>,
    kind: SendKind,
}

/// How a send is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendKind {
    Normal,
    /// The invocation dies once its SendMessage is in flight: no answer, claim left pending.
    Dies,
    /// A redelivery after the claim's lease ran out (the webhook's clock moved past it).
    AfterLease,
}

/// The claim lease in the drill: longer than the whole run, so every redelivery of a died
/// delivery made on the real clock lands inside it; `AfterLease` sends move past it.
const LEASE: i64 = 3_600;

#[derive(Debug, Clone)]
struct Pr {
    repo: usize,
    number: u64,
    fork: bool,
    /// Every distinct event, oldest first.
    events: Vec<Sent>,
}

fn payload(
    pr: &Pr,
    action: &'static str,
    at: DateTime<Utc>,
    sha: &str,
    labels: &[String],
    label: Option<&str>,
) -> Value {
    let repo = REPOS[pr.repo];
    let (owner, name) = repo.split_once('/').unwrap();
    let head_repo = if pr.fork { format!("outsider/{name}") } else { repo.to_owned() };
    let mut payload = json!({
        "action": action,
        "number": pr.number,
        "pull_request": {
            "number": pr.number,
            "state": if action == "closed" { "closed" } else { "open" },
            "draft": false,
            "merged": false,
            "title": format!("Change {}", pr.number),
            "html_url": format!("https://github.com/{repo}/pull/{}", pr.number),
            "updated_at": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "author_association": if pr.fork { "NONE" } else { "MEMBER" },
            "user": {"login": if pr.fork { "outsider" } else { "octocat" }},
            "labels": labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
            "head": {"sha": sha, "ref": format!("change-{}", pr.number), "repo": {"full_name": head_repo}},
            "base": {"ref": "main", "repo": {"full_name": repo}}
        },
        "repository": {"id": 1000 + pr.repo, "full_name": repo, "name": name, "owner": {"login": owner}},
        "installation": {"id": 77},
        "sender": {"login": if pr.fork { "outsider" } else { "octocat" }}
    });
    if let Some(label) = label {
        payload["label"] = json!({"name": label});
    }
    payload
}

/// Builds PRs whose event sequences, duplicates included, add up to `DELIVERIES` deliveries.
fn scenario(seed: u64) -> (Vec<Pr>, Vec<Vec<Sent>>) {
    // Scrambled: nearby seeds would start xorshift on nearby sequences.
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let start = Utc::now() - chrono::Duration::hours(2);
    let mut prs: Vec<Pr> = Vec::new();
    let mut total = 0;
    while total < DELIVERIES {
        let number = prs.len() as u64 + 1;
        let mut pr = Pr { repo: (number % 2) as usize, number, fork: rng.chance(20), events: Vec::new() };
        let mut at = start + chrono::Duration::seconds(rng.below(600) as i64);
        let mut labels: Vec<String> = Vec::new();
        let mut sha = format!("{:040x}", rng.next() as u128 * 7919);
        let mut push =
            |pr: &mut Pr, rng: &mut Rng, action: &'static str, labels: &[String], sha: &str, label: Option<&str>| {
                at += chrono::Duration::seconds(1 + rng.below(30) as i64);
                let body = payload(pr, action, at, sha, labels, label).to_string().into_bytes();
                pr.events.push(Sent {
                    pr: (pr.repo, pr.number),
                    id: format!(
                        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                        rng.next() as u32,
                        number,
                        pr.events.len(),
                        rng.below(4096),
                        rng.next() >> 16
                    ),
                    signature: sign(SECRET.as_bytes(), &body),
                    body,
                    updated_at: at,
                    action,
                    head_sha: sha.to_owned(),
                    labels: labels.to_vec(),
                    kind: SendKind::Normal,
                });
            };
        push(&mut pr, &mut rng, "opened", &labels, &sha, None);
        for _ in 0..rng.below(8) {
            sha = format!("{:040x}", rng.next() as u128 * 104_729);
            push(&mut pr, &mut rng, "synchronize", &labels, &sha, None);
        }
        if rng.chance(30) {
            let label = if pr.fork { "preview-fork" } else { "do-not-expire" };
            labels.push(label.to_owned());
            push(&mut pr, &mut rng, "labeled", &labels, &sha, Some(label));
        }
        if rng.chance(40) {
            push(&mut pr, &mut rng, "closed", &labels, &sha, None);
            if rng.chance(25) {
                push(&mut pr, &mut rng, "reopened", &labels, &sha, None);
            }
        }
        // Each PR's sends are its events plus a quarter again in redeliveries (below).
        total += pr.events.len() + pr.events.len() / 4;
        prs.push(pr);
    }
    let mut lanes: Vec<Vec<Sent>> = vec![Vec::new(); LANES];
    for pr in &prs {
        let lane = &mut lanes[pr.number as usize % LANES];
        let mut sends: Vec<Sent> = pr.events.clone();
        // Out of order: a newer event overtakes the one before it.
        for i in 1..sends.len() {
            if rng.chance(8) {
                sends.swap(i - 1, i);
            }
        }
        // Redeliveries (same id and body), some right away, some after newer events.
        for _ in 0..sends.len() / 4 {
            let i = rng.below(sends.len() as u64) as usize;
            let again = sends[i].clone();
            let at = i + 1 + rng.below((sends.len() - i) as u64) as usize;
            sends.insert(at.min(sends.len()), again);
        }
        // Deaths between claim and enqueue, each followed by a redelivery inside the lease
        // (right away, as a manual redelivery would be) and one after it (later).
        let mut i = 0;
        while i < sends.len() {
            let first = !sends[..i].iter().any(|s| s.id == sends[i].id);
            if first && rng.chance(4) {
                sends[i].kind = SendKind::Dies;
                let mut inside = sends[i].clone();
                inside.kind = SendKind::Normal;
                sends.insert(i + 1, inside);
                let mut after = sends[i].clone();
                after.kind = SendKind::AfterLease;
                let at = i + 2 + rng.below((sends.len() - i - 1) as u64) as usize;
                sends.insert(at.min(sends.len()), after);
                i += 1;
            }
            i += 1;
        }
        lane.extend(sends);
    }
    (prs, lanes)
}

/// What the webhook must answer, per delivery (`None`: the invocation died), and so which
/// events reach the queue. Only an accepted delivery raises its PR's order mark; a died one
/// leaves a live claim, which answers 409 until its lease is over.
fn expected_answers(lane: &[Sent]) -> Vec<Option<Answer>> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut pending: HashSet<&str> = HashSet::new();
    let mut mark: HashMap<(usize, u64), DateTime<Utc>> = HashMap::new();
    lane.iter()
        .map(|sent| {
            if seen.contains(sent.id.as_str()) {
                return Some(Answer::Duplicate);
            }
            if sent.kind != SendKind::AfterLease && pending.contains(sent.id.as_str()) {
                return Some(Answer::InProgress);
            }
            if mark.get(&sent.pr).is_some_and(|m| sent.updated_at < *m) {
                return Some(Answer::Stale);
            }
            if sent.kind == SendKind::Dies {
                pending.insert(&sent.id);
                return None;
            }
            pending.remove(sent.id.as_str());
            seen.insert(&sent.id);
            mark.insert(sent.pr, sent.updated_at);
            Some(Answer::Accepted)
        })
        .collect()
}

fn webhook(stack: &Stack, sqs: aws_sdk_sqs::Client) -> Webhook {
    let env = [
        ("PREVIEWD_WEBHOOK_SECRET", SECRET.to_owned()),
        ("PREVIEWD_QUEUE_URL", stack.queue_url.clone()),
        ("PREVIEWD_TABLE_NAME", stack.table.clone()),
        ("PREVIEWD_CLAIM_LEASE_SECONDS", LEASE.to_string()),
        // The burst is far over any per-minute limit: this test is about outages.
        ("PREVIEWD_RATE_LIMIT_PER_MINUTE", "0".to_owned()),
    ];
    let config = previewd_webhook::config::Config::from_lookup(|k| {
        env.iter().find(|(name, _)| *name == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    let ledger = Ledger::new(stack.ddb.clone(), stack.table.clone(), config.claim_lease, config.dedupe_retention);
    let secrets = SecretSource::Static(Arc::new(Secrets::parse(SECRET).unwrap()));
    // moto's FIFO queue slows as it grows (seconds per call with a thousand messages queued and
    // the other outage test beside it): the stages get room here; the deployed budget is
    // tested in functions/webhook (template.rs, faults.rs).
    let room = Duration::from_secs(30);
    let budget = Budget { ledger: room, enqueue: room, settle: room, ..Budget::LAMBDA };
    Webhook::new(config, secrets, ledger, EventQueue::new(sqs, stack.queue_url.clone())).with_budget(budget)
}

fn delivery(sent: &Sent) -> Delivery<'_> {
    Delivery {
        event: Some("pull_request"),
        delivery_id: Some(&sent.id),
        signature: Some(&sent.signature),
        content_type: Some("application/json"),
        body: &sent.body,
    }
}

/// One send, as its kind says; `None` when the invocation was killed mid-enqueue.
async fn send(webhook: &Arc<Webhook>, proxy: &FaultProxy, sent: &Sent) -> Option<Answer> {
    let reply = match sent.kind {
        SendKind::Normal => webhook.handle(&delivery(sent)).await,
        SendKind::AfterLease => {
            let later = Utc::now() + chrono::Duration::seconds(LEASE + 60);
            webhook.process(&delivery(sent), later).await.0
        }
        SendKind::Dies => {
            proxy.fail("SendMessage", Some(&sent.id), Fault::Hang);
            let (webhook, owned) = (Arc::clone(webhook), sent.clone());
            let mut invocation = tokio::spawn(async move { webhook.handle(&delivery(&owned)).await });
            let died = loop {
                tokio::select! {
                    reply = &mut invocation => break Err(reply.unwrap()),
                    () = tokio::time::sleep(Duration::from_millis(10)) => {
                        if proxy.saw("SendMessage", &sent.id) {
                            invocation.abort();
                            break Ok(());
                        }
                    }
                }
            };
            proxy.heal_matching(&sent.id);
            match died {
                Ok(()) => return None,
                // It never got as far as the enqueue (a duplicate, or stale).
                Err(reply) => reply,
            }
        }
    };
    assert!(reply.status() < 500, "{reply:?}");
    Some(reply.outcome)
}

/// Sends every lane concurrently (each lane in order); returns the answers per lane. The
/// webhook's SQS client goes through a proxy, where an invocation can be caught mid-enqueue.
async fn deliver(stack: &Stack, lanes: &[Vec<Sent>]) -> Vec<Vec<Option<Answer>>> {
    let upstream = stack.sdk.endpoint_url().unwrap_or_default().to_owned();
    let proxy = FaultProxy::start(&upstream).await;
    let sqs = aws_sdk_sqs::Client::new(&previewd_testkit::sdk_config(&proxy.endpoint).await);
    let webhook = Arc::new(webhook(stack, sqs));
    let tasks: Vec<_> = lanes
        .iter()
        .cloned()
        .map(|lane| {
            let (webhook, proxy) = (Arc::clone(&webhook), proxy.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for sent in &lane {
                    answers.push(send(&webhook, &proxy, sent).await);
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

fn test_config() -> Arc<Config> {
    let mut config = support::config();
    config.argocd.application_sets_per_minute = 100_000;
    Arc::new(config)
}

fn consumer(stack: &Stack, kube: &Client) -> Consumer {
    let mut consumer = Consumer::new(stack.sqs.clone(), stack.queue_url.clone(), kube.clone(), test_config());
    consumer.wait_seconds = 0;
    consumer
}

/// Polls until the queue is empty (nothing visible, nothing in flight); returns every outcome.
async fn work_off(consumer: &Consumer, stack: &Stack) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let (mut polls, mut empty, mut failed) = (0, 0, 0);
    loop {
        // As `previewd run` does: a failed receive (the emulator dropping a connection under
        // this load; the test clients make one attempt) is retried, and loses nothing, since
        // the messages stay on the queue.
        let batch = match consumer.poll_once().await {
            Ok(batch) => {
                failed = 0;
                batch
            }
            Err(err) => {
                failed += 1;
                assert!(failed < 20, "the queue stayed unreachable: {err}");
                println!("receive failed ({err}); retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        polls += 1;
        if batch.is_empty() {
            empty += 1;
            if stack.queued(&stack.queue_url).await == (0, 0) {
                println!("{polls} polls, {empty} empty");
                return outcomes;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        outcomes.extend(batch);
    }
}

/// Every PR ends as its newest event says; forks (no trusted label without GitHub) never get
/// a preview or a namespace.
async fn assert_final_state(prs: &[Pr], kube: &Client, lanes: &[Vec<Sent>]) {
    let api: Api<PreviewEnvironment> = Api::all(kube.clone());
    let config = test_config();
    let ctx = Context::new(kube.clone(), Arc::clone(&config));
    let mut live = 0;
    for pr in prs {
        let newest = pr.events.iter().max_by_key(|e| e.updated_at).unwrap();
        let slug = config.repository(REPOS[pr.repo]).unwrap().slug();
        let name = previewd::names::preview_name(&config.namespace_prefix, &slug, pr.number);
        let pe = api.get_opt(&name).await.unwrap();
        let wants_preview = newest.action != "closed" && !pr.fork;
        match (&pe, wants_preview) {
            (Some(pe), true) => {
                assert_eq!(pe.spec.head_sha, newest.head_sha, "{name}: newest head");
                assert_eq!(pe.spec.labels, newest.labels, "{name}: newest labels");
                assert_eq!(pe.spec.last_event.delivery_id, newest.id, "{name}: applied from the newest event");
                // The controller builds it: the namespace exists.
                reconcile_named(&ctx, &name, Utc::now()).await.unwrap();
                assert!(Api::<Namespace>::all(kube.clone()).get_opt(&name).await.unwrap().is_some(), "{name}");
                live += 1;
            }
            (None, false) => {
                assert!(Api::<Namespace>::all(kube.clone()).get_opt(&name).await.unwrap().is_none(), "{name}");
            }
            (pe, _) => panic!(
                "{name} (fork: {}, newest: {} at {}): expected preview {wants_preview}, found {:?}; sends: {:?}",
                pr.fork,
                newest.action,
                newest.updated_at,
                pe.as_ref().map(|p| &p.spec.last_event),
                lanes
                    .iter()
                    .flatten()
                    .filter(|s| s.pr == (pr.repo, pr.number))
                    .map(|s| (s.action, s.updated_at, &s.id))
                    .collect::<Vec<_>>()
            ),
        }
    }
    assert!(live > 20, "the scenario leaves previews running ({live})");
}

struct Run {
    stack: Stack,
    prs: Vec<Pr>,
    lanes: Vec<Vec<Sent>>,
    accepted: usize,
}

/// Generates the scenario and sends it through the webhook with no reconciler running.
async fn deliveries_during_outage(stack: Stack, seed: u64) -> Run {
    let (prs, lanes) = scenario(seed);
    let sent: usize = lanes.iter().map(Vec::len).sum();
    assert!(sent >= DELIVERIES, "{sent} deliveries");
    let started = std::time::Instant::now();
    let answers = deliver(&stack, &lanes).await;
    println!("delivered in {:?}", started.elapsed());
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for (lane, answers) in lanes.iter().zip(&answers) {
        assert_eq!(answers, &expected_answers(lane), "each answer is what the ledger and the order mark imply");
        for a in answers {
            *tally.entry(a.map_or("died", |a| a.as_str())).or_default() += 1;
        }
    }
    let accepted = tally.get("accepted").copied().unwrap_or(0);
    let count = |name: &str| tally.get(name).copied().unwrap_or(0);
    assert!(count("duplicate") > 100 && count("stale") > 20, "{tally:?}");
    assert!(count("died") > 20 && count("in_progress") >= count("died"), "deaths and their redeliveries: {tally:?}");
    println!("{sent} deliveries over {} PRs: {tally:?}", prs.len());
    assert_eq!(
        stack.queued(&stack.queue_url).await,
        (accepted as i64, 0),
        "every accepted delivery waits on the queue"
    );
    Run { stack, prs, lanes, accepted }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_during_an_outage_are_all_applied_once_in_order() {
    let run = deliveries_during_outage(Stack::new("outage").await, 0x5eed_0001).await;
    let kube = support::fake_cluster().await;
    let started = std::time::Instant::now();
    let outcomes = work_off(&consumer(&run.stack, &kube), &run.stack).await;
    println!("worked off in {:?}", started.elapsed());

    // Each queued message was handled exactly once: one outcome each, none failed.
    assert_eq!(outcomes.len(), run.accepted, "one outcome per queued message");
    let mut by_label: BTreeMap<&str, usize> = BTreeMap::new();
    for o in &outcomes {
        *by_label.entry(o.label()).or_default() += 1;
    }
    assert!(!by_label.contains_key("failed") && !by_label.contains_key("malformed"), "{by_label:?}");
    println!("consumer outcomes: {by_label:?}");
    assert_eq!(run.stack.queued(&run.stack.dlq_url).await, (0, 0), "nothing dead-lettered");
    let started = std::time::Instant::now();
    assert_final_state(&run.prs, &kube, &run.lanes).await;
    println!("checked in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciler_killed_mid_way_loses_nothing() {
    // An emulator of its own: the two outage tests then run side by side, not in turn.
    let emulator = previewd_testkit::PrivateEmulator::start().await;
    let run = deliveries_during_outage(Stack::new_at(&emulator.endpoint, "killed").await, 0x5eed_0002).await;
    // In-flight messages of the killed process come back after the visibility timeout.
    run.stack
        .sqs
        .set_queue_attributes()
        .queue_url(&run.stack.queue_url)
        .attributes(QueueAttributeName::VisibilityTimeout, "2")
        .send()
        .await
        .unwrap();
    let kube = support::fake_cluster().await;

    let mut first = consumer(&run.stack, &kube);
    // Its heartbeat keeps what it holds invisible for 2 s at a time; once it is killed, that
    // comes back after 2 s.
    first.visibility = Duration::from_secs(2);
    let worker = tokio::spawn(async move {
        loop {
            // A receive or delete can fail here (a receipt outlives its 2 s lease): the process
            // goes on, as `previewd run` does, and the messages come back.
            if let Err(err) = first.poll_once().await {
                println!("first consumer: {err}");
            }
        }
    });
    // Killed once about a third of the queue is gone, wherever it is (mid-batch, between the
    // cluster write and the delete).
    let target = run.accepted as i64 * 2 / 3;
    loop {
        let (visible, in_flight) = run.stack.queued(&run.stack.queue_url).await;
        if visible + in_flight <= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.abort();
    let _ = worker.await;
    let (visible, in_flight) = run.stack.queued(&run.stack.queue_url).await;
    assert!(visible + in_flight > 0, "killed with work left");
    println!("killed with {visible} visible and {in_flight} in-flight messages");

    let outcomes = work_off(&consumer(&run.stack, &kube), &run.stack).await;
    assert!(outcomes.iter().all(|o| !matches!(o, Outcome::Failed { .. } | Outcome::Malformed { .. })), "{outcomes:?}");
    assert_eq!(run.stack.queued(&run.stack.dlq_url).await, (0, 0), "nothing dead-lettered");
    assert_final_state(&run.prs, &kube, &run.lanes).await;
}
