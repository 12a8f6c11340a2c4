//! Where a file's ranges come from: the task's own URL and its mirrors (task key
//! `mirrors`), each behind its own [`Link`], chosen per lease by measured speed.
//!
//! Contract:
//! - The task's URL (the probe's source) is the reference. A mirror gets no range before
//!   it is vetted: its answer to a range the reference served first must name the same
//!   size and carry the same bytes ([`SAMPLE`] of them compared). A mirror that names
//!   another size, answers without ranges, fails, or sends other bytes is dropped (one
//!   `msg`), and nothing it sent is written. Validators are not compared across servers:
//!   mirrors of one file carry their own ETags and dates; each mirror's later ranges are
//!   checked against the validators it answered with.
//! - A worker's first lease goes to the source it was assigned round robin (waiting at
//!   most [`VET_WAIT`] for that mirror's vetting); every later one to a live source with
//!   no connection yet, else the one with the best speed per connection over its recent
//!   ranges. A server whose uplink is the bottleneck shows a falling speed per
//!   connection as connections join it, so connections settle where each one gets
//!   most; the plan's steals and take-overs move a slow source's tail to a fast one.
//! - A source whose range fails for good (a final error, or a range out of retries)
//!   is dropped while another source is live, and its bytes go back to the plan. The
//!   last live source is never dropped: its failures are the file's.
//! - The bytes each source served are counted on the task ([`SourceShare`]): the
//!   statistics and the `endOne` event report them.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Notify;
use url::Url;

use crate::http::redact;
use crate::journal::Validators;
use crate::relink::Link;
use crate::request::{FileCtx, connection};
use crate::source::{self, AnySource, Body, Opening, Source};
use crate::state::lock;
use crate::storage::PartFile;

/// Bytes of a mirror compared with the reference's before it gets a range: enough to
/// tell two builds of one file apart by their headers, one round trip on any link.
pub(crate) const SAMPLE: u64 = 64 * 1024;

/// How long a worker assigned to a mirror waits for its vetting before it takes a
/// lease elsewhere (later leases still go to the mirror once it is live).
pub(crate) const VET_WAIT: Duration = Duration::from_secs(1);

/// Weight of the newest range in a source's speed: a few ranges make the estimate, and
/// a server that slows down is seen within them.
const SPEED_WEIGHT: f64 = 0.4;

/// Ranges shorter than this say more about the round trip than the server's speed.
const MIN_SAMPLE_BYTES: u64 = 128 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Vetting,
    Live,
    Dropped,
}

struct Entry<'a> {
    link: Link<'a>,
    state: Mutex<EntryState>,
}

struct EntryState {
    status: Status,
    /// The version this source serves: its later ranges must carry it.
    validators: Validators,
    /// Workers with a lease on this source now.
    active: usize,
    /// Bytes per second of one connection, smoothed over its recent ranges.
    speed: Option<f64>,
}

/// The sources of one ranged file.
pub(crate) struct Sources<'a> {
    file: &'a FileCtx<'a>,
    /// The URL the probe went to (the task's own unless it failed before).
    reference: usize,
    list: Vec<Entry<'a>>,
    /// Told when a vetting ends (a mirror is live or dropped).
    vetted: Notify,
}

/// A worker's lease on a source: counted as one of its connections until dropped.
pub(crate) struct Busy<'s, 'a> {
    sources: &'s Sources<'a>,
    pub index: usize,
}

impl Drop for Busy<'_, '_> {
    fn drop(&mut self) {
        let mut s = lock(&self.sources.list[self.index].state);
        s.active = s.active.saturating_sub(1);
    }
}

