//! `previewd run`: the controller, the queue consumers and the health/metrics server, with a
//! graceful shutdown that lets in-flight messages finish. With several replicas only the holder
//! of the `previewd-leader` Lease consumes and reconciles (PREVIEWD_LEADER_ELECTION=false to
//! turn that off for a single replica).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::Api;

use crate::ai::engine::AiEngine;
use crate::config::Config;
use crate::consumer::{Consumer, JetStreamSource};
use crate::controller::{self, Context};
use crate::github::client::{GitHubClient, GitHubError, auth_from_lookup};
use crate::github::notify::Notifier;
use crate::leader::LeaderElection;
use crate::metrics::Metrics;
use crate::serve::{Health, router};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} = {value:?} is invalid")]
    Invalid { name: &'static str, value: String },
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("serving {addr}: {message}")]
    Serve { addr: String, message: String },
    #[error("lost the leader lease; exiting so another replica leads")]
    LostLeadership,
}

/// Completes on SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

fn env_number(name: &'static str, default: u64) -> Result<u64, RunError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| RunError::Invalid { name, value: v }),
        _ => Ok(default),
    }
}

/// The GitHub client and notifier, when credentials are in the environment
/// (`PREVIEWD_GITHUB_TOKEN`, or `PREVIEWD_GITHUB_APP_ID` with the App's private key;
/// `PREVIEWD_GITHUB_API_URL` for GitHub Enterprise Server).
fn github_notifier(config: &Config, metrics: &Metrics) -> Result<Option<Arc<Notifier>>, RunError> {
    let Some(auth) = auth_from_lookup(|name| std::env::var(name).ok())? else {
        tracing::warn!("no GitHub credentials: PRs will not show previews, fork labels cannot be verified");
        return Ok(None);
    };
    let api_url = std::env::var("PREVIEWD_GITHUB_API_URL").unwrap_or_else(|_| "https://api.github.com".to_owned());
    let concurrency = usize::try_from(config.github.concurrency).unwrap_or(4);
    let client = GitHubClient::new(&api_url, &auth, concurrency)?.with_request_counter(metrics.github_requests.clone());
    let notifier =
        Notifier::new(Arc::new(client), config.github.clone()).with_update_counter(metrics.github_updates.clone());
    Ok(Some(Arc::new(notifier)))
}

/// The AI engine when `ai.enabled` (key: `PREVIEWD_AI_API_KEY`, empty for keyless endpoints
/// such as a local Ollama). It reads diffs through GitHub, so it needs GitHub credentials.
fn ai_engine(config: &Config, metrics: &Metrics, have_github: bool) -> Result<Option<Arc<AiEngine>>, RunError> {
    if !config.ai.enabled {
        return Ok(None);
    }
    if !have_github {
        tracing::warn!("ai.enabled, but without GitHub credentials there is no diff to ask about: AI stays off");
        return Ok(None);
    }
    let key = std::env::var("PREVIEWD_AI_API_KEY").unwrap_or_default();
    let engine =
        AiEngine::new(&config.ai, key.trim()).map_err(|e| RunError::Invalid { name: "ai", value: e.to_string() })?;
    tracing::info!(base_url = %config.ai.base_url, model = %config.ai.model, mode = ?config.ai.mode, "AI engine on");
    Ok(Some(Arc::new(engine.with_metrics(metrics.clone()))))
}

/// The queue the front writes to: SQS (`PREVIEWD_QUEUE_URL`, the AWS front) or JetStream
/// (`PREVIEWD_NATS_URL`, the in-cluster front).
#[derive(Debug)]
enum Queue {
    Sqs(String),
    JetStream(String),
}

