//! In-process cost of one delivery: verify + parse + build the message (`prepare`), beside
//! HMAC-SHA256 alone over the same bytes, for a typical (~10 KB) and a large (~1 MB) payload.
//! Goal: on the large payload the whole path costs at most 2x the HMAC alone.
//!
//! cargo bench -p previewd-webhook --bench pipeline
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use previewd_webhook::config::Config;
use previewd_webhook::signature::{Secrets, sign};
use previewd_webhook::{Delivery, Prepared, prepare};
use serde_json::json;

const SECRET: &str = "bench-secret";

/// A `pull_request` payload of roughly `size` bytes: GitHub's shape, with the bulk in the PR
/// body (markdown with escapes and non-ASCII text, as real bodies have) and link fields.
fn payload(size: usize) -> Vec<u8> {
    let paragraph = "Refactors the checkout flow: \"cart\" -> `orders`\n\n- [x] tests\n- [ ] docs ✓ 🚀\n";
    let base = json!({
        "action": "synchronize",
        "number": 4242,
        "before": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
        "after": "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
        "pull_request": {
            "url": "https://api.github.com/repos/acme/shop/pulls/4242",
            "id": 279147437, "node_id": "MDExOlB1bGxSZXF1ZXN0Mjc5MTQ3NDM3",
            "html_url": "https://github.com/acme/shop/pull/4242",
            "diff_url": "https://github.com/acme/shop/pull/4242.diff",
            "number": 4242, "state": "open", "locked": false, "draft": false,
            "title": "Checkout: split the cart service",
            "user": {"login": "octocat", "id": 1, "type": "User", "site_admin": false},
            "body": "",
            "created_at": "2026-11-20T10:00:00Z", "updated_at": "2026-11-26T10:00:00Z",
            "labels": (0..5).map(|i| json!({"id": i, "name": format!("label-{i}"), "color": "ededed", "default": false})).collect::<Vec<_>>(),
            "author_association": "MEMBER", "merged": false, "mergeable": null, "comments": 12, "commits": 30,
            "additions": 1200, "deletions": 300, "changed_files": 42,
            "head": {"label": "acme:cart", "ref": "cart", "sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
                     "repo": {"id": 1296269, "name": "shop", "full_name": "acme/shop", "fork": false}},
            "base": {"label": "acme:main", "ref": "main", "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
                     "repo": {"id": 1296269, "name": "shop", "full_name": "acme/shop", "fork": false}}
        },
        "repository": {"id": 1296269, "name": "shop", "full_name": "acme/shop", "private": true,
                       "owner": {"login": "acme", "id": 9919, "type": "Organization"}},
        "installation": {"id": 987654},
        "sender": {"login": "octocat", "id": 1, "type": "User"}
    });
    let overhead = base.to_string().len();
    let mut value = base;
    let repeats = size.saturating_sub(overhead) / (paragraph.len() + 8);
    value["pull_request"]["body"] = json!(paragraph.repeat(repeats.max(1)));
    value.to_string().into_bytes()
}

fn config() -> Config {
    Config::from_lookup(|k| {
        match k {
            "PREVIEWD_WEBHOOK_SECRET" => Some(SECRET),
            "PREVIEWD_QUEUE_URL" => Some("http://localhost/1/q.fifo"),
            "PREVIEWD_TABLE_NAME" => Some("t"),
            _ => None,
        }
        .map(str::to_owned)
    })
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let config = config();
    let secrets = Secrets::parse(SECRET).unwrap();
    let mut group = c.benchmark_group("pipeline");
    for (name, size) in [("typical_10KB", 10 * 1024), ("large_1MB", 1024 * 1024)] {
        let body = payload(size);
        let signature = sign(SECRET.as_bytes(), &body);
        let delivery = Delivery {
            event: Some("pull_request"),
            delivery_id: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            signature: Some(&signature),
            content_type: Some("application/json"),
            body: &body,
        };
        // The path must really enqueue, or the benchmark measures an early exit.
        assert!(matches!(prepare(&config, &secrets, &delivery, Utc::now()).0, Prepared::Enqueue(_)));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("hmac_sha256_only", name), &body, |b, body| {
            b.iter(|| sign(SECRET.as_bytes(), black_box(body)))
        });
        group.bench_with_input(BenchmarkId::new("verify_parse_build", name), &delivery, |b, d| {
            b.iter(|| prepare(&config, &secrets, black_box(d), Utc::now()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
