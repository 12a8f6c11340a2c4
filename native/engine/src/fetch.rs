//! Downloading one file: probe, choose ranged or whole-body transfer, stream bodies into
//! positional writes, keep the journal, verify, publish.
//!
//! The probe asks for the first piece of the file (`Range: bytes=0-(chunk-1)`), so one
//! request both learns the size and starts the transfer; a file smaller than a chunk
//! costs exactly one request. A ranged answer is trusted only if it is a 206 whose
//! `Content-Range` starts where we asked and names the size we know; anything else is
//! retried, or the file restarts as one stream from zero. Bytes are never written
//! anywhere but where their `Content-Range` puts them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use url::Url;

use crate::checksum::{Checksum, Hasher, encode_hex};
use crate::downloader::{Config, Shared, TaskState, lock};
use crate::error::{Error, ErrorCode, Result};
use crate::events::{Event, EventKind};
use crate::http::{self, Client, Response, header_str};
use crate::journal::{Journal, Validators};
use crate::plan::{Lease, MIN_SPLIT, Plan, piece_size};
use crate::publish;
use crate::range::{ContentRange, RangeSet, parse_content_range, range_header};
use crate::storage::{self, PartFile};

// A body chunk is written as soon as it arrives, with no copy (the client's `Bytes`
// goes straight to `pwritev`), together with whatever else has already arrived (up to
// `WRITE_BATCH`), never waiting for more. Waiting to fill batches would pin the client's
// read buffers (each chunk shares its buffer's allocation): with 64 connections, 256 KiB
// batches raised peak memory by ~15 MiB for no measurable speed. Taking what is ready
// matters on HTTP/2, where nginx sends 8 KiB frames: one write per frame was 131,072
// writes for 1 GiB.

/// The most body bytes gathered for one write.
const WRITE_BATCH: usize = 128 * 1024;

/// Body bytes waiting to be written, kept as the `Bytes` the client handed over and
/// written with one vectored call, so no byte is copied in user space.
#[derive(Default)]
struct Batch {
    bufs: Vec<Bytes>,
    len: usize,
}

impl Batch {
    fn push(&mut self, b: Bytes) {
        self.len += b.len();
        self.bufs.push(b);
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.bufs.clear();
        self.len = 0;
    }

    /// Keeps only the first `n` bytes.
    fn truncate(&mut self, n: usize) {
        let mut left = n;
        let mut keep = 0;
        for b in self.bufs.iter_mut() {
            if left == 0 {
                break;
            }
            if b.len() > left {
                b.truncate(left);
            }
            left -= b.len();
            keep += 1;
        }
        self.bufs.truncate(keep);
        self.len = n.min(self.len);
    }
}
/// How often a file may start over from zero (file changed, ranges broke) in one run.
const MAX_RESTARTS: u32 = 3;

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

/// A digest of the first `hashed` bytes of the part file, advanced while the download
/// runs so that verifying a finished file reads only what was not hashed yet.
pub(crate) struct PrefixDigest {
    pub hashed: u64,
    pub hasher: Hasher,
    /// The `FileState::generation` it belongs to.
    pub generation: u64,
}

