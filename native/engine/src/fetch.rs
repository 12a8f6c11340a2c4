//! Downloading one file, top-down: claim the `save_path`, skip a file already complete,
//! pick up earlier progress (`resume`), then attempts until one succeeds or the failure
//! is final. An attempt is: [`probe`](crate::probe) → the ranged transfer
//! ([`ranged`](crate::ranged)) or the whole-body stream ([`stream`](crate::stream)) →
//! [`finalize`](crate::finalize) (verify, make durable, publish).
//!
//! Contract: returns Ok only once the file is published at `save_path` (or was already
//! complete there); an error is final for this run (its `transient` flag cleared). A
//! file whose server copy changed, or whose ranges broke, starts over from zero at most
//! [`MAX_RESTARTS`] times; other transient failures are retried under the retry policy.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Error, ErrorCode, Result};
use crate::finalize::finalize;
use crate::http;
use crate::probe::{Answer, Resume, probe};
use crate::ranged;
use crate::request::{FileCtx, connection};
use crate::resume::{load_journal, reset_state};
use crate::retry::{FileStep, Streak, after_file_failure};
use crate::runtime::blocking;
use crate::source::{self, Source};
use crate::state::{Config, Mode, Shared, TaskState, lock};
use crate::storage::{self, PartFile};
use crate::stream;
use crate::verify::hash_file;

/// How often a file may start over from zero (file changed, ranges broke) in one run.
const MAX_RESTARTS: u32 = 3;

/// Connections opened ahead while the probe is out (`http::Client::preconnect`): enough
/// for the usual 8 to 16 connections, few enough that a small file does not cost a server
/// dozens of handshakes.
const PRECONNECT_LANES: usize = 15;

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
    let mut streak = Streak::new(cfg.retry);
    let mut restarts = 0u32;
    let mut whole_only = false;
    // Which of the task's URLs the attempts start from (`mirrors`): the next one when
    // a fresh file's attempt fails.
    let mut reference = 0usize;
    loop {
        let e = match attempt_file(shared, task, &cfg, whole_only, reference).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if let Some(next) = next_reference(task, reference, &e) {
            if next == 0 {
                // Every URL failed in turn: the retry policy decides, from the task's URL.
                reference = 0;
            } else {
                shared.task_msg(
                    task,
                    format!("{}; trying {} instead", e.message, source_label(task, next)),
                );
                reference = next;
                continue;
            }
        }
        if e.code == ErrorCode::ChecksumMismatch && mirrors_served(task) {
            // Some source sent bytes of another file: only the task's own URL is
            // trusted from here, from zero (the failed bytes were never published).
            task.mirrors_off.store(true, Ordering::Relaxed);
            reference = 0;
            reset_state(task);
            shared.task_msg(
                task,
                format!(
                    "{}; the mirrors served part of it: restarting from zero without them",
                    e.message
                ),
            );
            continue;
        }
        match after_file_failure(&e, &mut streak, restarts < MAX_RESTARTS) {
            FileStep::Restart => {
                restarts += 1;
                // Ranges that lie cannot be trusted again in this run.
                whole_only |= e.code == ErrorCode::RangeUnsupported;
                reset_state(task);
                shared.task_msg(
                    task,
                    format!("{}; restarting the file from zero", e.message),
                );
            }
            FileStep::Retry(wait) => {
                shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                shared.task_msg(
                    task,
                    format!(
                        "Retry {}/{} in {:.1} s: {}",
                        streak.retries(),
                        streak.max_retries(),
                        wait.as_secs_f64(),
                        e.message
                    ),
                );
                tokio::time::sleep(wait).await;
            }
            FileStep::Fail => {
                let mut e = e;
                e.transient = false;
                return Err(e);
            }
        }
    }
}

