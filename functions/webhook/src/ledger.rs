//! DynamoDB: the delivery ledger (dedupe on `X-GitHub-Delivery`), per-repository rate
//! windows and per-PR high-water marks, all in the one table (`pk` string key, `expires_at`
//! TTL attribute).
//!
//! A delivery is *admitted* before it is enqueued: one `TransactWriteItems` claims it (state
//! `pending`, with a lease and a random token) on the condition that no newer event was
//! accepted for its PR (a condition check on the PR's high-water mark, which it does not
//! write). After SQS took the message, a second transaction *settles* it: the claim becomes
//! `enqueued` and the mark rises to the event's time. So only an accepted delivery ever raises
//! the mark. A delivery refused after the claim (rate limit, failed enqueue) *releases* its
//! claim, so GitHub's redelivery of it is accepted again; a claim left behind by a container
//! that died mid-request blocks duplicates only until its lease ends, and a redelivery that
//! meets it is told to come back (409). DynamoDB deletes expired items late (up to days), so
//! every condition also treats an item past `expires_at` as absent.
//!
//! The per-repository rate window is a plain atomic update beside the transaction, not in it:
//! it is one item shared by every delivery of a repository, and a transaction on a shared item
//! is cancelled by any concurrent one (`TransactionConflict`).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};

#[derive(Debug, thiserror::Error)]
#[error("{backend} {operation}: {message}")]
pub struct LedgerError {
    /// `DynamoDB`, or another ledger's name.
    backend: &'static str,
    operation: &'static str,
    message: String,
}

impl LedgerError {
    /// An error of `backend`'s `operation`.
    pub fn new(backend: &'static str, operation: &'static str, message: impl Into<String>) -> LedgerError {
        LedgerError { backend, operation, message: message.into() }
    }
}

impl From<crate::budget::OverBudget> for LedgerError {
    fn from(over: crate::budget::OverBudget) -> Self {
        LedgerError::new(DYNAMODB, "request", over.to_string())
    }
}

const DYNAMODB: &str = "DynamoDB";

fn ledger_error<E, R>(operation: &'static str, err: &SdkError<E, R>) -> LedgerError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    LedgerError::new(DYNAMODB, operation, DisplayErrorContext(err).to_string())
}

/// Proof of a claim; only its holder can confirm or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken(String);

impl ClaimToken {
    /// A fresh, unguessable token.
    pub fn random() -> ClaimToken {
        ClaimToken(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the ledger says about a delivery before it is enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Claimed for this request, and no newer event was accepted for its PR.
    Claimed(ClaimToken),
    /// Already enqueued (`in_progress: false`), or another request holds a live claim on it:
    /// that request may still die before enqueueing, so this one must be retried later.
    Duplicate { in_progress: bool },
    /// An event with a later `updated_at` was already accepted for the PR: enqueueing this one
    /// could undo it (e.g. an `opened` redelivered after the PR's `closed`). Nothing written.
    Superseded,
}

/// Why DynamoDB cancelled a transaction, read from its `CancellationReasons` (one per item, in
/// request order: the claim first, then the PR's mark).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cancelled {
    Duplicate {
        in_progress: bool,
    },
    Superseded,
    /// Another transaction held one of the items at that moment: try again.
    Conflict,
    Other(String),
}

fn code(reason: &CancellationReason) -> &str {
    reason.code().unwrap_or("None")
}

/// The admission transaction's cancellation, read (pure). A duplicate wins over a superseded
/// event: a redelivery of an accepted event is a duplicate, whatever the mark says now.
fn read_admission_cancel(reasons: &[CancellationReason], now: i64) -> Cancelled {
    let failed = |i: usize| reasons.get(i).is_some_and(|r| code(r) == "ConditionalCheckFailed");
    if failed(0) {
        let claim = reasons.first().and_then(CancellationReason::item);
        // The claim's condition admits an expired lease, so a pending claim that failed it is
        // live (the time check is repeated in case the item came back without `lease_until`).
        let in_progress = claim.is_some_and(|item| {
            attr_str(item, "state") == Some(STATE_PENDING) && attr_num(item, "lease_until").is_none_or(|l| l >= now)
        });
        return Cancelled::Duplicate { in_progress };
    }
    if failed(1) {
        return Cancelled::Superseded;
    }
    if reasons.iter().any(|r| code(r) == "TransactionConflict") {
        return Cancelled::Conflict;
    }
    let codes: Vec<&str> = reasons.iter().map(code).collect();
    Cancelled::Other(format!("transaction cancelled: [{}]", codes.join(", ")))
}

/// The settle transaction's cancellation (the claim first, then the mark), read (pure).
fn read_settle_cancel(reasons: &[CancellationReason]) -> Cancelled {
    let failed = |i: usize| reasons.get(i).is_some_and(|r| code(r) == "ConditionalCheckFailed");
    match (failed(0), failed(1)) {
        // Someone took the claim over after our lease: the mark is still ours to raise.
        (true, _) => Cancelled::Duplicate { in_progress: false },
        // A newer event was accepted meanwhile: its mark stays; confirm alone.
        (false, true) => Cancelled::Superseded,
        _ if reasons.iter().any(|r| code(r) == "TransactionConflict") => Cancelled::Conflict,
        _ => Cancelled::Other("transaction cancelled".into()),
    }
}

/// Attempts per transaction cancelled by a conflict (two deliveries of one PR at once).
const CONFLICT_ATTEMPTS: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    Limited { retry_after_seconds: u64 },
}

