//! Downloader ids: the table from the `int` C callers hold to live downloaders.

use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tthsd_engine::{Downloader, EventSink};

use crate::pump::EventPump;

pub struct Entry {
    pub downloader: Downloader,
    /// What the downloader emits into (local pump, maybe teed to a remote listener).
    pub sink: Arc<dyn EventSink>,
    pub pump: Option<Arc<EventPump>>,
}

fn table() -> MutexGuard<'static, HashMap<c_int, Arc<Entry>>> {
    static TABLE: OnceLock<Mutex<HashMap<c_int, Arc<Entry>>>> = OnceLock::new();
    TABLE
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Registers a downloader; ids start at 1 and are never reused while live.
pub fn insert(entry: Entry) -> c_int {
    static NEXT: AtomicI32 = AtomicI32::new(1);
    let entry = Arc::new(entry);
    let mut t = table();
    loop {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        if id <= 0 {
            NEXT.store(1, Ordering::Relaxed); // wrapped after 2^31 ids
            continue;
        }
        if let std::collections::hash_map::Entry::Vacant(v) = t.entry(id) {
            v.insert(entry);
            return id;
        }
    }
}

pub fn get(id: c_int) -> Result<Arc<Entry>, String> {
    table()
        .get(&id)
        .cloned()
        .ok_or_else(|| format!("no downloader with id {id}"))
}

/// Takes the id out of the table: later calls with it fail.
pub fn remove(id: c_int) -> Result<Arc<Entry>, String> {
    table()
        .remove(&id)
        .ok_or_else(|| format!("no downloader with id {id}"))
}
