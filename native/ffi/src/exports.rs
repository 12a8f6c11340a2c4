//! The TTHSD C ABI (ABI.md §1): snake-case functions, our `tthsd_` additions.
//!
//! Conventions, for every function here:
//! - Failure returns -1 (or the documented empty value) and leaves a reason that
//!   `tthsd_last_error` copies out; success clears it. Nothing is printed.
//! - NULL pointers are accepted everywhere and mean "not given", or are an error with a
//!   reason where the argument is required. Strings are NUL-terminated UTF-8.
//! - Every function may be called from any thread, including from inside the event
//!   callback. No panic crosses into C.

use std::ffi::{c_char, c_int};
use std::sync::Arc;
use std::time::Duration;

use tthsd_engine::remote::{self, RemoteSink, Tee};
use tthsd_engine::{Config, Downloader, EventSink, Mode, NullSink, ProxySetting, RetryPolicy};

use crate::args::{chunk_size_bytes, optional_bool, optional_str, required_str, thread_count};
use crate::guard::{guard, last_error};
use crate::pump::{EventPump, PumpSink, tthsd_callback};
use crate::queue::{EventQueue, Polled, QueueSink};
use crate::registry::{self, Delivery, Entry, QUEUES};
use crate::strings;

/// Bumped whenever this ABI changes incompatibly.
pub const TTHSD_ABI_VERSION: c_int = 1;

/// Where a new downloader's events go, as the caller asked.
enum Deliver {
    Callback(tthsd_callback),
    Queue(c_int),
}

/// Builds and registers a downloader from the C arguments; nothing is created on error.
#[allow(clippy::too_many_arguments)]
unsafe fn create(
    tasks_json: *const c_char,
    task_count: c_int,
    threads: c_int,
    chunk_size_mb: c_int,
    deliver: Deliver,
    use_callback_url: bool,
    user_agent: *const c_char,
    remote_callback_url: *const c_char,
    use_socket: *const bool,
    headers_json: *const c_char,
) -> Result<c_int, String> {
    // SAFETY (all reads below): the caller passes NULL or valid NUL-terminated strings.
    let tasks_text = unsafe { required_str(tasks_json, "tasks_json")? };
    let expected =
        usize::try_from(task_count).map_err(|_| format!("task_count {task_count} is negative"))?;
    let tasks = tthsd_engine::parse_tasks(tasks_text, Some(expected)).map_err(|e| e.message)?;
    let mut config = Config {
        connections: thread_count(threads),
        chunk_size: chunk_size_bytes(chunk_size_mb),
        ..Config::default()
    };
    if let Some(ua) = unsafe { optional_str(user_agent, "user_agent")? } {
        tthsd_engine::check_user_agent(ua).map_err(|e| e.message)?;
        config.user_agent = ua.to_owned();
    }
    if let Some(h) = unsafe { optional_str(headers_json, "headers_json")? } {
        config.headers = tthsd_engine::parse_headers_json(h).map_err(|e| e.message)?;
    }
    // The remote target is checked before anything is started.
    let remote = match unsafe { optional_str(remote_callback_url, "remote_callback_url")? } {
        Some(url) if use_callback_url => {
            // SAFETY: NULL or a readable bool.
            let socket = unsafe { optional_bool(use_socket) } == Some(true);
            Some(remote::parse_target(url, socket).map_err(|e| e.message)?)
        }
        _ => None,
    };
    let delivery = match deliver {
        Deliver::Callback(Some(cb)) => Delivery::Callback(EventPump::start(cb)?),
        Deliver::Callback(None) => Delivery::Nothing,
        Deliver::Queue(q) => {
            let queue = QUEUES.get(q)?;
            if queue.is_closed() {
                return Err(format!("event queue {q} is closed"));
            }
            Delivery::Queue(Arc::new(QueueSink::new(queue)))
        }
    };
    let local: Arc<dyn EventSink> = match &delivery {
        Delivery::Nothing => Arc::new(NullSink),
        Delivery::Callback(p) => Arc::new(PumpSink(p.clone())),
        Delivery::Queue(q) => q.clone(),
    };
    let sink: Arc<dyn EventSink> = match remote {
        Some(target) => match RemoteSink::start(target, local.clone()) {
            Ok(r) => Arc::new(Tee {
                local,
                remote: Some(r),
            }),
            Err(e) => {
                abandon(&delivery);
                return Err(e.message);
            }
        },
        None => local,
    };
    let downloader = match Downloader::new(tasks, config, sink.clone()) {
        Ok(d) => d,
        Err(e) => {
            abandon(&delivery);
            return Err(e.message);
        }
    };
    let queue_sink = match &delivery {
        Delivery::Queue(q) => Some(q.clone()),
        _ => None,
    };
    let id = registry::insert(Entry {
        downloader,
        sink,
        delivery,
    });
    if let Some(q) = queue_sink {
        q.set_id(id);
    }
    Ok(id)
}

