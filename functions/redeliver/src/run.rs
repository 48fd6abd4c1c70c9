//! One scheduled run: scan the hook's recent deliveries newest first, redeliver the failed
//! ones within their attempt budget, and advance the watermark once a scan is complete.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use previewd_lambda_common::{Emf, Unit};
use serde::Serialize;
use tokio::time::Instant;

use crate::config::{Config, HookTarget, REDELIVERABLE_FOR};
use crate::github::{GitHub, GitHubError};
use crate::plan::Scan;
use crate::state::{Attempt, Progress, Resume, State};

/// What a run did; returned as the invocation's result and written as EMF metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub pages: u32,
    pub scanned: u32,
    /// Failed deliveries (by GUID) with no later success.
    pub found: u32,
    pub redelivered: u32,
    /// GUIDs whose attempt budget ran out in this run (each counted once, ever).
    pub gave_up: u32,
    /// Failures a redelivery cannot fix (the receiver refused the content).
    pub permanent: u32,
    pub errors: u32,
    /// The scan reached the watermark (or the end of the list): the watermark moved.
    pub complete: bool,
    /// Why the run ended early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Whether `stopped` is a fault (not a rate limit or the time budget).
    #[serde(skip)]
    pub failed: bool,
}

impl Report {
    pub fn emf_line(&self, timestamp_ms: i64) -> String {
        let count = |v: u32| f64::from(v);
        Emf::new("Previewd/Redeliver")
            .dimension_set(&[])
            .metric("Found", Unit::Count, count(self.found))
            .metric("Redelivered", Unit::Count, count(self.redelivered))
            .metric("GaveUp", Unit::Count, count(self.gave_up))
            .metric("Permanent", Unit::Count, count(self.permanent))
            .metric("Errors", Unit::Count, count(self.errors))
            .metric("Pages", Unit::Count, count(self.pages))
            .metric("Incomplete", Unit::Count, if self.complete { 0.0 } else { 1.0 })
            .line(timestamp_ms)
    }
}

#[derive(Debug)]
pub struct Redeliverer {
    github: GitHub,
    state: State,
    hook: HookTarget,
    max_attempts: u32,
    lookback: Duration,
    overlap: Duration,
    max_pages: u32,
    max_wait: Duration,
}

/// How a walk over pages ended.
enum Walked {
    Done,
    /// Cut short: `next` is the first page not read.
    Paused {
        next: String,
        why: String,
    },
}

enum Stop {
    /// Ends the run normally (rate limit too long to sit out, time budget): not a fault.
    Pause(String),
    Fault(String),
}

impl Redeliverer {
    pub fn new(github: GitHub, state: State, config: &Config) -> Redeliverer {
        Redeliverer {
            github,
            state,
            hook: config.hook.clone(),
            max_attempts: config.max_attempts,
            lookback: config.lookback,
            overlap: config.overlap,
            max_pages: config.max_pages,
            max_wait: config.max_wait,
        }
    }

