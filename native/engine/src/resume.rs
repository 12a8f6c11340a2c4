//! A file's progress between attempts and across processes: picking up the journal an
//! earlier process left, keeping it current while a ranged file downloads, and
//! forgetting all progress when the server's copy changed.
//!
//! Contract: a journal on disk never claims a byte that is not on disk (the part file is
//! synced first when `durable`), never describes bytes of an earlier version of the file
//! (snapshots carry their [`FileState::generation`]; a reset bumps it, under
//! `journal_lock`), and is trusted across processes only when the server can confirm
//! the version with `If-Range`. The file format itself is `journal`'s.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use url::Url;

use crate::journal::Journal;
use crate::state::{Config, FileState, TaskState, lock, next_generation};
use crate::storage;

/// Picks up a journal left by an earlier process, if it is ours and consistent.
pub(crate) fn load_journal(task: &TaskState) {
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
pub(crate) fn reset_state(task: &TaskState) {
    let _j = lock(&task.journal_lock);
    remove_journal(task);
    let mut st = lock(&task.file);
    let generation = next_generation();
    *lock(&task.digest) = None;
    *st = Some(FileState {
        generation,
        ..FileState::empty()
    });
    task.downloaded.store(0, Ordering::Relaxed);
    // A file from zero owes nothing to any source yet, and every mirror is vetted anew.
    for share in lock(&task.sources).iter_mut() {
        share.bytes = 0;
        share.dropped = None;
    }
}

/// Removes the task's journal if one may exist. Call with `journal_lock` held (or
/// before any journal writer can run).
pub(crate) fn remove_journal(task: &TaskState) {
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

/// A journal write is due once this many new bytes are on disk (checked every
/// [`JOURNAL_TICK`]), besides the time-based `journal_interval`. What a crash costs is what
/// the journal does not name yet: at 16 MiB/s with a write per second, 256 MiB killed four
/// times made the server send 1.13-1.37x the file; a write per 4 MiB bounds the loss
/// to ~4 MiB plus what was in flight, and on a fast link costs one write per 250 ms.
const JOURNAL_BYTES: u64 = 4 * 1024 * 1024;
const JOURNAL_TICK: Duration = Duration::from_millis(250);

/// Writes the journal while the file downloads: every `journal_interval` that brought new
/// bytes, and sooner once [`JOURNAL_BYTES`] more arrived. Never ends.
pub(crate) async fn journaler(task: Arc<TaskState>, cfg: &Config) {
    let interval = cfg.journal_interval.max(Duration::from_millis(50));
    let tick = interval.min(JOURNAL_TICK);
    let durable = cfg.durable;
    let mut last_covered = u64::MAX;
    let mut last_write = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let snapshot = {
            let st = lock(&task.file);
            st.as_ref().and_then(|s| {
                let covered = s.done.covered();
                let grown = if last_covered == u64::MAX {
                    covered
                } else {
                    covered.abs_diff(last_covered)
                };
                let due = grown >= JOURNAL_BYTES || last_write.elapsed() >= interval;
                (covered != last_covered && covered > 0 && due).then(|| {
                    last_covered = covered;
                    last_write = tokio::time::Instant::now();
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
