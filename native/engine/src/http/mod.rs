//! The HTTP policy layer: what every request obeys, whichever transport carries it.
//!
//! Written once here: redirects (at most [`MAX_REDIRECTS`], only to http and https),
//! credentials (URL user info sent as Basic authorization; origin-bound headers dropped
//! when a request leaves the origin, see `credentials`), the default `User-Agent` and
//! `Accept`, error classification ([`classify`]), and what a status means
//! ([`status_error`], with `Retry-After`). Never any decompression: no compression
//! feature is compiled in and we never send `Accept-Encoding`.
//!
//! Below it, a [`Transport`] sends one request: `direct` (our hyper client, HTTP/1.1 and
//! HTTP/2, bounded buffers) when no proxy can apply, `proxied` (reqwest, for its proxy
//! support) when one may. Above them, `lanes` holds the connection budget: `thread_count`
//! TCP connections on every protocol.

mod credentials;
mod direct;
mod lanes;
mod proxied;
mod warm;

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::body::Incoming;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use url::Url;

pub use credentials::{same_origin, strip_cross_origin};
pub use lanes::Slot;

use crate::error::{Error, ErrorCode, Result};
use crate::journal::Validators;
use crate::retry::{parse_retry_after, status_is_pushback, status_is_transient};
use lanes::{Backend, Lanes, Pool};

pub const MAX_REDIRECTS: usize = 10;

/// Where requests go through.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProxySetting {
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY` from the environment.
    #[default]
    Environment,
    /// Direct connections only.
    Direct,
    /// This proxy for every request (`http://`, `https://`, `socks5://`, `socks5h://`).
    Url(String),
}

/// What the client is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub user_agent: String,
    pub connect_timeout: Duration,
    pub proxy: ProxySetting,
    /// TCP connections at most (`thread_count`).
    pub connections: usize,
    /// Offer HTTP/2 as well as HTTP/1.1 (ALPN) on TLS connections. Worth it only where
    /// several files share the connections: a connection that speaks HTTP/2 carries up
    /// to `lanes::H2_STREAMS` of them at once. Ranges of one file go one per connection
    /// either way, and there HTTP/2's framing only costs: 1 GiB over TLS on loopback at
    /// 16 connections, against an nginx offering both, took 1.75 CPU-s and 28 MiB of peak
    /// RSS over HTTP/1.1 against 2.29 CPU-s and 117 MiB over HTTP/2 (2.17 s against
    /// 2.25 s), and 64 MiB through a 40 ms, 5 MB/s-per-connection link 1.16 s against
    /// 1.19 s (bench, medians of 5).
    pub multiplex: bool,
}

/// What went wrong in a transport, before the policy gives it a code.
#[derive(Debug)]
pub struct Failure {
    kind: FailureKind,
    detail: String,
    tls: bool,
    timed_out: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Connect,
    Timeout,
    Body,
    Request,
    /// The request could not even be formed.
    Invalid,
}

impl Failure {
    fn new(kind: FailureKind, detail: String) -> Failure {
        Failure {
            kind,
            detail,
            tls: false,
            timed_out: false,
        }
    }

    /// `what` and the causes below `root`, noting TLS and timeouts anywhere in the chain.
    fn from_chain(kind: FailureKind, what: &str, root: &(dyn StdError + 'static)) -> Failure {
        let mut detail = what.to_owned();
        append_causes(&mut detail, root);
        let mut f = Failure::new(kind, detail);
        let mut source = Some(root);
        while let Some(s) = source {
            f.tls |= is_tls_error(s);
            f.timed_out |= s
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
            source = s.source();
        }
        f
    }
}

/// Sends one GET as it is told: no redirects, no defaults. The two implementations are
/// `direct::Direct` and `proxied::Proxied`.
pub trait Transport {
    type Body;
    fn send(
        &self,
        url: &Url,
        headers: HeaderMap,
    ) -> impl Future<Output = std::result::Result<Self::Body, Failure>> + Send;
}

/// The client of one downloader's settings: cheap to clone (connections are shared).
#[derive(Clone)]
pub struct Client {
    lanes: Arc<Lanes>,
    user_agent: HeaderValue,
}

impl Client {
    /// A request slot on one of the client's connections (waits for the budget).
    pub async fn acquire(&self) -> Result<Slot> {
        self.lanes.acquire().await
    }

