//! A downloader: a task list, its settings, and the life cycle of its runs
//! (created → running ⇄ paused → finished/failed, and stopped from anywhere).
//!
//! Control calls are synchronous and safe from any thread that is not one of the
//! engine's runtime threads (the FFI event thread included): `pause` and `stop` return
//! only once the run's transfers have exited, which takes one cancellation round trip.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorCode, Result};
use crate::events::{Event, EventKind, EventSink};
use crate::http::ProxySetting;
use crate::retry::RetryPolicy;
use crate::run;
use crate::runtime::runtime;
use crate::state::{Completion, RunHandle, Shared, TaskPhase, lock};
pub use crate::state::{Config, DEFAULT_CHUNK_SIZE, DEFAULT_CONNECTIONS, Mode, State};
use crate::task::TaskSpec;

/// A set of downloads with shared settings and connection budget.
pub struct Downloader {
    shared: Arc<Shared>,
}

impl Downloader {
    pub fn new(tasks: Vec<TaskSpec>, config: Config, sink: Arc<dyn EventSink>) -> Result<Self> {
        if tasks.is_empty() {
            return Err(Error::invalid("a downloader needs at least one task"));
        }
        let mut config = config;
        if config.connections == 0 {
            config.connections = DEFAULT_CONNECTIONS;
        }
        if config.chunk_size == 0 {
            config.chunk_size = DEFAULT_CHUNK_SIZE;
        }
        Ok(Downloader {
            shared: Arc::new(Shared::new(tasks, config, sink)),
        })
    }

    pub fn state(&self) -> State {
        lock(&self.shared.control).state
    }

    /// Starts a run over every task that is not already complete on disk.
    pub fn start(&self, mode: Mode) -> Result<()> {
        let rt = runtime()?;
        let mut c = lock(&self.shared.control);
        match c.state {
            State::Running | State::Paused => {
                return Err(Error::state(
                    "the downloader is already running (or paused)",
                ));
            }
            State::Stopped => return Err(Error::state("the downloader was stopped")),
            _ => {}
        }
        for t in &self.shared.tasks {
            t.announced.store(false, Ordering::Relaxed);
            *lock(&t.error) = None;
            if t.phase() != TaskPhase::Done {
                t.set_phase(TaskPhase::Pending);
            }
        }
        c.state = State::Running;
        c.mode = mode;
        c.end_pending = true;
        self.shared.clock_start(true);
        self.shared.emit(Event::global(EventKind::Start));
        c.run = Some(spawn_run(rt, &self.shared, mode));
        Ok(())
    }

    /// Stops all transfers (within one cancellation round trip), keeping every byte.
    pub fn pause(&self) -> Result<()> {
        let handle = {
            let mut c = lock(&self.shared.control);
            if c.state != State::Running {
                return Err(Error::state(format!(
                    "cannot pause a downloader that is {}",
                    c.state.as_str()
                )));
            }
            c.state = State::Paused;
            // Cancelled under the lock, so a run finishing right now sees it and stays
            // silent instead of reporting `end`.
            let h = c.run.take();
            if let Some(h) = &h {
                h.cancel.cancel();
            }
            h
        };
        if let Some(h) = handle {
            // Journals are flushed in the background; a resume waits for nothing.
            h.exited.wait();
        }
        self.shared.clock_stop();
        self.shared.speed.store(0f64.to_bits(), Ordering::Relaxed);
        self.shared.msg("Download paused");
        Ok(())
    }

    /// Continues a paused run from the bytes on disk; returns at once.
    pub fn resume(&self) -> Result<()> {
        let rt = runtime()?;
        let mut c = lock(&self.shared.control);
        if c.state != State::Paused {
            return Err(Error::state(format!(
                "cannot resume a downloader that is {}",
                c.state.as_str()
            )));
        }
        c.state = State::Running;
        self.shared.msg("Download resumed");
        self.shared.clock_start(false);
        let mode = c.mode;
        c.run = Some(spawn_run(rt, &self.shared, mode));
        Ok(())
    }

    /// Cancels the run, waits for its transfers to exit, and reports `msg` then `end`.
    /// Partial data and journals stay on disk for a later resume. A downloader whose run
    /// already ended (finished or failed) is only released: its event stream (a remote
    /// listener's too) ends with that run's `end`, not with a stop nobody made.
    pub fn stop(&self) -> Result<()> {
        let (handle, end_pending, ended) = {
            let mut c = lock(&self.shared.control);
            if c.state == State::Stopped {
                return Err(Error::state("the downloader was already stopped"));
            }
            let ended = matches!(c.state, State::Finished | State::Failed);
            c.state = State::Stopped;
            let pending = std::mem::replace(&mut c.end_pending, false);
            let h = c.run.take();
            if let Some(h) = &h {
                h.cancel.cancel();
            }
            (h, pending, ended)
        };
        if let Some(h) = handle {
            // The caller may exit right after: make the journals durable first.
            h.flushed.wait();
        }
        self.shared.clock_stop();
        if !ended {
            self.shared.msg("Download stopped");
        }
        if end_pending {
            self.shared.emit(Event::global(EventKind::End));
        }
        Ok(())
    }

    /// Bytes per second over the whole downloader; 0 = unlimited. Live.
    pub fn set_speed_limit(&self, bytes_per_second: u64) {
        self.shared.limiter.set_rate(bytes_per_second);
    }

