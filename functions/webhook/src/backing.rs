//! What the pipeline needs from its ledger and its queue. The Lambda's are DynamoDB and SQS
//! (`ledger.rs`, `queue.rs`); the in-cluster front's are NATS JetStream (`nats.rs`). Both keep
//! the same answers: a duplicate is a duplicate, a newer accepted event supersedes an older
//! one, a live claim of another request is "in progress", and the rate window is per minute.

use std::future::Future;

use previewd_events::Message;

use crate::ledger::{Admission, ClaimToken, Entry, LedgerError, RateDecision};
use crate::queue::QueueError;

/// Dedupe, per-PR order marks and rate windows.
pub trait DeliveryLedger: Send + Sync {
    /// Claims the delivery unless it is a duplicate or a newer event of its PR was accepted.
    fn admit(&self, entry: Entry<'_>, now: i64) -> impl Future<Output = Result<Admission, LedgerError>> + Send;
    /// After the queue took the message: the claim becomes final and the PR's mark rises.
    fn settle(
        &self,
        entry: Entry<'_>,
        token: &ClaimToken,
        now: i64,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;
    /// Gives the claim up (only if `token` still holds it), so a redelivery is accepted.
    fn release(&self, delivery_id: &str, token: &ClaimToken) -> impl Future<Output = Result<(), LedgerError>> + Send;
    /// Counts one delivery for `repository` in the current minute, refusing it over `limit`.
    fn hit_rate(
        &self,
        repository: &str,
        limit: u32,
        now: i64,
    ) -> impl Future<Output = Result<RateDecision, LedgerError>> + Send;
}

/// The ordered, deduplicating queue the reconciler reads.
pub trait DeliveryQueue: Send + Sync {
    /// Enqueues `message` in its PR's order, deduplicated by its delivery id; `traceparent`
    /// travels beside the body. Returns the queue's id for the message.
    fn send(
        &self,
        message: &Message,
        traceparent: Option<&str>,
    ) -> impl Future<Output = Result<String, QueueError>> + Send;
}

impl DeliveryLedger for crate::ledger::Ledger {
    async fn admit(&self, entry: Entry<'_>, now: i64) -> Result<Admission, LedgerError> {
        crate::ledger::Ledger::admit(self, entry, now).await
    }
    async fn settle(&self, entry: Entry<'_>, token: &ClaimToken, now: i64) -> Result<(), LedgerError> {
        crate::ledger::Ledger::settle(self, entry, token, now).await
    }
    async fn release(&self, delivery_id: &str, token: &ClaimToken) -> Result<(), LedgerError> {
        crate::ledger::Ledger::release(self, delivery_id, token).await
    }
    async fn hit_rate(&self, repository: &str, limit: u32, now: i64) -> Result<RateDecision, LedgerError> {
        crate::ledger::Ledger::hit_rate(self, repository, limit, now).await
    }
}

impl DeliveryQueue for crate::queue::EventQueue {
    async fn send(&self, message: &Message, traceparent: Option<&str>) -> Result<String, QueueError> {
        crate::queue::EventQueue::send(self, message, traceparent).await
    }
}
