//! The direct transport: our own hyper client, for requests that no proxy may touch.
//!
//! Why not reqwest for these too: reqwest gives no say over hyper's HTTP/1 read buffer,
//! which grows to ~400 KiB per connection. Each body chunk is a slice of that buffer and
//! pins all of it until the chunk is written; with one chunk in hyper's channel, one
//! being written and one buffer filling, a connection held ~1.2 MiB, and 64 connections
//! ~55 MiB of heap (heaptrack, 4 GiB file). Here the buffer is capped at
//! [`READ_BUFFER`], which on loopback was also faster (less memory to touch).
//!
//! One [`Direct`] is one connection pool; the lanes (`lanes`) hold one each, so that an
//! HTTP/2 server, which would take every request of a pool on one TCP connection, gets
//! one connection per lane. TLS goes through rustls with the platform verifier (its
//! roots loaded on first use, see `roots`) and ALPN `h2`/`http/1.1`, or `http/1.1` alone
//! (see [`ClientConfig::multiplex`]). Redirects,
//! credentials and error codes are the policy layer's (`http`): this module sends one
//! request and reports what happened.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use reqwest::header::HeaderMap;
use url::Url;

use super::warm::Warm;
use super::{ClientConfig, Failure, FailureKind, Transport};
use crate::error::{Error, ErrorCode, Result};
use crate::roots::LazyRoots;

/// The most an HTTP/1 connection buffers from its socket (hyper's minimum is 8 KiB).
pub const READ_BUFFER: usize = 64 * 1024;

/// HTTP/2 flow-control windows. A stream's window bounds what one range can have in
/// flight, so it must cover the bandwidth-delay product of one connection (5 MB/s at
/// 200 ms is 1 MB); the connection's, two streams' worth (a lane carries one range at a
/// time). hyper's adaptive window would grow them from 64 KiB over several round trips
/// instead, which on a 40 ms link costs the first seconds of every connection. Larger
/// windows buy nothing and fill memory whenever the disk is slower than the network:
/// 4 and 16 MiB gave 1 GiB over TLS + HTTP/2 on loopback a peak RSS of 156 MiB, 2 and
/// 4 MiB give 96 MiB, with 64 MiB through a 40 ms, 5 MB/s-per-connection link unchanged
/// (1.19 s both) and 1.99 s against 2.26 at 200 ms.
const H2_STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const H2_CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;
/// The largest DATA frame we accept (the protocol's default is 16 KiB): fewer frames,
/// fewer headers to parse per byte, where the server sends large ones.
const H2_MAX_FRAME: u32 = 256 * 1024;

/// What every pool of one client is built from (TLS set up once; the warm connections
/// are shared by all the client's pools).
#[derive(Clone)]
pub struct Factory {
    connector: Warm,
}

impl Factory {
    pub fn new(cfg: &ClientConfig) -> Result<Factory> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = LazyRoots::new(provider.clone());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::new(ErrorCode::Tls, format!("TLS setup failed: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        Ok(Factory {
            connector: Warm::new(http, tls, cfg.multiplex),
        })
    }

    /// Opens `n` connections to `uri`'s origin ahead of need.
    pub fn warm(&self, uri: &hyper::Uri, n: usize) {
        self.connector.open(uri, n);
    }

    /// A fresh pool: new connections, sharing the TLS setup.
    pub fn pool(&self) -> Direct {
        let client = LegacyClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .http1_max_buf_size(READ_BUFFER)
            .http2_initial_stream_window_size(H2_STREAM_WINDOW)
            .http2_initial_connection_window_size(H2_CONNECTION_WINDOW)
            .http2_max_frame_size(H2_MAX_FRAME)
            .timer(TokioTimer::new())
            .build(self.connector.clone());
        Direct {
            client: Arc::new(client),
        }
    }
}

/// One connection pool (cheap to clone: the connections are shared).
#[derive(Clone)]
pub struct Direct {
    client: Arc<LegacyClient<Warm, Empty<Bytes>>>,
}

impl Transport for Direct {
    type Body = hyper::Response<Incoming>;

    async fn send(
        &self,
        url: &Url,
        headers: HeaderMap,
    ) -> std::result::Result<hyper::Response<Incoming>, Failure> {
        let mut req = hyper::Request::get(url.as_str())
            .body(Empty::new())
            .map_err(|e| Failure::new(FailureKind::Invalid, format!("bad request: {e}")))?;
        *req.headers_mut() = headers;
        self.client.request(req).await.map_err(|e| failure(&e))
    }
}

/// The body's size from `Content-Length`, when the framing says it exactly.
pub fn content_length(resp: &hyper::Response<Incoming>) -> Option<u64> {
    resp.body().size_hint().exact()
}

/// The next piece of body data; None at its end.
pub async fn chunk(
    resp: &mut hyper::Response<Incoming>,
) -> std::result::Result<Option<Bytes>, Failure> {
    loop {
        match resp.body_mut().frame().await {
            None => return Ok(None),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if data.is_empty() {
                        continue;
                    }
                    return Ok(Some(data));
                }
                // Trailers: nothing to write.
            }
            Some(Err(e)) => {
                return Err(failure_of(
                    FailureKind::Body,
                    "reading the response body failed",
                    &e,
                ));
            }
        }
    }
}

/// A hyper failure in the policy layer's terms.
fn failure(e: &hyper_util::client::legacy::Error) -> Failure {
    if e.is_connect() {
        failure_of(FailureKind::Connect, "cannot connect", e)
    } else {
        failure_of(FailureKind::Request, "request failed", e)
    }
}

/// `what` and the causes of `e`; hyper's messages name no URL, so where there are no
/// causes `e` itself is quoted.
fn failure_of(kind: FailureKind, what: &str, e: &(dyn StdError + 'static)) -> Failure {
    let mut f = Failure::from_chain(kind, what, e);
    if f.detail == what {
        f.detail = format!("{what}: {e}");
    }
    f
}
