//! Strings handed to C: allocated here, freed only by `free_string`, which ignores any
//! pointer this library did not hand out (and NULL), so a wrong free cannot corrupt
//! the heap.

use std::collections::HashSet;
use std::ffi::{CString, c_char};
use std::sync::{Mutex, OnceLock};

fn live() -> &'static Mutex<HashSet<usize>> {
    static LIVE: OnceLock<Mutex<HashSet<usize>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Hands `s` to C. JSON never contains a NUL byte; if one slips in, it is dropped.
pub fn hand_out(s: String) -> *mut c_char {
    let c = CString::new(s.replace('\0', "")).unwrap_or_default();
    let p = c.into_raw();
    live()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(p as usize);
    p
}

/// Frees a string from [`hand_out`]; false if `p` was not one (nothing is done).
pub fn take_back(p: *mut c_char) -> bool {
    if p.is_null() {
        return false;
    }
    let known = live()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&(p as usize));
    if known {
        // SAFETY: `p` came from CString::into_raw in hand_out and was not freed since
        // (it was still in the live set, which we just removed it from).
        drop(unsafe { CString::from_raw(p) });
    }
    known
}
