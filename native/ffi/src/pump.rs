//! The event thread: one per downloader, the only thread that calls the C callback.
//!
//! The engine's network tasks only push events onto a channel, so a slow callback slows
//! event delivery, never a download. Events of one downloader keep their order because
//! one thread delivers them. `close` lets the queued events out and then ends the thread;
//! called from inside the callback it cannot wait for itself, so it returns at once and
//! the thread ends right after the current callback.

use std::ffi::{CString, c_char};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};

use tthsd_engine::{Event, EventSink};

/// `void (*)(const char* event_json, const char* msg_json)`; NULL means no callback.
#[allow(non_camel_case_types)]
pub type tthsd_callback =
    Option<unsafe extern "C" fn(event_json: *const c_char, msg_json: *const c_char)>;

enum Message {
    Event(Event),
    Close,
}

pub struct EventPump {
    tx: Mutex<Option<Sender<Message>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
}

impl EventPump {
    pub fn start(
        callback: unsafe extern "C" fn(*const c_char, *const c_char),
    ) -> Result<Arc<Self>, String> {
        let (tx, rx) = channel::<Message>();
        let thread = std::thread::Builder::new()
            .name("tthsd-events".into())
            .spawn(move || {
                while let Ok(Message::Event(e)) = rx.recv() {
                    let event = CString::new(e.event_json()).unwrap_or_default();
                    let msg = CString::new(e.msg_json()).unwrap_or_default();
                    // SAFETY: the caller registered a function of this signature; both
                    // strings outlive the call, as ABI.md §3 promises.
                    unsafe { callback(event.as_ptr(), msg.as_ptr()) };
                }
            })
            .map_err(|e| format!("cannot start the event thread: {e}"))?;
        let thread_id = thread.thread().id();
        Ok(Arc::new(EventPump {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            thread_id,
        }))
    }

    fn send(&self, m: Message) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(m);
        }
    }

    /// Delivers what is queued, then ends the thread; nothing is delivered afterwards.
    pub fn close(&self) {
        self.send(Message::Close);
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if std::thread::current().id() == self.thread_id {
            return;
        }
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// The engine-facing side of a pump.
pub struct PumpSink(pub Arc<EventPump>);

impl EventSink for PumpSink {
    fn emit(&self, event: Event) {
        self.0.send(Message::Event(event));
    }
}
