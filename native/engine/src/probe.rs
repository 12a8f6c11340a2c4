//! The probe: the first request of an attempt at a file, and what its answer means.
//!
//! The probe asks for the first piece of the file (`Range: bytes=0-(chunk-1)`), or for
//! the first gap of a file resumed from its journal (with `If-Range`), so one request
//! both learns the size and validators and starts the transfer; a file smaller than a
//! chunk costs exactly one request.
//!
//! Contract: a ranged answer ([`Answer::Ranged`]) is given only for a 206 whose
//! `Content-Range` starts where we asked and names the size; a 206 we cannot place is
//! never guessed at, the whole body is asked for instead ([`Answer::Whole`]). A resumed
//! file whose server copy changed has its progress forgotten here, before any byte of
//! the new version is written. Any other status is an error (`http::status_error`).

use reqwest::StatusCode;
use reqwest::header;
use url::Url;

use crate::error::{Error, ErrorCode, Result};
use crate::http::{self, Response, header_str};
use crate::journal::Validators;
use crate::plan::piece_size;
use crate::range::{ContentRange, parse_content_range, range_header};
use crate::request::{Connection, FileCtx, send};
use crate::resume::reset_state;

/// What is on disk of a file resumed from earlier progress.
pub(crate) struct Resume {
    pub total: u64,
    /// The gaps, in order.
    pub missing: Vec<(u64, u64)>,
    pub validators: Validators,
}

/// What the server's first answer says about the file.
pub(crate) enum Answer {
    /// The server honours ranges: `resp` carries `first` (start, exclusive end).
    Ranged {
        total: u64,
        validators: Validators,
        final_url: Url,
        first: (u64, u64),
        resp: Response,
    },
    /// One body from byte 0, to be streamed whole.
    Whole(Response),
    /// The file is empty (a 416 naming size 0).
    Empty,
}

/// Sends the probe on `conn` and reads its answer (`whole_only`: ranges are not to be
/// trusted in this run, ask for the whole body).
pub(crate) async fn probe(
    ctx: &FileCtx<'_>,
    conn: &Connection,
    resume: Option<&Resume>,
    whole_only: bool,
) -> Result<Answer> {
    let task = ctx.task;
    if whole_only {
        return whole_body(ctx, conn).await;
    }
    let (ask_start, ask_end, if_range) = match resume {
        Some(r) => {
            let (a, b) = r.missing[0];
            let piece = piece_size(r.total, ctx.cfg.chunk_size, ctx.cfg.connections);
            (
                a,
                b.min(a.saturating_add(piece)),
                r.validators.if_range().map(str::to_owned),
            )
        }
        None => (0, ctx.cfg.chunk_size.max(1), None),
    };
    let resp = send(
        ctx,
        conn,
        &task.spec.url,
        Some(range_header(ask_start, Some(ask_end))),
        if_range.as_deref(),
    )
    .await?;
    match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            let cr =
                header_str(resp.headers(), header::CONTENT_RANGE).and_then(parse_content_range);
            match cr {
                Some(ContentRange::Bytes {
                    start,
                    end,
                    total: Some(total),
                }) if start == ask_start => {
                    let vals = http::validators(&resp);
                    let same = resume
                        .is_some_and(|r| r.total == total && r.validators.same_version(&vals));
                    if resume.is_some() && !same {
                        reset_state(task);
                        ctx.shared.task_msg(
                            task,
                            "The file changed on the server; restarting it from zero".into(),
                        );
                    }
                    let final_url = resp.url().clone();
                    Ok(Answer::Ranged {
                        total,
                        validators: vals,
                        final_url,
                        first: (start, end),
                        resp,
                    })
                }
                _ => {
                    // A 206 we cannot place: never guess, take the whole body instead.
                    drop(resp);
                    whole_body(ctx, conn).await
                }
            }
        }
        StatusCode::OK => {
            if resume.is_some() {
                ctx.shared.task_msg(
                    task,
                    "The server sent the whole file (changed, or ranges not honoured); restarting from zero".into(),
                );
            }
            Ok(Answer::Whole(resp))
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let cr =
                header_str(resp.headers(), header::CONTENT_RANGE).and_then(parse_content_range);
            drop(resp);
            if resume.is_some() {
                return Err(Error::new(
                    ErrorCode::FileChanged,
                    "the server no longer has the range we need (file changed)",
                ));
            }
            if let Some(ContentRange::Unsatisfied { total: 0 }) = cr {
                return Ok(Answer::Empty);
            }
            whole_body(ctx, conn).await
        }
        _ => Err(http::status_error(&resp)),
    }
}

/// Asks for the whole body with no range: a 200 or an error.
async fn whole_body(ctx: &FileCtx<'_>, conn: &Connection) -> Result<Answer> {
    let resp = send(ctx, conn, &ctx.task.spec.url, None, None).await?;
    match resp.status() {
        StatusCode::OK => Ok(Answer::Whole(resp)),
        _ => Err(http::status_error(&resp)),
    }
}
