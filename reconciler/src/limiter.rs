//! A sliding one-minute window: at most `per_minute` ApplicationSets are created per minute,
//! protecting Argo CD from a burst of new previews (e.g. after the cluster was down).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimiter {
    per_minute: usize,
    window: Mutex<VecDeque<Instant>>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter { per_minute: per_minute.max(1) as usize, window: Mutex::new(VecDeque::new()) }
    }

    /// Takes a slot now, or says how long until one frees up.
    pub fn try_acquire(&self, now: Instant) -> Result<(), Duration> {
        let Ok(mut window) = self.window.lock() else { return Ok(()) };
        while window.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            window.pop_front();
        }
        if window.len() < self.per_minute {
            window.push_back(now);
            return Ok(());
        }
        let oldest = window.front().copied().unwrap_or(now);
        Err(WINDOW.saturating_sub(now.duration_since(oldest)).max(Duration::from_secs(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_per_minute() {
        let limiter = RateLimiter::new(2);
        let t = Instant::now();
        assert!(limiter.try_acquire(t).is_ok());
        assert!(limiter.try_acquire(t + Duration::from_secs(10)).is_ok());
        assert_eq!(limiter.try_acquire(t + Duration::from_secs(20)), Err(Duration::from_secs(40)));
        assert!(limiter.try_acquire(t + Duration::from_secs(60)).is_ok());
    }
}