/// The URL the next attempt starts from when this one, started from URL `current`,
/// failed with `e` (None: the same). A file with nothing on disk yet moves on to the
/// next of the task's URLs when the failure is the server's or the network's; a file
/// with bytes on disk stays with the URL its bytes and validators came from.
fn next_reference(task: &TaskState, current: usize, e: &Error) -> Option<usize> {
    let count = 1 + task.spec.mirrors.len();
    if count < 2 || task.mirrors_off.load(Ordering::Relaxed) {
        return None;
    }
    let servers_fault = matches!(
        e.code,
        ErrorCode::HttpStatus
            | ErrorCode::Timeout
            | ErrorCode::Network
            | ErrorCode::Tls
            | ErrorCode::TooManyRedirects
            | ErrorCode::BadRedirect
            | ErrorCode::SizeMismatch
    );
    let nothing_on_disk = lock(&task.file)
        .as_ref()
        .is_none_or(|s| s.done.covered() == 0);
    (servers_fault && nothing_on_disk).then_some((current + 1) % count)
}

/// URL `i` of a task as messages name it.
fn source_label(task: &TaskState, i: usize) -> String {
    match i.checked_sub(1).and_then(|m| task.spec.mirrors.get(m)) {
        Some(url) => format!("mirror {}", http::redact(url)),
        None => format!("the task's URL {}", http::redact(&task.spec.url)),
    }
}

/// Whether a mirror (not the task's own URL) put bytes into the file in this run.
fn mirrors_served(task: &TaskState) -> bool {
    !task.mirrors_off.load(Ordering::Relaxed) && task.mirror_bytes.load(Ordering::Relaxed)
}

/// A file already at `save_path` counts as done when it matches the task's checksum,
/// or when this downloader published it earlier and it still has that size.
async fn already_complete(task: &Arc<TaskState>) -> Result<bool> {
    // A file the server named was published under that name (`name_from_server`).
    let named = lock(&task.publish_as).clone();
    let save = named.unwrap_or_else(|| task.spec.save_path.clone());
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

/// One attempt, its first request to URL `reference` of the task (0: its own).
async fn attempt_file(
    shared: &Arc<Shared>,
    task: &Arc<TaskState>,
    cfg: &Config,
    whole_only: bool,
    reference: usize,
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
                Resume {
                    total,
                    missing: s.done.missing(total),
                    validators: s.validators.clone(),
                }
            })
    };
    if let Some(r) = &resume
        && r.missing.is_empty()
    {
        return finalize(&ctx, None, r.total).await;
    }
    let source = if reference == 0 {
        source::open(&ctx)?
    } else {
        source::at_index(&ctx, reference)
    };
    let url = source.url().clone();
    // A host that asked for a pause gets no request before its time.
    shared.hosts.wait(&url).await;
    let mut permit = shared.limits.enter(&url, ctx.host_ceiling()).await;
    let sent = permit.sent();
    let conn = connection(shared, &ctx.client).await?;
    if cfg.connections > 1 && lock(&shared.control).mode == Mode::Sequential {
        // One file at a time gets every connection: open some while the probe is out.
        ctx.client.preconnect(&url, PRECONNECT_LANES);
    }
    let answer = probe(&ctx, &source, &conn, resume.as_ref(), whole_only)
        .await
        .inspect_err(|e| {
            if let Some(wait) = e.retry_after {
                shared.hosts.hold(&url, wait);
            }
            if e.pushback {
                // The limit learns from it; the attempt is retried as any other.
                permit.pushed_back(sent);
            }
        })?;
    match answer {
        Answer::Ranged {
            total,
            validators,
            final_url,
            first,
            body,
        } => {
            ranged::transfer(
                &ctx, reference, &source, total, validators, final_url, first, body, conn, permit,
            )
            .await
        }
        Answer::Whole(whole) => {
            permit.answered();
            stream::whole(&ctx, whole, conn).await
        }
        Answer::Empty => {
            drop((conn, permit));
            empty_file(&ctx).await
        }
    }
}

async fn empty_file(ctx: &FileCtx<'_>) -> Result<()> {
    reset_state(ctx.task);
    let part = PartFile::open(&ctx.part_path(), true)
        .map_err(|e| Error::from_io("creating the file", &e))?;
    ctx.task.total.store(0, Ordering::Relaxed);
    finalize(ctx, Some(part), 0).await
}