/// Undoes a delivery whose downloader was never registered: no id was handed out, so a
/// queue hears nothing of it.
fn abandon(delivery: &Delivery) {
    if let Delivery::Callback(p) = delivery {
        p.close();
    }
}

/// Stops a downloader, delivers its last events, and ends its event thread.
fn shut_down(entry: &Entry) -> Result<(), String> {
    let r = entry.downloader.stop().map_err(|e| e.message);
    // A remote sink hands `end` on to the pump itself: let it, before the pump closes.
    entry.sink.flush();
    entry.delivery.finish();
    r
}

/// The shape of every control call on a live id: look it up, act, 0 or the reason.
fn control(id: c_int, act: impl FnOnce(&Downloader) -> tthsd_engine::Result<()>) -> c_int {
    guard(-1, || {
        act(&registry::get(id)?.downloader).map_err(|e| e.message)?;
        Ok(0)
    })
}

fn start_with(id: c_int, mode: Mode) -> Result<c_int, String> {
    let entry = registry::get(id)?;
    entry.downloader.start(mode).map_err(|e| e.message)?;
    Ok(0)
}

/// Creates a downloader and starts it at once. `is_multiple` true runs the tasks side by
/// side; false or NULL runs them one after another. Returns the id (> 0), or -1.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; `use_socket`/`is_multiple` are NULL or
/// point to a bool; `callback` is NULL or a function of the `tthsd_callback` type that
/// stays callable until `stop_download` for the returned id has returned.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn start_download(
    tasks_json: *const c_char,
    task_count: c_int,
    thread_count: c_int,
    chunk_size_mb: c_int,
    callback: tthsd_callback,
    use_callback_url: bool,
    user_agent: *const c_char,
    remote_callback_url: *const c_char,
    use_socket: *const bool,
    is_multiple: *const bool,
    headers_json: *const c_char,
) -> c_int {
    guard(-1, || {
        // SAFETY: forwarded caller contract.
        let id = unsafe {
            create(
                tasks_json,
                task_count,
                thread_count,
                chunk_size_mb,
                Deliver::Callback(callback),
                use_callback_url,
                user_agent,
                remote_callback_url,
                use_socket,
                headers_json,
            )?
        };
        // SAFETY: NULL or a readable bool.
        let mode = match unsafe { optional_bool(is_multiple) } {
            Some(true) => Mode::Parallel,
            _ => Mode::Sequential,
        };
        if let Err(e) = start_with(id, mode) {
            if let Ok(entry) = registry::remove(id) {
                let _ = shut_down(&entry);
            }
            return Err(e);
        }
        Ok(id)
    })
}

/// Creates a downloader without starting it. Returns the id (> 0), or -1.
///
/// # Safety
/// As `start_download`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn get_downloader(
    tasks_json: *const c_char,
    task_count: c_int,
    thread_count: c_int,
    chunk_size_mb: c_int,
    callback: tthsd_callback,
    use_callback_url: bool,
    user_agent: *const c_char,
    remote_callback_url: *const c_char,
    use_socket: *const bool,
    headers_json: *const c_char,
) -> c_int {
    guard(-1, || {
        // SAFETY: forwarded caller contract.
        unsafe {
            create(
                tasks_json,
                task_count,
                thread_count,
                chunk_size_mb,
                Deliver::Callback(callback),
                use_callback_url,
                user_agent,
                remote_callback_url,
                use_socket,
                headers_json,
            )
        }
    })
}

/// Starts a created (or finished) downloader, one task after another. 0, or -1.
#[unsafe(no_mangle)]
pub extern "C" fn start_download_id(id: c_int) -> c_int {
    guard(-1, || start_with(id, Mode::Sequential))
}

/// Starts a created (or finished) downloader, all tasks side by side. 0, or -1.
#[unsafe(no_mangle)]
pub extern "C" fn start_multiple_downloads_id(id: c_int) -> c_int {
    guard(-1, || start_with(id, Mode::Parallel))
}

/// Stops every transfer within 200 ms, keeping what is written. 0, or -1.
#[unsafe(no_mangle)]
pub extern "C" fn pause_download(id: c_int) -> c_int {
    control(id, Downloader::pause)
}

/// Continues a paused downloader from the bytes on disk; returns at once. 0, or -1.
#[unsafe(no_mangle)]
pub extern "C" fn resume_download(id: c_int) -> c_int {
    control(id, Downloader::resume)
}

