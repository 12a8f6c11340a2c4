//! The whole-body stream: a file the server sends in one response from byte 0 (it
//! ignores ranges, has no size, or the file changed), written in order.
//!
//! Contract: all progress of the file is forgotten first (nothing of an earlier version
//! is mixed in); bytes land at their offset in a fresh part file; a body longer than its
//! `Content-Length` or shorter than it is a transient `size_mismatch`; the connection is
//! given back before the file is finalized. Such a file has no journal: it cannot be
//! resumed.

use std::sync::atomic::Ordering;

use crate::body::{Batch, read_batch};
use crate::error::{Error, ErrorCode, Result};
use crate::finalize::{finalize, writeback};
use crate::request::{Connection, FileCtx};
use crate::resume::reset_state;
use crate::source::AnyBody;
use crate::state::lock;
use crate::storage::PartFile;

/// A whole-body answer, as the probe got it.
pub(crate) struct Whole {
    pub length: Option<u64>,
    pub validators: crate::journal::Validators,
    pub final_url: url::Url,
    pub body: AnyBody,
}

/// The body of a server that sends the whole file (no ranges, or a changed file): one
/// stream from byte 0 (`announced`: its length, when the server gave it).
pub(crate) async fn whole(ctx: &FileCtx<'_>, opened: Whole, conn: Connection) -> Result<()> {
    let _conn = conn;
    let task = ctx.task;
    let Whole {
        length: announced,
        validators,
        final_url,
        body: mut resp,
    } = opened;
    {
        reset_state(task);
        let mut st = lock(&task.file);
        if let Some(s) = st.as_mut() {
            s.total = announced;
            s.validators = validators;
            s.final_url = Some(final_url);
        }
    }
    task.total.store(announced.unwrap_or(0), Ordering::Relaxed);
    let part = PartFile::open(&ctx.part_path(), true)
        .map_err(|e| Error::from_io("creating the part file", &e))?;
    let mut written: u64 = 0;
    let mut batch = Batch::default();
    let transfer = async {
        loop {
            let read = read_batch(ctx, &mut resp, &mut batch).await;
            ctx.shared.limiter.acquire(batch.len as u64).await;
            if let Some(limit) = announced
                && written + batch.len as u64 > limit
            {
                return Err(Error::transient(
                    ErrorCode::SizeMismatch,
                    format!("the server sent more than the {limit} bytes it announced"),
                ));
            }
            match read {
                Ok(at_end) => {
                    write_sequential(ctx, &part, &mut written, &mut batch)?;
                    if at_end {
                        return Ok(());
                    }
                }
                Err(e) => {
                    // Keep what arrived; it is not resumable, but stats stay honest.
                    let _ = write_sequential(ctx, &part, &mut written, &mut batch);
                    return Err(e);
                }
            }
        }
    };
    tokio::select! {
        r = transfer => r?,
        _ = writeback(task, &part, ctx.cfg.durable) => {}
    }
    if let Some(t) = announced
        && written != t
    {
        return Err(Error::transient(
            ErrorCode::SizeMismatch,
            format!("the body ended after {written} of {t} bytes"),
        ));
    }
    task.total.store(written, Ordering::Relaxed);
    if let Some(s) = lock(&task.file).as_mut() {
        s.total = Some(written);
    }
    drop(resp);
    drop(_conn); // the body is in: the connection is free for other files
    finalize(ctx, Some(part), written).await
}

fn write_sequential(
    ctx: &FileCtx<'_>,
    part: &PartFile,
    written: &mut u64,
    batch: &mut Batch,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    part.write_vectored_at(&batch.bufs, *written)
        .map_err(|e| Error::from_io("writing the file", &e))?;
    let n = batch.len as u64;
    batch.clear();
    let end = *written + n;
    if let Some(s) = lock(&ctx.task.file).as_mut() {
        s.done.insert(*written, end);
    }
    ctx.task.downloaded.fetch_add(n, Ordering::Relaxed);
    *written = end;
    Ok(())
}
