//! Publishing finished files: the rename from the part file to `save_path`, made
//! durable.
//!
//! A durable publish needs the file's bytes on stable storage before its rename is (a
//! power cut must never leave a name pointing at unwritten blocks), and the rename on
//! stable storage before the task reports success.
//!
//! The bytes: a large file takes its own `fdatasync` (its writeback was started during the
//! transfer, so little is left). Small files share one: on Linux, files of up to
//! [`GROUP_MAX_BYTES`] that finish within [`GROUP_WINDOW`] of each other are covered by a
//! single `syncfs` of their file system. Each `fdatasync` of a small new file writes the
//! file's inode-table block (shared with ~15 other inodes) and flushes the device cache;
//! a thousand of them cost ~1 ms each and 0.2 s of CPU on 1,000 × 64 KiB, while one
//! `syncfs` per few milliseconds writes each block once and flushes once (engine alone on
//! that workload: 0.40 s -> 0.20–0.25 s, against 0.17 s without syncing). Without the
//! gathering window the groups stayed at ~5 files and gained nothing. The cost: a
//! `syncfs` also writes other programs' dirty data on that file system, so a small file's
//! `endOne` can wait for a busy neighbour. A failed `syncfs` falls back to `fdatasync`, and
//! file systems where `syncfs` is not known to write everything (FUSE, network and the
//! rest outside `syncfs_is_reliable`'s list) never use the group.
//!
//! The rename: a small file's rides on the next group `syncfs` (one that starts after the
//! rename; it commits the file system's journal, which holds the rename), so a group
//! costs one device flush, not one for the bytes and another for the folder. Other files
//! sync the folder, and that is shared too: files renamed into one folder while its sync
//! runs are covered by the next one, not one each (group commit).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Moves the finished `part` to `save_path` atomically. With `durable`, returns once
/// the bytes and the rename are on stable storage. Without `replace`, an existing file
/// at `save_path` is left alone (`AlreadyExists`).
pub fn publish(
    part: File,
    part_path: &Path,
    save_path: &Path,
    durable: bool,
    replace: bool,
) -> io::Result<()> {
    let grouped = if durable { sync_data(&part)? } else { None };
    // Only a grouped (Linux) publish keeps the file open across the rename, as the
    // descriptor for its `syncfs`; elsewhere it is closed first (Windows cannot rename
    // an open file).
    let held = match grouped {
        Some(dev) => Some((part, dev)),
        None => {
            drop(part);
            None
        }
    };
    if replace {
        std::fs::rename(part_path, save_path)?;
    } else {
        // A hard link is created only where no name exists (atomically, unlike a check
        // before a rename); the part file's name then goes.
        std::fs::hard_link(part_path, save_path)?;
        let _ = std::fs::remove_file(part_path);
    }
    if durable {
        // A failure here does not undo the publish that happened, so it is not the
        // task's failure. A small file's rename rides on the next group sync (a
        // `syncfs` commits the journal that holds it): one device flush per group
        // instead of a second one for the folder.
        #[cfg(target_os = "linux")]
        if let Some((part, dev)) = &held
            && group_sync(part, *dev).is_ok()
        {
            return Ok(());
        }
        drop(held);
        sync_after_rename(folder_of(save_path));
    }
    Ok(())
}

/// Files up to this size share a file-system sync with the others finishing about now.
#[cfg(target_os = "linux")]
const GROUP_MAX_BYTES: u64 = 4 << 20;
/// How long a group's leader waits for others to join before syncing.
#[cfg(target_os = "linux")]
const GROUP_WINDOW: std::time::Duration = std::time::Duration::from_millis(3);

/// The file's bytes (and size) on stable storage: a shared `syncfs` for small files on
/// Linux (returns the device, whose next group sync will cover the rename too), else (or
/// if that fails) the file's own `fdatasync`.
fn sync_data(part: &File) -> io::Result<Option<u64>> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = part.metadata()
            && meta.len() <= GROUP_MAX_BYTES
            && group_sync(part, meta.dev()).is_ok()
        {
            return Ok(Some(meta.dev()));
        }
    }
    part.sync_data().map(|()| None)
}

