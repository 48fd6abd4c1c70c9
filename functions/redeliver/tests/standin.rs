//! The redeliver function against a local GitHub API stand-in and the local DynamoDB emulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use previewd_redeliver::config::Config;
use previewd_redeliver::{Redeliverer, Report};
use previewd_testkit::Stack;
use support::{Auth, FakeGitHub, Inject, ago, app_key};
use tokio::time::Instant;

const APP_ID: u64 = 424242;

struct Setup {
    github: FakeGitHub,
    config: Config,
    sdk: aws_config::SdkConfig,
    redeliverer: Redeliverer,
}

async fn setup(name: &str, now: DateTime<Utc>, max_attempts: u32) -> Setup {
    let key = app_key();
    let github = FakeGitHub::start(Auth::App { app_id: APP_ID, public_pem: key.public_pem.clone() }, now).await;
    let stack = Stack::new(name).await;
    let env = [
        ("PREVIEWD_TABLE_NAME", stack.table.clone()),
        ("PREVIEWD_GITHUB_HOOK", "app".to_owned()),
        ("PREVIEWD_GITHUB_API_URL", github.url.clone()),
        ("PREVIEWD_GITHUB_APP_ID", APP_ID.to_string()),
        ("PREVIEWD_GITHUB_APP_PRIVATE_KEY", key.private_pem.clone()),
        ("PREVIEWD_REDELIVER_MAX_ATTEMPTS", max_attempts.to_string()),
        ("PREVIEWD_REDELIVER_MAX_WAIT_SECONDS", "3".to_owned()),
    ];
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
    let redeliverer = previewd_redeliver::from_config(&config, &stack.sdk).await.unwrap();
    Setup { github, config, sdk: stack.sdk, redeliverer }
}

async fn run(setup: &Setup, now: DateTime<Utc>) -> Report {
    setup.github.with(|g| g.now = now);
    setup.redeliverer.run(now, Instant::now() + Duration::from_secs(60)).await
}

fn now() -> DateTime<Utc> {
    // The stand-in's clock and the function's agree; JWTs use the real clock.
    Utc::now()
}

#[tokio::test]
async fn redelivers_only_failed_deliveries_that_never_succeeded() {
    let t = now();
    let s = setup("only-failed", t, 3).await;
    s.github.with(|g| {
        g.push("ancient", 503, ago(t, 60 * 30)); // 30 h old: before the first run's 24 h look-back
        g.push("ok", 202, ago(t, 50));
        g.push("down", 503, ago(t, 40));
        g.push("healed", 503, ago(t, 30));
        g.push("healed", 202, ago(t, 20)); // its redelivery already succeeded
        g.push("refused", 400, ago(t, 15)); // content refused: a redelivery gets the same answer
        g.push("timeout", 0, ago(t, 10));
        g.push("limited", 429, ago(t, 5));
    });
    let report = run(&s, t).await;
    assert!(report.complete, "{report:?}");
    assert_eq!((report.found, report.redelivered, report.permanent, report.gave_up), (3, 3, 1, 0), "{report:?}");
    s.github.with(|g| {
        for guid in ["down", "timeout", "limited"] {
            assert_eq!(g.attempts_for(guid), 1, "{guid}");
        }
        for guid in ["ok", "healed", "refused", "ancient"] {
            assert_eq!(g.attempts_for(guid), 0, "{guid}");
        }
    });
}

/// The webhook answers 409 when a redelivery meets another request's live claim: that request
/// may die before it enqueues, so the delivery is tried again until one attempt gets a 2xx.
#[tokio::test]
async fn an_in_flight_duplicate_is_redelivered() {
    let t = now();
    let s = setup("in-flight", t, 3).await;
    s.github.with(|g| {
        g.push("claimed-elsewhere", 409, ago(t, 20));
        g.push("settled", 409, ago(t, 15));
        g.push("settled", 200, ago(t, 10)); // a later attempt found it enqueued
    });
    let report = run(&s, t).await;
    assert_eq!((report.found, report.redelivered, report.permanent), (1, 1, 0), "{report:?}");
    s.github.with(|g| {
        assert_eq!(g.attempts_for("claimed-elsewhere"), 1);
        assert_eq!(g.attempts_for("settled"), 0);
    });
}

