//! One error type for the whole engine, carrying a stable machine code.
//!
//! The code is what the `err` event's `Code` field carries (ABI.md §4), so it is part
//! of the contract: codes may be added, never renamed.

use std::time::Duration;

/// Stable machine-readable error codes, as sent in `err` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Bad arguments or task JSON, rejected before anything starts.
    InvalidInput,
    /// The server answered a status that is not a success.
    HttpStatus,
    /// The server stopped honouring ranges in a way that cannot be recovered.
    RangeUnsupported,
    /// The finished file does not match the checksum the task gave.
    ChecksumMismatch,
    /// The disk (or quota) is full.
    DiskFull,
    /// Connecting or reading took longer than the configured timeout.
    Timeout,
    /// Connection refused, reset, closed early, DNS failure.
    Network,
    /// The TLS handshake failed (bad certificate, protocol error).
    Tls,
    /// Any other local I/O error (permissions, missing folder, ...).
    Io,
    /// More redirects than allowed.
    TooManyRedirects,
    /// A redirect to a scheme we refuse, or without a usable target.
    BadRedirect,
    /// The file changed on the server while we downloaded it, too often to recover.
    FileChanged,
    /// The body was shorter or longer than the server announced.
    SizeMismatch,
    /// The proxy URL could not be used.
    Proxy,
    /// The engine's own state refused the call (e.g. already running).
    State,
}

impl ErrorCode {
    /// The string sent in the `Code` field of `err` events.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::HttpStatus => "http_status",
            ErrorCode::RangeUnsupported => "range_unsupported",
            ErrorCode::ChecksumMismatch => "checksum_mismatch",
            ErrorCode::DiskFull => "disk_full",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Network => "network",
            ErrorCode::Tls => "tls",
            ErrorCode::Io => "io",
            ErrorCode::TooManyRedirects => "too_many_redirects",
            ErrorCode::BadRedirect => "bad_redirect",
            ErrorCode::FileChanged => "file_changed",
            ErrorCode::SizeMismatch => "size_mismatch",
            ErrorCode::Proxy => "proxy",
            ErrorCode::State => "state",
        }
    }
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
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            transient: false,
            retry_after: None,
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