/// Holds one request slot of the downloader's connection budget while a request is
/// open: the request goes out on the slot's connection.
pub(crate) struct Connection {
    slot: http::Slot,
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

async fn connection(shared: &Arc<Shared>, client: &Client) -> Result<Connection> {
    let slot = client.acquire().await?;
    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
    Ok(Connection {
        slot,
        shared: shared.clone(),
    })
}

fn task_msg(shared: &Shared, task: &TaskState, text: String) {
    shared.emit(Event::task(
        EventKind::Msg { text },
        &task.spec.show_name,
        &task.spec.id,
    ));
}

/// Generations are unique in the process, so a digest or journal snapshot taken for one
/// version of a file can never be mistaken for another's.
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn is_restart(e: &Error) -> bool {
    !e.transient && matches!(e.code, ErrorCode::FileChanged | ErrorCode::RangeUnsupported)
}

/// Downloads one task's file to its `save_path`.
pub(crate) async fn download_file(shared: &Arc<Shared>, task: &Arc<TaskState>) -> Result<()> {
    let cfg = shared.config();
    let name_len = task
        .spec
        .save_path
        .file_name()
        .map(|n| n.as_encoded_bytes().len())
        .unwrap_or(0);
    if name_len > storage::NAME_MAX {
        return Err(Error::new(
            ErrorCode::Io,
            format!(
                "the file name is too long ({name_len} bytes; file systems allow {})",
                storage::NAME_MAX
            ),
        ));
    }
    // One download per save_path at a time in this process: two would share the part
    // file and journal and could publish bytes neither downloaded whole.
    let _claim = storage::PathClaim::acquire(&task.spec.save_path).ok_or_else(|| {
        Error::new(
            ErrorCode::Io,
            "another download in this process is writing this save_path; not starting a second one",
        )
    })?;
    if already_complete(task).await? {
        return Ok(());
    }
    load_journal(task);
    let mut attempt = 0u32;
    let mut restarts = 0u32;
    let mut whole_only = false;
    loop {
        match attempt_file(shared, task, &cfg, whole_only).await {
            Ok(()) => return Ok(()),
            Err(e) if is_restart(&e) && restarts < MAX_RESTARTS => {
                restarts += 1;
                // Ranges that lie cannot be trusted again in this run.
                whole_only |= e.code == ErrorCode::RangeUnsupported;
                reset_state(task);
                task_msg(
                    shared,
                    task,
                    format!("{}; restarting the file from zero", e.message),
                );
            }
            Err(e) if e.transient && attempt < cfg.retry.max_retries => {
                let wait = cfg.retry.delay_random(attempt, e.retry_after);
                attempt += 1;
                shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                task_msg(
                    shared,
                    task,
                    format!(
                        "Retry {attempt}/{} in {:.1} s: {}",
                        cfg.retry.max_retries,
                        wait.as_secs_f64(),
                        e.message
                    ),
                );
                tokio::time::sleep(wait).await;
            }
            Err(mut e) => {
                e.transient = false;
                return Err(e);
            }
        }
    }
}

/// A file already at `save_path` counts as done when it matches the task's checksum,
/// or when this downloader published it earlier and it still has that size.
async fn already_complete(task: &Arc<TaskState>) -> Result<bool> {
    let save = task.spec.save_path.clone();
    let Ok(meta) = std::fs::metadata(&save) else {
        return Ok(false);
    };
    if !meta.is_file() {
        return Ok(false);
    }
    let len = meta.len();
    let ok = if let Some(ck) = task.spec.checksum.clone() {
        let digest = blocking(move || hash_file(&save, &ck)).await?;
        digest.as_deref() == task.spec.checksum.as_ref().map(|c| c.digest.as_slice())
    } else {
        *lock(&task.published) == Some(len)
    };
    if ok {
        task.total.store(len, Ordering::Relaxed);
        task.downloaded.store(len, Ordering::Relaxed);
        *lock(&task.published) = Some(len);
        // An earlier partial download of the same file is moot now.
        let save = &task.spec.save_path;
        for p in [
            storage::part_path(save),
            storage::journal_path(save),
            storage::journal_tmp_path(save),
        ] {
            let _ = storage::remove_if_exists(&p);
        }
        task.journal_on_disk.store(false, Ordering::Relaxed);
        *lock(&task.file) = None;
    }
    Ok(ok)
}

/// Picks up a journal left by an earlier process, if it is ours and consistent.
fn load_journal(task: &TaskState) {
    let mut st = lock(&task.file);
    if st.is_some() {
        return; // progress from earlier in this process wins
    }
    let save = &task.spec.save_path;
    // A journal write torn by a crash leaves its temporary file: never read, removed.
    let tmp = storage::journal_tmp_path(save);
    if std::fs::symlink_metadata(&tmp).is_ok() {
        let _ = storage::remove_if_exists(&tmp);
    }
    let jpath = storage::journal_path(save);
    if std::fs::symlink_metadata(&jpath).is_err() {
        return;
    }
    task.journal_on_disk.store(true, Ordering::Relaxed);
    // Only a regular file counts: a link planted at the part file's name vouches for
    // nothing (and is replaced when the download opens its part file).
    let part_len = std::fs::symlink_metadata(storage::part_path(save)).and_then(|m| {
        if m.is_file() {
            Ok(m.len())
        } else {
            Err(std::io::Error::other("not a regular file"))
        }
    });
    // Bytes from another process are only trusted when the server can confirm, with
    // If-Range, that they belong to the file it serves now: a strong ETag or a date.
    let usable = Journal::load(&jpath).filter(|j| {
        j.url == task.spec.url.as_str()
            && part_len.as_ref().ok() == Some(&j.total)
            && j.validators.if_range().is_some()
    });
    let Some(j) = usable else {
        // Torn, edited, foreign, or not matching the part file: never trusted, and
        // removed so it cannot mislead a later run either.
        remove_journal(task);
        return;
    };
    let done = j.done();
    task.total.store(j.total, Ordering::Relaxed);
    task.downloaded.store(done.covered(), Ordering::Relaxed);
    *st = Some(FileState {
        total: Some(j.total),
        validators: j.validators,
        final_url: Url::parse(&j.final_url).ok(),
        done,
        ranged: true,
        generation: next_generation(),
    });
}

/// Forgets all progress of a file (the server's copy changed, or ranges broke).
fn reset_state(task: &TaskState) {
    let _j = lock(&task.journal_lock);
    remove_journal(task);
    let mut st = lock(&task.file);
    let generation = next_generation();
    *lock(&task.digest) = None;
    *st = Some(FileState {
        total: None,
        validators: Validators::default(),
        final_url: None,
        done: RangeSet::new(),
        ranged: false,
        generation,
    });
    task.downloaded.store(0, Ordering::Relaxed);
}

/// Removes the task's journal if one may exist. Call with `journal_lock` held (or
/// before any journal writer can run).
fn remove_journal(task: &TaskState) {
    if task.journal_on_disk.swap(false, Ordering::Relaxed) {
        let _ = storage::remove_if_exists(&storage::journal_path(&task.spec.save_path));
    }
}

/// Writes the journal of a partial ranged file: sync the data, then the journal.
pub(crate) fn flush_journal(task: &TaskState, durable: bool) {
    let snapshot = {
        let st = lock(&task.file);
        match st.as_ref() {
            Some(s) if s.ranged && s.total.is_some() && s.done.covered() > 0 => {
                Some((s.generation, journal_of(task, s)))
            }
            _ => None,
        }
    };
    if let Some((generation, journal)) = snapshot {
        store_journal(task, generation, &journal, durable);
    }
}

fn journal_of(task: &TaskState, s: &FileState) -> Journal {
    Journal::new(
        task.spec.url.as_str(),
        s.final_url
            .as_ref()
            .map(Url::as_str)
            .unwrap_or(task.spec.url.as_str()),
        s.total.unwrap_or(0),
        s.validators.clone(),
        &s.done,
    )
}

fn store_journal(task: &TaskState, generation: u64, journal: &Journal, durable: bool) {
    let _j = lock(&task.journal_lock);
    let current = lock(&task.file).as_ref().map(|s| s.generation);
    if current != Some(generation) {
        return; // reset since the snapshot: the snapshot describes bytes that are gone
    }
    let save = &task.spec.save_path;
    if durable {
        // Sync through a fresh handle: fsync flushes the file, whichever descriptor
        // asks. Only then may the journal claim the bytes.
        let Ok(f) = std::fs::File::open(storage::part_path(save)) else {
            return;
        };
        if f.sync_data().is_err() {
            return;
        }
    }
    task.journal_on_disk.store(true, Ordering::Relaxed);
    let _ = journal.store(
        &storage::journal_path(save),
        &storage::journal_tmp_path(save),
        durable,
    );
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorCode::Io, format!("background task failed: {e}")))
}

