//! What survives between invocations, in the front's DynamoDB table: attempts per GUID (so a
//! delivery is never redelivered beyond its budget), the watermark of the last complete scan,
//! and where an interrupted scan resumes.

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::config::HookTarget;

#[derive(Debug, thiserror::Error)]
#[error("DynamoDB {operation}: {message}")]
pub struct StateError {
    operation: &'static str,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Go ahead: this is attempt number `n` (1-based).
    Allowed(u32),
    /// The budget is spent. `first_time` is true exactly once per GUID, for the gave-up metric.
    Exhausted { first_time: bool },
}

/// Attempt records outlive GitHub's 3-day redelivery window.
const ATTEMPT_RETENTION_SECS: i64 = 4 * 24 * 3600;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn attempt_key(guid: &str) -> String {
    format!("redeliver#{guid}")
}

pub fn watermark_key(hook: &HookTarget) -> String {
    format!("redeliver-watermark#{hook}")
}

/// A scan cut short (page limit, time budget, a long rate limit): the rest of its range, read
/// first by the next run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The next page to read (GitHub's cursor link).
    pub next: String,
    /// Read down to deliveries this old (epoch seconds).
    pub lower: i64,
    /// When the interrupted scan began: what is newer is the next top scan's.
    pub head: i64,
}

/// The scan's progress for one hook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Epoch seconds from which a scan must read, if one ever completed.
    pub since: Option<i64>,
    pub resume: Option<Resume>,
}

#[derive(Debug, Clone)]
pub struct State {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl State {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> State {
        State { client, table }
    }

    /// Counts one attempt for `guid` atomically, unless `max` were already made.
    pub async fn take_attempt(&self, guid: &str, max: u32, now: i64) -> Result<Attempt, StateError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(attempt_key(guid)))
            .update_expression("ADD attempts :one SET expires_at = :exp")
            .condition_expression("attribute_not_exists(attempts) OR attempts < :max")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(i64::from(max)))
            .expression_attribute_values(":exp", n(now + ATTEMPT_RETENTION_SECS))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                let attempts = out
                    .attributes()
                    .and_then(|a| a.get("attempts"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                Ok(Attempt::Allowed(attempts))
            }
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Ok(Attempt::Exhausted { first_time: self.mark_gave_up(guid).await? })
            }
            Err(err) => {
                Err(StateError { operation: "UpdateItem (attempts)", message: DisplayErrorContext(&err).to_string() })
            }
        }
    }

    /// Sets `gave_up` once; true when this call set it.
    async fn mark_gave_up(&self, guid: &str) -> Result<bool, StateError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(attempt_key(guid)))
            .update_expression("SET gave_up = :yes")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(gave_up)")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(err) => {
                Err(StateError { operation: "UpdateItem (gave up)", message: DisplayErrorContext(&err).to_string() })
            }
        }
    }

    /// Epoch seconds from which the next scan must read, if a scan ever completed.
    pub async fn watermark(&self, hook: &HookTarget) -> Result<Option<i64>, StateError> {
        Ok(self.progress(hook).await?.since)
    }

    /// The watermark and an interrupted scan, if any (one item, one read).
    pub async fn progress(&self, hook: &HookTarget) -> Result<Progress, StateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(watermark_key(hook)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| StateError {
                operation: "GetItem (watermark)",
                message: DisplayErrorContext(&err).to_string(),
            })?;
        let item = out.item();
        let number =
            |name: &str| item.and_then(|i| i.get(name)).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok());
        let next = item.and_then(|i| i.get("resume_next")).and_then(|v| v.as_s().ok()).cloned();
        let resume = match (next, number("resume_lower"), number("resume_head")) {
            (Some(next), Some(lower), Some(head)) => Some(Resume { next, lower, head }),
            _ => None,
        };
        Ok(Progress { since: number("since"), resume })
    }

    /// A complete scan: the watermark moves and any interrupted scan is done.
    pub async fn set_watermark(&self, hook: &HookTarget, since: i64) -> Result<(), StateError> {
        self.save_progress(hook, &Progress { since: Some(since), resume: None }).await
    }

    pub async fn save_progress(&self, hook: &HookTarget, progress: &Progress) -> Result<(), StateError> {
        let mut put = self.client.put_item().table_name(&self.table).item("pk", s(watermark_key(hook)));
        if let Some(since) = progress.since {
            put = put.item("since", n(since));
        }
        if let Some(resume) = &progress.resume {
            put = put
                .item("resume_next", s(resume.next.clone()))
                .item("resume_lower", n(resume.lower))
                .item("resume_head", n(resume.head));
        }
        put.send().await.map(|_| ()).map_err(|err| StateError {
            operation: "PutItem (watermark)",
            message: DisplayErrorContext(&err).to_string(),
        })
    }
}