/// Cancels the run, waits for its transfers, delivers `msg` "Download stopped" and
/// `end`, and releases the id (later calls with it return -1). No callback for this id
/// runs after it returns. 0, or -1.
#[unsafe(no_mangle)]
pub extern "C" fn stop_download(id: c_int) -> c_int {
    guard(-1, || {
        let entry = registry::remove(id)?;
        shut_down(&entry)?;
        Ok(0)
    })
}

/// Caps the whole downloader at `bytes_per_second` (0 = unlimited), live. 0, or -1.
#[unsafe(no_mangle)]
pub extern "C" fn set_speed_limit(id: c_int, bytes_per_second: u64) -> c_int {
    control(id, |d| {
        d.set_speed_limit(bytes_per_second);
        Ok(())
    })
}

/// Sends every later request through `proxy_url` (`http://`, `https://`, `socks5://`,
/// `socks5h://`, credentials allowed in the URL); NULL or "" means no proxy. 0, or -1.
///
/// # Safety
/// `proxy_url` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn set_proxy(id: c_int, proxy_url: *const c_char) -> c_int {
    guard(-1, || {
        let entry = registry::get(id)?;
        // SAFETY: forwarded caller contract.
        let setting = match unsafe { optional_str(proxy_url, "proxy_url")? } {
            None => ProxySetting::Direct,
            Some(u) => ProxySetting::Url(u.to_owned()),
        };
        entry.downloader.set_proxy(setting).map_err(|e| e.message)?;
        Ok(0)
    })
}

/// Retries per range for transient failures: at most `max_retries` after the first try,
/// waiting from `retry_delay_ms` doubling up to `max_retry_delay_ms`, with jitter.
/// 0, or -1.
#[unsafe(no_mangle)]
pub extern "C" fn set_retry_config(
    id: c_int,
    max_retries: u32,
    retry_delay_ms: u64,
    max_retry_delay_ms: u64,
) -> c_int {
    guard(-1, || {
        if max_retry_delay_ms < retry_delay_ms {
            return Err(format!(
                "max_retry_delay_ms ({max_retry_delay_ms}) is below retry_delay_ms ({retry_delay_ms})"
            ));
        }
        registry::get(id)?.downloader.set_retry_policy(RetryPolicy {
            max_retries,
            base_delay: Duration::from_millis(retry_delay_ms),
            max_delay: Duration::from_millis(max_retry_delay_ms),
        });
        Ok(0)
    })
}

/// The downloader's statistics as a JSON object (ABI.md §5); `{}` for an unknown id.
/// Never NULL; release with `free_string`.
#[unsafe(no_mangle)]
pub extern "C" fn get_performance_stats(id: c_int) -> *mut c_char {
    let json = guard(String::from("{}"), || {
        Ok(registry::get(id)?.downloader.stats().to_string())
    });
    strings::hand_out(json)
}

/// Frees a string returned by this library. NULL, and any pointer this library did not
/// hand out, are ignored.
#[unsafe(no_mangle)]
pub extern "C" fn free_string(s: *mut c_char) {
    guard((), || {
        strings::take_back(s);
        Ok(())
    })
}

/// The library version (the crate version), as a static string never to be freed.
#[unsafe(no_mangle)]
pub extern "C" fn tthsd_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr() as *const c_char
}

/// The version of this C ABI; bumped on incompatible changes.
#[unsafe(no_mangle)]
pub extern "C" fn tthsd_abi_version() -> c_int {
    TTHSD_ABI_VERSION
}

/// Copies the reason the last call on this thread failed into `buf` (UTF-8,
/// NUL-terminated, truncated to `len` bytes) and returns its full length in bytes;
/// 0 if the last call succeeded. `buf` may be NULL to ask for the length only.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tthsd_last_error(buf: *mut c_char, len: usize) -> c_int {
    // Not through `guard`: reading the error must not clear it.
    std::panic::catch_unwind(|| {
        let Some(msg) = last_error() else {
            if !buf.is_null() && len > 0 {
                // SAFETY: writable for at least one byte.
                unsafe { *buf = 0 };
            }
            return 0;
        };
        let bytes = msg.as_bytes();
        if !buf.is_null() && len > 0 {
            let mut n = bytes.len().min(len - 1);
            // Never cut a UTF-8 sequence in half.
            while n > 0 && !msg.is_char_boundary(n) {
                n -= 1;
            }
            // SAFETY: `buf` is writable for `len` bytes and n + 1 <= len.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), n);
                *buf.add(n) = 0;
            }
        }
        c_int::try_from(bytes.len()).unwrap_or(c_int::MAX)
    })
    .unwrap_or(-1)
}

