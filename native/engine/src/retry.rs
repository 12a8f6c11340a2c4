//! Retries, in one place: what is retried, how long to wait, and when to give up.
//!
//! - **What is transient.** A request that failed for a cause a retry may cure (connect
//!   errors, resets, stalls, 408, 429, 5xx: [`status_is_transient`], and the transport's
//!   classification in `http`) carries `Error::transient`; other 4xx fail at once. A
//!   file whose server copy changed, or whose ranges broke, is not retried but restarted
//!   from zero ([`is_restart`]).
//! - **The schedule.** The wait grows exponentially with "equal jitter" (half fixed,
//!   half random) so that many connections failing together do not retry in lockstep,
//!   is capped by `max_delay`, and yields to a server's `Retry-After` when it sends one.
//! - **A streak per request** ([`Streak`]): one range (or a file's first request) is
//!   retried at most `max_retries` times in a row; bytes arriving in between start the
//!   count over (a new failure, not a repeat), so a flaky link that keeps delivering is
//!   never given up on.
//! - **A budget per file** ([`FileBudget`]): a range that runs out of retries does not
//!   fail its file; it hands its bytes back to the file's other connections
//!   (`Plan::release`). The file fails once its ranges ran out more often than
//!   [`MAX_HAND_BACKS`] (bytes that three connections in turn could not get are not one
//!   connection's fault), or when no connection is left to take the bytes.
//! - **`Retry-After` holds the host** ([`HostHolds`]): a server that asks one request to
//!   wait gets no request from this downloader before then, from any range or file.
//!
//! The decisions are [`after_range_failure`] (a range of a ranged transfer) and
//! [`after_file_failure`] (an attempt at a whole file); the stages only carry them out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;
use std::time::{Duration, SystemTime};

use url::Url;

use crate::error::{Error, ErrorCode};

/// How retries behave; set per downloader with `set_retry_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries of one request in a row, per range (a range that made progress starts
    /// over); also how often a file is attempted again, and at most [`MAX_HAND_BACKS`]
    /// hand-backs of a file's ranges.
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

/// Whether an HTTP status says "too many of your requests at once" (429 Too Many
/// Requests, 503 Service Unavailable): the host's connection limit is lowered
/// (`pushback`) besides the retry.
pub fn status_is_pushback(status: u16) -> bool {
    status == 429 || status == 503
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

/// A file that changed on the server, or whose ranges broke, starts over from zero
/// (whole, for broken ranges) instead of being retried.
pub fn is_restart(e: &Error) -> bool {
    !e.transient && matches!(e.code, ErrorCode::FileChanged | ErrorCode::RangeUnsupported)
}

/// Failures of one request in a row (one range, or a file's attempts), and the waits
/// between them.
#[derive(Debug, Clone)]
pub struct Streak {
    policy: RetryPolicy,
    retries: u32,
}

impl Streak {
    pub fn new(policy: RetryPolicy) -> Streak {
        Streak { policy, retries: 0 }
    }

    /// Bytes arrived since the last failure: the next one is new, not a repeat.
    pub fn progressed(&mut self) {
        self.retries = 0;
    }

    /// Retries taken in this streak.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    pub fn max_retries(&self) -> u32 {
        self.policy.max_retries
    }

    /// After a transient failure: the wait before the next try, or None when the streak
    /// has used its `max_retries`.
    pub fn next_wait(&mut self, e: &Error) -> Option<Duration> {
        if self.retries >= self.policy.max_retries {
            return None;
        }
        let wait = self.policy.delay_random(self.retries, e.retry_after);
        self.retries += 1;
        Some(wait)
    }
}

/// The most times a file's ranges may run out of retries and hand their bytes back; the
/// next one fails the file. Two: bytes that a third connection could not get either are
/// the server's doing, and each hand-back costs a whole streak of waits (15–30 s with
/// the default policy), so more would only delay a failure that is coming.
pub const MAX_HAND_BACKS: u32 = 2;

/// A file's failure budget, shared by its ranges: how many more times a range may run
/// out of retries and hand its bytes back instead of failing the file.
#[derive(Debug)]
pub struct FileBudget {
    hand_backs: AtomicU32,
}

impl FileBudget {
    /// `max_retries` caps it too: with no retries at all, nothing is handed back.
    pub fn new(policy: &RetryPolicy) -> FileBudget {
        FileBudget {
            hand_backs: AtomicU32::new(policy.max_retries.min(MAX_HAND_BACKS)),
        }
    }

    /// Spends one hand-back; false when none is left.
    pub fn take_hand_back(&self) -> bool {
        self.hand_backs
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// What a range does after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeStep {
    /// Wait this long, then ask again.
    Retry(Duration),
    /// Out of retries: give the bytes back to the file's other connections and stop.
    HandBack,
    /// The error is final for the file (or, for broken ranges, restarts it whole).
    Fail,
}

/// The decision after a failed range request.
pub fn after_range_failure(e: &Error, streak: &mut Streak, budget: &FileBudget) -> RangeStep {
    if !e.transient {
        return RangeStep::Fail;
    }
    if let Some(wait) = streak.next_wait(e) {
        return RangeStep::Retry(wait);
    }
    // A server answering ranges we did not ask for will do so on any connection: the
    // file restarts as one stream instead.
    if e.code != ErrorCode::RangeUnsupported && budget.take_hand_back() {
        return RangeStep::HandBack;
    }
    RangeStep::Fail
}

/// What the driver of a file does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStep {
    /// Forget the file's progress and start over from zero.
    Restart,
    /// Wait this long, then attempt again from what is on disk.
    Retry(Duration),
    Fail,
}

