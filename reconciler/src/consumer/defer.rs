//! When a message that cannot be handled yet comes back (pure).
//!
//! SQS counts every receive towards the queue's `maxReceiveCount`, whatever the consumer did
//! with the message, and moves it to the dead-letter queue after that. A message deferred on
//! purpose (its preview is still being torn down; a newer contract version than this build
//! reads) must never get there: it is delayed with a growing backoff, and once its next
//! receive would be its last, it is sent again as a fresh message instead (receive count 1, the
//! same FIFO group). The copy joins the end of its group: whatever was queued behind it for the
//! PR is newer and is handled first, which is what the newest-event-wins rule wants anyway.

use std::time::Duration;

/// How long deferred messages wait, by how often they were received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first receive.
    pub first: Duration,
    /// The longest delay (SQS allows up to 12 h of visibility).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { first: Duration::from_secs(30), max: Duration::from_secs(15 * 60) }
    }
}

/// What to do with a message that has to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// Make it visible again after this long.
    Delay(Duration),
    /// Send it again as a new message and delete this one: its next receive would move it to
    /// the dead-letter queue.
    Resend,
}

impl Backoff {
    /// `first`, doubled per earlier receive, at most `max`.
    pub fn delay(&self, receives: u32) -> Duration {
        let doublings = receives.saturating_sub(1).min(20);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }

    /// The deferral of a message received `receives` times from a queue that dead-letters
    /// after `max_receives`.
    pub fn defer(&self, receives: u32, max_receives: u32) -> Deferral {
        if receives.saturating_add(1) >= max_receives {
            Deferral::Resend
        } else {
            Deferral::Delay(self.delay(receives))
        }
    }
}

/// SQS takes visibility timeouts in whole seconds, up to 12 hours.
pub(super) fn visibility_seconds(delay: Duration) -> i32 {
    i32::try_from(delay.as_secs().min(43_200)).unwrap_or(43_200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_its_cap_and_the_last_receive_resends() {
        let b = Backoff::default();
        let delays: Vec<u64> = (1..=7).map(|r| b.delay(r).as_secs()).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 900, 900]);
        assert_eq!(b.delay(u32::MAX), b.max);
        assert_eq!(b.defer(3, 5), Deferral::Delay(Duration::from_secs(120)));
        assert_eq!(b.defer(4, 5), Deferral::Resend, "a fifth receive would be the last");
        assert_eq!(b.defer(1, 1), Deferral::Resend);
        assert_eq!(visibility_seconds(Duration::from_secs(u64::MAX)), 43_200);
    }
}