#[tokio::test]
async fn follows_cursor_pagination_across_pages() {
    let t = now();
    let s = setup("pages", t, 3).await;
    s.github.with(|g| {
        for i in 0..250 {
            // Every 50th delivery failed; the one at 10 failed but was healed later (at 240).
            let status = if i % 50 == 0 { 503 } else { 202 };
            g.push(&format!("guid-{i}"), status, ago(t, 300 - i));
        }
        g.push("guid-0", 202, ago(t, 1));
    });
    let report = run(&s, t).await;
    assert!(report.complete, "{report:?}");
    assert_eq!(report.pages, 3);
    assert_eq!(report.scanned, 251);
    assert_eq!(report.redelivered, 4, "guid-50, -100, -150, -200 (guid-0 healed)");
    s.github.with(|g| {
        assert_eq!(g.list_requests(), 3);
        assert_eq!(g.requests.iter().filter(|(_, p)| p.contains("cursor=")).count(), 2, "{:?}", g.requests);
        assert_eq!(g.attempts_for("guid-0"), 0);
        assert_eq!(g.attempts_for("guid-200"), 1);
    });
}

#[tokio::test]
async fn stops_after_the_attempt_budget_and_gives_up_once() {
    let t = now();
    let s = setup("budget", t, 3).await;
    s.github.with(|g| {
        g.receiver_status = 503; // the receiver stays down: every redelivery fails again
        g.push("doomed", 503, ago(t, 10));
    });
    let mut gave_up = 0;
    for run_number in 0..6 {
        let report = run(&s, t + chrono::Duration::minutes(5 * run_number)).await;
        assert!(report.complete, "{report:?}");
        gave_up += report.gave_up;
    }
    s.github.with(|g| assert_eq!(g.attempts_for("doomed"), 3));
    assert_eq!(gave_up, 1);
}

#[tokio::test]
async fn resumes_across_invocations_after_errors_and_rate_limits() {
    let t = now();
    let s = setup("resume", t, 3).await;
    s.github.with(|g| {
        g.page_size = 2;
        g.push("older-failure", 503, ago(t, 30));
        g.push("filler-1", 202, ago(t, 25));
        g.push("filler-2", 202, ago(t, 20));
        g.push("newer-failure", 503, ago(t, 10));
        g.inject_list.push_back(Some(Inject::ServerError));
    });
    // Run 1: GitHub answers 502: a fault, reported, nothing redelivered, no watermark.
    let report = run(&s, t).await;
    assert!(report.failed && !report.complete, "{report:?}");
    assert!(s.github.with(|g| g.attempts.is_empty()));

    // Run 2: page 1 is served, page 2 hits the primary rate limit for an hour (longer than a
    // run sits out): the run ends early without a fault, having redelivered page 1's failure.
    s.github.with(|g| g.inject_list.extend([None, Some(Inject::PrimaryLimit { reset_in: 3600 })]));
    let report = run(&s, t + chrono::Duration::minutes(5)).await;
    assert!(!report.complete && !report.failed, "{report:?}");
    assert!(report.stopped.as_deref().unwrap_or("").contains("rate limit"), "{report:?}");
    assert_eq!(report.redelivered, 1);

    // Run 3 (in a new container, so no remembered limit): the scan starts again from the same
    // point, finds newer-failure healed by its redelivery, and redelivers older-failure.
    let fresh = setup_again(&s).await;
    let report = run(&fresh, t + chrono::Duration::minutes(10)).await;
    assert!(report.complete, "{report:?}");
    assert_eq!(report.redelivered, 1, "{report:?}");
    s.github.with(|g| {
        assert_eq!(g.attempts_for("newer-failure"), 1);
        assert_eq!(g.attempts_for("older-failure"), 1);
    });

    // Run 4: the watermark (run 3's start less 15 min overlap) bounds the scan: 2 of 4 pages.
    let before = s.github.with(|g| g.list_requests());
    let report = run(&fresh, t + chrono::Duration::minutes(15)).await;
    assert!(report.complete && report.redelivered == 0, "{report:?}");
    assert_eq!(s.github.with(|g| g.list_requests()) - before, 2);
}

