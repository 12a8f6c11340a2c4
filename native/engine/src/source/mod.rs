//! The protocol seam: what the stages need from a server, whatever its protocol.
//!
//! A [`Source`] answers two questions: the first bytes of a file ([`Source::open`]:
//! a range of it with its size and validators, or the whole body, or "the file ends
//! before that"), and a later range of the same version of it ([`Source::range`]). Both
//! hand back a [`Body`], a stream of `Bytes`. The probe, the ranged transfer, the
//! whole-body stream, the plan, the journal and the writer see only these: byte
//! ranges, a size, [`Validators`] and bodies.
//!
//! Contract of an implementation: a `Ranged` opening starts exactly at the byte asked
//! for and names the file's size; a range body carries exactly the bytes from the start
//! asked for up to the end it names, of the version whose validators it was given
//! (else `file_changed`, not transient); a failure that a retry may cure is
//! `Error::transient`. Connections come from the downloader's budget
//! ([`Connection`]); what to do about failures is `retry`'s.
//!
//! A new protocol is one module here implementing [`Source`] and [`Body`], a row in
//! `scheme::SCHEMES`, and a variant in [`AnySource`] and [`AnyBody`] (an enum rather
//! than a boxed trait object: the body is read for every chunk of every file).

pub(crate) mod web;

use std::future::Future;

use bytes::Bytes;
use url::Url;

use crate::error::{Error, Result};
use crate::journal::Validators;
use crate::request::{Connection, FileCtx};
use crate::scheme::{self, Protocol};

/// A response body: the file's bytes in order, as they arrive.
pub(crate) trait Body: Send {
    /// The next piece of the body; None at its end.
    fn chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>>> + Send;
}

/// What a source says to the first request for a file.
pub(crate) enum Opening<B> {
    /// Bytes `first` (start, exclusive end) of a file of `total` bytes.
    Ranged {
        total: u64,
        validators: Validators,
        /// Where the bytes came from (after redirects); later ranges go there.
        final_url: Url,
        first: (u64, u64),
        body: B,
    },
    /// The whole file from byte 0 (`length` when announced).
    Whole {
        length: Option<u64>,
        validators: Validators,
        final_url: Url,
        body: B,
    },
    /// The file ends before the first byte asked for (`total` when the server said).
    PastEnd { total: Option<u64> },
}

/// A server holding one file.
pub(crate) trait Source: Sized {
    type Body: Body;

    /// Where requests go.
    fn url(&self) -> &Url;

    /// The source for the later requests of a file opened at `final_url` (where an
    /// opening came from, redirects followed).
    fn at(&self, final_url: &Url) -> Self;

    /// Asks for bytes `[start, end)` (`Some`), or for the whole file (`None`). With
    /// `known`, a range is only wanted of that version of the file; a source that
    /// cannot promise it sends the whole file instead.
    fn open(
        &self,
        conn: &Connection,
        want: Option<(u64, u64)>,
        known: Option<&Validators>,
    ) -> impl Future<Output = Result<Opening<Self::Body>>> + Send;

    /// Bytes `[start, end)` of the version `validators` of a file of `total` bytes: the
    /// body and the end of what it carries (at least `start + 1`, at most `total`).
    fn range(
        &self,
        conn: &Connection,
        start: u64,
        end: u64,
        total: u64,
        validators: &Validators,
    ) -> impl Future<Output = Result<(Self::Body, u64)>> + Send;
}

/// The source for a task's URL, chosen by its scheme.
pub(crate) fn open<'a>(ctx: &'a FileCtx<'a>) -> Result<AnySource<'a>> {
    let url = &ctx.task.spec.url;
    match scheme::protocol(url.scheme()) {
        Some(Protocol::Web) => Ok(AnySource::Web(web::WebSource::new(ctx, url.clone()))),
        None => Err(Error::invalid(format!(
            "the URL has scheme {:?}; only {} are supported",
            url.scheme(),
            scheme::names()
        ))),
    }
}

/// The source for URL `i` of the task: its own URL (0), or its mirror `i - 1` (URLs the
/// task list accepted, so of a known scheme). Credentials bound to the task URL's origin
/// are not sent to a mirror on another one.
pub(crate) fn at_index<'a>(ctx: &'a FileCtx<'a>, i: usize) -> AnySource<'a> {
    let own = web::WebSource::new(ctx, ctx.task.spec.url.clone());
    match i.checked_sub(1).and_then(|m| ctx.task.spec.mirrors.get(m)) {
        Some(url) => AnySource::Web(own.at(url)),
        None => AnySource::Web(own),
    }
}

/// Any source: one variant per protocol.
pub(crate) enum AnySource<'a> {
    Web(web::WebSource<'a>),
}

/// Any source's body.
pub(crate) enum AnyBody {
    Web(crate::http::Response),
}

impl AnyBody {
    /// A header of the response the body belongs to (a file name the server proposes).
    pub fn header(&self, name: reqwest::header::HeaderName) -> Option<&str> {
        match self {
            AnyBody::Web(r) => crate::http::header_str(r.headers(), name),
        }
    }
}

impl Body for AnyBody {
    async fn chunk(&mut self) -> Result<Option<Bytes>> {
        match self {
            AnyBody::Web(r) => r.chunk().await,
        }
    }
}

fn any_opening<B>(o: Opening<B>, wrap: impl FnOnce(B) -> AnyBody) -> Opening<AnyBody> {
    match o {
        Opening::Ranged {
            total,
            validators,
            final_url,
            first,
            body,
        } => Opening::Ranged {
            total,
            validators,
            final_url,
            first,
            body: wrap(body),
        },
        Opening::Whole {
            length,
            validators,
            final_url,
            body,
        } => Opening::Whole {
            length,
            validators,
            final_url,
            body: wrap(body),
        },
        Opening::PastEnd { total } => Opening::PastEnd { total },
    }
}

impl Source for AnySource<'_> {
    type Body = AnyBody;

    fn url(&self) -> &Url {
        match self {
            AnySource::Web(s) => s.url(),
        }
    }

    fn at(&self, final_url: &Url) -> Self {
        match self {
            AnySource::Web(s) => AnySource::Web(s.at(final_url)),
        }
    }

    async fn open(
        &self,
        conn: &Connection,
        want: Option<(u64, u64)>,
        known: Option<&Validators>,
    ) -> Result<Opening<AnyBody>> {
        match self {
            AnySource::Web(s) => Ok(any_opening(s.open(conn, want, known).await?, AnyBody::Web)),
        }
    }

    async fn range(
        &self,
        conn: &Connection,
        start: u64,
        end: u64,
        total: u64,
        validators: &Validators,
    ) -> Result<(AnyBody, u64)> {
        match self {
            AnySource::Web(s) => {
                let (body, end) = s.range(conn, start, end, total, validators).await?;
                Ok((AnyBody::Web(body), end))
            }
        }
    }
}
