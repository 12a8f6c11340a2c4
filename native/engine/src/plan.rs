//! Cutting one file into ranges and handing them to connections.
//!
//! The file's missing bytes are cut into pieces of at most `chunk_size`. A connection
//! takes the next piece; when none is left it steals the back half (at most a piece) of
//! the lease that will take longest to finish, so no connection idles while another
//! still has work (the tail re-split). Each piece is a [`Lease`]; its owner claims bytes
//! before writing them, and a thief only splits above what was claimed, so two
//! connections never write the same byte.
//!
//! The probe (the first response, whose range was chosen before the size was known)
//! rarely ends on a piece boundary. The rest of the piece it ends in is queued last, and
//! the probe's connection asks for the piece that starts where it stopped first, so it
//! continues there (others take it only once the queue is otherwise empty): it then
//! does whole pieces like every other one, instead of the probe plus a whole piece more
//! (at 16 connections per-connection-throttled, the difference between all connections
//! finishing together and the probe's connection finishing ~30 ms after them).
//!
//! A steal is not free: the victim's request already asked for the stolen bytes, so the
//! victim must drop its connection when it reaches the new end, and whatever the server
//! had in flight is wasted. So a piece is split only when its owner would need longer
//! than `min_steal_time` to finish it at its measured speed: a fast connection near its
//! end is left alone, a slow or stalled one is relieved.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A piece smaller than twice this is never split.
pub const MIN_SPLIT: u64 = 512 * 1024;

#[derive(Debug)]
struct LeaseState {
    /// Next byte the owner will claim.
    pos: u64,
    /// Exclusive end; lowered when a thief takes the back of the range.
    end: u64,
    /// When the owner got the piece: its speed is measured from here.
    since: Instant,
    /// `pos` at `since`.
    pos_at_since: u64,
    /// When the owner last claimed bytes: the end of its measured span.
    last_claim: Instant,
    /// A thief took the whole rest because this connection crawled: its owner should
    /// not reuse the connection.
    relieved: bool,
}

impl LeaseState {
    /// Bytes per second since the piece was handed out, up to `until`; `None` before
    /// any byte arrived.
    fn speed(&self, until: Instant) -> Option<f64> {
        let done = self.pos - self.pos_at_since;
        let elapsed = until.saturating_duration_since(self.since).as_secs_f64();
        (done > 0 && elapsed > 0.0).then(|| done as f64 / elapsed)
    }

    /// Time the owner still needs at its speed so far; `None` before any byte arrived.
    fn time_left(&self, now: Instant) -> Option<Duration> {
        let speed = self.speed(now)?;
        Some(Duration::from_secs_f64(
            self.end.saturating_sub(self.pos) as f64 / speed,
        ))
    }
}

/// One connection's share of the file: the half-open range `[pos, end)`.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Where the piece started when it was handed out (the request's range start).
    pub start: u64,
    state: Arc<Mutex<LeaseState>>,
}

