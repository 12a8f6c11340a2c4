//! The bytes on disk: a temporary part file beside `save_path`, written with positional
//! writes (no shared file cursor, so connections never contend on a seek), and published
//! by an atomic rename only when complete.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// `save_path` + `suffix`, in the same folder (so the final rename never crosses
/// file systems).
fn sibling(save_path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = save_path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

pub fn part_path(save_path: &Path) -> PathBuf {
    sibling(save_path, ".tthsd.part")
}

pub fn journal_path(save_path: &Path) -> PathBuf {
    sibling(save_path, ".tthsd.journal")
}

/// The temporary file a download writes into.
#[derive(Debug)]
pub struct PartFile {
    file: File,
    path: PathBuf,
}

impl PartFile {
    /// Opens (creating folders and the file as needed). `fresh` discards old content.
    pub fn open(path: &Path, fresh: bool) -> io::Result<Self> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(fresh)
            .open(path)?;
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

/// Moves the finished part file to `save_path` atomically, then makes the rename durable.
pub fn publish(part: &Path, save_path: &Path) -> io::Result<()> {
    std::fs::rename(part, save_path)?;
    #[cfg(unix)]
    if let Some(dir) = save_path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        // Durability of the rename itself; a failure here does not undo the publish.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
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
        let mut buf = [0u8; 10];
        part.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"helloworld");
        part.sync_all().unwrap();
        publish(part.path(), &save).unwrap();
        assert_eq!(std::fs::read(&save).unwrap(), b"helloworld");
        assert!(!part_path(&save).exists());
        std::fs::remove_dir_all(&dir).unwrap();
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
