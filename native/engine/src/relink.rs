//! Which URL a file's ranges go to ([`Link`]: one per source, the task's URL and each
//! mirror), and a fresh one when it expires.
//!
//! Large files often come through a redirect to a signed, short-lived URL (object
//! stores, release assets, CDNs). Such a link serves ranges for a while, then refuses
//! (401, 403, 410, or a 400 saying the request expired: `Error::refused`). Every range
//! request of a ranged transfer takes its URL from the file's [`Link`], so this is the
//! one place that decides where ranges go: on a refusal of a URL that a redirect led
//! to, the URL the user gave (the task's, or the mirror's) is resolved again
//! (redirects followed anew) by a request for
//! the range that was refused, and the answer must be the same file (size and
//! validators; otherwise `file_changed`, and the file restarts from zero as for any
//! changed file). The new URL then serves every later range.
//!
//! Contract: one renewal per expiry, whatever the number of connections that hit it (a
//! request that failed on a link already replaced just asks again on the new one);
//! at most [`MAX_RELINKS`] renewals per transfer, and a link that serves nothing but its
//! own resolving request before it is refused again gets [`MAX_IDLE_RELINKS`] renewals
//! in a row at most; each renewal is announced once (a `msg` event). A link that was
//! not reached through a redirect is never renewed: the URL the user gave refused.

use std::sync::{Arc, Mutex};

use url::Url;

use crate::error::{Error, ErrorCode, Result};
use crate::http::redact;
use crate::journal::Validators;
use crate::request::{Connection, FileCtx};
use crate::source::{AnyBody, AnySource, Opening, Source};
use crate::state::lock;

/// The most renewals of one file's link in one transfer: a link valid for minutes gets
/// hours of transfer out of them, and a server that hands out dead links is not asked
/// forever.
pub(crate) const MAX_RELINKS: u32 = 32;

/// Renewals in a row whose new link served no range request of its own: a fresh link
/// refused at once will be refused again (clock skew, a link bound to another client).
pub(crate) const MAX_IDLE_RELINKS: u32 = 2;

/// What the ranges of one file are fetched from.
pub(crate) struct Link<'a> {
    file: &'a FileCtx<'a>,
    /// The source at the URL the user gave (the task's, or a mirror's), where a
    /// renewal starts.
    origin: AnySource<'a>,
    /// The link of the task's own URL: the journal names where its ranges go.
    primary: bool,
    current: Mutex<Current<'a>>,
    /// Held by the one connection renewing the link; the others wait for its outcome.
    renewing: tokio::sync::Mutex<()>,
}

struct Current<'a> {
    /// Bumped by each renewal, so a request knows whether its link was replaced since.
    generation: u64,
    source: Arc<AnySource<'a>>,
    /// A range request on this link (not its resolving one) was answered.
    used: bool,
    relinks: u32,
    idle_relinks: u32,
}

/// What a renewal gives the connection that asked for it.
// Returned once per renewal and taken apart at once, never stored: a box would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Renewal {
    /// Another connection renewed the link meanwhile: ask again on the new one.
    Replaced,
    /// This connection renewed it: the body of the range it asked for, and where that
    /// body ends.
    Body(AnyBody, u64),
}

impl<'a> Link<'a> {
    /// The link of `source` (at the URL the user gave), whose ranges go to `final_url`;
    /// `primary` for the task's own URL.
    pub fn new(
        file: &'a FileCtx<'a>,
        source: &AnySource<'a>,
        final_url: &Url,
        primary: bool,
    ) -> Link<'a> {
        Link {
            file,
            origin: source.at(source.url()),
            primary,
            current: Mutex::new(Current {
                generation: 0,
                source: Arc::new(source.at(final_url)),
                used: false,
                relinks: 0,
                idle_relinks: 0,
            }),
            renewing: tokio::sync::Mutex::new(()),
        }
    }

    /// The source ranges go to now, and its generation.
    pub fn current(&self) -> (u64, Arc<AnySource<'a>>) {
        let c = lock(&self.current);
        (c.generation, c.source.clone())
    }

    /// A range request made on generation `generation` was answered.
    pub fn served(&self, generation: u64) {
        let mut c = lock(&self.current);
        if c.generation == generation {
            c.used = true;
        }
    }

    /// Whether `e` calls for a new link: a refusal of a URL a redirect led to.
    pub fn may_renew(&self, e: &Error) -> bool {
        e.refused && self.current().1.url() != self.origin.url()
    }

    /// The URL the user gave for this link.
    pub fn origin_url(&self) -> &Url {
        self.origin.url()
    }

    /// Later ranges go to `final_url` (where the first request of a mirror was
    /// redirected to).
    pub fn follow(&self, final_url: &Url) {
        if self.current().1.url() != final_url {
            self.install(final_url);
        }
    }

    /// Renews the link after a request made on generation `seen` got the refusal `e`:
    /// resolves the task's URL again with a request for `[pos, end)` of the version
    /// `validators` of a file of `total` bytes, on `conn`.
    #[allow(clippy::too_many_arguments)] // the refused request, restated
    pub async fn renew(
        &self,
        seen: u64,
        e: Error,
        conn: &Connection,
        pos: u64,
        end: u64,
        total: u64,
        validators: &Validators,
    ) -> Result<Renewal> {
        let _one = self.renewing.lock().await;
        let n = {
            let mut c = lock(&self.current);
            if c.generation != seen {
                return Ok(Renewal::Replaced);
            }
            if c.relinks >= MAX_RELINKS || (!c.used && c.idle_relinks >= MAX_IDLE_RELINKS) {
                let mut e = e;
                e.transient = false;
                e.message = format!(
                    "{} (the link a redirect led to was refused again after {} renewals)",
                    e.message, c.relinks
                );
                return Err(e);
            }
            c.idle_relinks = if c.used { 0 } else { c.idle_relinks + 1 };
            c.relinks += 1;
            c.relinks
        };
        let f = self.file;
        f.shared.task_msg(
            f.task,
            format!(
                "The link a redirect led to was refused ({}); resolving {} again (renewal {n}, at most {MAX_RELINKS})",
                e.message,
                redact(self.origin.url())
            ),
        );
        let opening = self
            .origin
            .open(conn, Some((pos, end)), Some(validators))
            .await?;
        match opening {
            Opening::Ranged {
                total: t,
                validators: v,
                final_url,
                first,
                body,
            } => {
                if t != total || !validators.same_version(&v) {
                    return Err(Error::new(
                        ErrorCode::FileChanged,
                        format!(
                            "the URL resolved again leads to another file (size {total} became {t}, or other validators)"
                        ),
                    ));
                }
                self.install(&final_url);
                Ok(Renewal::Body(body, first.1))
            }
            Opening::Whole { validators: v, .. } if validators.same_version(&v) => Err(Error::new(
                ErrorCode::RangeUnsupported,
                "the URL resolved again does not honour ranges",
            )),
            Opening::Whole { .. } | Opening::PastEnd { .. } => Err(Error::new(
                ErrorCode::FileChanged,
                "the URL resolved again leads to another file",
            )),
        }
    }

    /// Every later range goes to `final_url`; the journal names it too.
    fn install(&self, final_url: &Url) {
        {
            let mut c = lock(&self.current);
            c.generation += 1;
            c.source = Arc::new(self.origin.at(final_url));
            c.used = false;
        }
        if self.primary
            && let Some(s) = lock(&self.file.task.file).as_mut()
        {
            s.final_url = Some(final_url.clone());
        }
    }
}
