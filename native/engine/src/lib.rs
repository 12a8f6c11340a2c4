//! tthsd-engine: the download engine behind the TTHSD C ABI.
//!
//! It knows HTTP, files and time; it knows nothing of C, FFI or Python. An embedder
//! builds [`TaskSpec`]s (or parses them with [`parse_tasks`]), creates a [`Downloader`]
//! with a [`Config`] and an [`EventSink`], and drives it with `start`, `pause`,
//! `resume` and `stop`.
//!
//! Modules, top-down (each module's doc states its contract; `tests/layout.rs` holds
//! the crate to no import cycle and no source file over 600 lines):
//! - [`downloader`]: the public handle and the life cycle of runs (start, pause, resume,
//!   stop, statistics).
//! - `run`: one run: tasks in order or side by side, the progress ticker.
//! - `fetch`: one file, the driver of the stages below, and its restarts and retries.
//!   - `probe`: the first request and what its answer means.
//!   - `mirrors`: where each lease's bytes come from when a task names mirrors
//!     (vetting, choice by speed, dropping).
//!   - `ranged`: the ranged transfer: workers that take leases of the [`plan`] and
//!     stream their ranges into the part file.
//!   - `stream`: the whole-body stream of a server without ranges.
//!   - `body`: reading a body into batches for one vectored write.
//!   - `request`: the attempt's context, connection slots, a GET with a head timeout.
//!   - `source`: the protocol seam: what the stages need from a server (the first
//!     bytes with size and validators, a range, a whole body), `source::web` for HTTP(S).
//!   - `resume`: a file's progress across attempts and processes (the journal kept
//!     current, picked up, forgotten).
//!   - `verify`: checksums of the prefix while it grows, and of a file on disk.
//!   - `finalize`: verify, make durable, publish, forget the journal.
//! - `state`: the leaf the stages share: settings, per-task and per-file state,
//!   counters, the downloader-wide data.
//! - [`plan`]: cutting a file into ranges, work stealing at the tail.
//! - [`retry`]: what is retried, the backoff schedule.
//! - [`http`]: the policy layer (redirects, credentials, error classification) over
//!   the direct and proxied transports, and the connection budget (`thread_count`
//!   TCP connections on HTTP/1.1 and HTTP/2 alike).
//! - [`range`]: byte ranges and `Content-Range`.
//! - [`ratelimit`]: the downloader-wide speed limit.
//! - [`storage`]: part files and positional writes.
//! - `publish`: the atomic rename to `save_path`, made durable in groups.
//! - [`journal`]: the journal's file format.
//! - [`checksum`]: expected digests.
//! - [`events`]: what a run reports.
//! - [`remote`]: events to a TCP or WebSocket listener.
//! - [`task`]: the task list and its validation.
//! - [`scheme`]: the registry of URL schemes and their protocols.
//! - [`runtime`]: the shared tokio runtime.

mod body;
pub mod checksum;
mod disposition;
pub mod downloader;
pub mod error;
pub mod events;
mod fetch;
mod finalize;
pub mod http;
pub mod journal;
mod mirrors;
pub mod plan;
mod probe;
mod publish;
mod pushback;
pub mod range;
mod ranged;
pub mod ratelimit;
mod relink;
pub mod remote;
mod request;
mod resume;
pub mod retry;
mod roots;
mod run;
pub mod runtime;
pub mod scheme;
mod source;
mod state;
pub mod storage;
mod stream;
pub mod task;
mod verify;

pub use downloader::{Config, Downloader, Mode, State};
pub use error::{Error, ErrorCode, Result};
pub use events::{Event, EventKind, EventSink, NullSink, SourceShare, TaskInfo};
pub use http::ProxySetting;
pub use retry::RetryPolicy;
pub use task::{TaskSpec, check_user_agent, parse_headers_json, parse_tasks, parse_url};