    /// Requests that may be in flight at once now: the connections, plus the extra
    /// streams of those that speak HTTP/2.
    pub fn capacity(&self) -> usize {
        self.lanes.capacity()
    }

    /// Opens up to `n` connections to `url`'s origin ahead of need (TCP and TLS, no
    /// request; see `warm`), for a file whose ranges may soon want them. Direct
    /// connections only.
    pub fn preconnect(&self, url: &Url, n: usize) {
        if let Ok(uri) = url.as_str().parse::<hyper::Uri>() {
            self.lanes.preconnect(&uri, n);
        }
    }
}

/// Whether a proxy may apply under `setting`: an explicit one, or (for the environment)
/// any proxy variable reqwest reads.
fn proxy_may_apply(setting: &ProxySetting) -> bool {
    match setting {
        ProxySetting::Direct => false,
        ProxySetting::Url(_) => true,
        ProxySetting::Environment => [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty())),
    }
}

/// Checks a proxy URL's form without building anything.
pub fn validate_proxy(url: &str) -> Result<()> {
    let parsed = Url::parse(url)
        .map_err(|e| Error::new(ErrorCode::Proxy, format!("proxy URL does not parse: {e}")))?;
    match parsed.scheme() {
        "http" | "https" | "socks5" | "socks5h" => {}
        s => {
            return Err(Error::new(
                ErrorCode::Proxy,
                format!("proxy scheme {s:?} is not http, https, socks5 or socks5h"),
            ));
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Error::new(ErrorCode::Proxy, "proxy URL has no host"));
    }
    Ok(())
}

pub fn build_client(cfg: &ClientConfig) -> Result<Client> {
    let user_agent = HeaderValue::from_str(&cfg.user_agent).map_err(|_| {
        Error::new(
            ErrorCode::InvalidInput,
            "the user agent is not a valid header value",
        )
    })?;
    let backend = if proxy_may_apply(&cfg.proxy) {
        Backend::Proxied(proxied::Proxied::build(cfg)?)
    } else {
        Backend::Direct(direct::Factory::new(cfg)?)
    };
    Ok(Client {
        lanes: Lanes::new(backend, cfg.connections),
        user_agent,
    })
}

/// Merges downloader-wide and per-task headers (the task's win).
pub fn merge_headers(global: &[(String, String)], task: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in global.iter().chain(task.iter()) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            map.insert(name, value);
        }
    }
    map
}

/// A response of either transport, with the URL it finally came from.
pub struct Response {
    url: Url,
    inner: Inner,
}

enum Inner {
    Direct(hyper::Response<Incoming>),
    Proxied(reqwest::Response),
}

impl Response {
    pub fn status(&self) -> StatusCode {
        match &self.inner {
            Inner::Direct(r) => r.status(),
            Inner::Proxied(r) => r.status(),
        }
    }

    pub fn headers(&self) -> &HeaderMap {
        match &self.inner {
            Inner::Direct(r) => r.headers(),
            Inner::Proxied(r) => r.headers(),
        }
    }

    fn is_http2(&self) -> bool {
        match &self.inner {
            Inner::Direct(r) => r.version() == hyper::Version::HTTP_2,
            Inner::Proxied(r) => r.version() == reqwest::Version::HTTP_2,
        }
    }

    /// The URL after redirects, without credentials.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The body's length when the framing gives it exactly.
    pub fn content_length(&self) -> Option<u64> {
        match &self.inner {
            Inner::Direct(r) => direct::content_length(r),
            Inner::Proxied(r) => r.content_length(),
        }
    }

