//! DynamoDB: the delivery ledger (dedupe on `X-GitHub-Delivery`), per-repository rate
//! windows and per-PR high-water marks, all in the one table (`pk` string key, `expires_at`
//! TTL attribute).
//!
//! A delivery is *claimed* (state `pending`, with a lease and a random token) before it is
//! enqueued, *confirmed* (state `enqueued`) after SQS took it, and *released* (deleted) when
//! the enqueue failed — so GitHub's redelivery of a failed delivery is accepted again. A claim
//! left behind by a container that died mid-request blocks duplicates only until its lease
//! ends. DynamoDB deletes expired items late (up to days), so every condition also treats an
//! item past `expires_at` as absent.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

#[derive(Debug, thiserror::Error)]
#[error("DynamoDB {operation}: {message}")]
pub struct LedgerError {
    operation: &'static str,
    message: String,
}

impl From<crate::budget::OverBudget> for LedgerError {
    fn from(over: crate::budget::OverBudget) -> Self {
        LedgerError { operation: "request", message: over.to_string() }
    }
}

fn ledger_error<E, R>(operation: &'static str, err: &SdkError<E, R>) -> LedgerError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    LedgerError { operation, message: DisplayErrorContext(err).to_string() }
}

/// Proof of a claim; only its holder can confirm or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Claimed(ClaimToken),
    /// Already enqueued, or another request holds a live claim.
    Duplicate {
        in_progress: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    Limited { retry_after_seconds: u64 },
}

/// Whether a delivery is the newest GitHub has sent for its PR so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Not older than anything accepted for the PR (the high-water mark now covers it).
    Newest,
    /// An event with a later `updated_at` was already accepted for the PR: enqueueing this one
    /// could undo it (e.g. an `opened` redelivered after the PR's `closed`).
    Superseded,
}

const STATE_PENDING: &str = "pending";
const STATE_ENQUEUED: &str = "enqueued";

pub fn delivery_key(delivery_id: &str) -> String {
    format!("delivery#{delivery_id}")
}

/// Fixed one-minute windows: one atomic `ADD` per request. (A window boundary can let up to
/// twice the limit through within one minute; documented in docs/webhook.md.)
pub fn rate_key(repository: &str, window_start: i64) -> String {
    format!("rate#{}#{window_start}", repository.to_ascii_lowercase())
}

/// The high-water mark of one PR: the newest `updated_at` accepted for it.
pub fn pr_key(repository: &str, number: u64) -> String {
    format!("pr#{}#{number}", repository.to_ascii_lowercase())
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

    /// Claims `delivery_id` for this request (one conditional write).
    pub async fn claim(&self, delivery_id: &str, now: i64) -> Result<Claim, LedgerError> {
        let token = uuid::Uuid::new_v4().to_string();
        let lease_until = now.saturating_add(secs(self.lease));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(delivery_key(delivery_id)))
            .item("state", s(STATE_PENDING))
            .item("token", s(token.clone()))
            .item("lease_until", n(lease_until))
            .item("expires_at", n(now.saturating_add(secs(self.retention))))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now OR (#state = :pending AND lease_until < :now)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":pending", s(STATE_PENDING))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Claimed(ClaimToken(token))),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    let in_progress =
                        failed.item().map(|item| attr_str(item, "state") == Some(STATE_PENDING)).unwrap_or(false);
                    Ok(Claim::Duplicate { in_progress })
                }
                _ => Err(ledger_error("PutItem (claim delivery)", &err)),
            },
        }
    }

    /// Marks the claimed delivery as enqueued for the rest of the retention period.
    pub async fn confirm(&self, delivery_id: &str, token: &ClaimToken, now: i64) -> Result<(), LedgerError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(delivery_key(delivery_id)))
            .update_expression("SET #state = :enqueued, expires_at = :exp REMOVE lease_until")
            .condition_expression("#token = :token")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":enqueued", s(STATE_ENQUEUED))
            .expression_attribute_values(":exp", n(now.saturating_add(secs(self.retention))))
            .expression_attribute_values(":token", s(token.0.clone()))
            .send()
            .await
            .map(|_| ())
            .map_err(|err| ledger_error("UpdateItem (confirm delivery)", &err))
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

    /// Moves the PR's high-water mark up to `updated_at` (epoch milliseconds), or reports that
    /// a newer event was already accepted. Equal times pass: GitHub can stamp two events
    /// (e.g. `opened` and `labeled`) with the same second, and a redelivery after a failed
    /// enqueue carries the time the mark already holds.
    pub async fn advance(
        &self,
        repository: &str,
        number: u64,
        updated_at_ms: i64,
        now: i64,
    ) -> Result<Order, LedgerError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pr_key(repository, number)))
            .update_expression("SET updated_ms = :u, expires_at = :exp")
            .condition_expression("attribute_not_exists(updated_ms) OR updated_ms <= :u OR expires_at < :now")
            .expression_attribute_values(":u", n(updated_at_ms))
            .expression_attribute_values(":now", n(now))
            // As long as a delivery id is remembered: older events are refused by age after it.
            .expression_attribute_values(":exp", n(now.saturating_add(secs(self.retention))))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Order::Newest),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Ok(Order::Superseded)
            }
            Err(err) => Err(ledger_error("UpdateItem (PR high-water mark)", &err)),
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

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_case_folded() {
        assert_eq!(delivery_key("abc"), "delivery#abc");
        assert_eq!(rate_key("Acme/Shop", 120), "rate#acme/shop#120");
        assert_eq!(pr_key("Acme/Shop", 7), "pr#acme/shop#7");
    }
}
