//! The bytes on disk: a temporary part file beside `save_path`, written with positional
//! writes (no shared file cursor, so connections never contend on a seek), and published
//! by an atomic rename only when complete.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Longest file name most file systems take (NAME_MAX), in bytes.
pub const NAME_MAX: usize = 255;

/// `save_path` + `suffix`, in the same folder (so the final rename never crosses
/// file systems). When that name would be longer than a file system allows, the file
/// name is shortened and a digest of the full name keeps it unique and stable, so a later
/// run finds the same sibling again.
fn sibling(save_path: &Path, suffix: &str) -> PathBuf {
    let file_name = save_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let bytes = file_name.as_encoded_bytes();
    if bytes.len() + suffix.len() <= NAME_MAX {
        let mut name: OsString = save_path.as_os_str().to_owned();
        name.push(suffix);
        return PathBuf::from(name);
    }
    use sha2::{Digest, Sha256};
    let digest = crate::checksum::encode_hex(&Sha256::digest(bytes)[..6]);
    let keep = NAME_MAX - suffix.len() - digest.len() - 1;
    // Cut on a character boundary where the name is UTF-8; raw bytes otherwise.
    let lossy = file_name.to_string_lossy();
    let mut cut = keep.min(lossy.len());
    while cut > 0 && !lossy.is_char_boundary(cut) {
        cut -= 1;
    }
    let short = format!("{}~{digest}{suffix}", &lossy[..cut]);
    save_path.with_file_name(short)
}

pub fn part_path(save_path: &Path) -> PathBuf {
    sibling(save_path, ".tthsd.part")
}

pub fn journal_path(save_path: &Path) -> PathBuf {
    sibling(save_path, ".tthsd.journal")
}

/// Where a journal is written before it is renamed over the journal.
pub fn journal_tmp_path(save_path: &Path) -> PathBuf {
    sibling(save_path, ".tthsd.journal.tmp")
}

/// A claim on a `save_path` for the time one download works on it, within this
/// process (other processes are not excluded: see docs/security.md).
#[derive(Debug)]
pub struct PathClaim {
    key: PathBuf,
}

fn claims() -> &'static std::sync::Mutex<std::collections::HashSet<PathBuf>> {
    static CLAIMS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<PathBuf>>> =
        std::sync::OnceLock::new();
    CLAIMS.get_or_init(Default::default)
}

impl PathClaim {
    /// The claim, or `None` while another download holds it.
    pub fn acquire(save_path: &Path) -> Option<PathClaim> {
        let key = if save_path.is_absolute() {
            save_path.to_owned()
        } else {
            std::env::current_dir().unwrap_or_default().join(save_path)
        };
        let fresh = claims()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone());
        // (Built only on success: a claim dropped here would release the holder's key.)
        fresh.then(|| PathClaim { key })
    }
}