    /// The next piece of the body; None at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        let next = match &mut self.inner {
            Inner::Direct(r) => direct::chunk(r).await,
            Inner::Proxied(r) => proxied::chunk(r).await,
        };
        next.map_err(classify)
    }
}

/// Sends one GET (with an optional range and `If-Range`) on `slot`'s connection,
/// following redirects.
pub async fn get(
    client: &Client,
    slot: &Slot,
    url: &Url,
    headers: &HeaderMap,
    range: Option<String>,
    if_range: Option<&str>,
) -> Result<Response> {
    let mut headers = headers.clone();
    if let Some(r) = range {
        let r = HeaderValue::from_str(&r)
            .map_err(|_| Error::new(ErrorCode::InvalidInput, "bad Range value"))?;
        headers.insert(header::RANGE, r);
        if let Some(v) = if_range.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(header::IF_RANGE, v);
        }
    }
    if !headers.contains_key(header::USER_AGENT) {
        headers.insert(header::USER_AGENT, client.user_agent.clone());
    }
    if !headers.contains_key(header::ACCEPT) {
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    let mut url = url.clone();
    // A fragment is never sent (and `http::Uri` refuses one).
    url.set_fragment(None);
    credentials::apply_url_credentials(&mut url, &mut headers);
    for hop in 0..=MAX_REDIRECTS {
        let inner = match slot.pool() {
            Pool::Direct(d) => {
                Inner::Direct(d.send(&url, headers.clone()).await.map_err(classify)?)
            }
            Pool::Proxied(p) => {
                Inner::Proxied(p.send(&url, headers.clone()).await.map_err(classify)?)
            }
        };
        let resp = Response { url, inner };
        if resp.is_http2() {
            slot.learned_http2();
        }
        let Some(next) = redirect_target(&resp) else {
            return Ok(resp);
        };
        if hop == MAX_REDIRECTS {
            return Err(Error::new(
                ErrorCode::TooManyRedirects,
                format!("more than {MAX_REDIRECTS} redirects"),
            ));
        }
        if !matches!(next.scheme(), "http" | "https") {
            return Err(Error::new(
                ErrorCode::BadRedirect,
                format!("refused redirect to a {}: URL", next.scheme()),
            ));
        }
        strip_cross_origin(&mut headers, &resp.url, &next);
        url = next;
    }
    // The loop returns on every path; this keeps the compiler content.
    Err(Error::new(
        ErrorCode::TooManyRedirects,
        format!("more than {MAX_REDIRECTS} redirects"),
    ))
}

/// The next URL of a redirect response we would follow; None for any other response, or
/// a redirect without a usable `Location` (handed back to the caller: `status_error`
/// explains those).
fn redirect_target(resp: &Response) -> Option<Url> {
    if !matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = header_str(resp.headers(), header::LOCATION)?;
    let mut next = resp.url.join(location).ok()?;
    next.set_fragment(None); // never sent
    Some(next)
}

/// A response status that is not what we asked for, as an engine error.
pub fn status_error(resp: &Response) -> Error {
    let status = resp.status();
    if status.is_redirection() && resp.headers().contains_key(header::LOCATION) {
        // The client follows every redirect it can; one it hands back points somewhere
        // it cannot go (file:, data:, no host...). The Location itself is not quoted.
        let scheme = header_str(resp.headers(), header::LOCATION)
            .and_then(|l| l.split_once(':').map(|(s, _)| s.to_ascii_lowercase()))
            .filter(|s| {
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            })
            .unwrap_or_else(|| "an unusable".into());
        return Error::new(
            ErrorCode::BadRedirect,
            format!(
                "refused redirect (HTTP {}) to a {scheme}: location; only http and https are followed",
                status.as_u16()
            ),
        );
    }
    if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        return Error::new(
            ErrorCode::Proxy,
            "the proxy refused the request (HTTP 407 Proxy Authentication Required): check the credentials in the proxy URL",
        );
    }
    let mut err = Error::new(
        ErrorCode::HttpStatus,
        format!(
            "HTTP {} {} from {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            redact(resp.url())
        ),
    );
    err.transient = status_is_transient(status.as_u16());
    err.pushback = status_is_pushback(status.as_u16());
    err.retry_after = header_str(resp.headers(), header::RETRY_AFTER)
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    err
}

