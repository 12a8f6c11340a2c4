//! Connections opened ahead of need: TCP and TLS done, no request sent.
//!
//! Why: a large file learns its size from its first response, and only then can its other
//! ranges start, each on a new connection that costs a TCP handshake, a TLS handshake and
//! the request: three round trips after the first answer. Opening those connections while
//! the first request is out leaves one (64 MiB at 16 connections through a 40 ms link:
//! ~80 ms of ~1.2 s). No request is sent on them, so a server sees nothing but handshakes
//! (an earlier version sent a `HEAD` on each; that spent retries and rate limits of the
//! server's own).
//!
//! [`Warm`] wraps the client's connector: when a pool needs a new connection to an origin
//! for which a warm one is waiting, it gets that one; otherwise it connects as usual. A
//! warm connection unused for [`WARM_FOR`] is closed (servers drop idle ones soon after).
//!
//! Warm connections to an origin start only once a request's own TCP connection to it is
//! up: a server that serves one connection at a time (a test server, a tiny embedded one)
//! accepts in arrival order, and must see the first request's connection before a dozen
//! that send nothing. On a wide-area link that costs nothing: the warm TCP and TLS
//! handshakes still end by the time the first answer is back.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::Uri;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tower_service::Service;

type Inner = hyper_rustls::HttpsConnector<Tcp>;
type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a warm connection waits for a pool that needs it.
const WARM_FOR: Duration = Duration::from_secs(20);

/// How long warm connections asked for wait for the first TCP connection to the origin.
const DEFER_FOR: Duration = Duration::from_secs(30);

/// scheme, host, port
type Origin = (String, String, u16);
/// What the connector knows of each origin.
struct Known {
    /// Warm connections, oldest first, with when each was asked for; each may still be
    /// handshaking (a pool that takes one waits for it rather than opening another).
    waiting: Vec<(Instant, oneshot::Receiver<Stream>)>,
    /// Whether a TCP connection to the origin has been made.
    tcp_up: watch::Sender<bool>,
    /// Warm connections asked for before that (opened when it is).
    deferred: Option<usize>,
}

impl Default for Known {
    fn default() -> Known {
        Known {
            waiting: Vec::new(),
            tcp_up: watch::Sender::new(false),
            deferred: None,
        }
    }
}

type Origins = HashMap<Origin, Known>;

#[derive(Clone)]
pub struct Warm {
    inner: Inner,
    origins: Arc<Mutex<Origins>>,
}

/// The TCP connector under TLS: marks an origin's TCP as up when a connection is made.
#[derive(Clone)]
pub struct Tcp {
    inner: HttpConnector,
    origins: Arc<Mutex<Origins>>,
}

impl Service<Uri> for Tcp {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri.clone());
        let origins = self.origins.clone();
        Box::pin(async move {
            let stream = connecting.await?;
            if let Some(key) = origin(&uri) {
                lock(&origins)
                    .entry(key)
                    .or_default()
                    .tcp_up
                    .send_replace(true);
            }
            Ok(stream)
        })
    }
}

fn origin(uri: &Uri) -> Option<Origin> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some((scheme, host, port))
}

impl Warm {
    /// `http` connects TCP; `tls` is used for `https` origins, offering HTTP/2 by ALPN
    /// only with `h2`.
    pub fn new(http: HttpConnector, tls: rustls::ClientConfig, h2: bool) -> Warm {
        let origins = Arc::new(Mutex::new(HashMap::new()));
        let tcp = Tcp {
            inner: http,
            origins: origins.clone(),
        };
        let http1 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1();
        let inner = if h2 {
            http1.enable_http2().wrap_connector(tcp)
        } else {
            http1.wrap_connector(tcp)
        };
        Warm { inner, origins }
    }

    fn lock(&self) -> MutexGuard<'_, Origins> {
        lock(&self.origins)
    }

    /// Opens `n` connections to `uri`'s origin in the background (minus those already
    /// waiting), now if a TCP connection to it is up, else as soon as one is.
    /// Failures are ignored: the pools will connect by themselves.
    pub fn open(&self, uri: &Uri, n: usize) {
        let Some(key) = origin(uri) else { return };
        let mut map = self.lock();
        let known = map.entry(key).or_default();
        if !*known.tcp_up.borrow() {
            if known.deferred.replace(n).is_none() {
                let mut up = known.tcp_up.subscribe();
                let (me, uri) = (self.clone(), uri.clone());
                tokio::spawn(async move {
                    let waited = tokio::time::timeout(DEFER_FOR, up.wait_for(|u| *u)).await;
                    if matches!(waited, Ok(Ok(_))) {
                        me.open_deferred(&uri);
                    }
                });
            }
            return;
        }
        known.waiting.retain(|(at, _)| at.elapsed() < WARM_FOR);
        for _ in known.waiting.len()..n {
            let (tx, rx) = oneshot::channel();
            known.waiting.push((Instant::now(), rx));
            let mut inner = self.inner.clone();
            let uri = uri.clone();
            tokio::spawn(async move {
                if let Ok(stream) = inner.call(uri).await {
                    // No taker any more (expired, or the client is gone): it closes.
                    let _ = tx.send(stream);
                }
            });
        }
    }

    fn open_deferred(&self, uri: &Uri) {
        let n = origin(uri).and_then(|k| self.lock().get_mut(&k)?.deferred.take());
        if let Some(n) = n {
            self.open(uri, n);
        }
    }

    /// The oldest fresh warm connection to `key`, if one is waiting or on its way (oldest:
    /// the one a server that accepts in order has been reading from longest).
    fn take(&self, key: &Origin) -> Option<oneshot::Receiver<Stream>> {
        let mut map = self.lock();
        let list = &mut map.get_mut(key)?.waiting;
        list.retain(|(at, _)| at.elapsed() < WARM_FOR);
        (!list.is_empty()).then(|| list.remove(0).1)
    }
}

fn lock(origins: &Mutex<Origins>) -> MutexGuard<'_, Origins> {
    origins.lock().unwrap_or_else(|e| e.into_inner())
}

impl Service<Uri> for Warm {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let key = origin(&uri);
        let warm = key.as_ref().and_then(|k| self.take(k));
        let me = self.clone();
        Box::pin(async move {
            if let Some(rx) = warm
                && let Ok(stream) = rx.await
            {
                return Ok(stream);
            }
            // None waiting, or its handshake failed: connect as usual.
            me.inner.clone().call(uri).await
        })
    }
}