fn hash_file(path: &std::path::Path, ck: &Checksum) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = ck.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(h.finish())
}

/// Everything one attempt at a file shares.
struct FileCtx<'a> {
    shared: &'a Arc<Shared>,
    task: &'a Arc<TaskState>,
    cfg: &'a Config,
    client: Client,
    headers: HeaderMap,
}

async fn attempt_file(
    shared: &Arc<Shared>,
    task: &Arc<TaskState>,
    cfg: &Config,
    whole_only: bool,
) -> Result<()> {
    let ctx = FileCtx {
        shared,
        task,
        cfg,
        client: shared.client()?,
        headers: http::merge_headers(&cfg.headers, &task.spec.headers),
    };
    // Where to start: the first gap of a resumable file, else the beginning.
    let resume = {
        let st = lock(&task.file);
        st.as_ref()
            .filter(|s| s.ranged && s.total.is_some())
            .map(|s| {
                let total = s.total.unwrap_or(0);
                (total, s.done.missing(total), s.validators.clone())
            })
    };
    if let Some((total, missing, _)) = &resume
        && missing.is_empty()
    {
        return finalize(&ctx, None, *total).await;
    }
    let conn = connection(shared, &ctx.client).await?;
    if whole_only {
        let resp = send(&ctx, &conn, &task.spec.url, None, None).await?;
        return match resp.status() {
            StatusCode::OK => whole(&ctx, resp, conn).await,
            _ => Err(http::status_error(&resp)),
        };
    }
    let (ask_start, ask_end, if_range) = match &resume {
        Some((total, missing, v)) => {
            let (a, b) = missing[0];
            let piece = piece_size(*total, cfg.chunk_size, cfg.connections);
            (
                a,
                b.min(a.saturating_add(piece)),
                v.if_range().map(str::to_owned),
            )
        }
        None => (0, cfg.chunk_size.max(1), None),
    };
    let resp = send(
        &ctx,
        &conn,
        &task.spec.url,
        Some(range_header(ask_start, Some(ask_end))),
        if_range.as_deref(),
    )
    .await?;
    match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            let cr =
                header_str(resp.headers(), header::CONTENT_RANGE).and_then(parse_content_range);
            match cr {
                Some(ContentRange::Bytes {
                    start,
                    end,
                    total: Some(total),
                }) if start == ask_start => {
                    let vals = http::validators(&resp);
                    let same = resume
                        .as_ref()
                        .is_some_and(|(t, _, v)| *t == total && v.same_version(&vals));
                    if resume.is_some() && !same {
                        reset_state(task);
                        task_msg(
                            shared,
                            task,
                            "The file changed on the server; restarting it from zero".into(),
                        );
                    }
                    let final_url = resp.url().clone();
                    ranged(&ctx, total, vals, final_url, (start, end), resp, conn).await
                }
                _ => {
                    // A 206 we cannot place: never guess, take the whole body instead.
                    drop(resp);
                    let resp = send(&ctx, &conn, &task.spec.url, None, None).await?;
                    match resp.status() {
                        StatusCode::OK => whole(&ctx, resp, conn).await,
                        _ => Err(http::status_error(&resp)),
                    }
                }
            }
        }
        StatusCode::OK => {
            if resume.is_some() {
                task_msg(
                    shared,
                    task,
                    "The server sent the whole file (changed, or ranges not honoured); restarting from zero".into(),
                );
            }
            whole(&ctx, resp, conn).await
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let cr =
                header_str(resp.headers(), header::CONTENT_RANGE).and_then(parse_content_range);
            drop(resp);
            if resume.is_some() {
                return Err(Error::new(
                    ErrorCode::FileChanged,
                    "the server no longer has the range we need (file changed)",
                ));
            }
            if let Some(ContentRange::Unsatisfied { total: 0 }) = cr {
                return empty_file(&ctx).await;
            }
            let resp = send(&ctx, &conn, &task.spec.url, None, None).await?;
            match resp.status() {
                StatusCode::OK => whole(&ctx, resp, conn).await,
                _ => Err(http::status_error(&resp)),
            }
        }
        _ => Err(http::status_error(&resp)),
    }
}

