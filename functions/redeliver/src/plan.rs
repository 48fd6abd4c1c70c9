//! Which deliveries to redeliver (pure).
//!
//! GitHub lists deliveries newest first, and a redelivery is a new entry with the same GUID.
//! So by the time a scan reaches a failed delivery, every later attempt of the same GUID has
//! already been seen: a GUID is redelivered only if none of its attempts succeeded.

use std::collections::HashSet;

use crate::github::HookDelivery;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Succeeded,
    /// Worth another try: no HTTP answer (timeout, connection error), 429 or 5xx.
    Retryable,
    /// The receiver refused the content (400, 401, 413, ...): a redelivery gets the same answer.
    Permanent,
}

pub fn classify(status_code: u16) -> Verdict {
    match status_code {
        200..=299 => Verdict::Succeeded,
        // 409: the webhook met a live claim on the delivery, which may still fail.
        0 | 408 | 409 | 429 | 500..=599 => Verdict::Retryable,
        _ => Verdict::Permanent,
    }
}

/// A GUID to redeliver, through its newest failed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub guid: String,
    pub delivery_id: u64,
    pub status_code: u16,
}

/// What one newest-first pass has seen so far.
#[derive(Debug, Default)]
pub struct Scan {
    succeeded: HashSet<String>,
    decided: HashSet<String>,
    pub permanent: u32,
}

impl Scan {
    /// Feeds the next (older) delivery; returns it as a candidate when it should be redelivered.
    pub fn observe(&mut self, delivery: &HookDelivery) -> Option<Candidate> {
        match classify(delivery.status_code) {
            Verdict::Succeeded => {
                self.succeeded.insert(delivery.guid.clone());
                None
            }
            _ if self.succeeded.contains(&delivery.guid) => None,
            // Only the newest attempt of a GUID is decided on.
            _ if !self.decided.insert(delivery.guid.clone()) => None,
            Verdict::Permanent => {
                self.permanent += 1;
                None
            }
            Verdict::Retryable => Some(Candidate {
                guid: delivery.guid.clone(),
                delivery_id: delivery.id,
                status_code: delivery.status_code,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: u64, guid: &str, status_code: u16) -> HookDelivery {
        HookDelivery {
            id,
            guid: guid.into(),
            delivered_at: chrono::DateTime::UNIX_EPOCH,
            redelivery: false,
            status_code,
            status: String::new(),
            event: "pull_request".into(),
            action: None,
        }
    }

    fn scan(newest_first: &[HookDelivery]) -> (Vec<u64>, u32) {
        let mut scan = Scan::default();
        let picked = newest_first.iter().filter_map(|x| scan.observe(x)).map(|c| c.delivery_id).collect();
        (picked, scan.permanent)
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(202), Verdict::Succeeded);
        assert_eq!(classify(0), Verdict::Retryable);
        assert_eq!(classify(503), Verdict::Retryable);
        assert_eq!(classify(429), Verdict::Retryable);
        assert_eq!(classify(401), Verdict::Permanent);
        assert_eq!(classify(302), Verdict::Permanent);
    }

    #[test]
    fn failed_guids_without_later_success_are_picked_once() {
        let (picked, permanent) = scan(&[
            d(9, "a", 202), // a's redelivery succeeded
            d(8, "b", 503), // b failed twice: the newest attempt is picked
            d(7, "c", 200),
            d(6, "b", 503),
            d(5, "a", 503),
            d(4, "d", 400), // refused content
            d(3, "e", 0),   // timed out
        ]);
        assert_eq!(picked, vec![8, 3]);
        assert_eq!(permanent, 1);
    }

    #[test]
    fn a_permanent_newest_attempt_is_not_retried_for_an_older_retryable_one() {
        let (picked, permanent) = scan(&[d(2, "x", 401), d(1, "x", 503)]);
        assert_eq!((picked, permanent), (vec![], 1));
    }
}