/// The delivery being admitted: its id and, for a pull request event, where it sits in its
/// PR's history.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub delivery_id: &'a str,
    pub repository: &'a str,
    /// `None` for checks and commands: nothing orders them by the PR's time.
    pub mark: Option<Mark>,
}

/// A pull request event's place in its PR's history.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub number: u64,
    /// The event's `updated_at`, epoch milliseconds.
    pub updated_ms: i64,
}

/// The condition that the PR's mark is not newer than `:u`. Equal times pass: GitHub can stamp
/// two events (e.g. `opened` and `labeled`) with the same second, and a redelivery after a
/// failed enqueue carries the time the mark may already hold.
const NOT_NEWER: &str = "attribute_not_exists(updated_ms) OR updated_ms <= :u OR expires_at < :now";

const STATE_PENDING: &str = "pending";
const STATE_ENQUEUED: &str = "enqueued";

pub fn delivery_key(delivery_id: &str) -> String {
    format!("delivery#{delivery_id}")
}

/// Fixed one-minute windows: one atomic `ADD` per request. (A window boundary can let up to
/// twice the limit through within one minute; documented in docs/webhook.md.)
pub fn rate_key(repository: &str, window_start: i64) -> String {
    format!("rate#{}#{window_start}", previewd_events::repository_key(repository))
}

/// The high-water mark of one PR: the newest `updated_at` accepted for it.
pub fn pr_key(repository: &str, number: u64) -> String {
    format!("pr#{}#{number}", previewd_events::repository_key(repository))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

#[derive(Debug, Clone)]
pub struct Ledger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    lease: Duration,
    retention: Duration,
}