/// The decision after a failed attempt at a file (`restarts_left`: how many more times
/// it may start over in this run).
pub fn after_file_failure(e: &Error, streak: &mut Streak, restarts_left: bool) -> FileStep {
    if is_restart(e) && restarts_left {
        return FileStep::Restart;
    }
    if !e.transient {
        return FileStep::Fail;
    }
    match streak.next_wait(e) {
        Some(wait) => FileStep::Retry(wait),
        None => FileStep::Fail,
    }
}

/// Hosts that asked for a pause (`Retry-After`), shared by a downloader's requests: no
/// request goes to a held host before its time, so one range's 503 or 429 holds back
/// the others instead of each finding out for itself.
#[derive(Debug, Default)]
pub struct HostHolds {
    until: Mutex<HashMap<String, Instant>>,
}

/// A host as the holds know it: name and port (the same server on another port is
/// another server).
pub(crate) fn host_key(url: &Url) -> Option<String> {
    Some(format!(
        "{}:{}",
        url.host_str()?,
        url.port_or_known_default().unwrap_or(0)
    ))
}

impl HostHolds {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // Holds are plain instants: a panic elsewhere cannot leave them half-written.
        self.until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// No request to `url`'s host before `wait` from now (at most [`MAX_RETRY_AFTER`]);
    /// an existing longer hold stays.
    pub fn hold(&self, url: &Url, wait: Duration) {
        let Some(key) = host_key(url) else { return };
        let until = Instant::now() + wait.min(MAX_RETRY_AFTER);
        let mut t = self.table();
        let now = Instant::now();
        t.retain(|_, when| *when > now); // the table stays as small as the live holds
        let e = t.entry(key).or_insert(until);
        if *e < until {
            *e = until;
        }
    }

    /// When `url`'s host may be asked again, if it is held now.
    pub fn held_until(&self, url: &Url) -> Option<Instant> {
        let key = host_key(url)?;
        self.table()
            .get(&key)
            .copied()
            .filter(|w| *w > Instant::now())
    }

    /// Waits until `url`'s host is not held (a hold made meanwhile is waited for too).
    pub async fn wait(&self, url: &Url) {
        while let Some(when) = self.held_until(url) {
            tokio::time::sleep_until(when.into()).await;
        }
    }
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

    fn transient_503() -> Error {
        Error::transient(ErrorCode::HttpStatus, "HTTP 503")
    }

    #[test]
    fn a_streak_ends_after_max_retries_and_progress_starts_it_over() {
        let p = RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        };
        let mut s = Streak::new(p);
        let e = transient_503();
        assert!(s.next_wait(&e).is_some() && s.next_wait(&e).is_some());
        assert_eq!(s.next_wait(&e), None);
        s.progressed();
        assert!(s.next_wait(&e).is_some());
        assert_eq!(s.retries(), 1);
    }

    #[test]
    fn a_range_out_of_retries_hands_back_until_the_budget_is_spent() {
        let p = RetryPolicy {
            max_retries: 1,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        let budget = FileBudget::new(&p);
        let e = transient_503();
        let mut s = Streak::new(p);
        assert!(matches!(
            after_range_failure(&e, &mut s, &budget),
            RangeStep::Retry(_)
        ));
        assert_eq!(
            after_range_failure(&e, &mut s, &budget),
            RangeStep::HandBack
        );
        // max_retries 1 caps the budget at one hand-back.
        assert_eq!(after_range_failure(&e, &mut s, &budget), RangeStep::Fail);
        let big = FileBudget::new(&RetryPolicy::default());
        assert!(big.take_hand_back() && big.take_hand_back() && !big.take_hand_back());
        // Broken ranges and final errors are never handed back.
        let budget = FileBudget::new(&RetryPolicy::default());
        let mut s = Streak::new(RetryPolicy {
            max_retries: 0,
            ..p
        });
        let broken = Error::transient(ErrorCode::RangeUnsupported, "x");
        assert_eq!(
            after_range_failure(&broken, &mut s, &budget),
            RangeStep::Fail
        );
        let final_ = Error::new(ErrorCode::HttpStatus, "404");
        assert_eq!(
            after_range_failure(&final_, &mut s, &budget),
            RangeStep::Fail
        );
    }

    #[test]
    fn a_file_restarts_on_change_and_retries_transient_failures() {
        let mut s = Streak::new(RetryPolicy::default());
        let changed = Error::new(ErrorCode::FileChanged, "x");
        assert_eq!(
            after_file_failure(&changed, &mut s, true),
            FileStep::Restart
        );
        assert_eq!(after_file_failure(&changed, &mut s, false), FileStep::Fail);
        assert!(matches!(
            after_file_failure(&transient_503(), &mut s, true),
            FileStep::Retry(_)
        ));
    }

    #[test]
    fn a_hold_covers_its_host_only_and_never_shortens() {
        let h = HostHolds::default();
        let a = Url::parse("http://127.0.0.1:8000/a").unwrap();
        let b = Url::parse("http://127.0.0.1:8000/b?x").unwrap();
        let other = Url::parse("http://127.0.0.1:8001/a").unwrap();
        h.hold(&a, Duration::from_secs(60));
        h.hold(&b, Duration::from_secs(1));
        let until = h.held_until(&b).expect("same host");
        assert!(until > Instant::now() + Duration::from_secs(30));
        assert_eq!(h.held_until(&other), None);
        h.hold(&other, Duration::from_secs(100_000));
        assert!(h.held_until(&other).unwrap() <= Instant::now() + MAX_RETRY_AFTER);
    }
}
