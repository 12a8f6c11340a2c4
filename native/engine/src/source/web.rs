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
        let resp = send(self.ctx, conn, &self.url, &self.headers, None, None).await?;
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
            &self.headers,
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
        Err(refusal(resp).await)
    }
}

/// Most of an error body read to recognise an expired request (object stores explain
/// it in a small XML or JSON document).
const EXPIRY_BODY_MAX: usize = 4096;

/// The error for a failed range answer, marked `refused` when it says the URL no longer
/// grants access: 401, 403 and 410 always (a signed link that expired answers one of
/// them: S3 and Azure 403, others 401 or 410), and a 400 whose body says the request
/// expired (Google Cloud Storage's `ExpiredToken`, S3's "Request has expired").
async fn refusal(mut resp: Response) -> Error {
    let mut err = http::status_error(&resp);
    err.refused = match resp.status().as_u16() {
        401 | 403 | 410 => true,
        400 => says_expired(&mut resp).await,
        _ => false,
    };
    err
}

/// Reads up to [`EXPIRY_BODY_MAX`] bytes of an error body (for a second at most: the
/// body is a hint, never worth a stall) and looks for an expiry.
async fn says_expired(resp: &mut Response) -> bool {
    let mut seen = Vec::new();
    let read = async {
        while seen.len() < EXPIRY_BODY_MAX {
            match resp.chunk().await {
                Ok(Some(b)) => seen.extend_from_slice(&b[..b.len().min(EXPIRY_BODY_MAX)]),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), read).await;
    body_says_expired(&seen)
}

/// True when an error body reads like an expired signature or token.
pub(crate) fn body_says_expired(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    [
        "expiredtoken",
        "request has expired",
        "token has expired",
        "signature expired",
        "url has expired",
    ]
    .iter()
    .any(|w| text.contains(w))
}

#[cfg(test)]
mod tests {
    use super::body_says_expired;

    #[test]
    fn recognises_expiry_bodies() {
        assert!(body_says_expired(
            b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
        ));
        assert!(body_says_expired(
            b"<Error><Code>ExpiredToken</Code></Error>"
        ));
        assert!(!body_says_expired(
            b"<Error><Code>InvalidArgument</Code></Error>"
        ));
        assert!(!body_says_expired(b""));
    }
}
