//! Event queues: our pull-style alternative to the C callback.
//!
//! Why it exists: a callback is a call into the host from a thread the host did not
//! create. CPython (through ctypes) builds a thread state for every such call and tears
//! it down afterwards, an mmap, a munmap and a TLB shootdown each time, and a small file
//! produces three events. With a queue the host's own thread asks for events and gets
//! everything queued so far in one call, as one JSON array, and no core thread ever runs
//! host code.
//!
//! One queue serves any number of downloaders (a host has one dispatcher for all of
//! them), so every item names its downloader. Items of one downloader keep their order.
//! When a downloader is released (`stop_download`), an item with `null` event and
//! message follows its last event: nothing more will come for that id.
//!
//! Memory: like the callback path's channel, the queue holds what the host has not taken
//! yet; a host that never polls keeps it growing.

use std::collections::VecDeque;
use std::ffi::c_int;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tthsd_engine::{Event, EventSink};

/// One queued item: the downloader id and its event, or `None` for "released".
type Item = (c_int, Option<Event>);

#[derive(Default)]
struct State {
    items: VecDeque<Item>,
    closed: bool,
}

#[derive(Default)]
pub struct EventQueue {
    state: Mutex<State>,
    ready: Condvar,
    /// Held for a whole poll: with two pollers, one could put back items behind the
    /// other's and break the order.
    poller: Mutex<()>,
}

/// What one poll gives.
pub enum Polled {
    /// A JSON array of `[id, event, msg]` items, at most the limit long.
    Batch(String),
    /// The next item alone needs this many bytes (array brackets included); nothing was
    /// taken.
    TooBig(usize),
    /// The timeout ran out with nothing queued.
    Empty,
    /// Closed, and everything queued has been taken.
    Closed,
}

impl EventQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, item: Item) {
        let mut s = self.lock();
        if s.closed {
            return;
        }
        s.items.push_back(item);
        drop(s);
        self.ready.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// No more items are accepted; pollers take what is left, then get `Closed`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Waits up to `timeout` (`None`: for ever) for items, then takes as many whole items
    /// as fit in `limit` bytes of JSON.
    pub fn poll(&self, limit: usize, timeout: Option<Duration>) -> Polled {
        let _one_poller = self.poller.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut taken = {
            let mut s = self.lock();
            while s.items.is_empty() {
                if s.closed {
                    return Polled::Closed;
                }
                s = match deadline {
                    None => self.ready.wait(s).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Polled::Empty;
                        }
                        self.ready
                            .wait_timeout(s, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                };
            }
            // Serialized outside the lock: the engine's tasks push while we format.
            std::mem::take(&mut s.items)
        };
        let mut out = String::with_capacity(limit.min(64 * 1024));
        out.push('[');
        let mut item_text = String::new();
        while let Some((id, event)) = taken.pop_front() {
            item_text.clear();
            item_text.push_str(if out.len() > 1 { ",[" } else { "[" });
            let _ = write!(item_text, "{id}"); // into the reused buffer, no allocation
            match &event {
                Some(e) => {
                    item_text.push(',');
                    item_text.push_str(&e.event_json());
                    item_text.push(',');
                    item_text.push_str(&e.msg_json());
                }
                None => item_text.push_str(",null,null"),
            }
            item_text.push(']');
            // Room for the closing bracket and the caller's NUL.
            if out.len() + item_text.len() + 2 > limit {
                let first = out.len() == 1;
                taken.push_front((id, event));
                self.put_back(taken);
                if first {
                    return Polled::TooBig(item_text.len() + 2);
                }
                break;
            }
            out.push_str(&item_text);
        }
        out.push(']');
        Polled::Batch(out)
    }

    /// Returns untaken items to the front, ahead of anything pushed meanwhile.
    fn put_back(&self, mut taken: VecDeque<Item>) {
        if taken.is_empty() {
            return;
        }
        let mut s = self.lock();
        taken.append(&mut s.items);
        s.items = taken;
    }
}

/// The engine-facing side of a queue, for one downloader.
pub struct QueueSink {
    queue: Arc<EventQueue>,
    /// Known only once the downloader is registered; nothing is emitted before its start.
    id: AtomicI32,
}

