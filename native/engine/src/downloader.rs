//! A downloader: a task list, its settings, and the life cycle of its runs
//! (created → running ⇄ paused → finished/failed, and stopped from anywhere).
//!
//! Control calls are synchronous and safe from any thread that is not one of the
//! engine's runtime threads (the FFI event thread included): `pause` and `stop` return
//! only once the run's transfers have exited, which takes one cancellation round trip.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::events::{Event, EventKind, EventSink};
use crate::fetch::FileState;
use crate::http::{Client, ClientConfig, ProxySetting, build_client};
use crate::ratelimit::RateLimiter;
use crate::retry::RetryPolicy;
use crate::run;
use crate::runtime::runtime;
use crate::task::TaskSpec;

pub const DEFAULT_CONNECTIONS: usize = 64;
pub const DEFAULT_CHUNK_SIZE: u64 = 10 * 1024 * 1024;

/// Settings of one downloader.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most connections open at once over all tasks (`thread_count`).
    pub connections: usize,
    /// Size of the ranges a file is cut into (`chunk_size_mb`).
    pub chunk_size: u64,
    pub user_agent: String,
    /// Sent on every request of every task.
    pub headers: Vec<(String, String)>,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// A body that delivers nothing for this long is treated as a dead connection.
    pub read_timeout: Duration,
    pub proxy: ProxySetting,
    /// Minimum time between journal writes of one file.
    pub journal_interval: Duration,
    /// Flush data to stable storage before each journal write and before publishing,
    /// so a power cut can never leave a wrong file. Off, a crash of the process is
    /// still safe (the page cache survives it) but a power cut is not.
    pub durable: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connections: DEFAULT_CONNECTIONS,
            chunk_size: DEFAULT_CHUNK_SIZE,
            user_agent: format!("TTHSD/{}", env!("CARGO_PKG_VERSION")),
            headers: Vec::new(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(30),
            proxy: ProxySetting::Environment,
            journal_interval: Duration::from_secs(1),
            durable: true,
        }
    }
}

/// How a run works its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One file after another, each over many connections.
    Sequential,
    /// All files at once, sharing the connection budget.
    Parallel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Paused,
    Finished,
    Failed,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Finished => "finished",
            State::Failed => "failed",
            State::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskPhase {
    Pending,
    Running,
    Paused,
    Done,
    Failed,
}

impl TaskPhase {
    fn as_str(self) -> &'static str {
        match self {
            TaskPhase::Pending => "pending",
            TaskPhase::Running => "running",
            TaskPhase::Paused => "paused",
            TaskPhase::Done => "done",
            TaskPhase::Failed => "failed",
        }
    }
}

/// Everything the engine knows about one task, kept across pauses and runs.
pub(crate) struct TaskState {
    pub spec: TaskSpec,
    /// 1-based.
    pub index: usize,
    pub phase: Mutex<TaskPhase>,
    pub downloaded: AtomicU64,
    pub total: AtomicU64,
    /// Smoothed speed in bytes/s, as f64 bits.
    pub speed: AtomicU64,
    pub error: Mutex<Option<String>>,
    /// `startOne` was sent in the current series of runs (a resume does not repeat it).
    pub announced: AtomicBool,
    /// Progress of the file: ranges on disk, size, validators. Survives pause.
    pub file: Mutex<Option<FileState>>,
    /// Size of the file this downloader published at `save_path`, if any.
    pub published: Mutex<Option<u64>>,
    /// Held while a journal is synced and written, and while the file state is reset,
    /// so a stale snapshot never lands on disk after a reset.
    pub journal_lock: Mutex<()>,
    /// A journal file may exist at `save_path.tthsd.journal` (saves a needless unlink,
    /// which takes the folder's write lock, for every small file).
    pub journal_on_disk: AtomicBool,
    /// Held for the whole of verify, sync and rename: one publish of a file at a time.
    pub finalize_lock: Mutex<()>,
    /// Running digest of the file's contiguous prefix, when the task has a checksum.
    pub digest: Mutex<Option<crate::fetch::PrefixDigest>>,
    /// The task's place among the files a parallel run transfers at once; given up
    /// when its transfer is over, before the file is made durable.
    pub slot: Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

impl TaskState {
    pub fn set_phase(&self, p: TaskPhase) {
        *lock(&self.phase) = p;
    }

    pub fn phase(&self) -> TaskPhase {
        *lock(&self.phase)
    }

    pub fn speed(&self) -> f64 {
        f64::from_bits(self.speed.load(Ordering::Relaxed))
    }

    /// Bytes from offset 0 that are all on disk: what a reader may consume in order.
    pub fn contiguous(&self) -> u64 {
        match lock(&self.file).as_ref() {
            Some(f) => f.done.prefix(),
            None if lock(&self.published).is_some() => self.downloaded.load(Ordering::Relaxed),
            None => 0,
        }
    }
}

/// Counters shared by every transfer of one downloader.
#[derive(Default)]
pub(crate) struct Counters {
    pub bytes_fetched: AtomicU64,
    pub retries: AtomicU64,
    pub connections: AtomicI64,
}

struct Completion {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Completion {
    fn new() -> Self {
        Completion {
            done: Mutex::new(false),
            cv: Condvar::new(),
        }
    }