/// Sends a GET, bounded by the read timeout while waiting for the response head.
async fn send(
    ctx: &FileCtx<'_>,
    conn: &Connection,
    url: &Url,
    range: Option<String>,
    if_range: Option<&str>,
) -> Result<Response> {
    let fut = http::get(&ctx.client, &conn.slot, url, &ctx.headers, range, if_range);
    match tokio::time::timeout(ctx.cfg.read_timeout + ctx.cfg.connect_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::transient(
            ErrorCode::Timeout,
            format!(
                "no response from {} within {:?}",
                http::redact(url),
                ctx.cfg.read_timeout + ctx.cfg.connect_timeout
            ),
        )),
    }
}

fn part_path(ctx: &FileCtx<'_>) -> PathBuf {
    storage::part_path(&ctx.task.spec.save_path)
}

async fn empty_file(ctx: &FileCtx<'_>) -> Result<()> {
    reset_state(ctx.task);
    let part = PartFile::open(&part_path(ctx), true)
        .map_err(|e| Error::from_io("creating the file", &e))?;
    ctx.task.total.store(0, Ordering::Relaxed);
    finalize(ctx, Some(part), 0).await
}

/// A server that sends the whole body (no ranges, or a changed file): one stream from 0.
async fn whole(ctx: &FileCtx<'_>, mut resp: Response, conn: Connection) -> Result<()> {
    let _conn = conn;
    let task = ctx.task;
    let announced = resp.content_length();
    {
        reset_state(task);
        let mut st = lock(&task.file);
        if let Some(s) = st.as_mut() {
            s.total = announced;
            s.validators = http::validators(&resp);
            s.final_url = Some(resp.url().clone());
        }
    }
    task.total.store(announced.unwrap_or(0), Ordering::Relaxed);
    let part = PartFile::open(&part_path(ctx), true)
        .map_err(|e| Error::from_io("creating the part file", &e))?;
    let mut written: u64 = 0;
    let mut batch = Batch::default();
    loop {
        let read = read_batch(ctx, &mut resp, &mut batch).await;
        ctx.shared.limiter.acquire(batch.len as u64).await;
        if let Some(limit) = announced
            && written + batch.len as u64 > limit
        {
            return Err(Error::transient(
                ErrorCode::SizeMismatch,
                format!("the server sent more than the {limit} bytes it announced"),
            ));
        }
        match read {
            Ok(at_end) => {
                write_sequential(ctx, &part, &mut written, &mut batch)?;
                if at_end {
                    break;
                }
            }
            Err(e) => {
                // Keep what arrived; it is not resumable, but stats stay honest.
                let _ = write_sequential(ctx, &part, &mut written, &mut batch);
                return Err(e);
            }
        }
    }
    if let Some(t) = announced
        && written != t
    {
        return Err(Error::transient(
            ErrorCode::SizeMismatch,
            format!("the body ended after {written} of {t} bytes"),
        ));
    }
    task.total.store(written, Ordering::Relaxed);
    if let Some(s) = lock(&task.file).as_mut() {
        s.total = Some(written);
    }
    drop(resp);
    drop(_conn); // the body is in: the connection is free for other files
    finalize(ctx, Some(part), written).await
}

fn write_sequential(
    ctx: &FileCtx<'_>,
    part: &PartFile,
    written: &mut u64,
    batch: &mut Batch,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    part.write_vectored_at(&batch.bufs, *written)
        .map_err(|e| Error::from_io("writing the file", &e))?;
    let n = batch.len as u64;
    batch.clear();
    let end = *written + n;
    if let Some(s) = lock(&ctx.task.file).as_mut() {
        s.done.insert(*written, end);
    }
    ctx.task.downloaded.fetch_add(n, Ordering::Relaxed);
    *written = end;
    Ok(())
}

/// Waits for body data (a timeout if the connection delivers nothing for too long),
/// then adds to `batch` whatever more has already arrived, up to [`WRITE_BATCH`].
/// True at the end of the body.
async fn read_batch(ctx: &FileCtx<'_>, resp: &mut Response, batch: &mut Batch) -> Result<bool> {
    let first = match tokio::time::timeout(ctx.cfg.read_timeout, resp.chunk()).await {
        Err(_) => {
            return Err(Error::transient(
                ErrorCode::Timeout,
                // Debug form: "30s", "500ms" (a sub-second timeout is not "0 s").
                format!(
                    "no data for {:?} (connection stalled)",
                    ctx.cfg.read_timeout
                ),
            ));
        }
        Ok(r) => r?,
    };
    let mut next = first;
    loop {
        let Some(c) = next else { return Ok(true) };
        ctx.shared
            .counters
            .bytes_fetched
            .fetch_add(c.len() as u64, Ordering::Relaxed);
        batch.push(c);
        if batch.len >= WRITE_BATCH {
            return Ok(false);
        }
        // Polled once: a chunk not there yet is left for the next call.
        next = match resp.chunk().now_or_never() {
            None => return Ok(false),
            Some(r) => r?,
        };
    }
}

