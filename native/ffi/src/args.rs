//! Reading C arguments: NULL checks, UTF-8 checks, the defaults ABI.md §1 gives.

use std::ffi::{CStr, c_char, c_int};

/// A required string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
pub unsafe fn required_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, String> {
    if p.is_null() {
        return Err(format!("{name} is NULL"));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| format!("{name} is not valid UTF-8"))
}

/// An optional string argument: NULL and "" both mean "not given".
///
/// # Safety
/// As [`required_str`].
pub unsafe fn optional_str<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, String> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    let s = unsafe { required_str(p, name)? };
    Ok((!s.is_empty()).then_some(s))
}

/// A `const bool*`: NULL means "not given".
///
/// # Safety
/// `p` is NULL or points to a readable bool.
pub unsafe fn optional_bool(p: *const bool) -> Option<bool> {
    if p.is_null() {
        None
    } else {
        // Read as a byte: any non-zero value is true, so a sloppy caller's 2 is not UB.
        // SAFETY: non-NULL and readable per the caller's contract.
        Some(unsafe { *(p as *const u8) } != 0)
    }
}

/// The most connections one downloader opens: more help no network, and each costs a
/// lane up front (the ABI fuzz found `INT_MAX` aborting the host on a 64 GiB allocation).
const MAX_THREADS: usize = 1024;

pub fn thread_count(n: c_int) -> usize {
    if n <= 0 {
        64
    } else {
        (n as usize).min(MAX_THREADS)
    }
}

pub fn chunk_size_bytes(mb: c_int) -> u64 {
    let mb = if mb <= 0 { 10 } else { mb as u64 };
    mb * 1024 * 1024
}