/// A burst that keeps more new deliveries coming than one run may read (the page limit) must
/// not hide older failures until GitHub's 3-day window closes on them: an interrupted scan is
/// resumed where it stopped, oldest range first.
#[tokio::test]
async fn older_failures_are_reached_under_a_burst_longer_than_the_page_limit() {
    let t = now();
    let key = app_key();
    let github = FakeGitHub::start(Auth::App { app_id: APP_ID, public_pem: key.public_pem.clone() }, t).await;
    let stack = Stack::new("burst").await;
    let env = [
        ("PREVIEWD_TABLE_NAME", stack.table.clone()),
        ("PREVIEWD_GITHUB_HOOK", "app".to_owned()),
        ("PREVIEWD_GITHUB_API_URL", github.url.clone()),
        ("PREVIEWD_GITHUB_APP_ID", APP_ID.to_string()),
        ("PREVIEWD_GITHUB_APP_PRIVATE_KEY", key.private_pem.clone()),
        ("PREVIEWD_REDELIVER_MAX_PAGES", "2".to_owned()),
    ];
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
    let redeliverer = previewd_redeliver::from_config(&config, &stack.sdk).await.unwrap();
    let mut next = 0;
    let mut burst = |g: &mut support::Inner, at: chrono::DateTime<Utc>| {
        for _ in 0..6 {
            next += 1;
            g.push(&format!("ok-{next}"), 202, at);
        }
    };
    github.with(|g| {
        g.page_size = 2;
        g.push("old-1", 503, ago(t, 300));
        g.push("old-2", 503, ago(t, 290));
        burst(g, ago(t, 280));
    });
    // Every five minutes six more successful deliveries arrive: more than a run's two pages.
    let mut runs = 0;
    while github.with(|g| g.attempts_for("old-1") + g.attempts_for("old-2")) < 2 {
        runs += 1;
        assert!(runs <= 6, "the old failures were never reached in {} runs", runs - 1);
        let at = t + chrono::Duration::minutes(5 * runs);
        github.with(|g| burst(g, at - chrono::Duration::minutes(1)));
        github.with(|g| g.now = at);
        let report = redeliverer.run(at, Instant::now() + Duration::from_secs(30)).await;
        assert!(!report.failed, "{report:?}");
    }
    github.with(|g| {
        assert_eq!((g.attempts_for("old-1"), g.attempts_for("old-2")), (1, 1));
        assert!(g.attempts.len() == 2, "only the failures are redelivered: {:?}", g.attempts);
    });
}

/// A second container against the same GitHub stand-in and table.
async fn setup_again(s: &Setup) -> Setup {
    let redeliverer = previewd_redeliver::from_config(&s.config, &s.sdk).await.unwrap();
    Setup { github: s.github.clone(), config: s.config.clone(), sdk: s.sdk.clone(), redeliverer }
}

#[tokio::test]
async fn sits_out_short_rate_limits_and_survives_redelivery_errors() {
    let t = now();
    let s = setup("short-limits", t, 3).await;
    s.github.with(|g| {
        g.push("a", 503, ago(t, 10));
        g.push("b", 503, ago(t, 5));
        g.inject_list.push_back(Some(Inject::SecondaryLimit { retry_after: 1 }));
        // b's redelivery request fails with a 502; a's goes through.
        g.inject_attempt.extend([Some(Inject::ServerError), None]);
    });
    let started = std::time::Instant::now();
    let report = run(&s, t).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "the 1 s retry-after was sat out");
    assert!(report.complete && !report.failed, "{report:?}");
    assert_eq!((report.found, report.redelivered, report.errors), (2, 1, 1), "{report:?}");
    s.github.with(|g| assert_eq!(g.attempts_for("a"), 1));
}

