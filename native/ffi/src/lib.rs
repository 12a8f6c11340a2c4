//! TTHighSpeedDownloader: the TTHSD C ABI (see `ABI.md` and `include/tthsd.h`) over
//! `tthsd-engine`.
//!
//! This crate knows C, not HTTP: it reads C arguments, keeps the id table, runs the
//! event thread that calls the C callback, and keeps the per-thread last error.
//! - `exports`: the snake-case ABI and our `tthsd_` additions.
//! - `aliases`: the Go core's camel-case names.
//! - `guard`: panic containment and the last-error slot.
//! - `args`: NULL/UTF-8 checks and defaults of C arguments.
//! - `registry`: downloader and queue ids.
//! - `pump`: the event thread.
//! - `queue`: event queues, which the host polls instead of being called.
//! - `strings`: strings handed to C and `free_string`.

// The library file must be named TTHighSpeedDownloader, as programs load it by that name.
#![allow(non_snake_case)]

pub mod aliases;
mod args;
pub mod exports;
mod guard;
pub mod pump;
mod queue;
mod registry;
mod strings;
