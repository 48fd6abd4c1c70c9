//! Scale figures for the reconciler (docs/performance.md):
//! - render throughput (previews/s): the pure step of every reconcile;
//! - memory per preview held in the controller's cache (the reflector keeps every
//!   PreviewEnvironment), at 1,000 and 10,000 previews, measured with a counting allocator;
//! - working off a backlog of 10,000 queued events against the in-memory Kubernetes API
//!   (the consumer's cluster side: policy, stale check, server-side apply).
//!
//! cargo bench -p previewd --bench scale
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::alloc::System;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use previewd::config::Config;
use previewd::consumer::{Consumer, Outcome};
use previewd::crd::PreviewEnvironment;
use previewd::policy::{Decision, decide_offline};
use previewd::render::render;
use previewd_events::PreviewEvent;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn events(n: u64) -> Vec<PreviewEvent> {
    let base =
        PreviewEvent::from_json(&std::fs::read_to_string(root().join("docs/examples/events/opened.json")).unwrap())
            .unwrap();
    (0..n)
        .map(|i| {
            let mut e = base.clone();
            e.pull_request.number = 1000 + i;
            e.delivery_id = format!("bench-{i}");
            e.pull_request.head_sha = format!("{:040x}", i);
            e
        })
        .collect()
}

fn previews(config: &Config, events: &[PreviewEvent]) -> Vec<PreviewEnvironment> {
    events
        .iter()
        .map(|e| {
            let Decision::Upsert(spec) = decide_offline(e, config) else { panic!() };
            let mut pe = previewd::render::as_applied(config, *spec).unwrap();
            pe.metadata.uid = Some(format!("uid-{}", e.pull_request.number));
            pe
        })
        .collect()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("scale: run with `cargo bench` to measure");
        return;
    }
    let config = Config::load(&root().join("docs/examples/config.yaml")).unwrap();

    // Render throughput.
    let sample = previews(&config, &events(1000));
    let started = Instant::now();
    let mut objects = 0;
    for _ in 0..5 {
        for pe in &sample {
            objects += render(&config, pe).unwrap().len();
        }
    }
    let elapsed = started.elapsed();
    println!(
        "render: {:.0} previews/s ({} previews, {} objects, {:.1} µs per preview)",
        5000.0 / elapsed.as_secs_f64(),
        5000,
        objects,
        elapsed.as_secs_f64() * 1e6 / 5000.0
    );

    // Memory per cached PreviewEnvironment (what the reflector store holds: Arc<K> each).
    for n in [1_000u64, 10_000] {
        let evs = events(n);
        let region = Region::new(GLOBAL);
        let cache: Vec<Arc<PreviewEnvironment>> = previews(&config, &evs).into_iter().map(Arc::new).collect();
        let stats = region.change();
        let held = stats.bytes_allocated.saturating_sub(stats.bytes_deallocated);
        println!(
            "cache: {n} previews hold {:.1} MiB, {} bytes per preview",
            held as f64 / 1048576.0,
            held / n as usize
        );
        drop(cache);
    }

    // Backlog of 10,000 events against the in-memory API.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let kube = support::fake_cluster().await;
        let sdk = aws_config::SdkConfig::builder().behavior_version(aws_config::BehaviorVersion::latest()).build();
        let consumer = Consumer::new(aws_sdk_sqs::Client::new(&sdk), String::new(), kube, Arc::new(config.clone()));
        let backlog = events(10_000);
        let started = Instant::now();
        let mut applied = 0;
        for event in &backlog {
            if let Outcome::Applied { .. } = consumer.handle_event(event).await {
                applied += 1;
            }
        }
        let elapsed = started.elapsed();
        assert_eq!(applied, backlog.len());
        println!(
            "backlog: {} events applied in {:.2} s ({:.0} events/s, one consumer, in-memory API)",
            applied,
            elapsed.as_secs_f64(),
            applied as f64 / elapsed.as_secs_f64()
        );
    });
}