    fn set(&self) {
        *lock(&self.done) = true;
        self.cv.notify_all();
    }

    fn wait(&self) {
        let mut done = lock(&self.done);
        while !*done {
            done = self.cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct RunHandle {
    cancel: CancellationToken,
    /// Set once the run's transfers have all exited.
    exited: Arc<Completion>,
    /// Set once, after a cancel, the journals are durable too.
    flushed: Arc<Completion>,
}

struct Control {
    state: State,
    mode: Mode,
    run: Option<RunHandle>,
    /// A run started and has not sent its `end` yet.
    end_pending: bool,
}

#[derive(Default)]
struct Clock {
    accumulated: Duration,
    running_since: Option<Instant>,
    /// Bytes on disk when the current series of runs began, for `average_speed`.
    baseline: u64,
}

pub(crate) struct Shared {
    pub tasks: Vec<Arc<TaskState>>,
    config: Mutex<Config>,
    client: Mutex<Option<Client>>,
    control: Mutex<Control>,
    pub sink: Arc<dyn EventSink>,
    pub limiter: RateLimiter,
    pub counters: Counters,
    clock: Mutex<Clock>,
    /// Smoothed downloader speed (f64 bits).
    pub speed: AtomicU64,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every guarded
/// value here stays consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn config(&self) -> Config {
        lock(&self.config).clone()
    }

    /// The HTTP client for the current settings, built on first use and after a change.
    pub fn client(&self) -> Result<Client> {
        let mut slot = lock(&self.client);
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let cfg = self.config();
        let c = build_client(&ClientConfig {
            user_agent: cfg.user_agent,
            connect_timeout: cfg.connect_timeout,
            proxy: cfg.proxy,
            connections: cfg.connections,
        })?;
        *slot = Some(c.clone());
        Ok(c)
    }

    pub fn emit(&self, event: Event) {
        self.sink.emit(event);
    }

    pub fn msg(&self, text: impl Into<String>) {
        self.emit(Event::global(EventKind::Msg { text: text.into() }));
    }

    pub fn downloaded(&self) -> u64 {
        self.tasks
            .iter()
            .map(|t| t.downloaded.load(Ordering::Relaxed))
            .sum()
    }

    fn elapsed(&self) -> Duration {
        let c = lock(&self.clock);
        c.accumulated + c.running_since.map(|s| s.elapsed()).unwrap_or_default()
    }

    fn clock_start(&self, fresh: bool) {
        let downloaded = self.downloaded();
        let mut c = lock(&self.clock);
        if fresh {
            c.accumulated = Duration::ZERO;
            c.baseline = downloaded;
        }
        c.running_since.get_or_insert_with(Instant::now);
    }

    fn clock_stop(&self) {
        let mut c = lock(&self.clock);
        if let Some(s) = c.running_since.take() {
            c.accumulated += s.elapsed();
        }
    }

    /// Called by the run task when it ends on its own (not cancelled).
    pub fn finish_run(&self, cancel: &CancellationToken, all_ok: bool) {
        let mut c = lock(&self.control);
        if cancel.is_cancelled() {
            // pause or stop owns the state now and reports for itself
            return;
        }
        c.state = if all_ok {
            State::Finished
        } else {
            State::Failed
        };
        c.run = None;
        c.end_pending = false;
        self.clock_stop();
        self.speed.store(0f64.to_bits(), Ordering::Relaxed);
        // Sent under the lock so no control call can slip an event in after `end`.
        self.emit(Event::global(EventKind::End));
    }
}

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
        let tasks = tasks
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                Arc::new(TaskState {
                    spec,
                    index: i + 1,
                    phase: Mutex::new(TaskPhase::Pending),
                    downloaded: AtomicU64::new(0),
                    total: AtomicU64::new(0),
                    speed: AtomicU64::new(0f64.to_bits()),
                    error: Mutex::new(None),
                    announced: AtomicBool::new(false),
                    file: Mutex::new(None),
                    published: Mutex::new(None),
                    journal_lock: Mutex::new(()),
                    journal_on_disk: AtomicBool::new(false),
                    finalize_lock: Mutex::new(()),
                    digest: Mutex::new(None),
                    slot: Mutex::new(None),
                })
            })
            .collect();
        Ok(Downloader {
            shared: Arc::new(Shared {
                tasks,
                config: Mutex::new(config),
                client: Mutex::new(None),
                control: Mutex::new(Control {
                    state: State::Created,
                    mode: Mode::Sequential,
                    run: None,
                    end_pending: false,
                }),
                sink,
                limiter: RateLimiter::default(),
                counters: Counters::default(),
                clock: Mutex::new(Clock::default()),
                speed: AtomicU64::new(0f64.to_bits()),
            }),
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
                json!({
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
                })
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
                    code: "internal",
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
