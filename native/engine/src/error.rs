//! One error type for the whole engine, carrying a stable machine code.
//!
//! The code is what the `err` event's `Code` field carries (ABI.md §4), so it is part
//! of the contract: codes may be added, never renamed. This table is the one definition
//! of the codes: `native/include/tthsd.h` gets its `TTHSD_ERROR_*` constants from
//! [`ErrorCode::ALL`] (native/ffi/tests/header.rs), and the Python `ErrorCode`,
//! `docs/errors.md` and the engine's `code: "..."` literals are held to the header by
//! `tests/api/test_contract.py`.

use std::time::Duration;

/// Declares [`ErrorCode`] with its wire string and its one-line meaning, so that the
/// variants, [`ErrorCode::ALL`], [`ErrorCode::as_str`] and [`ErrorCode::meaning`] cannot
/// disagree: a code is added in one place.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident => $code:literal,)+) => {
        /// Stable machine-readable error codes, as sent in `err` events.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The string sent in the `Code` field of `err` events.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// What the code means: its doc comment here, one line.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => concat!($($doc),+).trim_ascii(),)+
                }
            }
        }
    };
}

error_codes! {
    /// Bad arguments or task JSON; also a request that cannot be built from the task.
    InvalidInput => "invalid_input",
    /// The server answered a status that is not a success.
    HttpStatus => "http_status",
    /// The server stopped honouring ranges in a way that cannot be recovered.
    RangeUnsupported => "range_unsupported",
    /// The finished file does not match the checksum the task gave.
    ChecksumMismatch => "checksum_mismatch",
    /// The disk (or quota) is full.
    DiskFull => "disk_full",
    /// Connecting or reading took longer than the configured timeout.
    Timeout => "timeout",
    /// Connection refused, reset, closed early, DNS failure.
    Network => "network",
    /// The TLS handshake failed (bad certificate, protocol error).
    Tls => "tls",
    /// Any other local I/O error (permissions, missing folder, ...).
    Io => "io",
    /// More redirects than allowed.
    TooManyRedirects => "too_many_redirects",
    /// A redirect to a scheme we refuse, or without a usable target.
    BadRedirect => "bad_redirect",
    /// The file changed on the server while we downloaded it, too often to recover.
    FileChanged => "file_changed",
    /// The body was shorter or longer than the server announced.
    SizeMismatch => "size_mismatch",
    /// The proxy URL could not be used, or the proxy refused the request (HTTP 407).
    Proxy => "proxy",
    /// The engine's own state refused the call or the work (e.g. starting a downloader twice).
    State => "state",
    /// A bug in the engine, contained: the run ends as failed instead of hanging.
    Internal => "internal",
}

/// An engine error: a code, a human sentence, and whether trying again may help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// True for causes that a retry may cure (resets, timeouts, 408/429/5xx).
    pub transient: bool,
    /// A server-requested wait (`Retry-After`), when there was one.
    pub retry_after: Option<Duration>,
    /// The server refused access to the URL (401, 403, 410, or an object store's
    /// "request expired"): a link that a redirect led to may have expired, and resolving
    /// the task's URL again may give a fresh one (`relink`).
    pub refused: bool,
    /// The server pushed back on load: 429, 503, or a connection refused or reset before
    /// an answer. `pushback` lowers that host's connection limit.
    pub pushback: bool,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            transient: false,
            retry_after: None,
            refused: false,
            pushback: false,
        }
    }

    pub fn transient(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            transient: true,
            ..Error::new(code, message)
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::InvalidInput, message)
    }

    pub fn state(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::State, message)
    }

    /// Classifies a local I/O error: a full disk gets its own code.
    pub fn from_io(context: &str, err: &std::io::Error) -> Self {
        // ENOSPC (28) and EDQUOT (122 on Linux) both mean "no room left".
        let full = matches!(err.raw_os_error(), Some(28) | Some(122))
            || err.kind() == std::io::ErrorKind::StorageFull
            || err.kind() == std::io::ErrorKind::QuotaExceeded;
        let code = if full {
            ErrorCode::DiskFull
        } else {
            ErrorCode::Io
        };
        Error::new(code, format!("{context}: {err}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::ErrorCode;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_and_explained() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s} is not snake_case"
            );
            assert!(!code.meaning().is_empty() && !code.meaning().contains('\n'));
        }
    }
}
