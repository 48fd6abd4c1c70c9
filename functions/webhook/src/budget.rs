//! The time budget of one delivery. GitHub waits 10 s for an answer and the function's timeout
//! (`sam-template.yaml`) ends it before that; every stage that waits on AWS has its own bound,
//! and the bounds add up to less than both, with room for the function's own work. A stage
//! that runs out ends as that stage's failure does (the claim: 503; the queue: the claim is
//! released, 503; the secret refresh: the cached secret is kept), so GitHub always gets an
//! answer and a failed delivery comes back through the redeliver function.

use std::future::Future;
use std::time::Duration;

/// How long each stage of a delivery may wait on AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// A warm container's periodic re-read of the secret from Secrets Manager.
    pub secret_refresh: Duration,
    /// The dedupe claim, the rate window and the PR's order mark (written concurrently).
    pub ledger: Duration,
    /// SQS `SendMessage`.
    pub enqueue: Duration,
    /// The claim's confirmation after the send, or its release after a refusal or failed send.
    pub settle: Duration,
    /// Everything else: HMAC over a body at the size limit, parsing, logging, the response.
    pub own_work: Duration,
}

impl Budget {
    /// The deployed function's budget: 7.5 s at worst, under its 9 s timeout.
    pub const LAMBDA: Budget = Budget {
        secret_refresh: Duration::from_millis(1000),
        ledger: Duration::from_millis(2000),
        enqueue: Duration::from_millis(2500),
        settle: Duration::from_millis(1500),
        own_work: Duration::from_millis(500),
    };

    /// The most one delivery can take: every stage at its bound, in sequence.
    pub fn worst_case(&self) -> Duration {
        self.secret_refresh + self.ledger + self.enqueue + self.settle + self.own_work
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::LAMBDA
    }
}

/// How long GitHub waits for a delivery's answer before it marks the delivery failed.
pub const GITHUB_DEADLINE: Duration = Duration::from_secs(10);

/// A stage that used up its share of the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no answer within {0:?}, its share of the delivery's time budget")]
pub struct OverBudget(pub Duration);

/// `work`, or [`OverBudget`] once `limit` has passed (the work is then dropped, which cancels
/// its request).
pub async fn within<T, E: From<OverBudget>>(limit: Duration, work: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(E::from(OverBudget(limit))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stages_fit_github_deadline() {
        assert_eq!(Budget::LAMBDA.worst_case(), Duration::from_millis(7500));
        assert!(Budget::default().worst_case() < GITHUB_DEADLINE);
    }

    #[tokio::test]
    async fn a_slow_stage_ends_as_its_failure() {
        let limit = Duration::from_millis(20);
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<u8, OverBudget>(1)
        };
        assert_eq!(within(limit, slow).await, Err(OverBudget(limit)));
        assert_eq!(within(limit, async { Ok::<u8, OverBudget>(2) }).await, Ok(2));
    }
}
