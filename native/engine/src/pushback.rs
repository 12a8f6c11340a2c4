//! Servers that push back: how many requests one host gets at once, learned from its
//! answers. The one definition of that policy.
//!
//! A host that answers 429 or 503, or refuses or resets connections, when more of our
//! connections ask at once is telling us its limit (nginx's `limit_conn`, object stores'
//! "slow down", a CDN's per-client cap). Retrying each refused range on its own schedule
//! would keep hammering it at `thread_count`; a retry streak ending in hand-backs would
//! even fail the file. So each host has a limit on the requests in flight to it, run as
//! AIMD (the congestion control of TCP, in requests):
//!
//! - **It starts at the ceiling** (`thread_count`, or the task's
//!   `max_connections_per_host` when lower): a host that never pushes back gets every
//!   connection from the first request, exactly as without this module.
//! - **Multiplicative decrease.** A push-back lowers the limit to half, but never below
//!   the requests that are being answered right now (the host just served that many at
//!   once) and always below where it was. Only a request sent under the current limit
//!   counts ([`Sent`]): when 64 requests of one burst are refused together, the limit is
//!   halved once, not 64 times.
//! - **Additive increase.** After [`RAISE_EVERY`] without a push-back, while requests are
//!   being answered and more are waiting, the limit rises by one, up to the ceiling. A
//!   host that refuses beyond N thus settles at N, probing N + 1 once in a while.
//! - A request refused because its host is over the (lowered) limit steps aside: its
//!   connection gives its bytes back to the plan and waits for room, and the refusal does
//!   not count against its retries (it is the limit's doing, not the range's).
//!
//! The limits are per downloader and per host (name and port, as [`crate::retry::HostHolds`]
//! key them) and last across pause and resume.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use url::Url;

use crate::retry::host_key;

/// Time without a push-back before the limit may rise by one: a few round trips of a
/// distant server (so the answer to the last raise is in), short enough that a limit
/// knocked down by a burst climbs back by 2 a second. At the host's real limit N this is
/// also how often N + 1 is tried: one refused request per interval.
pub const RAISE_EVERY: Duration = Duration::from_millis(500);

/// The controller of one host's limit, without locks or clocks of its own (the tests
/// drive it with made-up instants).
#[derive(Debug, Clone)]
pub struct Aimd {
    limit: usize,
    ceiling: usize,
    /// Bumped by every decrease: requests sent before it were sent under a higher limit.
    epoch: u64,
    /// The last decrease or increase: the next increase waits [`RAISE_EVERY`] after it.
    changed: Instant,
    pushbacks: u64,
}

/// The limit's epoch when a request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent(u64);

