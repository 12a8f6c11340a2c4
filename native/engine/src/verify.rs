//! Checksums: hashing a file's contiguous prefix while it downloads, and hashing a file
//! already on disk.
//!
//! Contract: a [`PrefixDigest`] covers exactly bytes `[0, hashed)` of the part file of
//! the [`FileState`](crate::state::FileState) generation it names; `finalize` resumes
//! from it and hashes only the rest, and drops it when the generation moved on.

use std::sync::Arc;
use std::time::Duration;

use crate::checksum::{Checksum, Hasher};
use crate::state::{PrefixDigest, TaskState, lock};
use crate::storage::{self, PartFile};

/// The digest of the whole file at `path` (None when it cannot be read).
pub(crate) fn hash_file(path: &std::path::Path, ck: &Checksum) -> Option<Vec<u8>> {
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

/// Hashes the file's contiguous prefix as it grows (only for tasks with a checksum), so
/// the final verification has little left to read. Never ends.
pub(crate) async fn prefix_hasher(task: Arc<TaskState>) {
    let Some(ck) = task.spec.checksum.clone() else {
        return std::future::pending().await;
    };
    let path = storage::part_path(&task.spec.save_path);
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
pub(crate) fn hash_range(
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
