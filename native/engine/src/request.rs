//! What every request of one attempt at a file shares: the attempt's context
//! ([`FileCtx`]), a slot of the downloader's connection budget ([`Connection`]), and a
//! GET bounded by a timeout on the response head ([`send`]).
//!
//! Contract: a request goes out only while its [`Connection`] is held, and the
//! `connections` counter of the statistics counts exactly the held ones. [`send`] never
//! interprets the status: the stage that asked decides what an answer means.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use reqwest::header::HeaderMap;
use url::Url;

use crate::error::{Error, ErrorCode, Result};
use crate::http::{self, Client, Response};
use crate::state::{Config, Shared, TaskState};
use crate::storage;

/// Everything one attempt at a file shares.
pub(crate) struct FileCtx<'a> {
    pub shared: &'a Arc<Shared>,
    pub task: &'a Arc<TaskState>,
    pub cfg: &'a Config,
    pub client: Client,
    /// Downloader-wide and task headers, merged.
    pub headers: HeaderMap,
}

impl FileCtx<'_> {
    /// The part file this attempt writes.
    pub fn part_path(&self) -> PathBuf {
        storage::part_path(&self.task.spec.save_path)
    }

    /// The most requests this task sends its host at once: `thread_count`, or the task's
    /// `max_connections_per_host` when lower (the host's learned limit may be lower still).
    pub fn host_ceiling(&self) -> usize {
        self.task
            .spec
            .max_connections_per_host
            .map_or(self.cfg.connections, |cap| cap.min(self.cfg.connections))
            .max(1)
    }

    /// How long a request may wait for its response head.
    pub fn head_timeout(&self) -> std::time::Duration {
        self.cfg.read_timeout + self.cfg.connect_timeout
    }
}

/// Holds one request slot of the downloader's connection budget while a request is
/// open: the request goes out on the slot's connection.
pub(crate) struct Connection {
    pub slot: http::Slot,
    shared: Arc<Shared>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared
            .counters
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Waits for a slot of the connection budget.
pub(crate) async fn connection(shared: &Arc<Shared>, client: &Client) -> Result<Connection> {
    let slot = client.acquire().await?;
    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
    Ok(Connection {
        slot,
        shared: shared.clone(),
    })
}

/// Sends a GET with `headers`, bounded by the read timeout while waiting for the
/// response head.
pub(crate) async fn send(
    ctx: &FileCtx<'_>,
    conn: &Connection,
    url: &Url,
    headers: &HeaderMap,
    range: Option<String>,
    if_range: Option<&str>,
) -> Result<Response> {
    let fut = http::get(&ctx.client, &conn.slot, url, headers, range, if_range);
    match tokio::time::timeout(ctx.head_timeout(), fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::transient(
            ErrorCode::Timeout,
            format!(
                "no response from {} within {:?}",
                http::redact(url),
                ctx.head_timeout()
            ),
        )),
    }
}