impl<'a> Sources<'a> {
    /// The task's URLs (its own, then its mirrors; only its own when `mirrors_off`),
    /// where URL `reference` is `source`, whose first bytes came from `final_url` with
    /// `validators`.
    pub fn new(
        file: &'a FileCtx<'a>,
        reference: usize,
        source: &AnySource<'a>,
        final_url: &Url,
        validators: &Validators,
    ) -> Sources<'a> {
        let entry = |link, status, validators| Entry {
            link,
            state: Mutex::new(EntryState {
                status,
                validators,
                active: 0,
                speed: None,
            }),
        };
        let count = if file.task.mirrors_off.load(Ordering::Relaxed) {
            1
        } else {
            1 + file.task.spec.mirrors.len()
        };
        let list = (0..count)
            .map(|i| {
                if i == reference {
                    let link = Link::new(file, source, final_url, true);
                    return entry(link, Status::Live, validators.clone());
                }
                let other = source::at_index(file, i);
                let link = Link::new(file, &other, other.url(), false);
                entry(link, Status::Vetting, Validators::default())
            })
            .collect();
        Sources {
            file,
            reference,
            list,
            vetted: Notify::new(),
        }
    }

    /// The source the probe's bytes came from: the others are vetted against it.
    pub fn reference(&self) -> usize {
        self.reference
    }

    /// How many sources there are (live or not).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The link of source `i`.
    pub fn link(&self, i: usize) -> &Link<'a> {
        &self.list[i].link
    }

    /// The version source `i` serves.
    pub fn validators(&self, i: usize) -> Validators {
        lock(&self.list[i].state).validators.clone()
    }

    /// The source for a worker's next lease (see the module doc), counted busy.
    pub fn choose(&self) -> Busy<'_, 'a> {
        let states: Vec<(Status, usize, Option<f64>)> = self
            .list
            .iter()
            .map(|e| {
                let s = lock(&e.state);
                (s.status, s.active, s.speed)
            })
            .collect();
        let index = pick(&states).unwrap_or(self.reference);
        self.busy(index)
    }

    /// Source `assigned` for a worker's first lease once it is vetted (waiting at most
    /// [`VET_WAIT`]); [`Sources::choose`] when it is not live by then.
    pub async fn first_choice(&self, assigned: usize) -> Busy<'_, 'a> {
        let deadline = tokio::time::Instant::now() + VET_WAIT;
        loop {
            let wake = self.vetted.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            let status = lock(&self.list[assigned].state).status;
            match status {
                Status::Live => return self.busy(assigned),
                Status::Dropped => return self.choose(),
                Status::Vetting => {}
            }
            if tokio::time::timeout_at(deadline, wake).await.is_err() {
                return self.choose();
            }
        }
    }

    fn busy(&self, index: usize) -> Busy<'_, 'a> {
        lock(&self.list[index].state).active += 1;
        Busy {
            sources: self,
            index,
        }
    }

    /// Source `i` served `bytes` of a range in `elapsed`.
    pub fn measured(&self, i: usize, bytes: u64, elapsed: Duration) {
        if self.list.len() < 2 || bytes < MIN_SAMPLE_BYTES || elapsed.is_zero() {
            return;
        }
        let v = bytes as f64 / elapsed.as_secs_f64();
        let mut s = lock(&self.list[i].state);
        s.speed = Some(match s.speed {
            Some(old) => old + SPEED_WEIGHT * (v - old),
            None => v,
        });
    }

    /// Source `i` put `bytes` into the file.
    pub fn served(&self, i: usize, bytes: u64) {
        if self.list.len() < 2 {
            return;
        }
        if i > 0 {
            self.file.task.mirror_bytes.store(true, Ordering::Relaxed);
        }
        if let Some(share) = lock(&self.file.task.sources).get_mut(i) {
            share.bytes += bytes;
        }
    }

    /// Whether source `i` was dropped (a lease it still holds goes back to the plan).
    pub fn is_dropped(&self, i: usize) -> bool {
        lock(&self.list[i].state).status == Status::Dropped
    }

    /// Whether source `i` may be dropped: another source is live.
    pub fn droppable(&self, i: usize) -> bool {
        self.list
            .iter()
            .enumerate()
            .any(|(j, e)| j != i && lock(&e.state).status == Status::Live)
    }

    /// Drops source `i` for `reason` (announced once).
    pub fn drop_source(&self, i: usize, reason: &str) {
        {
            let mut s = lock(&self.list[i].state);
            if s.status == Status::Dropped {
                return;
            }
            s.status = Status::Dropped;
        }
        self.vetted.notify_waiters();
        let f = self.file;
        let url = redact(self.list[i].link.origin_url());
        if let Some(share) = lock(&f.task.sources).get_mut(i) {
            share.dropped = Some(reason.to_owned());
        }
        let what = if i == 0 { "The task's URL" } else { "Mirror" };
        f.shared.task_msg(
            f.task,
            format!("{what} {url} dropped, its ranges go to the other sources: {reason}"),
        );
    }

    /// Vets every mirror (see the module doc) against bytes `window` of the reference,
    /// read from `part` once they are on disk. Ends when every vetting has.
    pub async fn vet_all(&self, window: (u64, u64), total: u64, part: &PartFile) {
        let others = (0..self.list.len()).filter(|&i| i != self.reference);
        let vets = others.map(|i| async move {
            match self.vet(i, window, total, part).await {
                Ok(()) => {
                    lock(&self.list[i].state).status = Status::Live;
                    self.vetted.notify_waiters();
                }
                Err(reason) => self.drop_source(i, &reason),
            }
        });
        futures_util::future::join_all(vets).await;
    }

    async fn vet(
        &self,
        i: usize,
        window: (u64, u64),
        total: u64,
        part: &PartFile,
    ) -> std::result::Result<(), String> {
        let f = self.file;
        let (_, mirror) = self.list[i].link.current();
        let permit = f
            .shared
            .limits
            .acquire(mirror.url(), f.host_ceiling())
            .await;
        f.shared.hosts.wait(mirror.url()).await;
        let conn = connection(f.shared, &f.client)
            .await
            .map_err(|e| e.message)?;
        let opening = mirror
            .open(&conn, Some(window), None)
            .await
            .map_err(|e| e.message)?;
        let (validators, final_url, mut body) = match opening {
            Opening::Ranged {
                total: t,
                validators,
                final_url,
                first,
                body,
            } => {
                if t != total {
                    return Err(format!("it holds {t} bytes, the task's URL {total}"));
                }
                if first.1 < window.1 {
                    return Err("it answered a shorter range than asked for".into());
                }
                (validators, final_url, body)
            }
            Opening::Whole { .. } => return Err("it does not serve ranges".into()),
            Opening::PastEnd { .. } => return Err("its file is shorter".into()),
        };
        let want = (window.1 - window.0) as usize;
        let mut theirs = Vec::with_capacity(want);
        while theirs.len() < want {
            match body.chunk().await.map_err(|e| e.message)? {
                Some(b) => theirs.extend_from_slice(&b[..b.len().min(want - theirs.len())]),
                None => return Err("its answer ended early".into()),
            }
        }
        drop((body, conn, permit));
        // The reference's bytes of the window arrive on the probe's connection.
        while !on_disk(f, window) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut ours = vec![0u8; want];
        part.read_at(&mut ours, window.0)
            .map_err(|e| format!("reading the part file: {e}"))?;
        if ours != theirs {
            return Err(format!(
                "its bytes {}-{} differ from the task's URL's: another version of the file",
                window.0,
                window.1 - 1
            ));
        }
        lock(&self.list[i].state).validators = validators;
        self.list[i].link.follow(&final_url);
        Ok(())
    }
}

