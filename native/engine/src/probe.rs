//! The probe: the first request of an attempt at a file, and what its answer means.
//!
//! The probe asks the file's [`Source`] for its first piece (for HTTP,
//! `Range: bytes=0-(chunk-1)`), or for the first gap of a file resumed from its journal
//! (only of the version on disk: `If-Range`), so one request
//! both learns the size and validators and starts the transfer; a file smaller than a
//! chunk costs exactly one request.
//!
//! Contract: a ranged answer ([`Answer::Ranged`]) starts where we asked and names the
//! size (the source checks it; for HTTP, a 206 and its `Content-Range`). A resumed file
//! whose server copy changed has its progress forgotten here, before any byte of the
//! new version is written; a resumed file the server no longer has the range of is
//! `file_changed`; a file that ends before its first byte is empty.

use reqwest::header::CONTENT_DISPOSITION;
use url::Url;

use crate::disposition::choose;
use crate::error::{Error, ErrorCode, Result};
use crate::journal::Validators;
use crate::plan::piece_size;
use crate::request::{Connection, FileCtx};
use crate::resume::reset_state;
use crate::source::{AnyBody, AnySource, Opening, Source};
use crate::stream::Whole;

/// What is on disk of a file resumed from earlier progress.
pub(crate) struct Resume {
    pub total: u64,
    /// The gaps, in order.
    pub missing: Vec<(u64, u64)>,
    pub validators: Validators,
}

/// What the server's first answer says about the file.
pub(crate) enum Answer {
    /// The server honours ranges: `body` carries `first` (start, exclusive end).
    Ranged {
        total: u64,
        validators: Validators,
        final_url: Url,
        first: (u64, u64),
        body: AnyBody,
    },
    /// One body from byte 0, to be streamed whole.
    Whole(Whole),
    /// The file is empty.
    Empty,
}

/// Sends the probe on `conn` and reads its answer (`whole_only`: ranges are not to be
/// trusted in this run, ask for the whole body).
pub(crate) async fn probe(
    ctx: &FileCtx<'_>,
    source: &AnySource<'_>,
    conn: &Connection,
    resume: Option<&Resume>,
    whole_only: bool,
) -> Result<Answer> {
    let task = ctx.task;
    if whole_only {
        return whole_named(ctx, source.open(conn, None, None).await?);
    }
    let want = match resume {
        Some(r) => {
            let (a, b) = r.missing[0];
            let piece = piece_size(r.total, ctx.cfg.chunk_size, ctx.host_ceiling());
            (a, b.min(a.saturating_add(piece)))
        }
        None => (0, ctx.cfg.chunk_size.max(1)),
    };
    let known = resume.map(|r| &r.validators);
    let opening = source.open(conn, Some(want), known).await?;
    if let Opening::Ranged { body, .. } | Opening::Whole { body, .. } = &opening {
        choose(ctx, body.header(CONTENT_DISPOSITION))?;
    }
    match opening {
        Opening::Ranged {
            total,
            validators,
            final_url,
            first,
            body,
        } => {
            let same =
                resume.is_some_and(|r| r.total == total && r.validators.same_version(&validators));
            if resume.is_some() && !same {
                reset_state(task);
                ctx.shared.task_msg(
                    task,
                    "The file changed on the server; restarting it from zero".into(),
                );
            }
            Ok(Answer::Ranged {
                total,
                validators,
                final_url,
                first,
                body,
            })
        }
        whole_body @ Opening::Whole { .. } => {
            if resume.is_some() {
                ctx.shared.task_msg(
                    task,
                    "The server sent the whole file (changed, or ranges not honoured); restarting from zero".into(),
                );
            }
            whole(whole_body)
        }
        Opening::PastEnd { total } => {
            if resume.is_some() {
                return Err(Error::new(
                    ErrorCode::FileChanged,
                    "the server no longer has the range we need (file changed)",
                ));
            }
            if total == Some(0) {
                return Ok(Answer::Empty);
            }
            whole_named(ctx, source.open(conn, None, None).await?)
        }
    }
}

/// [`whole`], the file named from the answer first (`name_from_server`).
fn whole_named(ctx: &FileCtx<'_>, opening: Opening<AnyBody>) -> Result<Answer> {
    if let Opening::Whole { body, .. } = &opening {
        choose(ctx, body.header(CONTENT_DISPOSITION))?;
    }
    whole(opening)
}

/// The answer to a request for the whole file.
fn whole(opening: Opening<AnyBody>) -> Result<Answer> {
    match opening {
        Opening::Whole {
            length,
            validators,
            final_url,
            body,
        } => Ok(Answer::Whole(Whole {
            length,
            validators,
            final_url,
            body,
        })),
        // A source asked for everything answers with everything or an error.
        _ => Err(Error::new(
            ErrorCode::Internal,
            "the source answered a request for the whole file with a part of it",
        )),
    }
}