impl Ledger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, lease: Duration, retention: Duration) -> Ledger {
        Ledger { client, table, lease, retention }
    }

    /// Claims the delivery for this request unless it is a duplicate or a newer event was
    /// accepted for its PR: one transaction, which writes nothing unless it claims.
    pub async fn admit(&self, entry: Entry<'_>, now: i64) -> Result<Admission, LedgerError> {
        let token = ClaimToken::random().0;
        let claim = Put::builder()
            .table_name(&self.table)
            .item("pk", s(delivery_key(entry.delivery_id)))
            .item("state", s(STATE_PENDING))
            .item("token", s(token.clone()))
            .item("lease_until", n(now.saturating_add(secs(self.lease))))
            .item("expires_at", n(now.saturating_add(secs(self.retention))))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now OR (#state = :pending AND lease_until < :now)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":pending", s(STATE_PENDING))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| LedgerError::new(DYNAMODB, "TransactWriteItems (admit)", e.to_string()))?;
        let mut items = vec![TransactWriteItem::builder().put(claim).build()];
        if let Some(mark) = entry.mark {
            let newest = ConditionCheck::builder()
                .table_name(&self.table)
                .key("pk", s(pr_key(entry.repository, mark.number)))
                .condition_expression(NOT_NEWER)
                .expression_attribute_values(":u", n(mark.updated_ms))
                .expression_attribute_values(":now", n(now))
                .build()
                .map_err(|e| LedgerError::new(DYNAMODB, "TransactWriteItems (admit)", e.to_string()))?;
            items.push(TransactWriteItem::builder().condition_check(newest).build());
        }
        match self.transact("TransactWriteItems (admit)", items, |reasons| read_admission_cancel(reasons, now)).await? {
            None => Ok(Admission::Claimed(ClaimToken(token))),
            Some(Cancelled::Duplicate { in_progress }) => Ok(Admission::Duplicate { in_progress }),
            Some(Cancelled::Superseded) => Ok(Admission::Superseded),
            Some(Cancelled::Conflict | Cancelled::Other(_)) => {
                Err(LedgerError::new(DYNAMODB, "TransactWriteItems (admit)", "unexpected cancellation"))
            }
        }
    }

    /// After SQS took the message: the claim becomes `enqueued` for the rest of the retention,
    /// and the PR's mark rises to the event's time (unless a newer one is there already).
    pub async fn settle(&self, entry: Entry<'_>, token: &ClaimToken, now: i64) -> Result<(), LedgerError> {
        let confirm = self.confirm_update(entry.delivery_id, token, now)?;
        let Some(mark) = entry.mark else {
            return self.update(confirm, "UpdateItem (confirm delivery)").await;
        };
        let raise = self.raise_update(entry.repository, mark, now)?;
        let items = vec![
            TransactWriteItem::builder().update(confirm).build(),
            TransactWriteItem::builder().update(raise).build(),
        ];
        let outcome = self.transact("TransactWriteItems (settle)", items, read_settle_cancel).await?;
        match outcome {
            None => Ok(()),
            Some(Cancelled::Superseded) => {
                let update = self.confirm_update(entry.delivery_id, token, now)?;
                self.update(update, "UpdateItem (confirm delivery)").await
            }
            Some(Cancelled::Duplicate { .. }) => {
                let update = self.raise_update(entry.repository, mark, now)?;
                self.update(update, "UpdateItem (PR high-water mark)").await
            }
            Some(Cancelled::Conflict | Cancelled::Other(_)) => {
                Err(LedgerError::new(DYNAMODB, "TransactWriteItems (settle)", "unexpected cancellation"))
            }
        }
    }

    fn confirm_update(&self, delivery_id: &str, token: &ClaimToken, now: i64) -> Result<Update, LedgerError> {
        Update::builder()
            .table_name(&self.table)
            .key("pk", s(delivery_key(delivery_id)))
            .update_expression("SET #state = :enqueued, expires_at = :exp REMOVE lease_until")
            .condition_expression("#token = :token")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":enqueued", s(STATE_ENQUEUED))
            .expression_attribute_values(":exp", n(now.saturating_add(secs(self.retention))))
            .expression_attribute_values(":token", s(token.0.clone()))
            .build()
            .map_err(|e| LedgerError::new(DYNAMODB, "UpdateItem (confirm delivery)", e.to_string()))
    }

    fn raise_update(&self, repository: &str, mark: Mark, now: i64) -> Result<Update, LedgerError> {
        Update::builder()
            .table_name(&self.table)
            .key("pk", s(pr_key(repository, mark.number)))
            .update_expression("SET updated_ms = :u, expires_at = :exp")
            .condition_expression(NOT_NEWER)
            .expression_attribute_values(":u", n(mark.updated_ms))
            .expression_attribute_values(":now", n(now))
            // As long as a delivery id is remembered: older events are refused by age after it.
            .expression_attribute_values(":exp", n(now.saturating_add(secs(self.retention))))
            .build()
            .map_err(|e| LedgerError::new(DYNAMODB, "UpdateItem (PR high-water mark)", e.to_string()))
    }

    /// One conditional update on its own; a failed condition is not an error (what it guards
    /// is already so).
    async fn update(&self, update: Update, operation: &'static str) -> Result<(), LedgerError> {
        let result = self
            .client
            .update_item()
            .table_name(update.table_name())
            .set_key(Some(update.key().clone()))
            .update_expression(update.update_expression())
            .set_condition_expression(update.condition_expression().map(str::to_owned))
            .set_expression_attribute_names(update.expression_attribute_names().cloned())
            .set_expression_attribute_values(update.expression_attribute_values().cloned())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(err) => Err(ledger_error(operation, &err)),
        }
    }

    /// Runs a transaction; `None` when it committed, else why it was cancelled (`read`). A
    /// conflict with a concurrent transaction on the same items is retried after a short,
    /// random pause.
    async fn transact(
        &self,
        operation: &'static str,
        items: Vec<TransactWriteItem>,
        read: impl Fn(&[CancellationReason]) -> Cancelled,
    ) -> Result<Option<Cancelled>, LedgerError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            let err = match result {
                Ok(_) => return Ok(None),
                Err(err) => err,
            };
            let cancelled = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => read(e.cancellation_reasons()),
                _ => return Err(ledger_error(operation, &err)),
            };
            match cancelled {
                Cancelled::Conflict if attempt < CONFLICT_ATTEMPTS => {
                    let pause = 10 + u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 40);
                    tokio::time::sleep(Duration::from_millis(pause * u64::from(attempt))).await;
                }
                Cancelled::Conflict => {
                    return Err(LedgerError::new(DYNAMODB, operation, "transaction conflicts persisted"));
                }
                Cancelled::Other(message) => return Err(LedgerError::new(DYNAMODB, operation, message)),
                decided => return Ok(Some(decided)),
            }
        }
    }

    /// Gives the claim up so a redelivery is accepted (only if this request still holds it).
    pub async fn release(&self, delivery_id: &str, token: &ClaimToken) -> Result<(), LedgerError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(delivery_key(delivery_id)))
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":token", s(token.0.clone()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone else took the claim over after our lease: nothing of ours to release.
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(err) => Err(ledger_error("DeleteItem (release delivery)", &err)),
        }
    }

    /// Counts one delivery for `repository` in the current minute, atomically refusing it once
    /// the window holds `limit`.
    pub async fn hit_rate(&self, repository: &str, limit: u32, now: i64) -> Result<RateDecision, LedgerError> {
        let window_start = now - now.rem_euclid(60);
        let window_end = window_start + 60;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(rate_key(repository, window_start)))
            .update_expression("ADD hits :one SET expires_at = :exp")
            .condition_expression("attribute_not_exists(hits) OR hits < :limit")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(i64::from(limit)))
            // Kept one window past its end, for inspection; never read after that.
            .expression_attribute_values(":exp", n(window_end + 60))
            .send()
            .await;
        match result {
            Ok(_) => Ok(RateDecision::Allowed),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Ok(RateDecision::Limited { retry_after_seconds: u64::try_from(window_end - now).unwrap_or(60).max(1) })
            }
            Err(err) => Err(ledger_error("UpdateItem (rate window)", &err)),
        }
    }
}