    /// Calls GitHub, sitting out rate limits no longer than `max_wait` (and the deadline).
    async fn call<T, F, Fut>(&self, deadline: Instant, f: F) -> Result<T, GitHubError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, GitHubError>>,
    {
        loop {
            match f().await {
                Err(GitHubError::RateLimited(wait)) if wait <= self.max_wait && Instant::now() + wait < deadline => {
                    tracing::info!(wait_seconds = wait.as_secs(), "GitHub rate limit: waiting");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// One run. `deadline`: when to stop starting new work (before Lambda's own timeout).
    pub async fn run(&self, now: DateTime<Utc>, deadline: Instant) -> Report {
        let mut report = Report::default();
        match self.scan(now, deadline, &mut report).await {
            Ok(()) => {}
            Err(Stop::Pause(why)) => report.stopped = Some(why),
            Err(Stop::Fault(why)) => {
                report.errors += 1;
                report.failed = true;
                report.stopped = Some(why);
            }
        }
        report
    }

    /// Newest first down to the watermark. A scan cut short saves where it stopped, and the
    /// next run finishes that range first: its deliveries are the oldest, nearest to leaving
    /// GitHub's redelivery window, and a burst that keeps the newest pages full would
    /// otherwise hide them from every run until they expire.
    async fn scan(&self, now: DateTime<Utc>, deadline: Instant, report: &mut Report) -> Result<(), Stop> {
        let now_epoch = now.timestamp();
        let floor = now_epoch - secs(REDELIVERABLE_FOR);
        let progress = self.state.progress(&self.hook).await.map_err(|e| Stop::Fault(e.to_string()))?;
        let since = progress.since.unwrap_or(now_epoch - secs(self.lookback)).max(floor);
        let mut scan = Scan::default();
        let top_lower = match &progress.resume {
            Some(resume) => {
                let lower = resume.lower.max(floor);
                if let Walked::Paused { next, why } =
                    self.walk(resume.next.clone(), lower, now_epoch, deadline, &mut scan, report).await?
                {
                    let resume = Resume { next, ..resume.clone() };
                    self.save(&Progress { since: progress.since, resume: Some(resume) }).await?;
                    return Err(Stop::Pause(why));
                }
                // Deliveries still in flight when that scan began are read again.
                (resume.head - secs(self.overlap)).max(floor)
            }
            None => since,
        };
        match self.walk(self.github.first_page(&self.hook), top_lower, now_epoch, deadline, &mut scan, report).await? {
            Walked::Done => {
                report.complete = true;
                // Deliveries still in flight at `now` are read again by the next run.
                let next_since = now_epoch - secs(self.overlap);
                self.state.set_watermark(&self.hook, next_since).await.map_err(|e| Stop::Fault(e.to_string()))
            }
            Walked::Paused { next, why } => {
                let resume = Resume { next, lower: top_lower, head: now_epoch };
                self.save(&Progress { since: Some(top_lower), resume: Some(resume) }).await?;
                Err(Stop::Pause(why))
            }
        }
    }

    async fn save(&self, progress: &Progress) -> Result<(), Stop> {
        self.state.save_progress(&self.hook, progress).await.map_err(|e| Stop::Fault(e.to_string()))
    }

    /// Reads pages from `url` down to deliveries older than `lower`, redelivering candidates.
    async fn walk(
        &self,
        mut url: String,
        lower: i64,
        now_epoch: i64,
        deadline: Instant,
        scan: &mut Scan,
        report: &mut Report,
    ) -> Result<Walked, Stop> {
        loop {
            if report.pages >= self.max_pages {
                return Ok(Walked::Paused { next: url, why: format!("page limit of {} reached", self.max_pages) });
            }
            if Instant::now() >= deadline {
                return Ok(Walked::Paused { next: url, why: "time budget spent".to_owned() });
            }
            let page = match self.call(deadline, || self.github.list(&url)).await {
                Ok(page) => page,
                Err(err @ GitHubError::RateLimited(_)) => {
                    return Ok(Walked::Paused { next: url, why: err.to_string() });
                }
                Err(err) => return Err(Stop::Fault(err.to_string())),
            };
            report.pages += 1;
            let mut reached_lower = false;
            for delivery in &page.deliveries {
                if delivery.delivered_at.timestamp() < lower {
                    reached_lower = true;
                    break;
                }
                report.scanned += 1;
                if let Some(candidate) = scan.observe(delivery) {
                    report.found += 1;
                    self.redeliver(&candidate, now_epoch, deadline, report).await?;
                }
            }
            report.permanent = scan.permanent;
            match page.next {
                Some(next) if !reached_lower => url = next,
                _ => return Ok(Walked::Done),
            }
        }
    }

    async fn redeliver(
        &self,
        candidate: &crate::plan::Candidate,
        now: i64,
        deadline: Instant,
        report: &mut Report,
    ) -> Result<(), Stop> {
        // Counted before asking GitHub, so a crash in between can never exceed the budget.
        let attempt = self
            .state
            .take_attempt(&candidate.guid, self.max_attempts, now)
            .await
            .map_err(|e| Stop::Fault(e.to_string()))?;
        match attempt {
            Attempt::Exhausted { first_time } => {
                if first_time {
                    report.gave_up += 1;
                    tracing::warn!(guid = %candidate.guid, attempts = self.max_attempts, "giving up on delivery");
                }
                Ok(())
            }
            Attempt::Allowed(n) => {
                match self.call(deadline, || self.github.redeliver(&self.hook, candidate.delivery_id)).await {
                    Ok(()) => {
                        report.redelivered += 1;
                        tracing::info!(guid = %candidate.guid, delivery = candidate.delivery_id, attempt = n,
                            last_status = candidate.status_code, "redelivery requested");
                        Ok(())
                    }
                    Err(err @ GitHubError::RateLimited(_)) => Err(Stop::Pause(err.to_string())),
                    Err(err) => {
                        // This GUID's attempt is spent; the others still get theirs.
                        report.errors += 1;
                        tracing::error!(guid = %candidate.guid, error = %err, kind = err.kind(), "redelivery request failed");
                        Ok(())
                    }
                }
            }
        }
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
}
