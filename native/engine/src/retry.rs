//! When to try again and how long to wait first.
//!
//! Only transient causes are retried (connect errors, resets, stalls, 408, 429, 5xx);
//! other 4xx fail at once. The wait grows exponentially with "equal jitter" (half fixed,
//! half random) so that many connections failing together do not retry in lockstep, is
//! capped by `max_delay`, and yields to a server's `Retry-After` when it sends one.

use std::time::{Duration, SystemTime};

/// How retries behave; set per downloader with `set_retry_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one, per range (a range that made progress starts over).
    pub max_retries: u32,
    /// The first wait.
    pub base_delay: Duration,
    /// No computed wait exceeds this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// The longest `Retry-After` we honour; a server asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl RetryPolicy {
    /// The exponential ceiling before jitter for retry number `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The wait before retry number `attempt`, given a uniform random `unit` in [0, 1):
    /// half the ceiling plus a random share of the other half.
    pub fn delay(&self, attempt: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(MAX_RETRY_AFTER);
        }
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The wait with a fresh random draw.
    pub fn delay_random(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay(attempt, rand::random::<f64>(), retry_after)
    }
}

/// Whether an HTTP status is worth retrying.
pub fn status_is_transient(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// Parses `Retry-After`: delay-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(status_is_transient(s), "{s}");
        }
        for s in [200, 206, 301, 400, 401, 403, 404, 410, 416, 418] {
            assert!(!status_is_transient(s), "{s}");
        }
    }

    #[test]
    fn schedule_is_exponential_capped_and_jittered() {
        let p = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        };
        let ceilings: Vec<u128> = (0..7).map(|a| p.ceiling(a).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        // Equal jitter: between half and all of the ceiling.
        assert_eq!(p.delay(3, 0.0, None), Duration::from_millis(400));
        assert_eq!(p.delay(3, 0.999_999, None).as_millis(), 799);
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(2));
        for a in 0..40 {
            let d = p.delay_random(a, None);
            assert!(d <= p.max_delay && d >= p.ceiling(a) / 2);
        }
    }

    #[test]
    fn retry_after_wins_but_is_bounded() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(0, 0.5, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(0, 0.5, Some(Duration::from_secs(100_000))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn parses_retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        // 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
