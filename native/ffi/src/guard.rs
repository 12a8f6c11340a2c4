//! Every exported function runs its body through [`guard`]: panics are caught (never
//! unwinding into C), failures become the documented sentinel plus a reason in the
//! thread's last-error slot, successes clear that slot.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

pub fn set_last_error(message: impl Into<String>) {
    let message = message.into();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = Some(message));
}

pub fn clear_last_error() {
    LAST_ERROR.with(|slot| *slot.borrow_mut() = None);
}

pub fn last_error() -> Option<String> {
    LAST_ERROR.with(|slot| slot.borrow().clone())
}

/// The library prints nothing: a panic's message goes to the last-error slot instead of
/// stderr. The hook belongs to this library's copy of std, so the host is unaffected.
fn silence_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            set_last_error(format!("internal error (panic): {info}"));
        }));
    });
}

/// Runs `body`; `Err(reason)` and panics both give `on_error`.
pub fn guard<T>(on_error: T, body: impl FnOnce() -> Result<T, String>) -> T {
    silence_panics();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => {
            clear_last_error();
            v
        }
        Ok(Err(reason)) => {
            set_last_error(reason);
            on_error
        }
        Err(_) => {
            if last_error().is_none() {
                set_last_error("internal error (panic)");
            }
            on_error
        }
    }
}
