//! The engine's state, a leaf every stage reads and writes: the settings ([`Config`]),
//! what is known of each task ([`TaskState`]) and of its file between attempts
//! ([`FileState`]), the counters, and the downloader-wide [`Shared`] data (client, event
//! sink, speed limit, per-host holds, the run's control block).
//!
//! Nothing here downloads or decides: the stages (`fetch` and the modules it drives) and
//! the life cycle (`downloader`, `run`) work on these values, and this module imports
//! none of them, so the crate's modules form no cycle.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use url::Url;

use crate::checksum::Hasher;
use crate::error::Result;
use crate::events::{Event, EventKind, EventSink, SourceShare};
use crate::http::{Client, ClientConfig, ProxySetting, build_client, redact};
use crate::journal::Validators;
use crate::pushback::HostLimits;
use crate::range::RangeSet;
use crate::ratelimit::RateLimiter;
use crate::retry::{HostHolds, RetryPolicy};
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
    pub fn as_str(self) -> &'static str {
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
    /// Where the file is published instead of `save_path` (`name_from_server`), chosen
    /// from the first response of the attempt.
    pub publish_as: Mutex<Option<std::path::PathBuf>>,
    /// Held while a journal is synced and written, and while the file state is reset,
    /// so a stale snapshot never lands on disk after a reset.
    pub journal_lock: Mutex<()>,
    /// A journal file may exist at `save_path.tthsd.journal` (saves a needless unlink,
    /// which takes the folder's write lock, for every small file).
    pub journal_on_disk: AtomicBool,
    /// Held for the whole of verify, sync and rename: one publish of a file at a time.
    pub finalize_lock: Mutex<()>,
    /// Running digest of the file's contiguous prefix, when the task has a checksum.
    pub digest: Mutex<Option<PrefixDigest>>,
    /// The task's place among the files a parallel run transfers at once; given up
    /// when its transfer is over, before the file is made durable.
    pub slot: Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
    /// What each of the task's URLs served since the file last started from zero: its
    /// own first, then its mirrors (`mirrors`).
    pub sources: Mutex<Vec<SourceShare>>,
    /// The file's mirrors are not used any more: bytes they served failed the checksum.
    pub mirrors_off: AtomicBool,
    /// A mirror put bytes into the file in this run (kept across restarts from zero, so
    /// a checksum that fails after one is blamed on the mirrors).
    pub mirror_bytes: AtomicBool,
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

pub(crate) struct Completion {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Completion {
    pub fn new() -> Self {
        Completion {
            done: Mutex::new(false),
            cv: Condvar::new(),
        }
    }

    pub fn set(&self) {
        *lock(&self.done) = true;
        self.cv.notify_all();
    }

