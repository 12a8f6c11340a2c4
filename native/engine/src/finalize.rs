//! The last stage of a file: verify the checksum, make the bytes durable, publish the
//! part file at `save_path` with one rename, and forget the journal.
//!
//! Contract: a file reaches `save_path` whole, verified (when the task has a checksum)
//! and, when `durable`, synced before the rename; publishing is one step that a pause
//! cannot cut in half (it runs on a blocking thread that owns its bookkeeping), and a
//! second finalize of the same task finds the first one's result. A checksum mismatch
//! or a vanished part file forgets the progress, so the next attempt starts from zero.
//! Durability starts during the transfer: [`writeback`] keeps dirty pages flowing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::checksum::encode_hex;
use crate::error::{Error, ErrorCode, Result};
use crate::publish;
use crate::request::FileCtx;
use crate::resume::{remove_journal, reset_state};
use crate::runtime::blocking;
use crate::state::{PrefixDigest, TaskState, lock};
use crate::storage::{self, PartFile};
use crate::verify::hash_range;

/// Verifies, makes durable, and publishes a complete part file (`None`: the part file at
/// its usual path).
///
/// The work runs on a blocking thread and owns its bookkeeping, because a pause or stop
/// may drop the awaiting future at any moment: the file then still gets published (or
/// not) as one step, the task state says which, and a second finalize of the same task
/// waits for the first on `finalize_lock` and finds the file already published.
pub(crate) async fn finalize(ctx: &FileCtx<'_>, part: Option<PartFile>, total: u64) -> Result<()> {
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
    // A server-named file goes where the first response named it, and replaces nothing
    // unless the task asked for that.
    let named = lock(&task.publish_as).clone();
    let save = named.as_ref().unwrap_or(&task.spec.save_path);
    let replace = !task.spec.name_from_server || task.spec.overwrite;
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
    let part_path = storage::part_path(&task.spec.save_path);
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
    publish::publish(part.into_file(), &part_path, save, durable, replace).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::new(
                ErrorCode::Io,
                format!(
                    "{} appeared during the download; not replacing it",
                    save.display()
                ),
            )
        } else {
            Error::from_io("publishing the file", &e)
        }
    })?;
    {
        let _j = lock(&task.journal_lock);
        remove_journal(task);
    }
    done(task);
    Ok(())
}

/// With durable publishing, keeps the part file's bytes flowing to stable storage while
/// the transfer runs (every `WRITEBACK_INTERVAL` that brought at least `WRITEBACK_BYTES`),
/// instead of leaving all of them to the sync before publishing.
///
/// Each round starts the write-out of the dirty pages and then syncs (`fdatasync`), one
/// round at a time. Starting the write-out alone leaves work for the end: on a disk with
/// a volatile write cache (this VM's virtio disk, most SSDs) the pages reach the device's
/// cache at once, but the final sync still waits for the device to flush all of them.
/// 1 GiB from a loopback nginx at 16 connections limited to 400 MiB/s (2.56 s of
/// transfer): 2.73 s with a sync every round, 2.82 s with write-out alone; unlimited, the
/// disk (~550 MB/s sustained here) sets the pace either way (1.9-2.0 s). 25 ms rather
/// than 100: 256 MiB at 64 connections finished in 0.544 s instead of 0.573 (0.535 with
/// no syncing). Never ends.
pub(crate) async fn writeback(task: &TaskState, part: &PartFile, durable: bool) {
    const WRITEBACK_INTERVAL: Duration = Duration::from_millis(25);
    const WRITEBACK_BYTES: u64 = 4 * 1024 * 1024;
    if !durable {
        return std::future::pending().await;
    }
    let Ok(handle) = part.try_clone() else {
        return std::future::pending().await;
    };
    let handle = Arc::new(handle);
    let mut kicked = task.downloaded.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(WRITEBACK_INTERVAL).await;
        let now = task.downloaded.load(Ordering::Relaxed);
        if now.saturating_sub(kicked) >= WRITEBACK_BYTES {
            kicked = now;
            let h = handle.clone();
            // Best effort: a failure here only means the final sync has more to do (and
            // reports any error that matters).
            let _ = tokio::task::spawn_blocking(move || {
                h.start_writeback()?;
                h.sync_data()
            })
            .await;
        }
    }
}
