//! Every answer the webhook gives: status code, a bounded outcome name (also the metric
//! dimension) and a short reason, rendered as a small JSON body.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Accepted,
    Pong,
    Duplicate,
    /// Another request holds a live claim on this delivery and may still fail: retry later.
    InProgress,
    /// A newer event for the same PR was already accepted, or the event is older than the
    /// replay window.
    Stale,
    Ignored,
    Malformed,
    Unauthorized,
    TooLarge,
    RateLimited,
    Unavailable,
}

impl Outcome {
    pub fn status(self) -> u16 {
        match self {
            Outcome::Accepted => 202,
            Outcome::Pong | Outcome::Duplicate | Outcome::Stale | Outcome::Ignored => 200,
            Outcome::Malformed => 400,
            // Conflict: retryable by the redeliver function (and counted failed by GitHub).
            Outcome::InProgress => 409,
            Outcome::Unauthorized => 401,
            Outcome::TooLarge => 413,
            Outcome::RateLimited => 429,
            Outcome::Unavailable => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Pong => "pong",
            Outcome::Duplicate => "duplicate",
            Outcome::InProgress => "in_progress",
            Outcome::Stale => "stale",
            Outcome::Ignored => "ignored",
            Outcome::Malformed => "malformed",
            Outcome::Unauthorized => "unauthorized",
            Outcome::TooLarge => "too_large",
            Outcome::RateLimited => "rate_limited",
            Outcome::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub outcome: Outcome,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Seconds, for 409 and 429 (also sent as the `Retry-After` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Reply {
    pub fn new(outcome: Outcome, reason: impl Into<String>) -> Reply {
        Reply { outcome, reason: reason.into(), delivery: None, message_id: None, retry_after: None }
    }

    pub fn status(&self) -> u16 {
        self.outcome.status()
    }

    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| format!("{{\"outcome\":\"{}\"}}", self.outcome.as_str()))
    }

    /// The HTTP answer, for any server (the Lambda adapter, `previewd webhook-server`): the
    /// status, JSON, and `Retry-After` where the reply has one.
    pub fn http_response(&self) -> lambda_http::http::Response<String> {
        let mut builder =
            lambda_http::http::Response::builder().status(self.status()).header("content-type", "application/json");
        if let Some(seconds) = self.retry_after {
            builder = builder.header("retry-after", seconds.to_string());
        }
        builder.body(self.body()).unwrap_or_else(|_| lambda_http::http::Response::new(self.body()))
    }
}