/// Shared by the connections of one ranged file.
struct RangeCtx<'a> {
    file: &'a FileCtx<'a>,
    url: Url,
    /// Headers for range requests: origin-bound credentials dropped if we were
    /// redirected to another origin.
    headers: HeaderMap,
    total: u64,
    validators: Validators,
    part: PartFile,
    plan: Plan,
}

async fn ranged(
    ctx: &FileCtx<'_>,
    total: u64,
    validators: Validators,
    final_url: Url,
    first: (u64, u64),
    first_resp: Response,
    conn: Connection,
) -> Result<()> {
    let task = ctx.task;
    let (missing, fresh) = {
        let mut st = lock(&task.file);
        let state = st.get_or_insert_with(|| FileState {
            total: None,
            validators: Validators::default(),
            final_url: None,
            done: RangeSet::new(),
            ranged: false,
            generation: next_generation(),
        });
        // Bytes count as on disk only while the part file is the regular file of the
        // download's size they were written to (nothing to check for a fresh file).
        let intact = state.done.covered() == 0
            || std::fs::symlink_metadata(storage::part_path(&task.spec.save_path))
                .is_ok_and(|m| m.is_file() && m.len() == total);
        if !intact {
            state.done.clear();
            task.downloaded.store(0, Ordering::Relaxed);
        }
        let fresh = state.done.covered() == 0;
        state.total = Some(total);
        state.validators = validators.clone();
        state.final_url = Some(final_url.clone());
        state.ranged = true;
        (state.done.missing(total), fresh)
    };
    task.total.store(total, Ordering::Relaxed);
    let part = PartFile::open(&part_path(ctx), fresh)
        .map_err(|e| Error::from_io("opening the part file", &e))?;
    // Sized up front: writes at any offset are valid, and the size is what later tells
    // a part file that belongs to its journal from one that does not. A file the first
    // response carries whole is written in order and needs neither (a journal written
    // meanwhile is never trusted for a part file shorter than the download: it restarts).
    let whole_in_first = missing.first() == Some(&(first.0, total)) && first.1 >= total;
    if !(fresh && whole_in_first)
        && part
            .len()
            .map_err(|e| Error::from_io("reading the part file", &e))?
            != total
    {
        part.set_len(total)
            .map_err(|e| Error::from_io("sizing the part file", &e))?;
    }
    let piece = piece_size(total, ctx.cfg.chunk_size, ctx.cfg.connections);
    let plan = Plan::new(&missing, piece);
    let lease0 = plan.adopt(first.0, first.1);
    let remaining: u64 = missing.iter().map(|(s, e)| e - s).sum();
    let workers = ctx
        .cfg
        .connections
        .min(remaining.div_ceil(MIN_SPLIT) as usize)
        .max(1);
    let mut headers = ctx.headers.clone();
    http::strip_cross_origin(&mut headers, &task.spec.url, &final_url);
    let rctx = RangeCtx {
        file: ctx,
        url: final_url,
        headers,
        total,
        validators,
        part,
        plan,
    };
    let mut pool = FuturesUnordered::new();
    pool.push(worker(&rctx, Some((lease0, first_resp, first.1, conn))));
    for _ in 1..workers {
        pool.push(worker(&rctx, None));
    }
    let all = async {
        while let Some(r) = pool.next().await {
            r?;
        }
        Ok::<(), Error>(())
    };
    tokio::select! {
        r = all => r?,
        _ = journaler(&rctx) => {}
        _ = writeback(&rctx) => {}
        _ = prefix_hasher(&rctx) => {}
    }
    drop(pool);
    let complete = lock(&task.file)
        .as_ref()
        .is_some_and(|s| s.done.is_complete(total));
    if !complete {
        return Err(Error::transient(
            ErrorCode::Network,
            "some ranges were left unfinished",
        ));
    }
    finalize(ctx, Some(rctx.part), total).await
}

type FirstResponse = (Lease, Response, u64, Connection);

/// One connection's loop: take a lease, fetch it, repeat until the plan is drained.
async fn worker(ctx: &RangeCtx<'_>, first: Option<FirstResponse>) -> Result<()> {
    let mut first = first;
    let mut prev_end = None;
    loop {
        let (lease, pre) = match first.take() {
            Some((lease, resp, end, conn)) => (lease, Some((resp, end, conn))),
            None => match ctx.plan.next_after(prev_end) {
                Some(l) => (l, None),
                None => return Ok(()),
            },
        };
        fetch_lease(ctx, &lease, pre).await?;
        prev_end = Some(lease.end());
    }
}

