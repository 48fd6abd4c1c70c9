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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::Utc;
use kube::Client;
use previewd::consumer::{Consumer, Outcome};
use previewd_testkit::Stack;
use previewd_testkit::fault::{Fault, FaultProxy};
use previewd_webhook::budget::Budget;
use previewd_webhook::ledger::Ledger;
use previewd_webhook::queue::EventQueue;
use previewd_webhook::secrets::SecretSource;
use previewd_webhook::signature::Secrets;
use previewd_webhook::{Delivery, Outcome as Answer, Webhook};
use support::drill::{LEASE, Pr, SECRET, SendKind, Sent, assert_final_state, expected_answers, scenario, test_config};

const DELIVERIES: usize = 2_000;

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

struct Run {
    stack: Stack,
    prs: Vec<Pr>,
    lanes: Vec<Vec<Sent>>,
    accepted: usize,
}

/// Generates the scenario and sends it through the webhook with no reconciler running.
async fn deliveries_during_outage(stack: Stack, seed: u64) -> Run {
    let (prs, lanes) = scenario(seed, DELIVERIES, true);
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