impl Queue {
    fn from_env() -> Result<Queue, RunError> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        match (get("PREVIEWD_NATS_URL"), get("PREVIEWD_QUEUE_URL")) {
            (Some(url), None) => Ok(Queue::JetStream(url.trim().to_owned())),
            (None, Some(url)) => Ok(Queue::Sqs(url)),
            (Some(_), Some(_)) => Err(RunError::Invalid {
                name: "PREVIEWD_NATS_URL",
                value: "set together with PREVIEWD_QUEUE_URL: choose one front".to_owned(),
            }),
            (None, None) => Err(RunError::Missing("PREVIEWD_QUEUE_URL (or PREVIEWD_NATS_URL)")),
        }
    }

    async fn consumer(&self, kube: kube::Client, config: Arc<Config>) -> Result<Consumer, RunError> {
        Ok(match self {
            Queue::Sqs(url) => {
                let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                Consumer::new(aws_sdk_sqs::Client::new(&sdk), url.clone(), kube, config)
            }
            Queue::JetStream(url) => {
                let source = JetStreamSource::connect(url, Duration::from_secs(120))
                    .await
                    .map_err(|e| RunError::Invalid { name: "PREVIEWD_NATS_URL", value: e.to_string() })?;
                Consumer::jetstream(source, kube, config)
            }
        })
    }
}

/// How often waiting commits are checked with GitHub again (check events drive the gate; this
/// covers the ones that never arrived).
const BUILD_GATE_RESYNC: Duration = Duration::from_secs(120);