    pub fn wait(&self) {
        let mut done = lock(&self.done);
        while !*done {
            done = self.cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

pub(crate) struct RunHandle {
    pub cancel: CancellationToken,
    /// Set once the run's transfers have all exited.
    pub exited: Arc<Completion>,
    /// Set once, after a cancel, the journals are durable too.
    pub flushed: Arc<Completion>,
}

pub(crate) struct Control {
    pub state: State,
    pub mode: Mode,
    pub run: Option<RunHandle>,
    /// A run started and has not sent its `end` yet.
    pub end_pending: bool,
}

#[derive(Default)]
pub(crate) struct Clock {
    pub accumulated: Duration,
    pub running_since: Option<Instant>,
    /// Bytes on disk when the current series of runs began, for `average_speed`.
    pub baseline: u64,
}

pub(crate) struct Shared {
    pub tasks: Vec<Arc<TaskState>>,
    pub config: Mutex<Config>,
    /// The client and whether it offers HTTP/2.
    pub client: Mutex<Option<(bool, Client)>>,
    pub control: Mutex<Control>,
    pub sink: Arc<dyn EventSink>,
    pub limiter: RateLimiter,
    pub counters: Counters,
    pub clock: Mutex<Clock>,
    /// Smoothed downloader speed (f64 bits).
    pub speed: AtomicU64,
    /// Hosts that asked us to wait (`Retry-After`): no request goes to them before then.
    pub hosts: HostHolds,
    /// Each host's limit on requests at once, lowered when it pushes back.
    pub limits: HostLimits,
}

/// The shares of a task's sources before anything was fetched: its URL, then its
/// mirrors.
fn initial_shares(url: &Url, mirrors: &[Url]) -> Vec<SourceShare> {
    std::iter::once(url)
        .chain(mirrors)
        .map(|u| SourceShare {
            url: redact(u),
            bytes: 0,
            dropped: None,
        })
        .collect()
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every guarded
/// value here stays consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// A downloader's state before its first run: every task pending, nothing known.
    pub fn new(tasks: Vec<TaskSpec>, config: Config, sink: Arc<dyn EventSink>) -> Shared {
        let tasks = tasks
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                Arc::new(TaskState {
                    index: i + 1,
                    phase: Mutex::new(TaskPhase::Pending),
                    downloaded: AtomicU64::new(0),
                    total: AtomicU64::new(0),
                    speed: AtomicU64::new(0f64.to_bits()),
                    error: Mutex::new(None),
                    announced: AtomicBool::new(false),
                    file: Mutex::new(None),
                    published: Mutex::new(None),
                    publish_as: Mutex::new(None),
                    journal_lock: Mutex::new(()),
                    journal_on_disk: AtomicBool::new(false),
                    finalize_lock: Mutex::new(()),
                    digest: Mutex::new(None),
                    slot: Mutex::new(None),
                    sources: Mutex::new(initial_shares(&spec.url, &spec.mirrors)),
                    mirrors_off: AtomicBool::new(false),
                    mirror_bytes: AtomicBool::new(false),
                    spec,
                })
            })
            .collect();
        Shared {
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
            hosts: HostHolds::default(),
            limits: HostLimits::default(),
        }
    }

    pub fn config(&self) -> Config {
        lock(&self.config).clone()
    }

    /// The HTTP client for the current settings and run mode, built on first use and
    /// after a change. A parallel run offers HTTP/2, whose connections carry several
    /// files at once; a run of one file after another does not, its ranges being cheaper
    /// over HTTP/1.1 (see [`ClientConfig::multiplex`]).
    pub fn client(&self) -> Result<Client> {
        let multiplex = lock(&self.control).mode == Mode::Parallel;
        let mut slot = lock(&self.client);
        if let Some((built_for, c)) = slot.as_ref()
            && *built_for == multiplex
        {
            return Ok(c.clone());
        }
        let cfg = self.config();
        let c = build_client(&ClientConfig {
            user_agent: cfg.user_agent,
            connect_timeout: cfg.connect_timeout,
            proxy: cfg.proxy,
            connections: cfg.connections,
            multiplex,
        })?;
        *slot = Some((multiplex, c.clone()));
        Ok(c)
    }

    pub fn emit(&self, event: Event) {
        self.sink.emit(event);
    }

    pub fn msg(&self, text: impl Into<String>) {
        self.emit(Event::global(EventKind::Msg { text: text.into() }));
    }

    /// A `msg` event about one task.
    pub fn task_msg(&self, task: &TaskState, text: String) {
        self.emit(Event::task(
            EventKind::Msg { text },
            &task.spec.show_name,
            &task.spec.id,
        ));
    }

    pub fn downloaded(&self) -> u64 {
        self.tasks
            .iter()
            .map(|t| t.downloaded.load(Ordering::Relaxed))
            .sum()
    }

    pub fn elapsed(&self) -> Duration {
        let c = lock(&self.clock);
        c.accumulated + c.running_since.map(|s| s.elapsed()).unwrap_or_default()
    }

    pub fn clock_start(&self, fresh: bool) {
        let downloaded = self.downloaded();
        let mut c = lock(&self.clock);
        if fresh {
            c.accumulated = Duration::ZERO;
            c.baseline = downloaded;
        }
        c.running_since.get_or_insert_with(Instant::now);
    }

    pub fn clock_stop(&self) {
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

/// What the engine knows of a file between attempts and across pauses.
#[derive(Debug, Clone)]
pub(crate) struct FileState {
    pub total: Option<u64>,
    pub validators: Validators,
    pub final_url: Option<Url>,
    /// Ranges written to the part file.
    pub done: RangeSet,
    /// The server honours ranges for this file (only then is a journal worth keeping).
    pub ranged: bool,
    /// Bumped by every reset, so stale journal snapshots are recognised.
    pub generation: u64,
}

impl FileState {
    /// Nothing known yet, under a fresh generation.
    pub fn empty() -> FileState {
        FileState {
            total: None,
            validators: Validators::default(),
            final_url: None,
            done: RangeSet::new(),
            ranged: false,
            generation: next_generation(),
        }
    }
}

/// Generations are unique in the process, so a digest or journal snapshot taken for one
/// version of a file can never be mistaken for another's.
pub(crate) fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A digest of the first `hashed` bytes of the part file, advanced while the download
/// runs so that verifying a finished file reads only what was not hashed yet.
pub(crate) struct PrefixDigest {
    pub hashed: u64,
    pub hasher: Hasher,
    /// The `FileState::generation` it belongs to.
    pub generation: u64,
}
