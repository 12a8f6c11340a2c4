//! tthsd-engine: the download engine behind the TTHSD C ABI.
//!
//! It knows HTTP, files and time; it knows nothing of C, FFI or Python. An embedder
//! builds [`TaskSpec`]s (or parses them with [`parse_tasks`]), creates a [`Downloader`]
//! with a [`Config`] and an [`EventSink`], and drives it with `start`, `pause`,
//! `resume` and `stop`.
//!
//! Modules, by what they do:
//! - [`task`]: the task list and its validation.
//! - [`downloader`]: settings and the life cycle of runs.
//! - `run`: one run: tasks in order or side by side, the progress ticker.
//! - `fetch`: one file: probe, ranged or whole transfer, verify, publish.
//! - [`plan`]: cutting a file into ranges, work stealing at the tail.
//! - [`range`]: byte ranges and `Content-Range`.
//! - [`http`]: the policy layer (redirects, credentials, error classification) over
//!   the direct and proxied transports, and the connection budget (`thread_count`
//!   TCP connections on HTTP/1.1 and HTTP/2 alike).
//! - [`retry`]: what is retried and the backoff schedule.
//! - [`ratelimit`]: the downloader-wide speed limit.
//! - [`storage`]: part files and positional writes.
//! - `publish`: the atomic rename to `save_path`, made durable in groups.
//! - [`journal`]: the durable record of which ranges are on disk.
//! - [`checksum`]: expected digests.
//! - [`events`]: what a run reports.
//! - [`remote`]: events to a TCP or WebSocket listener.

pub mod checksum;
pub mod downloader;
pub mod error;
pub mod events;
mod fetch;
pub mod http;
pub mod journal;
pub mod plan;
mod publish;
pub mod range;
pub mod ratelimit;
pub mod remote;
pub mod retry;
mod roots;
mod run;
pub mod runtime;
pub mod storage;
pub mod task;

pub use downloader::{Config, Downloader, Mode, State};
pub use error::{Error, ErrorCode, Result};
pub use events::{Event, EventKind, EventSink, NullSink, TaskInfo};
pub use http::ProxySetting;
pub use retry::RetryPolicy;
pub use task::{TaskSpec, check_user_agent, parse_headers_json, parse_tasks, parse_url};
