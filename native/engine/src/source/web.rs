//! HTTP and HTTPS as a [`Source`]: ranges are `Range` requests answered by a 206 whose
//! `Content-Range` we check, the version is the `ETag`/`Last-Modified` pair (sent back
//! in `If-Range`), and the whole file is a plain GET answered by a 200.
//!
//! Contract (beyond [`Source`]'s): a 206 we cannot place is never guessed at (the
//! whole body is asked for instead); a 200 or a 416 to a range asked for later in the
//! file means the file changed or ranges broke, never a body to write. Redirects,
//! credentials and error classification are `http`'s.

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use url::Url;

use super::{Opening, Source};
use crate::error::{Error, ErrorCode, Result};
use crate::http::{self, Response, header_str};
use crate::journal::Validators;
use crate::range::{ContentRange, parse_content_range, range_header};
use crate::request::{Connection, FileCtx, send};

impl super::Body for Response {
    async fn chunk(&mut self) -> Result<Option<bytes::Bytes>> {
        Response::chunk(self).await
    }
}

/// One file's server over HTTP(S).
pub(crate) struct WebSource<'a> {
    ctx: &'a FileCtx<'a>,
    url: Url,
    /// Headers for range requests: origin-bound credentials dropped if we were
    /// redirected to another origin.
    headers: HeaderMap,
}

impl<'a> WebSource<'a> {
    pub fn new(ctx: &'a FileCtx<'a>, url: Url) -> WebSource<'a> {
        WebSource {
            ctx,
            url,
            headers: ctx.headers.clone(),
        }
    }

    /// Asks for the whole body with no range: a 200 or an error.
    async fn whole(&self, conn: &Connection) -> Result<Opening<Response>> {
        let resp = send(self.ctx, conn, &self.url, None, None).await?;
        match resp.status() {
            StatusCode::OK => Ok(Opening::Whole {
                length: resp.content_length(),
                validators: http::validators(&resp),
                final_url: resp.url().clone(),
                body: resp,
            }),
            _ => Err(http::status_error(&resp)),
        }
    }
}

impl Source for WebSource<'_> {
    type Body = Response;

    fn url(&self) -> &Url {
        &self.url
    }

    fn at(&self, final_url: &Url) -> Self {
        let mut headers = self.ctx.headers.clone();
        http::strip_cross_origin(&mut headers, &self.ctx.task.spec.url, final_url);
        WebSource {
            ctx: self.ctx,
            url: final_url.clone(),
            headers,
        }
    }

    async fn open(
        &self,
        conn: &Connection,
        want: Option<(u64, u64)>,
        known: Option<&Validators>,
    ) -> Result<Opening<Response>> {
        let Some((ask_start, ask_end)) = want else {
            return self.whole(conn).await;
        };
        let if_range = known.and_then(Validators::if_range);
        let resp = send(
            self.ctx,
            conn,
            &self.url,
            Some(range_header(ask_start, Some(ask_end))),
            if_range,
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
                    }) if start == ask_start => Ok(Opening::Ranged {
                        total,
                        validators: http::validators(&resp),
                        final_url: resp.url().clone(),
                        first: (start, end),
                        body: resp,
                    }),
                    _ => {
                        // A 206 we cannot place: never guess, take the whole body instead.
                        drop(resp);
                        self.whole(conn).await
                    }
                }
            }
            StatusCode::OK => Ok(Opening::Whole {
                length: resp.content_length(),
                validators: http::validators(&resp),
                final_url: resp.url().clone(),
                body: resp,
            }),
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let cr =
                    header_str(resp.headers(), header::CONTENT_RANGE).and_then(parse_content_range);
                Ok(Opening::PastEnd {
                    total: match cr {
                        Some(ContentRange::Unsatisfied { total }) => Some(total),
                        _ => None,
                    },
                })
            }
            _ => Err(http::status_error(&resp)),
        }
    }

    /// Asks for the rest of a lease and checks the answer fits exactly.
    async fn range(
        &self,
        conn: &Connection,
        pos: u64,
        end: u64,
        total: u64,
        validators: &Validators,
    ) -> Result<(Response, u64)> {
        let f = self.ctx;
        let fut = http::get(
            &f.client,
            &conn.slot,
            &self.url,
            &self.headers,
            Some(range_header(pos, Some(end))),
            validators.if_range(),
        );
        let resp = match tokio::time::timeout(f.cfg.read_timeout + f.cfg.connect_timeout, fut).await
        {
            Ok(r) => r?,
            Err(_) => {
                return Err(Error::transient(
                    ErrorCode::Timeout,
                    "no response to a range request in time",
                ));
            }
        };
        let status = resp.status();
        if status == StatusCode::PARTIAL_CONTENT {
            let cr =
                header_str(resp.headers(), header::CONTENT_RANGE).and_then(parse_content_range);
            return match cr {
                Some(ContentRange::Bytes {
                    start,
                    end: got_end,
                    total: Some(t),
                }) if t == total && start == pos => {
                    if !validators.same_version(&http::validators(&resp)) {
                        return Err(Error::new(
                            ErrorCode::FileChanged,
                            "the file changed on the server during the download (validator mismatch)",
                        ));
                    }
                    Ok((resp, got_end))
                }
                Some(ContentRange::Bytes { total: Some(t), .. }) if t != total => Err(Error::new(
                    ErrorCode::FileChanged,
                    format!(
                        "the file changed on the server during the download (size {total} became {t})"
                    ),
                )),
                other => Err(Error::transient(
                    ErrorCode::RangeUnsupported,
                    format!(
                        "asked for bytes {pos}-{}, the server answered {}",
                        end - 1,
                        match other {
                            Some(ContentRange::Bytes { start, end, .. }) =>
                                format!("bytes {start}-{}", end - 1),
                            _ => "an unusable Content-Range".to_owned(),
                        }
                    ),
                )),
            };
        }
        if status == StatusCode::OK {
            let changed = !validators.same_version(&http::validators(&resp));
            return Err(if changed {
                Error::new(
                    ErrorCode::FileChanged,
                    "the file changed on the server during the download",
                )
            } else {
                Error::new(
                    ErrorCode::RangeUnsupported,
                    "the server stopped honouring ranges",
                )
            });
        }
        if status == StatusCode::RANGE_NOT_SATISFIABLE {
            return Err(Error::new(
                ErrorCode::FileChanged,
                "the server refused a range inside the file (file changed?)",
            ));
        }
        Err(http::status_error(&resp))
    }
}