impl QueueSink {
    pub fn new(queue: Arc<EventQueue>) -> Self {
        QueueSink {
            queue,
            id: AtomicI32::new(0),
        }
    }

    pub fn set_id(&self, id: c_int) {
        self.id.store(id, Ordering::Release);
    }

    /// The downloader's last event has been pushed: tell the host the id is gone.
    pub fn released(&self) {
        self.queue.push((self.id.load(Ordering::Acquire), None));
    }
}

impl EventSink for QueueSink {
    fn emit(&self, event: Event) {
        self.queue
            .push((self.id.load(Ordering::Acquire), Some(event)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tthsd_engine::EventKind;

    fn text(p: Polled) -> String {
        match p {
            Polled::Batch(s) => s,
            Polled::TooBig(n) => format!("too big {n}"),
            Polled::Empty => "empty".into(),
            Polled::Closed => "closed".into(),
        }
    }

    fn msg(s: &str) -> Event {
        Event::global(EventKind::Msg { text: s.to_owned() })
    }

    #[test]
    fn batches_keep_order_and_respect_the_limit() {
        let q = Arc::new(EventQueue::default());
        let sink = QueueSink::new(q.clone());
        sink.set_id(7);
        for i in 0..3 {
            sink.emit(msg(&format!("m{i}")));
        }
        sink.released();
        let all = text(q.poll(1 << 20, Some(Duration::ZERO)));
        let v: serde_json::Value = serde_json::from_str(&all).expect("valid JSON");
        assert_eq!(v.as_array().map(Vec::len), Some(4));
        assert_eq!(v[0][0], 7);
        assert_eq!(v[2][2]["Text"], "m2");
        assert!(v[3][1].is_null() && v[3][2].is_null());
        assert_eq!(text(q.poll(1 << 20, Some(Duration::ZERO))), "empty");

        // A limit that fits one item gives one item at a time, in order.
        sink.emit(msg("a"));
        sink.emit(msg("b"));
        let one = text(q.poll(1 << 20, Some(Duration::ZERO)));
        let size = one.len() / 2 + 2; // room for one item and the NUL, not for both
        sink.emit(msg("a"));
        sink.emit(msg("b"));
        let first = text(q.poll(size, Some(Duration::ZERO)));
        assert!(
            first.contains("\"a\"") && !first.contains("\"b\""),
            "{first}"
        );
        let second = text(q.poll(size, Some(Duration::ZERO)));
        assert!(second.contains("\"b\""), "{second}");

        // Too small for the next item: its size, and nothing taken.
        sink.emit(msg("c"));
        let t = text(q.poll(4, Some(Duration::ZERO)));
        assert!(t.starts_with("too big "), "{t}");
        assert!(text(q.poll(1 << 20, Some(Duration::ZERO))).contains("\"c\""));
    }

    #[test]
    fn close_lets_the_rest_out_then_reports_closed() {
        let q = Arc::new(EventQueue::default());
        let sink = QueueSink::new(q.clone());
        sink.set_id(1);
        sink.emit(msg("x"));
        q.close();
        sink.emit(msg("dropped"));
        let rest = text(q.poll(1 << 20, None));
        assert!(
            rest.contains("\"x\"") && !rest.contains("dropped"),
            "{rest}"
        );
        assert_eq!(text(q.poll(1 << 20, None)), "closed");
    }

    #[test]
    fn a_blocked_poll_wakes_on_push_and_on_close() {
        let q = Arc::new(EventQueue::default());
        let q2 = q.clone();
        let waiter = std::thread::spawn(move || text(q2.poll(1 << 20, None)));
        std::thread::sleep(Duration::from_millis(50));
        QueueSink::new(q.clone()).emit(msg("late"));
        assert!(waiter.join().expect("poller").contains("late"));
        let q3 = q.clone();
        let waiter = std::thread::spawn(move || text(q3.poll(1 << 20, None)));
        std::thread::sleep(Duration::from_millis(50));
        q.close();
        assert_eq!(waiter.join().expect("poller"), "closed");
        assert_eq!(
            text(q.poll(1 << 20, Some(Duration::from_millis(10)))),
            "closed"
        );
    }
}
