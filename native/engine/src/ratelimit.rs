//! A token bucket shared by every connection of one downloader, so `set_speed_limit`
//! caps the downloader as a whole and applies to transfers already under way.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct RateLimiter {
    /// Bytes per second; 0 means unlimited. Read on every acquire, so changes are live.
    rate: AtomicU64,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    /// May go negative: a debt that later acquirers wait out.
    tokens: f64,
    last: Instant,
}

/// The bucket holds at most this much time's worth of bytes, which bounds bursts.
const BURST: Duration = Duration::from_millis(100);

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(0)
    }
}

impl RateLimiter {
    pub fn new(rate: u64) -> Self {
        RateLimiter {
            rate: AtomicU64::new(rate),
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    pub fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Ordering::Relaxed);
        if let Ok(mut b) = self.bucket.lock() {
            // Forget debt and savings of the old rate.
            b.tokens = 0.0;
            b.last = Instant::now();
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// How long to wait before `n` bytes may be consumed; the bytes are taken now.
    pub fn reserve(&self, n: u64, now: Instant) -> Duration {
        let rate = self.rate();
        if rate == 0 {
            return Duration::ZERO;
        }
        let Ok(mut b) = self.bucket.lock() else {
            return Duration::ZERO;
        };
        let rate_f = rate as f64;
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.last = now;
        let cap = (rate_f * BURST.as_secs_f64()).max(16_384.0);
        b.tokens = (b.tokens + elapsed * rate_f).min(cap);
        b.tokens -= n as f64;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / rate_f)
        }
    }

    /// Waits until `n` more bytes fit under the limit.
    pub async fn acquire(&self, n: u64) {
        let wait = self.reserve(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let r = RateLimiter::new(0);
        assert_eq!(r.reserve(u64::MAX / 2, Instant::now()), Duration::ZERO);
    }

    #[test]
    fn waits_match_the_rate() {
        let r = RateLimiter::new(1_000_000);
        let t0 = Instant::now();
        r.set_rate(1_000_000);
        // 10 MB taken at once must be waited out for about 10 s.
        let mut total = Duration::ZERO;
        for _ in 0..10 {
            total = r.reserve(1_000_000, t0);
        }
        let secs = total.as_secs_f64();
        assert!((9.9..=10.1).contains(&secs), "{secs}");
    }
}