async fn fetch_lease(
    ctx: &RangeCtx<'_>,
    lease: &Lease,
    pre: Option<(Response, u64, Connection)>,
) -> Result<()> {
    let f = ctx.file;
    let policy = f.cfg.retry;
    let mut pre = pre;
    let mut attempt = 0u32;
    while lease.remaining() > 0 {
        let before = lease.pos();
        let result = match pre.take() {
            Some((resp, end, conn)) => stream_range(ctx, lease, resp, end, conn).await,
            None => {
                let conn = connection(f.shared, &f.client).await?;
                match request_range(ctx, lease, &conn).await {
                    Ok((resp, end)) => stream_range(ctx, lease, resp, end, conn).await,
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(()) => {}
            Err(e) if e.transient => {
                if lease.pos() > before {
                    attempt = 0; // progress: this is a new failure, not a repeat
                }
                if attempt >= policy.max_retries {
                    let mut e = e;
                    e.transient = false;
                    if e.code == ErrorCode::RangeUnsupported {
                        e.message = format!("{} (after {attempt} retries)", e.message);
                    }
                    return Err(e);
                }
                let wait = policy.delay_random(attempt, e.retry_after);
                attempt += 1;
                f.shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                task_msg(
                    f.shared,
                    f.task,
                    format!(
                        "Retry {attempt}/{} of bytes {}-{} in {:.1} s: {}",
                        policy.max_retries,
                        lease.pos(),
                        lease.end().saturating_sub(1),
                        wait.as_secs_f64(),
                        e.message
                    ),
                );
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Asks for the rest of a lease and checks the answer fits exactly.
async fn request_range(
    ctx: &RangeCtx<'_>,
    lease: &Lease,
    conn: &Connection,
) -> Result<(Response, u64)> {
    let (pos, end) = (lease.pos(), lease.end());
    let f = ctx.file;
    let fut = http::get(
        &f.client,
        &conn.slot,
        &ctx.url,
        &ctx.headers,
        Some(range_header(pos, Some(end))),
        ctx.validators.if_range(),
    );
    let resp = match tokio::time::timeout(f.cfg.read_timeout + f.cfg.connect_timeout, fut).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(Error::transient(
                ErrorCode::Timeout,
                "no response to a range request in time",
            ));
        }
    };
    let status = resp.status();
    if status == StatusCode::PARTIAL_CONTENT {
        let cr = header_str(resp.headers(), header::CONTENT_RANGE).and_then(parse_content_range);
        return match cr {
            Some(ContentRange::Bytes {
                start,
                end: got_end,
                total: Some(t),
            }) if t == ctx.total && start == pos => {
                if !ctx.validators.same_version(&http::validators(&resp)) {
                    return Err(Error::new(
                        ErrorCode::FileChanged,
                        "the file changed on the server during the download (validator mismatch)",
                    ));
                }
                Ok((resp, got_end))
            }
            Some(ContentRange::Bytes { total: Some(t), .. }) if t != ctx.total => Err(Error::new(
                ErrorCode::FileChanged,
                format!(
                    "the file changed on the server during the download (size {} became {t})",
                    ctx.total
                ),
            )),
            other => Err(Error::transient(
                ErrorCode::RangeUnsupported,
                format!(
                    "asked for bytes {pos}-{}, the server answered {}",
                    end - 1,
                    match other {
                        Some(ContentRange::Bytes { start, end, .. }) =>
                            format!("bytes {start}-{}", end - 1),
                        _ => "an unusable Content-Range".to_owned(),
                    }
                ),
            )),
        };
    }
    if status == StatusCode::OK {
        let changed = !ctx.validators.same_version(&http::validators(&resp));
        return Err(if changed {
            Error::new(
                ErrorCode::FileChanged,
                "the file changed on the server during the download",
            )
        } else {
            Error::new(
                ErrorCode::RangeUnsupported,
                "the server stopped honouring ranges",
            )
        });
    }
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        return Err(Error::new(
            ErrorCode::FileChanged,
            "the server refused a range inside the file (file changed?)",
        ));
    }
    Err(http::status_error(&resp))
}

/// Streams a 206 body for `[lease.pos(), promised_end)` into the part file.
async fn stream_range(
    ctx: &RangeCtx<'_>,
    lease: &Lease,
    mut resp: Response,
    promised_end: u64,
    conn: Connection,
) -> Result<()> {
    let f = ctx.file;
    let expected = promised_end.saturating_sub(lease.pos());
    let mut received: u64 = 0;
    let mut batch = Batch::default();
    loop {
        let read = read_batch(f, &mut resp, &mut batch).await;
        // Bytes past the end the Content-Range promised are not the file's: a server
        // whose body outruns its header gets what it promised taken, nothing more.
        let room = expected.saturating_sub(received);
        let overrun = batch.len as u64 > room;
        if overrun {
            batch.truncate(room as usize);
        }
        received += batch.len as u64;
        f.shared.limiter.acquire(batch.len as u64).await;
        let at_end = match read {
            Ok(at_end) => at_end,
            Err(e) => {
                // Keep what arrived before the failure.
                commit(ctx, lease, &mut batch, promised_end)?;
                return Err(e);
            }
        };
        if overrun {
            commit(ctx, lease, &mut batch, promised_end)?;
            return Ok(()); // the connection is dropped with the rest of the body
        }
        let more = commit(ctx, lease, &mut batch, promised_end)?;
        if !more || lease.remaining() == 0 && !ctx.plan.extend(lease, promised_end) {
            // Cut short by a thief, or everything we need is here: stop reading.
            if lease.relieved() {
                // Taken over for crawling: the lane's next request gets a new connection.
                conn.slot.retire();
            }
            return Ok(());
        }
        if at_end {
            break;
        }
    }
    if received < expected && lease.remaining() > 0 {
        return Err(Error::transient(
            ErrorCode::Network,
            format!("the connection closed after {received} of {expected} bytes"),
        ));
    }
    Ok(())
}

/// Claims and writes the batch at the lease's position, emptying it. False when the
/// lease was cut short (the rest of the batch belongs to another connection). A batch
/// that runs past the lease's end first tries to take the next pending piece, up to
/// where the response ends (`promised_end`).
fn commit(ctx: &RangeCtx<'_>, lease: &Lease, batch: &mut Batch, promised_end: u64) -> Result<bool> {
    if batch.is_empty() {
        return Ok(true);
    }
    let wanted = batch.len as u64;
    if lease.remaining() < wanted {
        ctx.plan.extend(lease, promised_end);
    }
    let (offset, granted) = lease.claim(wanted);
    if granted > 0 {
        batch.truncate(granted as usize);
        if let Err(e) = ctx.part.write_vectored_at(&batch.bufs, offset) {
            lease.unclaim(offset);
            batch.clear();
            return Err(Error::from_io("writing the part file", &e));
        }
        if let Some(s) = lock(&ctx.file.task.file).as_mut() {
            s.done.insert(offset, offset + granted);
        }
        ctx.file
            .task
            .downloaded
            .fetch_add(granted, Ordering::Relaxed);
    }
    batch.clear();
    Ok(granted == wanted)
}

/// Writes the journal at the configured cadence while the file downloads. Never ends.
async fn journaler(ctx: &RangeCtx<'_>) {
    let task = ctx.file.task.clone();
    let interval = ctx.file.cfg.journal_interval.max(Duration::from_millis(50));
    let durable = ctx.file.cfg.durable;
    let mut last_covered = u64::MAX;
    loop {
        tokio::time::sleep(interval).await;
        let snapshot = {
            let st = lock(&task.file);
            st.as_ref().and_then(|s| {
                let covered = s.done.covered();
                (covered != last_covered && covered > 0).then(|| {
                    last_covered = covered;
                    (s.generation, journal_of(&task, s))
                })
            })
        };
        if let Some((generation, journal)) = snapshot {
            let t = task.clone();
            let _ = tokio::task::spawn_blocking(move || {
                store_journal(&t, generation, &journal, durable)
            })
            .await;
        }
    }
}

/// With durable publishing, keeps the part file's dirty pages flowing to disk while the
/// transfer runs (every `WRITEBACK_INTERVAL` that brought at least `WRITEBACK_BYTES`),
/// instead of leaving all of them to the sync before publishing: on a fast transfer
/// that sync would otherwise write most of the file after the last byte arrived.
/// 25 ms rather than 100: 256 MiB at 64 connections finished in 0.544 s instead of 0.573
/// (0.535 with no syncing), the kicks being asynchronous and cheap. Never ends.
async fn writeback(ctx: &RangeCtx<'_>) {
    const WRITEBACK_INTERVAL: Duration = Duration::from_millis(25);
    const WRITEBACK_BYTES: u64 = 4 * 1024 * 1024;
    if !ctx.file.cfg.durable {
        return std::future::pending().await;
    }
    let Ok(handle) = ctx.part.try_clone() else {
        return std::future::pending().await;
    };
    let handle = Arc::new(handle);
    let task = ctx.file.task;
    let mut kicked = task.downloaded.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(WRITEBACK_INTERVAL).await;
        let now = task.downloaded.load(Ordering::Relaxed);
        if now.saturating_sub(kicked) >= WRITEBACK_BYTES {
            kicked = now;
            let h = handle.clone();
            // Best effort: a failure here only means the final sync has more to do.
            let _ = tokio::task::spawn_blocking(move || h.start_writeback()).await;
        }
    }
}

/// Hashes the file's contiguous prefix as it grows (only for tasks with a checksum), so
/// the final verification has little left to read. Never ends.
async fn prefix_hasher(ctx: &RangeCtx<'_>) {
    let task = ctx.file.task.clone();
    let Some(ck) = task.spec.checksum.clone() else {
        return std::future::pending().await;
    };
    let path = part_path(ctx.file);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (prefix, generation) = match lock(&task.file).as_ref() {
            Some(s) => (s.done.prefix(), s.generation),
            None => continue,
        };
        let state = lock(&task.digest).take();
        let state = match state {
            Some(d) if d.generation == generation => d,
            _ => PrefixDigest {
                hashed: 0,
                hasher: ck.hasher(),
                generation,
            },
        };
        if prefix <= state.hashed {
            *lock(&task.digest) = Some(state);
            continue;
        }
        let p = path.clone();
        let t = task.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut state = state;
            if hash_range(&p, &mut state.hasher, state.hashed, prefix).is_ok() {
                state.hashed = prefix;
                *lock(&t.digest) = Some(state);
            }
        })
        .await;
    }
}

