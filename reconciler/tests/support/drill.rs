//! The outage drills' scenario, shared by the AWS front's (`outage.rs`) and the in-cluster
//! front's (`front.rs`): signed deliveries (opened / synchronize / labeled / closed / reopened
//! sequences over many PRs, forks among them, with duplicates, redeliveries, out-of-order
//! arrivals and, optionally, invocations that die between the claim and the enqueue), what the
//! webhook must answer to each, and the state every PR must end in.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::Api;
use previewd::config::Config;
use previewd::controller::{Context, reconcile_named};
use previewd::crd::PreviewEnvironment;
use previewd_webhook::Outcome as Answer;
use previewd_webhook::signature::sign;
use serde_json::{Value, json};

pub const SECRET: &str = "outage-secret";
/// Concurrent senders; each PR's deliveries stay in one lane, in their generated order.
pub const LANES: usize = 8;
pub const REPOS: [&str; 2] = ["acme/shop", "acme/very-long-repository-name-for-the-platform-team-services"];

/// A deterministic generator (xorshift64*), so a failure reproduces.
pub struct Rng(u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One event GitHub sends: its delivery id, signed body and what it says.
#[derive(Debug, Clone)]
pub struct Sent {
    pub pr: (usize, u64),
    pub id: String,
    pub body: Vec<u8>,
    pub signature: String,
    pub updated_at: DateTime<Utc>,
    pub action: &'static str,
    pub head_sha: String,
    pub labels: Vec<String>,
    pub kind: SendKind,
}

/// How a send is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    Normal,
    /// The invocation dies once its SendMessage is in flight: no answer, claim left pending.
    Dies,
    /// A redelivery after the claim's lease ran out (the webhook's clock moved past it).
    AfterLease,
}

/// The claim lease in the drill: longer than the whole run, so every redelivery of a died
/// delivery made on the real clock lands inside it; `AfterLease` sends move past it.
pub const LEASE: i64 = 3_600;

#[derive(Debug, Clone)]
pub struct Pr {
    pub repo: usize,
    pub number: u64,
    pub fork: bool,
    /// Every distinct event, oldest first.
    pub events: Vec<Sent>,
}

pub fn payload(
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
/// PRs whose sends add up to at least `deliveries`; `deaths`: some invocations die mid-enqueue.
pub fn scenario(seed: u64, deliveries: usize, deaths: bool) -> (Vec<Pr>, Vec<Vec<Sent>>) {
    // Scrambled: nearby seeds would start xorshift on nearby sequences.
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let start = Utc::now() - chrono::Duration::hours(2);
    let mut prs: Vec<Pr> = Vec::new();
    let mut total = 0;
    while total < deliveries {
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
            if deaths && first && rng.chance(4) {
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
pub fn expected_answers(lane: &[Sent]) -> Vec<Option<Answer>> {
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

pub fn test_config() -> Arc<Config> {
    let mut config = super::config();
    config.argocd.application_sets_per_minute = 100_000;
    Arc::new(config)
}

/// Every PR ends as its newest event says; forks (no trusted label without GitHub) never get
/// a preview or a namespace.
pub async fn assert_final_state(prs: &[Pr], kube: &Client, lanes: &[Vec<Sent>]) {
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
