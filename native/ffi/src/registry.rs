//! Ids: the tables from the `int`s C callers hold to live downloaders and event queues.

use std::collections::BTreeMap;
use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tthsd_engine::{Downloader, EventSink};

use crate::pump::EventPump;
use crate::queue::{EventQueue, QueueSink};

/// How a downloader's events reach its host.
pub enum Delivery {
    /// Created without a callback: events are dropped.
    Nothing,
    /// The C callback, called from the downloader's event thread.
    Callback(Arc<EventPump>),
    /// Pushed onto an event queue the host polls.
    Queue(Arc<QueueSink>),
}

impl Delivery {
    /// After the downloader's last event: end the event thread, or tell the queue that
    /// the id is released.
    pub fn finish(&self) {
        match self {
            Delivery::Nothing => {}
            Delivery::Callback(pump) => pump.close(),
            Delivery::Queue(sink) => sink.released(),
        }
    }
}

pub struct Entry {
    pub downloader: Downloader,
    /// What the downloader emits into (local delivery, maybe teed to a remote listener).
    pub sink: Arc<dyn EventSink>,
    pub delivery: Delivery,
}

/// One id space: ids start at 1 and are never reused while live.
pub struct Table<T> {
    map: Mutex<BTreeMap<c_int, Arc<T>>>,
    next: AtomicI32,
    what: &'static str,
}

impl<T> Table<T> {
    const fn new(what: &'static str) -> Self {
        Table {
            map: Mutex::new(BTreeMap::new()),
            next: AtomicI32::new(1),
            what,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<c_int, Arc<T>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, value: Arc<T>) -> c_int {
        let mut t = self.lock();
        loop {
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            if id <= 0 {
                self.next.store(1, Ordering::Relaxed); // wrapped after 2^31 ids
                continue;
            }
            if let std::collections::btree_map::Entry::Vacant(v) = t.entry(id) {
                v.insert(value);
                return id;
            }
        }
    }

    pub fn get(&self, id: c_int) -> Result<Arc<T>, String> {
        self.lock()
            .get(&id)
            .cloned()
            .ok_or_else(|| format!("no {} with id {id}", self.what))
    }

    /// Takes the id out of the table: later calls with it fail.
    pub fn remove(&self, id: c_int) -> Result<Arc<T>, String> {
        self.lock()
            .remove(&id)
            .ok_or_else(|| format!("no {} with id {id}", self.what))
    }
}

pub static DOWNLOADERS: Table<Entry> = Table::new("downloader");
pub static QUEUES: Table<EventQueue> = Table::new("event queue");

pub fn insert(entry: Entry) -> c_int {
    DOWNLOADERS.insert(Arc::new(entry))
}

pub fn get(id: c_int) -> Result<Arc<Entry>, String> {
    DOWNLOADERS.get(id)
}

pub fn remove(id: c_int) -> Result<Arc<Entry>, String> {
    DOWNLOADERS.remove(id)
}
