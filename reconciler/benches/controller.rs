//! What the controller costs the API server (docs/performance.md), with `previewd run`'s wiring
//! (caches, watches) against the in-memory API, at 100 and 1,000 previews:
//! - requests per reconcile of an unchanged preview (the resync's cost; the goal is none);
//! - requests per preview after a push (a new head commit);
//! - memory per preview held in the controller's caches (managedFields dropped).
//!
//! cargo bench -p previewd --bench controller
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::alloc::System;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube_memory::MemoryApi;
use previewd::config::Config;
use previewd::controller::{Context, reconcile, reconcile_at};
use previewd::crd::{FINALIZER, Phase, PreviewEnvironment};
use previewd::policy::{Decision, decide_offline};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Non-watch requests the API received since the last clear.
fn requests(api: &MemoryApi) -> (usize, usize) {
    let all = api.requests();
    let writes = all.iter().filter(|r| r.is_write()).count();
    let reads = all.iter().filter(|r| !r.is_write() && r.verb != "watch").count();
    (reads, writes)
}

/// Waits until no request arrives for 500 ms (the controller is idle).
async fn settle(api: &MemoryApi) {
    loop {
        api.clear_requests();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if requests(api) == (0, 0) {
            return;
        }
    }
}

async fn create(client: &kube::Client, config: &Config, n: u64) -> Vec<PreviewEnvironment> {
    let base = support::event("opened.json");
    let api: Api<PreviewEnvironment> = Api::all(client.clone());
    let mut created = Vec::new();
    for i in 0..n {
        let mut e = base.clone();
        e.pull_request.number = 1000 + i;
        e.pull_request.updated_at = Utc::now();
        e.pull_request.head_sha = format!("{i:040x}");
        let Decision::Upsert(spec) = decide_offline(&e, config) else { panic!() };
        let mut pe = previewd::render::as_applied(config, *spec).unwrap();
        pe.status = None;
        pe.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
        let pe = api.create(&PostParams::default(), &pe).await.unwrap();
        for service in &pe.spec.services {
            support::healthy_application(client, &pe.metadata.name.clone().unwrap(), service, &pe.spec.head_sha).await;
        }
        created.push(pe);
    }
    created
}

async fn measure(n: u64) {
    let api = support::memory_api();
    let client = support::client_of(&api);
    let mut config = support::config();
    config.ttl.sweep_interval = Duration::from_secs(3600);
    config.argocd.application_sets_per_minute = u32::MAX;
    let previews = create(&client, &config, n).await;

    // Steady state: every preview built and Ready.
    let (caches, controller) = previewd::controller::watch::controller(&client, &config);
    let ctx = Arc::new(Context::new(client.clone(), Arc::new(config.clone())).with_caches(caches));
    let started = Instant::now();
    let running = tokio::spawn(
        controller.run(reconcile, previewd::controller::error_policy, Arc::clone(&ctx)).for_each(|_| async {}),
    );
    let all: Api<PreviewEnvironment> = Api::all(client.clone());
    loop {
        let ready = all
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready))
            .count();
        if ready as u64 == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let built_in = started.elapsed();
    settle(&api).await;

    // An unchanged preview: every one reconciled once more (as the resync does).
    api.clear_requests();
    for pe in &previews {
        let cached = ctx.cached(pe.metadata.name.as_deref().unwrap()).unwrap();
        reconcile_at(&cached, &ctx, Utc::now()).await.unwrap();
    }
    let (reads, writes) = requests(&api);
    println!(
        "{n} previews: built and Ready in {:.1} s; an unchanged preview costs {:.2} reads and {:.2} writes per reconcile",
        built_in.as_secs_f64(),
        reads as f64 / n as f64,
        writes as f64 / n as f64
    );

    // A push to each: the consumer writes the new head, the controller follows.
    let params = PatchParams::apply("previewd-consumer").force();
    api.clear_requests();
    for (i, pe) in previews.iter().enumerate() {
        let mut pushed = all.get(pe.metadata.name.as_deref().unwrap()).await.unwrap();
        pushed.spec.head_sha = format!("{:040x}", 1_000_000 + i);
        pushed.metadata.managed_fields = None;
        pushed.status = None;
        all.patch(pushed.metadata.name.as_deref().unwrap(), &params, &Patch::Apply(&pushed)).await.unwrap();
    }
    let pushes = n as usize;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = api.requests().len();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if api.requests().len() == before {
            break;
        }
    }
    let all_requests = api.requests();
    let controller_writes = all_requests.iter().filter(|r| r.is_write()).count() - pushes;
    let controller_reads = all_requests.iter().filter(|r| !r.is_write() && r.verb != "watch").count() - pushes;
    let writes_by_kind =
        |resource: &str| all_requests.iter().filter(|r| r.is_write() && r.resource.contains(resource)).count();
    println!(
        "{n} previews: a push costs the controller {:.2} writes per preview ({} ApplicationSet, {} status, {} other) and {:.2} reads",
        controller_writes as f64 / n as f64,
        writes_by_kind("applicationsets"),
        writes_by_kind("previewenvironments/status"),
        controller_writes - writes_by_kind("applicationsets") - writes_by_kind("previewenvironments/status"),
        controller_reads as f64 / n as f64,
    );
    running.abort();

    // Memory: fresh caches filled from the API, as a restarted controller fills them.
    let region = Region::new(GLOBAL);
    let (caches, controller) = previewd::controller::watch::controller(&client, &config);
    let idle = |_: Arc<PreviewEnvironment>, _: Arc<()>| async { Ok::<Action, kube::Error>(Action::await_change()) };
    let filling =
        tokio::spawn(controller.run(idle, |_, _, _| Action::await_change(), Arc::new(())).for_each(|_| async {}));
    let filled = tokio::time::timeout(Duration::from_secs(120), caches.ready())
        .await
        .expect("the caches fill from the API within two minutes");
    assert!(filled, "a cache's watch failed");
    settle(&api).await;
    let stats = region.change();
    let held = stats.bytes_allocated.saturating_sub(stats.bytes_deallocated);
    // The objects themselves: a deep copy of each allocates what the cached one holds.
    fn copies<K: Clone + kube::Resource + 'static>(store: &kube::runtime::reflector::Store<K>) -> (usize, usize)
    where
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        let region = Region::new(GLOBAL);
        let copied: Vec<K> = store.state().iter().map(|o| (**o).clone()).collect();
        let bytes = region.change().bytes_allocated;
        (copied.len(), bytes)
    }
    let sizes = [
        copies(&caches.namespaces),
        copies(&caches.quotas),
        copies(&caches.limits),
        copies(&caches.policies),
        copies(&caches.ingresses),
        copies(&caches.application_sets),
        copies(&caches.applications),
        copies(&caches.previews),
    ];
    let objects: usize = sizes.iter().map(|(n, _)| n).sum();
    let bytes: usize = sizes.iter().map(|(_, b)| b).sum();
    println!(
        "{n} previews: the caches hold {objects} objects, {:.1} MiB, {} bytes per preview \
         (the process grew {:.1} MiB while filling them: caches, watch buffers, the in-memory server's side)",
        bytes as f64 / 1_048_576.0,
        bytes / n as usize,
        held as f64 / 1_048_576.0,
    );
    filling.abort();
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("controller: run with `cargo bench` to measure");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let sizes: Vec<u64> = std::env::var("PREVIEWD_BENCH_SIZES")
        .ok()
        .map_or(vec![100, 1000], |v| v.split(',').filter_map(|n| n.parse().ok()).collect());
    for n in sizes {
        runtime.block_on(measure(n));
    }
}
