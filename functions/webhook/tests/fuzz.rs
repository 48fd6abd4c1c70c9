//! Mutation fuzzing of the two decoders that face untrusted bytes, seeded from GitHub's
//! published example payloads (`@octokit/webhooks-examples`) and the contract's example
//! messages: signature verification + body decoding + payload parsing, and the queue-message
//! decoder. `PREVIEWD_FUZZ_CASES` sets the number of inputs per target (default 10,000; the
//! coverage-guided cargo-fuzz targets in `fuzz/` run the same checks for millions).
//! A failing input is written to `target/fuzz-failures/` and its seed named.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/oracle.rs"]
mod oracle;
mod support;

use chrono::Utc;
use oracle::{Framing, check_delivery, check_queue_message, fuzz_config, fuzz_secrets};
use previewd_testkit::mutate::{Rng, mutate};
use serde_json::Value;

fn cases() -> usize {
    std::env::var("PREVIEWD_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

/// Every `pull_request` example GitHub publishes, then other events' examples (up to 400);
/// returns the corpus and how many of it are `pull_request` payloads.
fn webhook_corpus() -> (Vec<Vec<u8>>, usize) {
    let path =
        support::workspace_root().join("infra/npm/node_modules/@octokit/webhooks-examples/api.github.com/index.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e}. Install the test payloads with infra/setup.sh (or `make test`).", path.display())
    });
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    let examples = |pr: bool| {
        all.iter()
            .filter(move |entry| (entry["name"] == "pull_request") == pr)
            .flat_map(|entry| entry["examples"].as_array().cloned().unwrap_or_default())
            .map(|example| serde_json::to_vec(&example).unwrap())
    };
    let mut corpus: Vec<Vec<u8>> = examples(true).collect();
    let pull_requests = corpus.len();
    corpus.extend(examples(false).take(400));
    assert!(pull_requests > 20 && corpus.len() > 100, "{pull_requests} / {} examples", corpus.len());
    (corpus, pull_requests)
}

fn queue_corpus() -> Vec<Vec<u8>> {
    let dir = support::workspace_root().join("docs/examples/events");
    let corpus: Vec<Vec<u8>> =
        std::fs::read_dir(&dir).unwrap().map(|entry| std::fs::read(entry.unwrap().path()).unwrap()).collect();
    assert!(corpus.len() >= 5);
    corpus
}

fn fail(target: &str, seed: u64, input: &[u8], error: &str) -> ! {
    let dir = support::workspace_root().join("target/fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{target}-{seed}.bin"));
    std::fs::write(&path, input).unwrap();
    panic!("{target}: seed {seed}: {error} (input saved to {})", path.display());
}

#[test]
fn signed_and_forged_deliveries_never_panic_and_get_only_2xx_or_4xx() {
    let (config, secrets, now) = (fuzz_config(), fuzz_secrets(), Utc::now());
    let (corpus, pull_requests) = webhook_corpus();
    let mut enqueued = 0;
    for seed in 1..=cases() as u64 {
        let mut rng = Rng::new(seed);
        let pick = if rng.chance(80) { rng.below(pull_requests) } else { rng.below(corpus.len()) };
        let original = &corpus[pick];
        let body = if rng.chance(3) { original.clone() } else { mutate(original, &corpus, &mut rng) };
        let framing = Framing {
            encoding: if rng.chance(70) { 0 } else { rng.below(3) as u8 },
            event: if rng.chance(90) { 0 } else { rng.below(3) as u8 },
            signed: rng.chance(85),
        };
        match check_delivery(&config, &secrets, original, &body, framing, now) {
            Ok(queued) => enqueued += usize::from(queued),
            Err(error) => fail("delivery", seed, &body, &error),
        }
    }
    // Mutations must not all be rejected at the door: a share reaches the message builder.
    assert!(enqueued * 50 > cases(), "only {enqueued} of {} inputs reached the enqueue path", cases());
    println!("{enqueued} of {} inputs enqueued", cases());
}

#[test]
fn queue_messages_never_panic_and_round_trip() {
    let corpus = queue_corpus();
    for seed in 1..=cases() as u64 {
        let mut rng = Rng::new(seed);
        let original = &corpus[rng.below(corpus.len())];
        let input = mutate(original, &corpus, &mut rng);
        if let Err(error) = check_queue_message(&input) {
            fail("queue-message", seed, &input, &error);
        }
    }
    for original in &corpus {
        check_queue_message(original).unwrap();
    }
}