pub async fn run(config_path: &Path) -> Result<(), RunError> {
    let config = Arc::new(Config::load(config_path)?);
    let metrics = Metrics::new()?;
    let queue = Queue::from_env()?;
    // One puller keeps a JetStream group's messages in order (SQS FIFO locks a group itself).
    let consumers = match queue {
        Queue::Sqs(_) => env_number("PREVIEWD_CONSUMERS", 2)?.clamp(1, 32),
        Queue::JetStream(_) => 1,
    };
    let addr: SocketAddr =
        std::env::var("PREVIEWD_LISTEN").unwrap_or_else(|_| "0.0.0.0:8080".to_owned()).parse().map_err(|_| {
            RunError::Invalid { name: "PREVIEWD_LISTEN", value: std::env::var("PREVIEWD_LISTEN").unwrap_or_default() }
        })?;

    let github = github_notifier(&config, &metrics)?;
    let ai = ai_engine(&config, &metrics, github.is_some())?;
    let client = kube::Client::try_default().await?;
    let ready = Arc::new(AtomicBool::new(false));
    let stopping = Arc::new(AtomicBool::new(false));

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| RunError::Serve { addr: addr.to_string(), message: e.to_string() })?;
    let mut app = router(Health { metrics: metrics.clone(), ready: Arc::clone(&ready) });
    // Sleeping previews: their page and wake link (every replica serves them).
    let wake_key = std::env::var(crate::sleep::WAKE_KEY_ENV).ok().map(String::into_bytes).filter(|k| k.len() >= 16);
    match (&config.ttl.sleep_after, &wake_key) {
        (Some(_), Some(key)) => app = app.merge(crate::wake::router(client.clone(), key.clone())),
        (Some(_), None) => tracing::warn!(
            "ttl.sleepAfter is set but {} is not (at least 16 bytes): previews will not sleep",
            crate::sleep::WAKE_KEY_ENV
        ),
        _ => {}
    }
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    // Ready means healthy: a standby replica is ready too (else a rollout would never finish).
    ready.store(true, Ordering::Relaxed);

    // Only the leader consumes and reconciles; the others wait on the Lease.
    let lost = Arc::new(tokio::sync::Notify::new());
    if std::env::var("PREVIEWD_LEADER_ELECTION").map_or(true, |v| v != "false") {
        let namespace = crate::controller::home_namespace();
        let identity = std::env::var("HOSTNAME").unwrap_or_else(|_| format!("previewd-{}", std::process::id()));
        let election = LeaderElection::new(Api::namespaced(client.clone(), &namespace), "previewd-leader", &identity);
        tracing::info!(%namespace, identity = election.identity(), "waiting for the leader lease");
        tokio::select! {
            () = election.acquire() => {}
            () = shutdown_signal() => {
                server.abort();
                return Ok(());
            }
        }
        tracing::info!(identity = election.identity(), "leading");
        let lost = Arc::clone(&lost);
        tokio::spawn(async move {
            election.hold().await;
            lost.notify_one();
        });
    }

    // Consumers: stop taking new messages on shutdown; a batch already received is finished.
    // One consumer (its path globs compiled once), cloned per task.
    let mut consumer = queue.consumer(client.clone(), Arc::clone(&config)).await?.with_metrics(metrics.clone());
    if let Some(notifier) = &github {
        consumer = consumer.with_github(Arc::clone(notifier));
    }
    if let Some(engine) = &ai {
        consumer = consumer.with_ai(Arc::clone(engine));
    }
    // Right-sizing: proposals read from Prometheus now and every `sizing.refresh`.
    let sizing = crate::sizing::uses_prometheus(&config).then(|| {
        let book = Arc::new(crate::sizing::Book::default());
        consumer = consumer.clone().with_sizing(Arc::clone(&book));
        tokio::spawn(crate::sizing::refresh(Arc::clone(&config), book))
    });
    let mut consumer_tasks = Vec::new();
    // Aborted at shutdown: it only reads GitHub and writes what it read.
    let resync = config.repositories.iter().any(|r| r.build_gate.is_some()).then(|| {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(BUILD_GATE_RESYNC).await;
                match consumer.resync_build_gates().await {
                    Ok(0) => {}
                    Ok(changed) => tracing::info!(changed, "build gate resync updated previews"),
                    Err(err) => tracing::warn!(error = %err, "build gate resync failed; retrying"),
                }
            }
        })
    });
    for index in 0..consumers {
        let consumer = consumer.clone();
        let stopping = Arc::clone(&stopping);
        consumer_tasks.push(tokio::spawn(async move {
            while !stopping.load(Ordering::Relaxed) {
                match consumer.poll_once().await {
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(consumer = index, error = %err, "queue receive failed; retrying");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        }));
    }
    let shutdown = {
        let stopping = Arc::clone(&stopping);
        async move {
            shutdown_signal().await;
            stopping.store(true, Ordering::Relaxed);
        }
    };

    let mut ctx = Context::new(client.clone(), Arc::clone(&config)).with_metrics(metrics.clone());
    if let Some(engine) = &ai {
        ctx = ctx.with_ai(Arc::clone(engine));
    }
    if let (Some(_), Some(key)) = (&config.ttl.sleep_after, wake_key) {
        ctx = ctx.with_wake_key(key);
    }
    if let Some(notifier) = &github {
        ctx = ctx.with_github(Arc::clone(notifier));
        tokio::spawn(Arc::clone(notifier).run());
        let (notifier, metrics) = (Arc::clone(notifier), metrics.clone());
        tokio::spawn(async move {
            loop {
                metrics.github_remaining.set(notifier.github().remaining_quota().unwrap_or(0));
                metrics.github_pending.set(i64::try_from(notifier.pending()).unwrap_or(i64::MAX));
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        });
    }
    let (caches, controller) = controller::watch::controller(&client, &config);
    let ctx = Arc::new(ctx.with_caches(caches));
    tracing::info!(%addr, consumers, "previewd running");
    let work = controller
        .graceful_shutdown_on(shutdown)
        .run(controller::reconcile, controller::error_policy, ctx)
        .for_each(|_| futures::future::ready(()));
    // Losing the lease stops everything at once, not gracefully: the renew deadline leaves a
    // few seconds before another replica may take over, and a batch or reconcile finished
    // after that would race the new leader. What was cut off is redone by it (messages come
    // back after their visibility timeout; reconciles are level-triggered).
    let lost_leadership = tokio::select! {
        () = work => false,
        () = lost.notified() => true,
    };
    stopping.store(true, Ordering::Relaxed);
    ready.store(false, Ordering::Relaxed);
    if let Some(sizing) = &sizing {
        sizing.abort();
    }
    if let Some(resync) = &resync {
        resync.abort();
    }
    if lost_leadership {
        for task in &consumer_tasks {
            task.abort();
        }
        server.abort();
        tracing::error!("lost the leader lease; work stopped");
        return Err(RunError::LostLeadership);
    }
    for task in consumer_tasks {
        let _ = task.await;
    }
    server.abort();
    tracing::info!("previewd stopped");
    Ok(())
}
