//! The request pipeline: a pure part ([`prepare`]: size -> signature -> headers -> body ->
//! parse -> policy) and the I/O part ([`Webhook::process`]: admission and rate limit in
//! DynamoDB, concurrently, then SQS, then settle: three sequential round trips).

use std::time::Instant;

use chrono::{DateTime, Utc};
use previewd_events::{CheckSource, Message, PrAction};
use tracing::Instrument;

use crate::backing::{DeliveryLedger, DeliveryQueue};
use crate::body::json_payload;
use crate::budget::{Budget, within};
use crate::checks;
use crate::config::Config;
use crate::emf;
use crate::github::{EventKind, Parsed, parse_pull_request};
use crate::ledger::{Admission, ClaimToken, Entry, Ledger, Mark, RateDecision};
use crate::queue::EventQueue;
use crate::reply::{Outcome, Reply};
use crate::secrets::SecretSource;
use crate::signature::{self, Secrets};

/// The parts of an HTTP request the webhook reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delivery<'a> {
    /// `X-GitHub-Event`
    pub event: Option<&'a str>,
    /// `X-GitHub-Delivery`
    pub delivery_id: Option<&'a str>,
    /// `X-Hub-Signature-256`
    pub signature: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

impl<'a> Delivery<'a> {
    /// Reads the webhook's inputs from a request's headers (case-insensitive) and body.
    pub fn from_http(headers: &'a lambda_http::http::HeaderMap, body: &'a [u8]) -> Delivery<'a> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Delivery {
            event: header("x-github-event"),
            delivery_id: header("x-github-delivery"),
            signature: header("x-hub-signature-256"),
            content_type: header("content-type"),
            body,
        }
    }
}

/// Bounded metric dimensions for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub event: &'static str,
    pub action: &'static str,
}

impl Dims {
    const NONE: Dims = Dims { event: "none", action: "none" };
}

/// Result of the pure stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    Respond(Reply),
    Enqueue(Box<Message>),
}

/// SQS allows up to 128 printable ASCII characters in a deduplication id.
fn valid_delivery_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Everything up to the first AWS call: no I/O, so it is unit-tested and benchmarked alone.
pub fn prepare(config: &Config, secrets: &Secrets, d: &Delivery<'_>, now: DateTime<Utc>) -> (Prepared, Dims) {
    let respond = |outcome, reason: &str| Prepared::Respond(Reply::new(outcome, reason));
    if d.body.len() > config.max_body_bytes {
        let reason = format!("body of {} bytes exceeds the limit of {} bytes", d.body.len(), config.max_body_bytes);
        return (respond(Outcome::TooLarge, &reason), Dims::NONE);
    }
    if let Err(err) = signature::verify(secrets, d.signature, d.body) {
        return (respond(Outcome::Unauthorized, &err.to_string()), Dims::NONE);
    }
    let Some(delivery_id) = d.delivery_id.map(str::trim).filter(|id| valid_delivery_id(id)) else {
        return (respond(Outcome::Malformed, "missing or invalid X-GitHub-Delivery header"), Dims::NONE);
    };
    let Some(event) = d.event.map(str::trim).filter(|e| !e.is_empty()) else {
        return (respond(Outcome::Malformed, "missing X-GitHub-Event header"), Dims::NONE);
    };
    let with_id = |mut reply: Reply| {
        reply.delivery = Some(delivery_id.to_owned());
        Prepared::Respond(reply)
    };
    let kind = EventKind::from_header(event);
    let mut dims = Dims { event: kind.label(), action: "none" };
    match kind {
        EventKind::Ping => return (with_id(Reply::new(Outcome::Pong, "pong")), dims),
        EventKind::Other(_) => return (with_id(Reply::new(Outcome::Ignored, "event not used by Previewd")), dims),
        EventKind::PullRequest | EventKind::Check(_) | EventKind::IssueComment => {}
    }
    let payload = match json_payload(d.content_type, d.body) {
        Ok(payload) => payload,
        Err(err) => {
            return (with_id(Reply::new(Outcome::Malformed, err.to_string())), dims);
        }
    };
    let parsed = match kind {
        EventKind::Check(CheckSource::Status) => checks::parse_status(&payload, delivery_id, now),
        EventKind::Check(source) => checks::parse_run(source, &payload, delivery_id, now),
        EventKind::IssueComment => checks::parse_comment(&payload, delivery_id, now),
        _ => parse_pull_request(&payload, delivery_id, now),
    };
    let message = match parsed {
        Ok(Parsed::Event(message)) => message,
        Ok(Parsed::Ignored { action, reason }) => {
            dims.action = action_label(kind, &action);
            return (with_id(Reply::new(Outcome::Ignored, format!("{reason}: {action}"))), dims);
        }
        Err(err) => {
            return (with_id(Reply::new(Outcome::Malformed, err.to_string())), dims);
        }
    };
    dims.action = match message.as_ref() {
        Message::PullRequest(event) => event.action.as_str(),
        Message::Check(check) => check.state.as_str(),
        Message::Command(_) => "created",
    };
    if !config.repository_allowed(&message.repository().full_name) {
        let reason = "repository not in PREVIEWD_ALLOWED_REPOSITORIES";
        return (with_id(Reply::new(Outcome::Ignored, reason)), dims);
    }
    (Prepared::Enqueue(message), dims)
}