impl Lease {
    fn new(start: u64, end: u64) -> Self {
        Lease {
            start,
            state: Arc::new(Mutex::new(LeaseState {
                pos: start,
                end,
                since: Instant::now(),
                pos_at_since: start,
                last_claim: Instant::now(),
                relieved: false,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LeaseState> {
        // A poisoned lock only means another thread panicked mid-update of two integers;
        // the integers are still the best information there is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pos(&self) -> u64 {
        self.lock().pos
    }

    pub fn end(&self) -> u64 {
        self.lock().end
    }

    pub fn remaining(&self) -> u64 {
        let s = self.lock();
        s.end.saturating_sub(s.pos)
    }

    /// Reserves up to `n` bytes at the current position; returns `(offset, granted)`.
    /// `granted < n` means the lease was cut short and the owner should stop there.
    pub fn claim(&self, n: u64) -> (u64, u64) {
        let mut s = self.lock();
        let offset = s.pos;
        let granted = n.min(s.end.saturating_sub(s.pos));
        s.pos += granted;
        if granted > 0 {
            s.last_claim = Instant::now();
        }
        (offset, granted)
    }

    /// True when a thief took the rest because this connection crawled.
    pub fn relieved(&self) -> bool {
        self.lock().relieved
    }

    /// Gives back bytes claimed but not written (a failed write), so they are retried.
    pub fn unclaim(&self, offset: u64) {
        let mut s = self.lock();
        if offset < s.pos {
            s.pos = offset;
        }
    }
}

/// What a connection that asks for work gets.
#[derive(Debug)]
pub enum Next {
    /// A piece to fetch.
    Lease(Lease),
    /// Nothing now; ask again after this long, or when a lease ends.
    Wait(Duration),
    /// Nothing left for another connection.
    Done,
}

/// The pieces of one file still to hand out, and the ones being worked.
pub struct Plan {
    inner: Mutex<PlanInner>,
    /// A piece is split only if its owner needs longer than this to finish it.
    min_steal_time: Duration,
    /// The piece size: the most a steal takes (see [`Plan::next_after`]).
    piece: u64,
}

/// The default `min_steal_time`: a few round trips of a new request.
pub const MIN_STEAL_TIME: Duration = Duration::from_millis(60);

struct PlanInner {
    pending: VecDeque<(u64, u64)>,
    active: Vec<Lease>,
    /// Speeds of the last finished leases, for what a healthy connection does here.
    finished: VecDeque<f64>,
}

/// Finished leases whose speed is remembered.
const SPEED_HISTORY: usize = 16;

/// A connection slower than the typical one by this factor is a straggler: the whole
/// rest of its piece goes to the next idle connection instead of the back half.
const CRAWL_FACTOR: f64 = 4.0;

/// The least a straggler's piece must have left for a take-over to be worth a request.
pub const MIN_TAKEOVER: u64 = 64 * 1024;

/// A lease is judged a crawl only once it has run this many `min_steal_time`s (240 ms
/// by default). Younger, its speed is one or two reads over a round trip, and a worker
/// thread that the OS left unscheduled for a few tens of ms looks like a crawl while
/// its whole piece already sits in the socket: taken over, every byte of it was fetched
/// twice (seen on loopback under load, 0.75 MiB of a 3 MiB resume). A real straggler is
/// judged when a healthy connection runs dry, long after this.
const CRAWL_EVIDENCE: u32 = 4;

impl PlanInner {
    /// Drops finished leases, remembering their speeds.
    fn retire_finished(&mut self) {
        let mut finished = Vec::new();
        self.active.retain(|l| {
            let s = l.lock();
            if s.end > s.pos {
                return true;
            }
            // A straggler's speed says nothing about what healthy connections do.
            if !s.relieved
                && let Some(v) = s.speed(s.last_claim)
            {
                finished.push(v);
            }
            false
        });
        for v in finished {
            if self.finished.len() == SPEED_HISTORY {
                self.finished.pop_front();
            }
            self.finished.push_back(v);
        }
    }

    /// The median speed of finished leases and of the active ones with bytes.
    fn typical_speed(&self, now: Instant) -> Option<f64> {
        let mut v: Vec<f64> = self.finished.iter().copied().collect();
        v.extend(self.active.iter().filter_map(|l| l.lock().speed(now)));
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }
}

impl Plan {
    /// Cuts `missing` into pieces of at most `piece` bytes.
    pub fn new(missing: &[(u64, u64)], piece: u64) -> Self {
        let piece = piece.max(1);
        let mut pending = VecDeque::new();
        for &(s, e) in missing {
            let mut a = s;
            while a < e {
                let b = e.min(a.saturating_add(piece));
                pending.push_back((a, b));
                a = b;
            }
        }
        Plan {
            inner: Mutex::new(PlanInner {
                pending,
                active: Vec::new(),
                finished: VecDeque::new(),
            }),
            min_steal_time: MIN_STEAL_TIME,
            piece: piece.max(MIN_SPLIT),
        }
    }

    /// Changes the steal threshold (zero: split whenever a piece is large enough).
    pub fn with_min_steal_time(mut self, t: Duration) -> Self {
        self.min_steal_time = t;
        self
    }

    fn lock(&self) -> MutexGuard<'_, PlanInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a lease the caller already has a response for (the probe's range,
    /// chosen before the size was known), taking it out of what is pending. The lease
    /// ends where the piece it starts in ends, even if the response goes on: a probe
    /// of one chunk against pieces of 4 MiB would otherwise hold 2.5 pieces on one
    /// connection, and every other connection would wait for it at the end (64 MiB over
    /// 16 connections capped at 5 MB/s: 1.5 s instead of 1.1). The piece after it goes
    /// to the back of the queue, so the probe's response can run on into it
    /// ([`Plan::extend`]) when nobody else needed it.
    pub fn adopt(&self, start: u64, end: u64) -> Lease {
        let mut inner = self.lock();
        let piece_end = inner
            .pending
            .iter()
            .find(|&&(s, e)| s <= start && start < e)
            .map_or(end, |&(_, e)| e);
        let end = end.min(piece_end).max(start);
        let mut rest = VecDeque::new();
        let mut continuation = None;
        for (s, e) in inner.pending.drain(..) {
            if e <= start || s >= end {
                if s == end {
                    continuation = Some((s, e));
                } else {
                    rest.push_back((s, e));
                }
            } else {
                // Keep the parts of each pending piece outside [start, end).
                if s < start {
                    rest.push_back((s, start));
                }
                if e > end {
                    continuation = Some((end, e));
                }
            }
        }
        rest.extend(continuation);
        inner.pending = rest;
        let lease = Lease::new(start, end);
        inner.active.push(lease.clone());
        lease
    }

    /// Lets an owner whose response reaches past its lease keep reading: the pending
    /// piece that starts at the lease's end joins the lease, up to `limit` (where the
    /// response ends). False when no such piece is pending.
    pub fn extend(&self, lease: &Lease, limit: u64) -> bool {
        let mut inner = self.lock();
        let mut s = lease.lock();
        let end = s.end;
        if end >= limit || s.relieved {
            return false;
        }
        let Some(i) = inner.pending.iter().position(|&(ps, _)| ps == end) else {
            return false;
        };
        let (_, pe) = inner.pending[i];
        let new_end = pe.min(limit);
        if new_end == pe {
            inner.pending.remove(i);
        } else {
            inner.pending[i] = (new_end, pe);
        }
        s.end = new_end;
        true
    }

    /// The next piece: a pending one, or the back half (at most a piece) of the active one
    /// that will take longest.
    pub fn next(&self) -> Option<Lease> {
        match self.next_after(None) {
            Next::Lease(l) => Some(l),
            Next::Wait(_) | Next::Done => None,
        }
    }

    /// [`Plan::next`], but the pending piece that starts at `prev_end` (where the caller's
    /// last lease ended) comes first: the probe's connection continues its piece. With
    /// nothing to take yet, says how long until a lease that looks like a crawl may be
    /// judged one ([`Next::Wait`]), or that this connection's work is done.
    pub fn next_after(&self, prev_end: Option<u64>) -> Next {
        let mut inner = self.lock();
        inner.retire_finished();
        let adjacent = prev_end.and_then(|p| inner.pending.iter().position(|&(s, _)| s == p));
        let piece = match adjacent {
            Some(i) => inner.pending.remove(i),
            None => inner.pending.pop_front(),
        };
        if let Some((s, e)) = piece {
            let lease = Lease::new(s, e);
            inner.active.push(lease.clone());
            return Next::Lease(lease);
        }
        let now = Instant::now();
        let typical = inner.typical_speed(now);
        // A lease crawls when its speed is a fraction of what connections here do.
        let evidence = self.min_steal_time * CRAWL_EVIDENCE;
        let slow = |st: &LeaseState| {
            typical.is_some_and(|t| st.speed(now).is_some_and(|v| v * CRAWL_FACTOR < t))
        };
        let crawling =
            |st: &LeaseState| now.saturating_duration_since(st.since) >= evidence && slow(st);
        // The piece that will take longest; one with no byte yet counts as slow once it
        // is older than the threshold (its connection may be stalled).
        let victim = inner
            .active
            .iter()
            .filter_map(|l| {
                let s = l.lock();
                let remaining = s.end.saturating_sub(s.pos);
                let splittable = remaining >= 2 * MIN_SPLIT;
                if !(splittable || remaining >= MIN_TAKEOVER && crawling(&s)) {
                    return None;
                }
                let left = s.time_left(now).or_else(|| {
                    let age = now.saturating_duration_since(s.since);
                    (age > self.min_steal_time).then_some(Duration::MAX)
                })?;
                drop(s);
                (left > self.min_steal_time || self.min_steal_time.is_zero())
                    .then(|| (left, l.clone()))
            })
            .max_by_key(|(left, _)| *left);
        let Some((_, victim)) = victim else {
            // Nothing to take now. A lease that looks slow but is too young to judge may
            // be a straggler: wait until it can be judged rather than leave it alone for
            // good (a crawling thief's connection is young when the others run dry).
            let young = inner
                .active
                .iter()
                .filter_map(|l| {
                    let s = l.lock();
                    let age = now.saturating_duration_since(s.since);
                    (age < evidence && s.end.saturating_sub(s.pos) >= MIN_TAKEOVER && slow(&s))
                        .then(|| evidence - age)
                })
                .min();
            return young.map_or(Next::Done, Next::Wait);
        };
        let stolen = {
            let mut v = victim.lock();
            let remaining = v.end.saturating_sub(v.pos);
            let take = if remaining >= MIN_TAKEOVER && crawling(&v) {
                // A straggler: halving would leave it a quarter, then an eighth, each
                // still at its crawl (256 MiB with one connection in ten at 256 KiB/s
                // took 4.1 s against 0.27 on a healthy server). The thief takes all of
                // it; what the straggler has in flight is the only byte fetched twice.
                v.relieved = true;
                remaining
            } else if remaining >= 2 * MIN_SPLIT {
                // The back half, but at most one piece: a thief that took half of a
                // lease holding several pieces would have more to do than every other
                // connection and finish last, while one piece leaves the rest for the
                // next connection that runs dry.
                (remaining / 2).min(self.piece)
            } else {
                return Next::Done;
            };
            let mid = v.end - take;
            let old_end = v.end;
            v.end = mid;
            (mid, old_end)
        };
        let lease = Lease::new(stolen.0, stolen.1);
        inner.active.push(lease.clone());
        Next::Lease(lease)
    }

    /// Puts a lease's unfinished part back for another connection (its owner gave up).
    pub fn release(&self, lease: &Lease) {
        let mut inner = self.lock();
        let (pos, end) = {
            let mut s = lease.lock();
            let r = (s.pos, s.end);
            s.end = s.pos; // the old owner may no longer claim
            r
        };
        inner
            .active
            .retain(|l| !Arc::ptr_eq(&l.state, &lease.state));
        if pos < end {
            inner.pending.push_front((pos, end));
        }
    }

    /// True when nothing is pending and no lease has bytes left.
    pub fn is_drained(&self) -> bool {
        let inner = self.lock();
        inner.pending.is_empty() && inner.active.iter().all(|l| l.remaining() == 0)
    }
}

/// The piece size: at most `chunk`, and cut so that every connection gets the same
/// number of equal pieces (`connections × rounds` of them). Connections of equal speed
/// then finish together with no steal at all; steals only mend real differences.
pub fn piece_size(total: u64, chunk: u64, connections: usize) -> u64 {
    let conns = connections.max(1) as u64;
    let chunk = chunk.max(1);
    let rounds = total.div_ceil(conns.saturating_mul(chunk)).max(1);
    let pieces = conns.saturating_mul(rounds);
    total.div_ceil(pieces).max(MIN_SPLIT)
}

#[cfg(test)]
mod tests;
