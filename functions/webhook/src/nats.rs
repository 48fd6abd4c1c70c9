//! The in-cluster front's ledger and queue: NATS JetStream (`docs/in-cluster-front.md`).
//!
//! - Queue: the stream [`STREAM`], one subject per FIFO group (`previewd.events.<hex group>`),
//!   so each PR's messages keep their order; `Nats-Msg-Id` (the delivery id) drops a resend
//!   within the stream's duplicate window, as SQS's deduplication id does.
//! - Ledger: the key-value bucket [`LEDGER_BUCKET`] holds claims and PR marks, written with
//!   compare-and-set on the key's revision (the DynamoDB conditions' counterpart); entries live
//!   for the dedupe retention (the bucket's `max_age`). Rate windows are counters in
//!   [`RATE_BUCKET`], kept two minutes.
//!
//! Values carry their own expiry, and a value past it counts as absent, as in DynamoDB.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::kv::{self, Operation, Store};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use previewd_events::Message;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::backing::{DeliveryLedger, DeliveryQueue};
use crate::ledger::{Admission, ClaimToken, Entry, LedgerError, Mark, RateDecision, secs};
use crate::queue::QueueError;

/// The stream of accepted deliveries.
pub const STREAM: &str = "PREVIEWD_EVENTS";
/// Subjects of [`STREAM`]: this prefix, then the hex of the message's FIFO group.
pub const SUBJECT_PREFIX: &str = "previewd.events";
/// Claims and PR marks.
pub const LEDGER_BUCKET: &str = "previewd-deliveries";
/// Per-repository rate windows.
pub const RATE_BUCKET: &str = "previewd-rates";
/// How long the stream drops a message whose `Nats-Msg-Id` it has seen.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How long an unconsumed message is kept: a week, as long as the reconciler may be away.
pub const STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Compare-and-set attempts before a write that keeps losing races gives up.
const CAS_ATTEMPTS: u32 = 6;

/// The subject of a message in FIFO group `group`. Hex keeps any group (`owner/repo#12`, a
/// `check:` group) a single, valid subject token.
pub fn subject(group: &str) -> String {
    format!("{SUBJECT_PREFIX}.{}", hex::encode(group.as_bytes()))
}

/// The FIFO group a subject of [`STREAM`] was published to.
pub fn group_of(subject: &str) -> Option<String> {
    let token = subject.strip_prefix(SUBJECT_PREFIX)?.strip_prefix('.')?;
    String::from_utf8(hex::decode(token).ok()?).ok()
}

fn delivery_key(delivery_id: &str) -> String {
    format!("delivery.{}", hex::encode(delivery_id.as_bytes()))
}

fn pr_key(repository: &str, number: u64) -> String {
    format!("pr.{}.{number}", hex::encode(previewd_events::repository_key(repository).as_bytes()))
}

fn rate_key(repository: &str, window_start: i64) -> String {
    format!("rate.{}.{window_start}", hex::encode(previewd_events::repository_key(repository).as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum State {
    Pending,
    Enqueued,
}

/// A delivery's claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    state: State,
    token: String,
    lease_until: i64,
    expires_at: i64,
}

/// A PR's newest accepted `updated_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PrMark {
    updated_ms: i64,
    expires_at: i64,
}

/// A key as read: its live value, and the revision a compare-and-set must name (`None`: the
/// key was never written, so it is created).
#[derive(Debug)]
struct Slot<T> {
    value: Option<T>,
    revision: Option<u64>,
}

fn error(operation: &'static str, err: impl std::fmt::Display) -> LedgerError {
    LedgerError::new("JetStream", operation, err.to_string())
}

/// One bucket, read and written as JSON values with compare-and-set.
#[derive(Debug, Clone)]
struct Bucket(Store);

impl Bucket {
    async fn read<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
        live: impl Fn(&T) -> bool,
    ) -> Result<Slot<T>, LedgerError> {
        let entry = self.0.entry(key).await.map_err(|e| error("KV get", e))?;
        Ok(match entry {
            None => Slot { value: None, revision: None },
            Some(entry) => {
                let value = match entry.operation {
                    // An unreadable value is treated as absent and overwritten: it can only be
                    // a leftover of an incompatible version.
                    Operation::Put => serde_json::from_slice::<T>(&entry.value).ok().filter(|v| live(v)),
                    Operation::Delete | Operation::Purge => None,
                };
                Slot { value, revision: Some(entry.revision) }
            }
        })
    }

    /// Writes `value` if the key is still at `revision`; `Ok(false)` when another writer won.
    async fn write<T: Serialize>(&self, key: &str, value: &T, revision: Option<u64>) -> Result<bool, LedgerError> {
        let bytes = Bytes::from(serde_json::to_vec(value).map_err(|e| error("KV encode", e))?);
        let written = match revision {
            Some(revision) => self.0.update(key, bytes, revision).await.map(|_| ()).map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => None,
                _ => Some(error("KV update", e)),
            }),
            None => self.0.create(key, bytes).await.map(|_| ()).map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => None,
                _ => Some(error("KV create", e)),
            }),
        };
        match written {
            Ok(()) => Ok(true),
            Err(None) => Ok(false),
            Err(Some(err)) => Err(err),
        }
    }
}