impl Drop for PathClaim {
    fn drop(&mut self) {
        claims()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// The temporary file a download writes into.
#[derive(Debug)]
pub struct PartFile {
    file: File,
    path: PathBuf,
}

impl PartFile {
    /// Opens (creating folders and the file as needed). `fresh` discards old content.
    ///
    /// The open comes first and the rare cases are handled on its error, which saves
    /// two stats per file over checking beforehand (it matters for thousands of small
    /// files): a missing folder is created, and a link planted at our temporary name is
    /// removed, never followed (O_NOFOLLOW refuses one that appears in between).
    pub fn open(path: &Path, fresh: bool) -> io::Result<Self> {
        let open = || {
            no_follow(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(fresh),
            )
            .open(path)
        };
        let file = match open() {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent)?;
                }
                open()?
            }
            Err(e) if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) => {
                let _ = e;
                std::fs::remove_file(path)?;
                open()?
            }
            Err(e) => return Err(e),
        };
        Ok(PartFile {
            file,
            path: path.to_owned(),
        })
    }

    /// Opens an existing file for reading and writing; never creates one.
    pub fn open_existing(path: &Path) -> io::Result<Self> {
        let file = no_follow(OpenOptions::new().read(true).write(true)).open(path)?;
        Ok(PartFile {
            file,
            path: path.to_owned(),
        })
    }

    /// Opens an existing file for reading only.
    pub fn open_read(path: &Path) -> io::Result<Self> {
        Ok(PartFile {
            file: File::open(path)?,
            path: path.to_owned(),
        })
    }

    /// The open file, for a publisher that syncs and renames it.
    pub fn into_file(self) -> File {
        self.file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Sizes the file up front (sparse where the file system allows), so positional
    /// writes anywhere are valid and a full disk shows early on some systems.
    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    /// A second handle on the same open file (for work on another thread).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(PartFile {
            file: self.file.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Asks the kernel to start writing the file's dirty pages to disk, without waiting
    /// for them: the sync before publishing then finds little left to write. Linux only;
    /// elsewhere a no-op.
    pub fn start_writeback(&self) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a descriptor we own, borrowed for the call; offset 0 and length 0
            // mean the whole file.
            let rc = unsafe {
                libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE)
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    pub fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    pub fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Writes all of `buf` at `offset`.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.write_all_at(buf, offset)
        }
        #[cfg(windows)]
        {
            use std::os::windows::fs::FileExt;
            let mut done = 0;
            while done < buf.len() {
                let n = self.file.seek_write(&buf[done..], offset + done as u64)?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote zero bytes"));
                }
                done += n;
            }
            Ok(())
        }
    }

    /// Writes the buffers back to back at `offset`, in as few system calls as the
    /// kernel allows (`pwritev`), without first copying them into one buffer.
    pub fn write_vectored_at(&self, bufs: &[bytes::Bytes], offset: u64) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // Skip what is written, then hand the rest to pwritev, until done.
            let mut idx = 0;
            let mut skip = 0usize;
            let mut off = offset;
            while idx < bufs.len() {
                let iov: Vec<libc::iovec> = bufs[idx..]
                    .iter()
                    .enumerate()
                    .take(64)
                    .map(|(i, b)| {
                        let s = if i == 0 { &b[skip..] } else { &b[..] };
                        libc::iovec {
                            iov_base: s.as_ptr() as *mut libc::c_void,
                            iov_len: s.len(),
                        }
                    })
                    .collect();
                let off_t = libc::off_t::try_from(off)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
                // SAFETY: every iovec points into a live Bytes borrowed for this call,
                // with its exact length; the fd is open for writing.
                let n = unsafe {
                    libc::pwritev(
                        self.file.as_raw_fd(),
                        iov.as_ptr(),
                        iov.len() as libc::c_int,
                        off_t,
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote zero bytes"));
                }
                let mut n = n as usize;
                off += n as u64;
                while n > 0 && idx < bufs.len() {
                    let avail = bufs[idx].len() - skip;
                    if n >= avail {
                        n -= avail;
                        idx += 1;
                        skip = 0;
                    } else {
                        skip += n;
                        n = 0;
                    }
                }
                while idx < bufs.len() && bufs[idx].len() == skip {
                    idx += 1;
                    skip = 0;
                }
            }
            Ok(())
        }
        #[cfg(not(unix))]
        {
            let mut off = offset;
            for b in bufs {
                self.write_at(b, off)?;
                off += b.len() as u64;
            }
            Ok(())
        }
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(buf, offset)
        }
        #[cfg(windows)]
        {
            use std::os::windows::fs::FileExt;
            let mut done = 0;
            while done < buf.len() {
                let n = self
                    .file
                    .seek_read(&mut buf[done..], offset + done as u64)?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                done += n;
            }
            Ok(())
        }
    }
}

/// Adds O_NOFOLLOW where the platform has it.
pub fn no_follow(opts: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW)
    }
    #[cfg(not(unix))]
    {
        opts
    }
}

/// Removes a file if it is there.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_writes_land_where_asked() {
        let dir = std::env::temp_dir().join(format!("tthsd-storage-{}", std::process::id()));
        let save = dir.join("sub").join("f.bin");
        let part = PartFile::open(&part_path(&save), true).unwrap();
        part.set_len(10).unwrap();
        part.write_at(b"world", 5).unwrap();
        part.write_at(b"hello", 0).unwrap();
        part.write_vectored_at(
            &[
                bytes::Bytes::from_static(b"hel"),
                bytes::Bytes::new(),
                bytes::Bytes::from_static(b"lo"),
            ],
            0,
        )
        .unwrap();
        let mut buf = [0u8; 10];
        part.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"helloworld");
        part.sync_all().unwrap();
        assert_eq!(std::fs::read(part_path(&save)).unwrap(), b"helloworld");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn long_names_get_short_stable_siblings() {
        let name = "é".repeat(127); // 254 bytes
        let save = Path::new("/d").join(&name);
        for p in [
            part_path(&save),
            journal_path(&save),
            journal_tmp_path(&save),
        ] {
            let n = p.file_name().unwrap().len();
            assert!(n <= NAME_MAX, "{n}");
            assert_eq!(p.parent(), Some(Path::new("/d")));
        }
        assert_eq!(part_path(&save), part_path(&save));
        let other = Path::new("/d").join(format!("{}x", "é".repeat(126)));
        assert_ne!(part_path(&save), part_path(&other));
        assert!(part_path(&save).to_string_lossy().ends_with(".tthsd.part"));
    }

    #[test]
    fn a_claimed_path_cannot_be_claimed_twice() {
        let p = Path::new("/tmp/tthsd-claim-test/x.bin");
        let first = PathClaim::acquire(p).expect("free");
        assert!(PathClaim::acquire(p).is_none(), "held");
        assert!(
            PathClaim::acquire(p).is_none(),
            "a refused claim releases nothing"
        );
        drop(first);
        assert!(PathClaim::acquire(p).is_some(), "released");
    }

    #[test]
    fn sibling_names_keep_the_folder() {
        let p = part_path(Path::new("/a/b/c.iso"));
        assert_eq!(p, PathBuf::from("/a/b/c.iso.tthsd.part"));
        assert_eq!(
            journal_path(Path::new("c")),
            PathBuf::from("c.tthsd.journal")
        );
    }
}