/// Whether `syncfs` on this file's file system writes and commits everything, the way
/// `fdatasync` plus a folder `fsync` would. Only for file systems known to: on FUSE
/// (other than virtiofs) `syncfs` reaches no server, and on others we have not checked.
#[cfg(target_os = "linux")]
fn syncfs_is_reliable(part: &File) -> bool {
    use std::os::fd::AsRawFd;
    // From linux/magic.h.
    const EXT4: i64 = 0xEF53; // also ext2 and ext3
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const F2FS: i64 = 0xF2F5_2010;
    const TMPFS: i64 = 0x0102_1994; // nothing to make durable: a sync is cheap
    // SAFETY: an all-zero statfs is a valid value, and the descriptor is open.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable statfs for the whole call.
    if unsafe { libc::fstatfs(part.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)] // f_type is i64 on some targets, u32 on others
    let kind = st.f_type as i64;
    matches!(kind, EXT4 | XFS | BTRFS | F2FS | TMPFS)
}

/// One file system's group commit; files join the `open` epoch, a leader closes it and
/// syncs, and everyone in it returns once `synced` reaches it.
#[cfg(target_os = "linux")]
#[derive(Default)]
struct Group {
    /// The epoch that files arriving now join.
    open: u64,
    /// The last epoch whose sync completed, and the last one whose sync succeeded: a
    /// file is covered by any successful sync of its epoch or a later one (each began
    /// after the file joined).
    synced: u64,
    succeeded: u64,
    leading: bool,
    /// [`syncfs_is_reliable`] for this file system, asked once.
    reliable: Option<bool>,
}