/// Feeds bytes `[from, to)` of the file at `path` to `hasher`.
fn hash_range(
    path: &std::path::Path,
    hasher: &mut Hasher,
    from: u64,
    to: u64,
) -> std::io::Result<()> {
    let part = PartFile::open_read(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = from;
    while pos < to {
        let n = ((to - pos) as usize).min(buf.len());
        part.read_at(&mut buf[..n], pos)?;
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(())
}

/// Verifies, makes durable, and publishes a complete part file (`None`: the part file at
/// its usual path).
///
/// The work runs on a blocking thread and owns its bookkeeping, because a pause or stop
/// may drop the awaiting future at any moment: the file then still gets published (or
/// not) as one step, the task state says which, and a second finalize of the same task
/// waits for the first on `finalize_lock` and finds the file already published.
async fn finalize(ctx: &FileCtx<'_>, part: Option<PartFile>, total: u64) -> Result<()> {
    let task = ctx.task.clone();
    let durable = ctx.cfg.durable;
    let generation = lock(&task.file).as_ref().map(|s| s.generation);
    let prefix = lock(&task.digest)
        .take()
        .filter(|d| Some(d.generation) == generation && d.hashed <= total);
    let outcome = if durable || task.spec.checksum.is_some() {
        // Syncing and hashing take long, and the transfer is over: hand this task's
        // file slot to the next file while the publisher works (bounded, since every
        // file waiting for it holds an open descriptor).
        let _backlog = publish_backlog()
            .acquire()
            .await
            .map_err(|_| Error::state("publisher closed"))?;
        lock(&task.slot).take();
        // fsync and hashing can take long: off the network threads.
        let t = task.clone();
        blocking(move || publish_task(&t, part, total, durable, prefix)).await?
    } else {
        // A bare rename is microseconds; a thread hand-off would cost more than it.
        publish_task(&task, part, total, durable, prefix)
    };
    if let Err(e) = outcome {
        if e.code == ErrorCode::ChecksumMismatch || e.code == ErrorCode::Io {
            // Bytes that are not what the task wants (or a part file that vanished):
            // never resumed; a later attempt starts from zero.
            reset_state(&task);
        }
        return Err(e);
    }
    Ok(())
}

/// Files that may wait for the publisher at once, over the whole process.
const PUBLISH_BACKLOG: usize = 256;

fn publish_backlog() -> &'static tokio::sync::Semaphore {
    static BACKLOG: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    BACKLOG.get_or_init(|| tokio::sync::Semaphore::new(PUBLISH_BACKLOG))
}

fn publish_task(
    task: &TaskState,
    part: Option<PartFile>,
    total: u64,
    durable: bool,
    prefix: Option<PrefixDigest>,
) -> Result<()> {
    let _f = lock(&task.finalize_lock);
    let save = &task.spec.save_path;
    let done = |task: &TaskState| {
        task.total.store(total, Ordering::Relaxed);
        task.downloaded.store(total, Ordering::Relaxed);
        *lock(&task.published) = Some(total);
        *lock(&task.file) = None;
    };
    if *lock(&task.published) == Some(total)
        && lock(&task.file).is_none()
        && std::fs::metadata(save).is_ok_and(|m| m.len() == total)
    {
        return Ok(()); // an earlier finalize, cut loose by a pause, got there first
    }
    let part_path = storage::part_path(save);
    let part = match part {
        Some(p) => p,
        None => PartFile::open_existing(&part_path).map_err(|e| {
            Error::new(
                ErrorCode::Io,
                format!("the finished part file is gone ({e}); starting over"),
            )
        })?,
    };
    if part
        .len()
        .map_err(|e| Error::from_io("reading the part file", &e))?
        != total
    {
        return Err(Error::new(
            ErrorCode::Io,
            "the part file does not have the size of the download; starting over",
        ));
    }
    if let Some(ck) = &task.spec.checksum {
        let (from, mut hasher) = match prefix {
            Some(d) => (d.hashed, d.hasher),
            None => (0, ck.hasher()),
        };
        hash_range(&part_path, &mut hasher, from, total)
            .map_err(|e| Error::from_io("reading the finished file to verify it", &e))?;
        let digest = hasher.finish();
        if digest != ck.digest {
            return Err(Error::new(
                ErrorCode::ChecksumMismatch,
                format!(
                    "checksum mismatch: expected {}, the downloaded file has {}; it was not saved to {}",
                    ck.to_text(),
                    encode_hex(&digest),
                    save.display()
                ),
            ));
        }
    }
    publish::publish(part.into_file(), &part_path, save, durable)
        .map_err(|e| Error::from_io("publishing the file", &e))?;
    {
        let _j = lock(&task.journal_lock);
        remove_journal(task);
    }
    done(task);
    Ok(())
}