/// Our addition: connect timeout and stalled-body timeout for later requests, in
/// milliseconds; 0 leaves one as it is. 0, or -1.
#[unsafe(no_mangle)]
pub extern "C" fn tthsd_set_timeouts(
    id: c_int,
    connect_timeout_ms: u64,
    read_timeout_ms: u64,
) -> c_int {
    control(id, |d| {
        d.set_timeouts(
            Duration::from_millis(connect_timeout_ms),
            Duration::from_millis(read_timeout_ms),
        );
        Ok(())
    })
}

/// Our addition: `durable` true (the default) flushes data to stable storage before each
/// journal write and before a file is published, so even a power cut never leaves a
/// wrong file; false skips those flushes (faster on slow disks; a crash of the process
/// is still safe, a power cut is not). 0, or -1.
#[unsafe(no_mangle)]
pub extern "C" fn tthsd_set_durability(id: c_int, durable: bool) -> c_int {
    control(id, |d| {
        d.set_durable(durable);
        Ok(())
    })
}

/// Our addition: a new event queue, the pull-style alternative to the callback (see
/// `tthsd_get_downloader_queued`). Returns its id (> 0), or -1.
#[unsafe(no_mangle)]
pub extern "C" fn tthsd_queue_new() -> c_int {
    guard(-1, || Ok(QUEUES.insert(Arc::new(EventQueue::default()))))
}

/// Our addition: `get_downloader`, except that the downloader's events go to event queue
/// `queue` instead of to a callback; take them with `tthsd_queue_poll`. After its last
/// event (when `stop_download` returns) an item `[id, null, null]` says the id is
/// released. Returns the id (> 0), or -1.
///
/// # Safety
/// As `get_downloader`, without the callback.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn tthsd_get_downloader_queued(
    queue: c_int,
    tasks_json: *const c_char,
    task_count: c_int,
    thread_count: c_int,
    chunk_size_mb: c_int,
    use_callback_url: bool,
    user_agent: *const c_char,
    remote_callback_url: *const c_char,
    use_socket: *const bool,
    headers_json: *const c_char,
) -> c_int {
    guard(-1, || {
        // SAFETY: forwarded caller contract.
        unsafe {
            create(
                tasks_json,
                task_count,
                thread_count,
                chunk_size_mb,
                Deliver::Queue(queue),
                use_callback_url,
                user_agent,
                remote_callback_url,
                use_socket,
                headers_json,
            )
        }
    })
}

/// Our addition: waits up to `timeout_ms` (negative: without limit) for events on
/// `queue`, then writes every queued item that fits into `buf` as one NUL-terminated
/// JSON array of `[downloader_id, event, msg]` items (`event` and `msg` as the callback
/// would get them; both `null` when the id was released). Returns the length in bytes
/// (without the NUL), or 0 if nothing came in time. If even the first item does not fit
/// in `len` bytes, nothing is taken and the return is the length it needs (like
/// `snprintf`: a return of `len` or more means "call again with a larger buffer").
/// Returns -1 for an unknown queue, and once a closed queue has been emptied (the queue
/// is gone afterwards). One thread at a time should poll a queue; others wait their turn.
///
/// # Safety
/// `buf` is writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tthsd_queue_poll(
    queue: c_int,
    buf: *mut c_char,
    len: usize,
    timeout_ms: c_int,
) -> c_int {
    guard(-1, || {
        if buf.is_null() || len == 0 {
            return Err("buf is NULL or len is 0".to_owned());
        }
        let q = QUEUES.get(queue)?;
        let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        // The length must fit the return type.
        let limit = len.min(c_int::MAX as usize);
        match q.poll(limit, timeout) {
            Polled::Batch(text) => {
                let bytes = text.as_bytes();
                // SAFETY: `buf` is writable for `len` bytes, and the batch was cut to
                // `limit - 1 <= len - 1` bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
                    *buf.add(bytes.len()) = 0;
                }
                Ok(c_int::try_from(bytes.len()).unwrap_or(c_int::MAX))
            }
            Polled::TooBig(needed) => Ok(c_int::try_from(needed).unwrap_or(c_int::MAX)),
            Polled::Empty => Ok(0),
            Polled::Closed => {
                let _ = QUEUES.remove(queue);
                Err(format!("event queue {queue} is closed"))
            }
        }
    })
}

/// Our addition: closes `queue`. A waiting `tthsd_queue_poll` wakes up; what is queued
/// can still be taken, then polls return -1. Downloaders still attached to the queue go
/// on, their events dropped. 0, or -1.
#[unsafe(no_mangle)]
pub extern "C" fn tthsd_queue_close(queue: c_int) -> c_int {
    guard(-1, || {
        QUEUES.get(queue)?.close();
        Ok(0)
    })
}
