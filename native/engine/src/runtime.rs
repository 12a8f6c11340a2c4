//! The library's one tokio runtime, created on first use and shared by every downloader.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

use crate::error::{Error, ErrorCode, Result};

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

pub fn runtime() -> Result<&'static Runtime> {
    let rt = RUNTIME.get_or_init(|| {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8);
        Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("tthsd-worker")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    rt.as_ref()
        .map_err(|e| Error::new(ErrorCode::Io, format!("cannot start the I/O runtime: {e}")))
}

/// Runs blocking work (fsync, hashing, file system calls) off the network threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorCode::Io, format!("background task failed: {e}")))
}