pub fn header_str(h: &HeaderMap, name: HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub fn validators(resp: &Response) -> Validators {
    Validators {
        etag: header_str(resp.headers(), header::ETAG).map(str::to_owned),
        last_modified: header_str(resp.headers(), header::LAST_MODIFIED).map(str::to_owned),
    }
}

/// The URL without user info, query or fragment: safe for events and logs.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// A transport failure as an engine error with its code and retry class: the one place
/// that decides what a failed request means.
fn classify(f: Failure) -> Error {
    if f.tls {
        return Error::new(ErrorCode::Tls, format!("TLS failure: {}", f.detail));
    }
    if f.kind == FailureKind::Timeout || f.timed_out {
        return Error::transient(ErrorCode::Timeout, format!("timed out: {}", f.detail));
    }
    if f.kind == FailureKind::Invalid {
        return Error::new(ErrorCode::InvalidInput, f.detail);
    }
    let mut e = Error::transient(ErrorCode::Network, f.detail);
    // Refused or reset before an answer: a host at its connection limit does that too.
    e.pushback = matches!(f.kind, FailureKind::Connect | FailureKind::Request);
    e
}

/// True when a rustls error is anywhere inside `s`. `io::Error` hides what it wraps from
/// `source()` (and rustls' errors arrive as an io::Error inside an io::Error), so the
/// wrapped errors are opened one by one.
fn is_tls_error(s: &(dyn StdError + 'static)) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(s);
    let mut depth = 0;
    while let Some(e) = current {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        depth += 1;
        if depth > 16 {
            return false;
        }
        current = match e.downcast_ref::<std::io::Error>() {
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn StdError + 'static)),
                None => None,
            },
            None => e.source(),
        };
    }
    false
}

/// Appends `": cause"` for each of `e`'s sources not already in `text`.
fn append_causes(text: &mut String, e: &dyn StdError) {
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_forms() {
        for ok in [
            "http://p:8080",
            "https://u:pw@p",
            "socks5://127.0.0.1:1080",
            "socks5h://h:1",
        ] {
            assert!(validate_proxy(ok).is_ok(), "{ok}");
        }
        for bad in ["", "p:8080x", "ftp://p", "socks4://p:1", "http://"] {
            assert!(validate_proxy(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn task_headers_override_global_ones() {
        let m = merge_headers(
            &[("X-A".into(), "1".into()), ("X-B".into(), "2".into())],
            &[("x-a".into(), "3".into())],
        );
        assert_eq!(m.get("x-a").unwrap(), "3");
        assert_eq!(m.get("x-b").unwrap(), "2");
    }

    #[test]
    fn redacts_credentials_and_queries() {
        let u = Url::parse("https://user:pw@h/p?token=1#f").unwrap();
        assert_eq!(redact(&u), "https://h/p");
    }

    #[test]
    fn failures_get_one_classification() {
        let t = classify(Failure::new(FailureKind::Timeout, "x".into()));
        assert_eq!((t.code, t.transient), (ErrorCode::Timeout, true));
        let n = classify(Failure::new(FailureKind::Connect, "x".into()));
        assert_eq!(
            (n.code, n.transient, n.pushback),
            (ErrorCode::Network, true, true)
        );
        let b = classify(Failure::new(FailureKind::Body, "x".into()));
        assert!(
            b.transient && !b.pushback,
            "a body cut short is not a refusal"
        );
        let i = classify(Failure::new(FailureKind::Invalid, "x".into()));
        assert_eq!((i.code, i.transient), (ErrorCode::InvalidInput, false));
        let mut tls = Failure::new(FailureKind::Connect, "x".into());
        tls.tls = true;
        assert_eq!(classify(tls).code, ErrorCode::Tls);
    }
}