fn attr_str<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn attr_num(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

/// A duration in whole seconds, as the ledgers store times.
pub(crate) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(code: &str, item: Option<&[(&str, AttributeValue)]>) -> CancellationReason {
        let mut r = CancellationReason::builder().code(code);
        for (k, v) in item.unwrap_or_default() {
            r = r.item(*k, v.clone());
        }
        r.build()
    }

    #[test]
    fn cancellations_name_what_refused_the_delivery() {
        let pending = [("state", s(STATE_PENDING)), ("lease_until", n(160))];
        let enqueued = [("state", s(STATE_ENQUEUED))];
        let ok = reason("None", None);
        let check = |reasons: &[CancellationReason]| read_admission_cancel(reasons, 100);
        let failed = |item| reason("ConditionalCheckFailed", item);
        assert_eq!(check(&[failed(Some(&pending)), ok.clone()]), Cancelled::Duplicate { in_progress: true });
        assert_eq!(check(&[failed(Some(&enqueued)), ok.clone()]), Cancelled::Duplicate { in_progress: false });
        let superseded = reason("ConditionalCheckFailed", None);
        assert_eq!(
            check(&[failed(Some(&pending)), superseded.clone()]),
            Cancelled::Duplicate { in_progress: true },
            "a redelivery is a duplicate before it is stale"
        );
        assert_eq!(check(&[ok.clone(), superseded]), Cancelled::Superseded);
        assert_eq!(check(&[reason("TransactionConflict", None), ok.clone()]), Cancelled::Conflict);
        assert!(
            matches!(check(&[reason("ThrottlingError", None), ok]), Cancelled::Other(m) if m.contains("ThrottlingError"))
        );
        assert!(matches!(check(&[]), Cancelled::Other(_)));
    }

    #[test]
    fn keys_are_namespaced_and_case_folded() {
        assert_eq!(delivery_key("abc"), "delivery#abc");
        assert_eq!(rate_key("Acme/Shop", 120), "rate#acme/shop#120");
        assert_eq!(pr_key("Acme/Shop", 7), "pr#acme/shop#7");
    }
}