impl Aimd {
    pub fn new(ceiling: usize, now: Instant) -> Aimd {
        let ceiling = ceiling.max(1);
        Aimd {
            limit: ceiling,
            ceiling,
            epoch: 0,
            changed: now,
            pushbacks: 0,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    pub fn pushbacks(&self) -> u64 {
        self.pushbacks
    }

    /// A lower ceiling (another task's cap for the same host) applies at once.
    pub fn cap(&mut self, ceiling: usize) {
        self.ceiling = self.ceiling.min(ceiling.max(1));
        self.limit = self.limit.min(self.ceiling);
    }

    pub fn sent(&self) -> Sent {
        Sent(self.epoch)
    }

    /// The host pushed back on a request sent at `sent` while `answered` others were
    /// being served. True when the limit was lowered.
    pub fn pushed_back(&mut self, sent: Sent, answered: usize, now: Instant) -> bool {
        self.pushbacks += 1;
        if sent.0 != self.epoch || self.limit <= 1 {
            return false; // sent under a limit already lowered, or nothing left to lower
        }
        self.limit = (self.limit / 2).max(answered).min(self.limit - 1).max(1);
        self.epoch += 1;
        self.changed = now;
        true
    }

    /// Answers are healthy and more requests wait: one more, once [`RAISE_EVERY`] has
    /// passed since the last change. True when the limit rose.
    pub fn maybe_raise(&mut self, now: Instant) -> bool {
        if self.limit >= self.ceiling || now.saturating_duration_since(self.changed) < RAISE_EVERY {
            return false;
        }
        self.limit += 1;
        self.changed = now;
        true
    }

    /// When [`Aimd::maybe_raise`] may next succeed (None at the ceiling).
    pub fn next_raise(&self) -> Option<Instant> {
        (self.limit < self.ceiling).then(|| self.changed + RAISE_EVERY)
    }
}

struct HostState {
    aimd: Aimd,
    /// Permits held: requests (or workers between requests) to this host.
    in_use: usize,
    /// Of those, the ones whose last request was answered with a success.
    answered: usize,
}

struct Host {
    state: Mutex<HostState>,
    room: Notify,
}

impl Host {
    fn lock(&self) -> MutexGuard<'_, HostState> {
        // Plain counters: a panic elsewhere cannot leave them half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every host's limit, shared by a downloader's requests.
#[derive(Default)]
pub struct HostLimits {
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

/// The right to have one request in flight to a host; given back when dropped.
pub struct HostPermit {
    host: Arc<Host>,
    answered: bool,
}

/// What a push-back did, and what the connection it hit does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushback {
    /// The host is over its limit: give the bytes back and wait for room (else retry
    /// under the retry policy).
    pub step_aside: bool,
    /// The limit was lowered to this.
    pub lowered_to: Option<usize>,
}

impl HostLimits {
    fn host(&self, url: &Url, ceiling: usize) -> Arc<Host> {
        let key = host_key(url).unwrap_or_default();
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let host = hosts.entry(key).or_insert_with(|| {
            Arc::new(Host {
                state: Mutex::new(HostState {
                    aimd: Aimd::new(ceiling, Instant::now()),
                    in_use: 0,
                    answered: 0,
                }),
                room: Notify::new(),
            })
        });
        host.lock().aimd.cap(ceiling);
        host.clone()
    }

    /// Waits until `url`'s host is under its limit (`ceiling`: this task's most).
    pub async fn acquire(&self, url: &Url, ceiling: usize) -> HostPermit {
        let host = self.host(url, ceiling);
        let room = host.clone(); // waited on while `host` moves into the permit
        loop {
            let notified = room.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let raise_at = {
                let mut s = host.lock();
                if s.in_use >= s.aimd.limit() && s.answered > 0 {
                    s.aimd.maybe_raise(Instant::now());
                }
                if s.in_use < s.aimd.limit() {
                    s.in_use += 1;
                    drop(s);
                    return HostPermit {
                        host,
                        answered: false,
                    };
                }
                s.aimd.next_raise()
            };
            match raise_at {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at.into()) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// A file's first request: at once while the host never pushed back (a run of
    /// many small files keeps every file it lets run at once, HTTP/2 streams included),
    /// else it waits for room like a range.
    pub async fn enter(&self, url: &Url, ceiling: usize) -> HostPermit {
        let host = self.host(url, ceiling);
        {
            let mut s = host.lock();
            if s.aimd.limit() >= s.aimd.ceiling() {
                s.in_use += 1;
                drop(s);
                return HostPermit {
                    host,
                    answered: false,
                };
            }
        }
        self.acquire(url, ceiling).await
    }

    /// Each host's limit for the statistics: `{host, limit, ceiling, pushbacks}`.
    pub fn snapshot(&self) -> Vec<(String, usize, usize, u64)> {
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = hosts
            .iter()
            .map(|(k, h)| {
                let s = h.lock();
                (
                    k.clone(),
                    s.aimd.limit(),
                    s.aimd.ceiling(),
                    s.aimd.pushbacks(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

impl HostPermit {
    /// Stamps a request about to be sent with the limit it is sent under.
    pub fn sent(&self) -> Sent {
        self.host.lock().aimd.sent()
    }

    /// The request was answered with a success: it counts as served concurrency, and
    /// healthy answers let a lowered limit rise.
    pub fn answered(&mut self) {
        let mut s = self.host.lock();
        if !self.answered {
            self.answered = true;
            s.answered += 1;
        }
        if s.aimd.maybe_raise(Instant::now()) {
            drop(s);
            self.host.room.notify_waiters();
        }
    }

    /// The host's limit was lowered below the requests it has out (this one's
    /// included): a retry would only be refused again, so this connection steps aside.
    /// Never true for a host that did not push back.
    pub fn over_limit(&self) -> bool {
        let s = self.host.lock();
        s.aimd.limit() < s.aimd.ceiling() && s.in_use > s.aimd.limit()
    }

    /// The request failed for another reason: it is not being served any more.
    pub fn failed(&mut self) {
        if self.answered {
            self.answered = false;
            let mut s = self.host.lock();
            s.answered = s.answered.saturating_sub(1);
        }
    }

    /// The host pushed back on the request sent at `sent`.
    pub fn pushed_back(&mut self, sent: Sent) -> Pushback {
        self.failed();
        let mut s = self.host.lock();
        let answered = s.answered;
        let lowered = s.aimd.pushed_back(sent, answered, Instant::now());
        Pushback {
            step_aside: s.in_use > s.aimd.limit(),
            lowered_to: lowered.then(|| s.aimd.limit()),
        }
    }
}

impl Drop for HostPermit {
    fn drop(&mut self) {
        {
            let mut s = self.host.lock();
            s.in_use = s.in_use.saturating_sub(1);
            if self.answered {
                s.answered = s.answered.saturating_sub(1);
            }
        }
        self.host.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_ceiling_halves_once_per_burst_and_settles_at_what_is_served() {
        let t0 = Instant::now();
        let mut a = Aimd::new(64, t0);
        assert_eq!(
            a.limit(),
            64,
            "a healthy host gets every connection at once"
        );
        assert!(
            !a.maybe_raise(t0 + Duration::from_secs(10)),
            "at the ceiling"
        );
        // A burst of 60 refusals of requests sent under 64: one halving.
        let burst = a.sent();
        assert!(a.pushed_back(burst, 4, t0));
        for _ in 0..59 {
            assert!(!a.pushed_back(burst, 4, t0));
        }
        assert_eq!(a.limit(), 32);
        assert_eq!(a.pushbacks(), 60);
        // Each later round halves again, but never below what the host is serving.
        for want in [16, 8, 4] {
            assert!(a.pushed_back(a.sent(), 4, t0));
            assert_eq!(a.limit(), want);
        }
        // A refusal at the limit lowers it even while that many are served.
        assert!(a.pushed_back(a.sent(), 4, t0));
        assert_eq!(a.limit(), 3, "always below where it was");
        a.pushed_back(a.sent(), 0, t0);
        assert_eq!(a.limit(), 1);
        assert!(!a.pushed_back(a.sent(), 0, t0), "never below one");
    }

    #[test]
    fn rises_by_one_per_quiet_interval_up_to_the_ceiling_and_probes_again() {
        let t0 = Instant::now();
        let mut a = Aimd::new(8, t0);
        a.pushed_back(a.sent(), 4, t0);
        assert_eq!(a.limit(), 4);
        assert!(
            !a.maybe_raise(t0 + RAISE_EVERY / 2),
            "too soon after the decrease"
        );
        assert_eq!(a.next_raise(), Some(t0 + RAISE_EVERY));
        let mut t = t0;
        for want in 5..=8 {
            t += RAISE_EVERY;
            assert!(a.maybe_raise(t));
            assert!(!a.maybe_raise(t), "one step per interval");
            assert_eq!(a.limit(), want);
        }
        assert!(!a.maybe_raise(t + RAISE_EVERY * 10));
        assert_eq!(a.next_raise(), None);
        // A host serving 4: probing 5 is refused, back to 4 (settled, not collapsed).
        let mut b = Aimd::new(64, t0);
        b.cap(5);
        assert_eq!((b.limit(), b.ceiling()), (5, 5));
        b.pushed_back(b.sent(), 4, t0);
        assert_eq!(b.limit(), 4);
        assert!(b.maybe_raise(t0 + RAISE_EVERY));
        b.pushed_back(b.sent(), 4, t0 + RAISE_EVERY);
        assert_eq!(b.limit(), 4);
    }

    #[tokio::test]
    async fn permits_wait_for_room_and_over_limit_requests_step_aside() {
        let limits = HostLimits::default();
        let url = Url::parse("http://127.0.0.1:9/f").unwrap();
        let other = Url::parse("http://127.0.0.1:10/f").unwrap();
        let mut held: Vec<HostPermit> = Vec::new();
        for _ in 0..4 {
            held.push(limits.acquire(&url, 4).await);
        }
        // The host is full; another host is not.
        let blocked = tokio::time::timeout(Duration::from_millis(50), limits.acquire(&url, 4));
        assert!(blocked.await.is_err());
        drop(limits.acquire(&other, 4).await);
        for p in held.iter_mut().take(2) {
            p.answered();
        }
        let sent = held[3].sent();
        let pb = held[3].pushed_back(sent);
        assert_eq!((pb.step_aside, pb.lowered_to), (true, Some(2)));
        let limit_of = |key: &str| {
            limits
                .snapshot()
                .into_iter()
                .find(|h| h.0 == key)
                .map(|h| h.1)
        };
        assert_eq!(
            limit_of("127.0.0.1:9"),
            Some(2),
            "halved, and 2 are being served"
        );
        assert_eq!(
            limit_of("127.0.0.1:10"),
            Some(4),
            "another host is not affected"
        );
        held.truncate(2); // the two unanswered ones gave their permits back
        let blocked = tokio::time::timeout(Duration::from_millis(50), limits.acquire(&url, 4));
        assert!(blocked.await.is_err(), "2 in flight under a limit of 2");
        drop(held.pop());
        let p = tokio::time::timeout(Duration::from_secs(1), limits.acquire(&url, 4)).await;
        assert!(p.is_ok(), "a permit given back makes room");
    }
}