/// The ledger and the queue on one JetStream connection.
#[derive(Debug, Clone)]
pub struct Jetstream {
    js: jetstream::Context,
    ledger: Bucket,
    rates: Bucket,
    lease: Duration,
    retention: Duration,
}

/// The stream's configuration (also what the reconciler's consumer reads from).
pub fn stream_config() -> stream::Config {
    stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![format!("{SUBJECT_PREFIX}.>")],
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        max_age: STREAM_MAX_AGE,
        ..Default::default()
    }
}

/// A client named `name` (shown in the server's connection list) with the stream created when
/// missing (idempotent: every replica and the reconciler do it at start). The client keeps
/// reconnecting after a server restart; requests meanwhile wait or time out.
pub async fn connect_to_stream(
    url: &str,
    name: &str,
) -> Result<(async_nats::Client, jetstream::stream::Stream), async_nats::Error> {
    let client = async_nats::ConnectOptions::new().name(name).retry_on_initial_connect().connect(url).await?;
    let stream = jetstream::new(client.clone()).get_or_create_stream(stream_config()).await?;
    Ok((client, stream))
}

impl Jetstream {
    /// Connects to `url` and creates the stream and buckets when missing (idempotent, so
    /// every replica does it at start).
    pub async fn connect(url: &str, lease: Duration, retention: Duration) -> Result<Jetstream, LedgerError> {
        let (client, _) = connect_to_stream(url, "previewd-webhook-server").await.map_err(|e| error("stream", e))?;
        let js = jetstream::new(client);
        let ledger = Self::bucket(&js, LEDGER_BUCKET, retention).await?;
        let rates = Self::bucket(&js, RATE_BUCKET, Duration::from_secs(120)).await?;
        Ok(Jetstream { js, ledger: Bucket(ledger), rates: Bucket(rates), lease, retention })
    }

    /// A key-value bucket is a stream of a known shape (`KV_<bucket>`, one message per key);
    /// it is created as that stream, because the client's own bucket creation first asks for
    /// account details in a form older servers (2.9, Debian's) do not send.
    async fn bucket(js: &jetstream::Context, name: &str, max_age: Duration) -> Result<Store, LedgerError> {
        let config = stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            storage: stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        js.get_or_create_stream(config).await.map_err(|e| error("KV bucket", e))?;
        js.get_key_value(name).await.map_err(|e| error("KV bucket", e))
    }

    fn expires(&self, now: i64) -> i64 {
        now.saturating_add(secs(self.retention))
    }

    async fn raise_mark(&self, repository: &str, mark: Mark, now: i64) -> Result<(), LedgerError> {
        let key = pr_key(repository, mark.number);
        for _ in 0..CAS_ATTEMPTS {
            let slot = self.ledger.read::<PrMark>(&key, |m| m.expires_at >= now).await?;
            if slot.value.is_some_and(|m| m.updated_ms >= mark.updated_ms) {
                return Ok(());
            }
            let value = PrMark { updated_ms: mark.updated_ms, expires_at: self.expires(now) };
            if self.ledger.write(&key, &value, slot.revision).await? {
                return Ok(());
            }
        }
        Err(LedgerError::new("JetStream", "KV update (PR mark)", "compare-and-set kept failing"))
    }
}

impl DeliveryLedger for Jetstream {
    async fn admit(&self, entry: Entry<'_>, now: i64) -> Result<Admission, LedgerError> {
        let key = delivery_key(entry.delivery_id);
        for _ in 0..CAS_ATTEMPTS {
            let claim = self.ledger.read::<Claim>(&key, |c| c.expires_at >= now).await?;
            match &claim.value {
                Some(Claim { state: State::Enqueued, .. }) => return Ok(Admission::Duplicate { in_progress: false }),
                Some(c) if c.lease_until >= now => return Ok(Admission::Duplicate { in_progress: true }),
                // No claim, or one whose lease ran out: it may be taken.
                _ => {}
            }
            if let Some(mark) = entry.mark {
                let key = pr_key(entry.repository, mark.number);
                let newest = self.ledger.read::<PrMark>(&key, |m| m.expires_at >= now).await?;
                if newest.value.is_some_and(|m| m.updated_ms > mark.updated_ms) {
                    return Ok(Admission::Superseded);
                }
            }
            let token = ClaimToken::random();
            let value = Claim {
                state: State::Pending,
                token: token.as_str().to_owned(),
                lease_until: now.saturating_add(secs(self.lease)),
                expires_at: self.expires(now),
            };
            if self.ledger.write(&key, &value, claim.revision).await? {
                return Ok(Admission::Claimed(token));
            }
        }
        Err(LedgerError::new("JetStream", "KV create (claim)", "compare-and-set kept failing"))
    }

