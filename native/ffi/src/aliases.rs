//! The Go core's camel-case names, so Go-era wrappers load this library unchanged.
//! Each behaves exactly like its snake-case twin; `startDownload` and `getDownloader`
//! take the Go core's argument lists (no `headers_json`).

use std::ffi::{c_char, c_int};

use crate::exports;
use crate::pump::tthsd_callback;

/// `start_download` without `headers_json` (10 arguments).
///
/// # Safety
/// As `start_download`.
#[unsafe(no_mangle)]
#[allow(non_snake_case, clippy::too_many_arguments)]
pub unsafe extern "C" fn startDownload(
    tasks_json: *const c_char,
    task_count: c_int,
    thread_count: c_int,
    chunk_size_mb: c_int,
    callback: tthsd_callback,
    use_callback_url: bool,
    user_agent: *const c_char,
    remote_callback_url: *const c_char,
    use_socket: *const bool,
    is_multiple: *const bool,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe {
        exports::start_download(
            tasks_json,
            task_count,
            thread_count,
            chunk_size_mb,
            callback,
            use_callback_url,
            user_agent,
            remote_callback_url,
            use_socket,
            is_multiple,
            std::ptr::null(),
        )
    }
}

/// `get_downloader` without `headers_json` (9 arguments).
///
/// # Safety
/// As `get_downloader`.
#[unsafe(no_mangle)]
#[allow(non_snake_case, clippy::too_many_arguments)]
pub unsafe extern "C" fn getDownloader(
    tasks_json: *const c_char,
    task_count: c_int,
    thread_count: c_int,
    chunk_size_mb: c_int,
    callback: tthsd_callback,
    use_callback_url: bool,
    user_agent: *const c_char,
    remote_callback_url: *const c_char,
    use_socket: *const bool,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe {
        exports::get_downloader(
            tasks_json,
            task_count,
            thread_count,
            chunk_size_mb,
            callback,
            use_callback_url,
            user_agent,
            remote_callback_url,
            use_socket,
            std::ptr::null(),
        )
    }
}

/// `start_download_id`.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
pub extern "C" fn startDownload_ID(id: c_int) -> c_int {
    exports::start_download_id(id)
}

/// `start_multiple_downloads_id`.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
pub extern "C" fn startMultipleDownloads_ID(id: c_int) -> c_int {
    exports::start_multiple_downloads_id(id)
}

/// `pause_download`.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
pub extern "C" fn pauseDownload(id: c_int) -> c_int {
    exports::pause_download(id)
}

/// `resume_download`.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
pub extern "C" fn resumeDownload(id: c_int) -> c_int {
    exports::resume_download(id)
}

/// `stop_download`.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
pub extern "C" fn stopDownload(id: c_int) -> c_int {
    exports::stop_download(id)
}