#[tokio::test]
async fn repository_hooks_use_a_token() {
    let t = now();
    let github = FakeGitHub::start(Auth::Token("ghs_valid".into()), t).await;
    let stack = Stack::new("repo-hook").await;
    let build = |token: &str| {
        let env = [
            ("PREVIEWD_TABLE_NAME", stack.table.clone()),
            ("PREVIEWD_GITHUB_HOOK", "repo:acme/shop:77".to_owned()),
            ("PREVIEWD_GITHUB_API_URL", github.url.clone()),
            ("PREVIEWD_GITHUB_TOKEN", token.to_owned()),
        ];
        Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap()
    };
    github.with(|g| g.push("x", 504, ago(t, 3)));
    let bad = previewd_redeliver::from_config(&build("ghs_wrong"), &stack.sdk).await.unwrap();
    let report = bad.run(t, Instant::now() + Duration::from_secs(30)).await;
    assert!(report.failed, "{report:?}");
    assert!(report.stopped.as_deref().unwrap_or("").contains("401"), "{report:?}");

    let good = previewd_redeliver::from_config(&build("ghs_valid"), &stack.sdk).await.unwrap();
    let report = good.run(t, Instant::now() + Duration::from_secs(30)).await;
    assert_eq!(report.redelivered, 1, "{report:?}");
    github.with(|g| {
        assert!(g.requests.iter().any(|(m, p)| m == "POST" && p.starts_with("/repos/acme/shop/hooks/77/deliveries/")));
    });
}

/// The function's requests (the App's and a repository's hook deliveries, paginated, and
/// their redelivery attempts) and the stand-in's answers, checked against GitHub's published
/// REST description (`@octokit/openapi`).
#[tokio::test]
async fn every_github_request_matches_the_published_api() {
    let t = now();
    let s = setup("contract", t, 3).await;
    s.github.with(|g| {
        g.page_size = 2;
        for (i, guid) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            g.push(guid, if i % 2 == 0 { 503 } else { 202 }, ago(t, 50 - i64::try_from(i).unwrap()));
        }
        g.inject_attempt.push_back(Some(Inject::ServerError));
    });
    let report = run(&s, t).await;
    assert!(report.redelivered >= 2, "{report:?}");

    let repo_hook = FakeGitHub::start(Auth::Token("ghs_valid".into()), t).await;
    let stack = Stack::new("contract-repo").await;
    let env = [
        ("PREVIEWD_TABLE_NAME", stack.table.clone()),
        ("PREVIEWD_GITHUB_HOOK", "repo:acme/shop:77".to_owned()),
        ("PREVIEWD_GITHUB_API_URL", repo_hook.url.clone()),
        ("PREVIEWD_GITHUB_TOKEN", "ghs_valid".to_owned()),
    ];
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
    repo_hook.with(|g| g.push("x", 504, ago(t, 3)));
    let redeliverer = previewd_redeliver::from_config(&config, &stack.sdk).await.unwrap();
    assert_eq!(redeliverer.run(t, Instant::now() + Duration::from_secs(30)).await.redelivered, 1);

    let mut exchanges = s.github.with(|g| g.exchanges.clone());
    exchanges.extend(repo_hook.with(|g| g.exchanges.clone()));
    previewd_testkit::github_api::assert_contract(
        &exchanges,
        &[
            "GET /app/hook/deliveries",
            "POST /app/hook/deliveries/{delivery_id}/attempts",
            "GET /repos/{owner}/{repo}/hooks/{hook_id}/deliveries",
            "POST /repos/{owner}/{repo}/hooks/{hook_id}/deliveries/{delivery_id}/attempts",
        ],
    );
}