    async fn settle(&self, entry: Entry<'_>, token: &ClaimToken, now: i64) -> Result<(), LedgerError> {
        let key = delivery_key(entry.delivery_id);
        let claim = self.ledger.read::<Claim>(&key, |_| true).await?;
        // A claim taken over after our lease is no longer ours to confirm; the mark still is.
        if let Some(mine) = claim.value.filter(|c| c.token == token.as_str()) {
            let confirmed = Claim { state: State::Enqueued, expires_at: self.expires(now), ..mine };
            if !self.ledger.write(&key, &confirmed, claim.revision).await? {
                tracing::warn!("the claim changed while it was confirmed");
            }
        }
        match entry.mark {
            Some(mark) => self.raise_mark(entry.repository, mark, now).await,
            None => Ok(()),
        }
    }

    async fn release(&self, delivery_id: &str, token: &ClaimToken) -> Result<(), LedgerError> {
        let key = delivery_key(delivery_id);
        let claim = self.ledger.read::<Claim>(&key, |_| true).await?;
        match (claim.value, claim.revision) {
            (Some(c), Some(revision)) if c.token == token.as_str() => self
                .ledger
                .0
                .delete_expect_revision(&key, Some(revision))
                .await
                // Changed meanwhile: someone took the claim over, nothing of ours to release.
                .or_else(|e| if e.kind() == kv::DeleteErrorKind::WrongLastRevision { Ok(()) } else { Err(e) })
                .map_err(|e| error("KV delete (release)", e)),
            _ => Ok(()),
        }
    }

    async fn hit_rate(&self, repository: &str, limit: u32, now: i64) -> Result<RateDecision, LedgerError> {
        let window_start = now - now.rem_euclid(60);
        let window_end = window_start + 60;
        let key = rate_key(repository, window_start);
        for _ in 0..CAS_ATTEMPTS * 4 {
            let slot = self.rates.read::<u64>(&key, |_| true).await?;
            let hits = slot.value.unwrap_or(0);
            if hits >= u64::from(limit) {
                let retry_after_seconds = u64::try_from(window_end - now).unwrap_or(60).max(1);
                return Ok(RateDecision::Limited { retry_after_seconds });
            }
            if self.rates.write(&key, &(hits + 1), slot.revision).await? {
                return Ok(RateDecision::Allowed);
            }
        }
        Err(LedgerError::new("JetStream", "KV update (rate window)", "compare-and-set kept failing"))
    }
}

impl DeliveryQueue for Jetstream {
    async fn send(&self, message: &Message, traceparent: Option<&str>) -> Result<String, QueueError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", message.delivery_id());
        if let Some(value) = traceparent {
            headers.insert(previewd_telemetry::TRACEPARENT, value);
        }
        let subject = subject(&message.message_group_id());
        let body = Bytes::from(message.to_json()?);
        let publish = async {
            let ack = self.js.publish_with_headers(subject, headers, body).await?;
            ack.await
        };
        let ack = publish
            .instrument(tracing::info_span!("jetstream.publish"))
            .await
            .map_err(|e| QueueError::Send(format!("JetStream publish: {e}")))?;
        Ok(ack.sequence.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_token_per_group_and_read_back() {
        for group in ["acme/shop#42", "check:acme/shop@abc", "repo-id:7#1", "a.b*c>d e"] {
            let subject = subject(group);
            let token = subject.strip_prefix("previewd.events.").unwrap_or_default();
            assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_hexdigit()), "{subject}");
            assert_eq!(group_of(&subject).as_deref(), Some(group));
        }
        assert_eq!(group_of("other.subject"), None);
        assert_eq!(group_of("previewd.events.zz"), None);
    }

    #[test]
    fn keys_are_valid_kv_keys_for_any_delivery_id() {
        let valid =
            |k: &str| k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b)) && !k.contains("..");
        for id in ["d-1", "has space", "ü", "a.b", "*>"] {
            assert!(valid(&delivery_key(id)), "{id}");
        }
        assert!(valid(&pr_key("Acme/Shop.js", 7)));
        assert_eq!(pr_key("Acme/Shop", 7), pr_key("acme/shop", 7), "case-folded like the DynamoDB keys");
        assert!(valid(&rate_key("acme/shop", 120)));
    }
}
