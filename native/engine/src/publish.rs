//! Publishing finished files: the rename from the part file to `save_path`, made
//! durable.
//!
//! A durable publish needs the file's bytes on stable storage before its rename is (a
//! power cut must never leave a name pointing at unwritten blocks), and the rename on
//! stable storage before the task reports success. The bytes take an `fdatasync` per
//! file, run side by side by the callers' threads (the device overlaps their flushes;
//! funnelling many files through one `syncfs` measured no faster and would also wait
//! on unrelated dirty data). The folder sync is shared: files renamed into one folder
//! while its sync runs are covered by the next one, not one each (group commit).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Moves the finished `part` to `save_path` atomically. With `durable`, returns once
/// the bytes and the rename are on stable storage.
pub fn publish(part: File, part_path: &Path, save_path: &Path, durable: bool) -> io::Result<()> {
    if durable {
        part.sync_data()?;
    }
    drop(part);
    std::fs::rename(part_path, save_path)?;
    if durable {
        // A failure here does not undo the publish that happened, so it is not the
        // task's failure.
        sync_after_rename(folder_of(save_path));
    }
    Ok(())
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
                    publish(f, &from, &to, true)
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
    fn a_failed_publish_leaves_the_others_alone() {
        let dir = Arc::new(scratch("fail"));
        let (f, from, _) = part(&dir, 0);
        let missing_folder = dir.join("no-such-folder").join("f0");
        let bad = std::thread::spawn(move || publish(f, &from, &missing_folder, true));
        let (g, from1, to1) = part(&dir, 1);
        let good = publish(g, &from1, &to1, true);
        assert!(bad.join().unwrap().is_err());
        good.unwrap();
        assert_eq!(std::fs::read_to_string(&to1).unwrap(), "file 1");
        std::fs::remove_dir_all(&*dir).unwrap();
    }

    #[test]
    fn non_durable_publish_is_a_rename() {
        let dir = scratch("plain");
        let (f, from, to) = part(&dir, 0);
        publish(f, &from, &to, false).unwrap();
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "file 0");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