/// Bytes `[start, end)` of the task's file are on disk.
fn on_disk(f: &FileCtx<'_>, (start, end): (u64, u64)) -> bool {
    lock(&f.task.file)
        .as_ref()
        .is_some_and(|s| s.done.ranges().iter().any(|&(a, b)| a <= start && end <= b))
}

/// The index [`Sources::choose`] picks among `(status, active, speed)`: a live source
/// with no connection first, else the best speed (unmeasured counts as best), fewer
/// connections breaking ties; None when nothing is live.
fn pick(states: &[(Status, usize, Option<f64>)]) -> Option<usize> {
    let live = || {
        states
            .iter()
            .enumerate()
            .filter(|(_, s)| s.0 == Status::Live)
    };
    if let Some((i, _)) = live().find(|(_, s)| s.1 == 0) {
        return Some(i);
    }
    live()
        .max_by(|(_, a), (_, b)| {
            let speed = |s: &(Status, usize, Option<f64>)| s.2.unwrap_or(f64::INFINITY);
            speed(a).total_cmp(&speed(b)).then(b.1.cmp(&a.1))
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::{Status, pick};

    #[test]
    fn an_idle_live_source_gets_the_next_connection() {
        let s = [(Status::Live, 3, Some(9e6)), (Status::Live, 0, Some(1e3))];
        assert_eq!(pick(&s), Some(1));
    }

    #[test]
    fn otherwise_the_fastest_per_connection_wins() {
        let s = [
            (Status::Live, 3, Some(2e6)),
            (Status::Live, 1, Some(4e6)),
            (Status::Dropped, 0, None),
        ];
        assert_eq!(pick(&s), Some(1));
        let s = [(Status::Live, 2, Some(5e6)), (Status::Live, 1, Some(1e6))];
        assert_eq!(pick(&s), Some(0));
    }

    #[test]
    fn unmeasured_sources_are_tried_and_vetting_ones_are_not() {
        let s = [(Status::Live, 2, Some(5e6)), (Status::Live, 1, None)];
        assert_eq!(pick(&s), Some(1));
        let s = [(Status::Live, 2, Some(5e6)), (Status::Vetting, 0, None)];
        assert_eq!(pick(&s), Some(0));
    }

    #[test]
    fn with_nothing_live_nothing_is_picked() {
        let s = [(Status::Dropped, 0, None), (Status::Dropped, 0, None)];
        assert_eq!(pick(&s), None);
    }
}