/// A bounded label for an ignored delivery's action.
fn action_label(kind: EventKind<'_>, action: &str) -> &'static str {
    match kind {
        EventKind::PullRequest => PrAction::from_github(action).map_or("other", PrAction::as_str),
        _ => match action {
            "created" => "created",
            "edited" => "edited",
            "deleted" => "deleted",
            "pending" => "pending",
            "requested" => "requested",
            "rerequested" => "rerequested",
            _ => "other",
        },
    }
}

/// Refuses an event older than the replay window (the dedupe retention): its delivery id may
/// be forgotten by now, so a replay of it would otherwise be accepted again. GitHub redelivers
/// for 3 days at most, and the retention is at least that.
pub fn outside_replay_window(message: &Message, config: &Config, now: DateTime<Utc>) -> Option<Reply> {
    let window = chrono::Duration::from_std(config.dedupe_retention).unwrap_or(chrono::Duration::MAX);
    let oldest = now.checked_sub_signed(window)?;
    (message.happened_at() < oldest).then(|| {
        let hours = config.dedupe_retention.as_secs() / 3600;
        let what = match message {
            Message::PullRequest(_) => "pull request updated_at",
            Message::Check(_) => "check completion time",
            Message::Command(_) => "comment creation time",
        };
        Reply::new(Outcome::Stale, format!("{what} is older than the {hours} h replay window"))
    })
}

/// The webhook with its clients, built once per container (or server): DynamoDB and SQS by
/// default, any [`DeliveryLedger`] and [`DeliveryQueue`] otherwise.
#[derive(Debug)]
pub struct Webhook<L = Ledger, Q = EventQueue> {
    config: Config,
    secrets: SecretSource,
    ledger: L,
    queue: Q,
    budget: Budget,
}

impl<L: DeliveryLedger, Q: DeliveryQueue> Webhook<L, Q> {
    pub fn new(config: Config, secrets: SecretSource, ledger: L, queue: Q) -> Webhook<L, Q> {
        Webhook { config, secrets, ledger, queue, budget: Budget::LAMBDA }
    }

    /// Other bounds per stage than the deployed function's (e.g. for an emulator under load).
    pub fn with_budget(mut self, budget: Budget) -> Webhook<L, Q> {
        self.budget = budget;
        self
    }

    /// Handles one request: logs it and writes its EMF line.
    pub async fn handle(&self, d: &Delivery<'_>) -> Reply {
        let started = Instant::now();
        let now = Utc::now();
        // Every log line of this request carries the delivery id (as sent: it is not verified
        // yet when the span opens, so it is cut to the length a valid id can have).
        let header_id: String = d.delivery_id.unwrap_or("").chars().take(128).collect();
        // The root of the delivery's trace: lambda_runtime's invocation span ends only after the
        // answer, when the spans were already flushed, so a parent there would never arrive.
        let span = tracing::info_span!(parent: None, "delivery", delivery_id = %header_id);
        let (reply, dims) = self.process(d, now).instrument(span.clone()).await;
        let _entered = span.enter();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let delivery = reply.delivery.as_deref().unwrap_or("");
        tracing::info!(
            event = dims.event,
            action = dims.action,
            outcome = reply.outcome.as_str(),
            status = reply.status(),
            reason = %reply.reason,
            latency_ms,
            "webhook request"
        );
        println!(
            "{}",
            emf::request_line(
                dims.event,
                dims.action,
                reply.outcome.as_str(),
                latency_ms,
                delivery,
                now.timestamp_millis()
            )
        );
        reply
    }

    /// The whole pipeline, without logging.
    pub async fn process(&self, d: &Delivery<'_>, now: DateTime<Utc>) -> (Reply, Dims) {
        let secrets = self.secrets.current().await;
        let (prepared, dims) = prepare(&self.config, &secrets, d, now);
        let message = match prepared {
            Prepared::Respond(reply) => return (reply, dims),
            Prepared::Enqueue(message) => message,
        };
        let mut reply = match outside_replay_window(&message, &self.config, now) {
            Some(reply) => reply,
            None => self.enqueue(&message, now.timestamp()).await,
        };
        reply.delivery = Some(message.delivery_id().to_owned());
        (reply, dims)
    }

    async fn enqueue(&self, message: &Message, now: i64) -> Reply {
        let entry = Entry {
            delivery_id: message.delivery_id(),
            repository: message.repository().full_name.as_str(),
            // Only pull request events are ordered by the PR's time: a check belongs to a
            // commit, and a command is ordered by its FIFO group alone.
            mark: match message {
                Message::PullRequest(event) => Some(Mark {
                    number: event.pull_request.number,
                    updated_ms: event.pull_request.updated_at.timestamp_millis(),
                }),
                Message::Check(_) | Message::Command(_) => None,
            },
        };
        // Admission and the rate window are independent: one round trip of latency for both.
        // Each stage is bounded (`budget`), so GitHub gets an answer within its deadline.
        let (admission, rate) = tokio::join!(
            within(self.budget.ledger, self.ledger.admit(entry, now)),
            within(self.budget.ledger, async {
                match self.config.rate_limit_per_minute {
                    Some(limit) => self.ledger.hit_rate(entry.repository, limit, now).await.map(Some),
                    None => Ok(None),
                }
            }),
        );
        // Admission fails closed: without the ledger a delivery could be enqueued twice, and a
        // 503 is safe (GitHub marks it failed; the redeliver function sends it again).
        let token = match admission {
            Ok(Admission::Claimed(token)) => token,
            Ok(Admission::Duplicate { in_progress: false }) => {
                return Reply::new(Outcome::Duplicate, "delivery already enqueued");
            }
            // The other request may still die before it enqueues: only a non-2xx answer makes
            // GitHub (and the redeliver function) try this delivery again.
            Ok(Admission::Duplicate { in_progress: true }) => {
                let mut reply = Reply::new(Outcome::InProgress, "delivery is being processed by another request");
                reply.retry_after = Some(self.config.claim_lease.as_secs().max(1));
                return reply;
            }
            Ok(Admission::Superseded) => {
                return Reply::new(Outcome::Stale, "a newer event for this pull request was already accepted");
            }
            Err(err) => {
                tracing::error!(error = %err, "delivery admission failed");
                return Reply::new(Outcome::Unavailable, "delivery ledger unavailable; retry later");
            }
        };
        match rate {
            Ok(Some(RateDecision::Limited { retry_after_seconds })) => {
                self.release(entry.delivery_id, &token).await;
                let mut reply = Reply::new(Outcome::RateLimited, "repository is over its per-minute delivery limit");
                reply.retry_after = Some(retry_after_seconds);
                return reply;
            }
            Ok(None | Some(RateDecision::Allowed)) => {}
            // The rate limit fails open: it protects the cluster from floods, and refusing
            // every delivery while its counter is unwritable would drop real work.
            Err(err) => tracing::warn!(error = %err, "rate limit check failed; delivery let through"),
        }
        // The delivery's span goes with the message: the reconciler's work continues its trace.
        let traceparent = previewd_telemetry::traceparent(&tracing::Span::current());
        match within(self.budget.enqueue, self.queue.send(message, traceparent.as_deref())).await {
            Ok(message_id) => {
                if let Err(err) = within(self.budget.settle, self.ledger.settle(entry, &token, now)).await {
                    // The message is on the queue; the claim still blocks duplicates for its
                    // lease, and the reconciler drops an event older than its preview's.
                    tracing::warn!(error = %err, "could not settle the delivery in the ledger");
                }
                let mut reply = Reply::new(Outcome::Accepted, "enqueued");
                reply.message_id = Some(message_id);
                reply
            }
            Err(err) => {
                tracing::error!(error = %err, "enqueue failed");
                self.release(entry.delivery_id, &token).await;
                Reply::new(Outcome::Unavailable, "queue unavailable; GitHub may redeliver")
            }
        }
    }

    async fn release(&self, id: &str, token: &ClaimToken) {
        if let Err(err) = within(self.budget.settle, self.ledger.release(id, token)).await {
            // The lease ends the claim anyway; a redelivery after it is accepted.
            tracing::warn!(error = %err, "could not release claim");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use proptest::prelude::*;

    fn config(max_body: &str, allowed: &str) -> Config {
        Config::from_lookup(|k| {
            match k {
                "PREVIEWD_WEBHOOK_SECRET" => Some("s"),
                "PREVIEWD_QUEUE_URL" => Some("http://localhost/1/q.fifo"),
                "PREVIEWD_TABLE_NAME" => Some("t"),
                "PREVIEWD_MAX_BODY_BYTES" => Some(max_body),
                "PREVIEWD_ALLOWED_REPOSITORIES" => Some(allowed),
                _ => None,
            }
            .map(str::to_owned)
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn secrets() -> Secrets {
        Secrets::parse("s").unwrap_or_else(|e| panic!("{e}"))
    }

    const PR: &str = r#"{"action":"opened","pull_request":{"number":1,"state":"open","title":"t","html_url":"u","updated_at":"2026-01-01T00:00:00Z","author_association":"NONE","user":{"login":"a"},"head":{"sha":"0123456789012345678901234567890123456789","ref":"f","repo":{"full_name":"o/r"}},"base":{"ref":"main","repo":{"full_name":"o/r"}}},"repository":{"id":1,"full_name":"o/r","name":"r","owner":{"login":"o"}},"sender":{"login":"a"}}"#;

    fn outcome(config: &Config, d: &Delivery<'_>) -> Result<Outcome, Box<Message>> {
        match prepare(config, &secrets(), d, Utc::now()).0 {
            Prepared::Respond(reply) => Ok(reply.outcome),
            Prepared::Enqueue(event) => Err(event),
        }
    }

    fn signed(body: &[u8]) -> String {
        signature::sign(b"s", body)
    }

    #[test]
    fn each_rejection_has_its_status() {
        let c = config("4000", "");
        let sig = signed(PR.as_bytes());
        let good = Delivery {
            event: Some("pull_request"),
            delivery_id: Some("d-1"),
            signature: Some(&sig),
            content_type: Some("application/json"),
            body: PR.as_bytes(),
        };
        assert!(outcome(&c, &good).is_err(), "a good delivery is enqueued");
        let big = config("10", "");
        assert_eq!(outcome(&big, &good), Ok(Outcome::TooLarge));
        assert_eq!(outcome(&c, &Delivery { signature: None, ..good }), Ok(Outcome::Unauthorized));
        assert_eq!(outcome(&c, &Delivery { delivery_id: None, ..good }), Ok(Outcome::Malformed));
        assert_eq!(outcome(&c, &Delivery { delivery_id: Some("has space"), ..good }), Ok(Outcome::Malformed));
        assert_eq!(outcome(&c, &Delivery { event: None, ..good }), Ok(Outcome::Malformed));
        assert_eq!(outcome(&c, &Delivery { content_type: Some("text/xml"), ..good }), Ok(Outcome::Malformed));
        assert_eq!(outcome(&c, &Delivery { event: Some("ping"), ..good }), Ok(Outcome::Pong));
        assert_eq!(outcome(&c, &Delivery { event: Some("star"), ..good }), Ok(Outcome::Ignored));
        assert_eq!(outcome(&config("4000", "other/*"), &good), Ok(Outcome::Ignored));
        assert!(outcome(&config("4000", "o/r"), &good).is_err());
    }

    #[test]
    fn signature_is_checked_before_anything_is_parsed() {
        // Garbage with a bad signature is 401, not 400: nothing unauthenticated is parsed.
        let c = config("4000", "");
        let d = Delivery {
            event: None,
            delivery_id: None,
            signature: Some("sha256=00"),
            content_type: Some("text/xml"),
            body: b"\xff\xfe",
        };
        assert_eq!(outcome(&c, &d), Ok(Outcome::Unauthorized));
    }

    #[test]
    fn events_older_than_the_dedupe_retention_are_stale() {
        let c = config("4000", "");
        let sig = signed(PR.as_bytes());
        let d = Delivery {
            event: Some("pull_request"),
            delivery_id: Some("d-1"),
            signature: Some(&sig),
            content_type: None,
            body: PR.as_bytes(),
        };
        let event = outcome(&c, &d).expect_err("enqueued");
        let updated = event.happened_at();
        // Retention is 96 h: the boundary is inclusive for the event, refused one second later.
        let at_edge = updated + chrono::Duration::hours(96);
        assert_eq!(outside_replay_window(&event, &c, at_edge), None);
        let reply = outside_replay_window(&event, &c, at_edge + chrono::Duration::seconds(1));
        assert!(matches!(&reply, Some(r) if r.outcome == Outcome::Stale && r.status() == 200), "{reply:?}");
        assert_eq!(outside_replay_window(&event, &c, updated - chrono::Duration::days(400)), None);
    }

    proptest! {
        #[test]
        fn no_signed_input_panics(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            event in prop_oneof![Just("pull_request".to_owned()), Just("ping".to_owned()), Just("check_run".to_owned()), Just("status".to_owned()), Just("issue_comment".to_owned()), ".{0,20}"],
            content_type in prop_oneof![Just("application/json".to_owned()), Just("application/x-www-form-urlencoded".to_owned()), ".{0,30}"],
            id in ".{0,140}",
        ) {
            let c = config("4000", "");
            let sig = signed(&body);
            let d = Delivery { event: Some(&event), delivery_id: Some(&id), signature: Some(&sig), content_type: Some(&content_type), body: &body };
            let _ = prepare(&c, &secrets(), &d, Utc::now());
        }

        #[test]
        fn mutated_pull_requests_never_panic(cut in 0usize..600, byte in any::<u8>()) {
            let mut body = PR.as_bytes().to_vec();
            let at = cut % body.len();
            body[at] = byte;
            let c = config("4000", "");
            let sig = signed(&body);
            let d = Delivery { event: Some("pull_request"), delivery_id: Some("d"), signature: Some(&sig), content_type: None, body: &body };
            let _ = prepare(&c, &secrets(), &d, Utc::now());
        }
    }
}