    /// Applies to every request sent from now on.
    pub fn set_proxy(&self, proxy: ProxySetting) -> Result<()> {
        if let ProxySetting::Url(u) = &proxy {
            crate::http::validate_proxy(u)?;
        }
        lock(&self.shared.config).proxy = proxy;
        *lock(&self.shared.client) = None;
        Ok(())
    }

    pub fn set_retry_policy(&self, policy: RetryPolicy) {
        lock(&self.shared.config).retry = policy;
    }

    /// See [`Config::durable`]; applies from the next journal write on.
    pub fn set_durable(&self, durable: bool) {
        lock(&self.shared.config).durable = durable;
    }

    /// Zero leaves a timeout as it is.
    pub fn set_timeouts(&self, connect: Duration, read: Duration) {
        let mut cfg = lock(&self.shared.config);
        if !connect.is_zero() {
            cfg.connect_timeout = connect;
        }
        if !read.is_zero() {
            cfg.read_timeout = read;
        }
        drop(cfg);
        *lock(&self.shared.client) = None;
    }

    /// The `get_performance_stats` object (ABI.md §5).
    pub fn stats(&self) -> Value {
        let s = &self.shared;
        let state = self.state();
        let cfg = s.config();
        let elapsed = s.elapsed().as_secs_f64();
        let downloaded = s.downloaded();
        let baseline = lock(&s.clock).baseline;
        let average = if elapsed > 0.0 {
            downloaded.saturating_sub(baseline) as f64 / elapsed
        } else {
            0.0
        };
        let tasks: Vec<Value> = s
            .tasks
            .iter()
            .map(|t| {
                let mut entry = json!({
                    "id": t.spec.id,
                    "show_name": t.spec.show_name,
                    "url": crate::http::redact(&t.spec.url),
                    "save_path": t.spec.save_path.to_string_lossy(),
                    "state": t.phase().as_str(),
                    "downloaded": t.downloaded.load(Ordering::Relaxed),
                    "total": t.total.load(Ordering::Relaxed),
                    "speed": t.speed(),
                    "contiguous": t.contiguous(),
                    "error": *lock(&t.error),
                });
                // What each URL of a task with mirrors served (`mirrors`).
                if !t.spec.mirrors.is_empty()
                    && let Some(obj) = entry.as_object_mut()
                {
                    let list = lock(&t.sources).iter().map(|s| s.value()).collect();
                    obj.insert("sources".into(), Value::Array(list));
                }
                entry
            })
            .collect();
        json!({
            "state": state.as_str(),
            "downloaded": downloaded,
            "total": s.tasks.iter().map(|t| t.total.load(Ordering::Relaxed)).sum::<u64>(),
            "speed": f64::from_bits(s.speed.load(Ordering::Relaxed)),
            "average_speed": average,
            "elapsed": elapsed,
            "bytes_fetched": s.counters.bytes_fetched.load(Ordering::Relaxed),
            "retries": s.counters.retries.load(Ordering::Relaxed),
            "connections": s.counters.connections.load(Ordering::Relaxed).max(0),
            "thread_count": cfg.connections,
            "chunk_size": cfg.chunk_size,
            "speed_limit": s.limiter.rate(),
            // Each host's connection limit as the run left it: below `ceiling` when the
            // host pushed back (`pushback`).
            "hosts": s.limits.snapshot().into_iter().map(|(host, limit, ceiling, pushbacks)| json!({
                "host": host, "connection_limit": limit, "ceiling": ceiling, "pushbacks": pushbacks,
            })).collect::<Vec<_>>(),
            "tasks": tasks,
        })
    }
}

impl Drop for Downloader {
    fn drop(&mut self) {
        // A downloader dropped mid-run must not leave transfers writing behind our back.
        let handle = lock(&self.shared.control).run.take();
        if let Some(h) = handle {
            h.cancel.cancel();
            h.flushed.wait();
        }
    }
}

fn spawn_run(rt: &tokio::runtime::Runtime, shared: &Arc<Shared>, mode: Mode) -> RunHandle {
    let cancel = CancellationToken::new();
    let exited = Arc::new(Completion::new());
    let flushed = Arc::new(Completion::new());
    let (s, c, e, f) = (
        shared.clone(),
        cancel.clone(),
        exited.clone(),
        flushed.clone(),
    );
    rt.spawn(async move {
        let work = async {
            tokio::select! {
                biased;
                _ = c.cancelled() => None,
                ok = run::run_tasks(&s, mode) => Some(ok),
            }
        };
        // A bug must not leave a run that never ends: a panic becomes a failed run.
        let outcome = match AssertUnwindSafe(work).catch_unwind().await {
            Ok(o) => o,
            Err(_) => {
                s.emit(Event::global(EventKind::Err {
                    error: "internal error in the download engine".into(),
                    code: ErrorCode::Internal.as_str(),
                }));
                Some(false)
            }
        };
        match outcome {
            Some(all_ok) => {
                s.finish_run(&c, all_ok);
                e.set();
            }
            None => {
                // Dropping the run future above closed every connection and file.
                run::mark_paused(&s);
                e.set();
                run::flush_journals(&s).await;
            }
        }
        f.set();
    });
    RunHandle {
        cancel,
        exited,
        flushed,
    }
}
