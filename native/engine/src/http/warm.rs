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
use tower_service::Service;

type Inner = hyper_rustls::HttpsConnector<HttpConnector>;
type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a warm connection waits for a pool that needs it.
const WARM_FOR: Duration = Duration::from_secs(20);

/// scheme, host, port
type Origin = (String, String, u16);
/// The warm connections of each origin, with when each was opened.
type Waiting = HashMap<Origin, Vec<(Instant, Stream)>>;

#[derive(Clone)]
pub struct Warm {
    inner: Inner,
    waiting: Arc<Mutex<Waiting>>,
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
    pub fn new(inner: Inner) -> Warm {
        Warm {
            inner,
            waiting: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens `n` connections to `uri`'s origin in the background (minus those already
    /// waiting). Failures are ignored: the pools will connect by themselves.
    pub fn open(&self, uri: &Uri, n: usize) {
        let Some(key) = origin(uri) else { return };
        let have = self.lock().get(&key).map_or(0, Vec::len);
        for _ in have..n {
            let mut inner = self.inner.clone();
            let (uri, key, waiting) = (uri.clone(), key.clone(), self.waiting.clone());
            tokio::spawn(async move {
                if let Ok(stream) = inner.call(uri).await {
                    let mut map = waiting.lock().unwrap_or_else(|e| e.into_inner());
                    map.entry(key).or_default().push((Instant::now(), stream));
                }
            });
        }
    }

    /// A warm connection to `uri`'s origin, if one is waiting and fresh.
    fn take(&self, uri: &Uri) -> Option<Stream> {
        let key = origin(uri)?;
        let mut map = self.lock();
        let list = map.get_mut(&key)?;
        list.retain(|(at, _)| at.elapsed() < WARM_FOR);
        let stream = list.pop().map(|(_, s)| s);
        if list.is_empty() {
            map.remove(&key);
        }
        stream
    }
}

impl Service<Uri> for Warm {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if let Some(stream) = self.take(&uri) {
            return Box::pin(async move { Ok(stream) });
        }
        Box::pin(self.inner.call(uri))
    }
}