#[cfg(target_os = "linux")]
fn group_sync(part: &File, dev: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    static GROUPS: OnceLock<(Mutex<HashMap<u64, Group>>, std::sync::Condvar)> = OnceLock::new();
    let (groups, cond) = GROUPS.get_or_init(Default::default);
    let mut map = groups.lock().unwrap_or_else(|e| e.into_inner());
    let g = map.entry(dev).or_default();
    if !*g.reliable.get_or_insert_with(|| syncfs_is_reliable(part)) {
        return Err(io::ErrorKind::Unsupported.into());
    }
    let mine = g.open + 1;
    loop {
        let g = map.entry(dev).or_default();
        if g.synced >= mine {
            return if g.succeeded >= mine {
                Ok(())
            } else {
                Err(io::Error::other("file-system sync failed"))
            };
        }
        if !g.leading {
            g.leading = true;
            drop(map);
            std::thread::sleep(GROUP_WINDOW);
            map = groups.lock().unwrap_or_else(|e| e.into_inner());
            let g = map.entry(dev).or_default();
            let epoch = g.open + 1;
            g.open = epoch; // later arrivals wait for the next sync
            drop(map);
            // SAFETY: a valid open descriptor for the whole call.
            let rc = unsafe { libc::syncfs(part.as_raw_fd()) };
            map = groups.lock().unwrap_or_else(|e| e.into_inner());
            let g = map.entry(dev).or_default();
            g.synced = epoch;
            if rc == 0 {
                g.succeeded = epoch;
            }
            g.leading = false;
            cond.notify_all();
            continue;
        }
        map = cond.wait(map).unwrap_or_else(|e| e.into_inner());
    }
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[derive(Default)]
struct Folder {
    /// Renames announced so far.
    renamed: AtomicU64,
    /// Renames covered by a completed fsync; the lock serialises the fsyncs.
    synced: Mutex<u64>,
}

fn folder(dir: &Path) -> Arc<Folder> {
    static FOLDERS: OnceLock<Mutex<HashMap<PathBuf, Arc<Folder>>>> = OnceLock::new();
    let mut map = FOLDERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if map.len() > 4096 {
        map.retain(|_, f| Arc::strong_count(f) > 1); // forget idle folders
    }
    map.entry(dir.to_owned()).or_default().clone()
}

/// Call after a rename into `dir`; returns once a folder fsync that began after the
/// rename has completed.
fn sync_after_rename(dir: &Path) {
    let f = folder(dir);
    let mine = f.renamed.fetch_add(1, Ordering::SeqCst) + 1;
    let mut synced = f.synced.lock().unwrap_or_else(|e| e.into_inner());
    if *synced >= mine {
        return; // someone else's fsync started after our rename
    }
    let covers = f.renamed.load(Ordering::SeqCst);
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    *synced = covers;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tthsd-publish-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn part(dir: &Path, i: usize) -> (File, PathBuf, PathBuf) {
        let from = dir.join(format!("f{i}.part"));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&from)
            .unwrap();
        f.write_all(format!("file {i}").as_bytes()).unwrap();
        (f, from, dir.join(format!("f{i}")))
    }

    #[test]
    fn concurrent_publishes_all_land_with_their_content() {
        let dir = Arc::new(scratch("many"));
        let threads: Vec<_> = (0..32)
            .map(|i| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let (f, from, to) = part(&dir, i);
                    publish(f, &from, &to, true, true)
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        for i in 0..32 {
            assert_eq!(
                std::fs::read_to_string(dir.join(format!("f{i}"))).unwrap(),
                format!("file {i}")
            );
            assert!(!dir.join(format!("f{i}.part")).exists());
        }
        std::fs::remove_dir_all(&*dir).unwrap();
    }

    #[test]
    fn grouped_syncs_in_waves_never_hang() {
        // Waves of concurrent small publishes, and lone ones in between: every caller
        // returns, as leader or follower, with its file in place.
        let dir = Arc::new(scratch("waves"));
        for wave in 0..3 {
            let threads: Vec<_> = (0..8)
                .map(|i| {
                    let dir = dir.clone();
                    std::thread::spawn(move || {
                        let (f, from, to) = part(&dir, wave * 100 + i);
                        publish(f, &from, &to, true, true)
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap().unwrap();
            }
            let (f, from, to) = part(&dir, wave * 100 + 99);
            publish(f, &from, &to, true, true).unwrap();
        }
        assert_eq!(std::fs::read_dir(&*dir).unwrap().count(), 27);
        std::fs::remove_dir_all(&*dir).unwrap();
    }

    #[test]
    fn a_failed_publish_leaves_the_others_alone() {
        let dir = Arc::new(scratch("fail"));
        let (f, from, _) = part(&dir, 0);
        let missing_folder = dir.join("no-such-folder").join("f0");
        let bad = std::thread::spawn(move || publish(f, &from, &missing_folder, true, true));
        let (g, from1, to1) = part(&dir, 1);
        let good = publish(g, &from1, &to1, true, true);
        assert!(bad.join().unwrap().is_err());
        good.unwrap();
        assert_eq!(std::fs::read_to_string(&to1).unwrap(), "file 1");
        std::fs::remove_dir_all(&*dir).unwrap();
    }

    #[test]
    fn non_durable_publish_is_a_rename() {
        let dir = scratch("plain");
        let (f, from, to) = part(&dir, 0);
        publish(f, &from, &to, false, true).unwrap();
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "file 0");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_publish_without_replace_leaves_an_existing_file_alone() {
        let dir = scratch("noreplace");
        let (f, from, to) = part(&dir, 0);
        std::fs::write(&to, b"theirs").unwrap();
        let e = publish(f, &from, &to, false, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&to).unwrap(), b"theirs");
        std::fs::remove_file(&to).unwrap();
        let f = File::open(&from).unwrap();
        publish(f, &from, &to, false, false).unwrap();
        assert!(!from.exists() && to.exists());
    }
}
