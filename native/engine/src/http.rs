//! The HTTP edge: building the client, sending requests, reading the headers we trust,
//! and turning transport failures into engine errors.
//!
//! Two transports sit behind [`Client`]: our own hyper client (`transport`, bounded read
//! buffers) whenever no proxy can apply, and reqwest when one may (an explicit proxy, or
//! proxy variables in the environment), for its proxy support. Both never decompress (no
//! compression feature is compiled in, and we never send `Accept-Encoding`), follow at
//! most [`MAX_REDIRECTS`] redirects and only to http/https, and drop
//! `Authorization`/`Cookie` when a redirect changes origin.

use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::body::Incoming;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::error::{Error, ErrorCode, Result};
use crate::journal::Validators;
use crate::retry::{parse_retry_after, status_is_transient};
use crate::transport::{self, Direct};

/// The client of one downloader's settings: cheap to clone (connections are shared).
#[derive(Clone)]
pub enum Client {
    /// No proxy can apply: our hyper client.
    Direct(std::sync::Arc<Direct>),
    /// A proxy may apply: reqwest, which knows proxies.
    Proxied(reqwest::Client),
}

/// A response of either transport, with the URL it finally came from.
pub struct Response {
    url: url::Url,
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

    /// The URL after redirects, without credentials.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The body's length when the framing gives it exactly.
    pub fn content_length(&self) -> Option<u64> {
        match &self.inner {
            Inner::Direct(r) => transport::content_length(r),
            Inner::Proxied(r) => r.content_length(),
        }
    }

    /// The next piece of the body; None at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        match &mut self.inner {
            Inner::Direct(r) => transport::chunk(r).await,
            Inner::Proxied(r) => r.chunk().await.map_err(|e| classify(&e)),
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
    pub max_idle_per_host: usize,
}

#[derive(Debug)]
struct TooManyRedirects;
impl fmt::Display for TooManyRedirects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {MAX_REDIRECTS} redirects")
    }
}
impl StdError for TooManyRedirects {}

#[derive(Debug)]
struct RefusedRedirect(String);
impl fmt::Display for RefusedRedirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused redirect to {}", self.0)
    }
}
impl StdError for RefusedRedirect {}

/// Checks a proxy URL's form without building anything.
pub fn validate_proxy(url: &str) -> Result<()> {
    let parsed = url::Url::parse(url)
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
    if proxy_may_apply(&cfg.proxy) {
        Ok(Client::Proxied(build_reqwest(cfg)?))
    } else {
        Ok(Client::Direct(std::sync::Arc::new(Direct::build(cfg)?)))
    }
}

fn build_reqwest(cfg: &ClientConfig) -> Result<reqwest::Client> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(TooManyRedirects);
        }
        match attempt.url().scheme() {
            "http" | "https" => attempt.follow(),
            other => {
                let target = format!("a {other}: URL");
                attempt.error(RefusedRedirect(target))
            }
        }
    });
    let mut b = reqwest::Client::builder()
        .user_agent(cfg.user_agent.clone())
        .connect_timeout(cfg.connect_timeout)
        .pool_max_idle_per_host(cfg.max_idle_per_host.max(1))
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        // HTTP/2 (negotiated by ALPN on https) multiplexes our ranges on one connection;
        // BDP-sized windows keep that connection from being flow-control bound.
        .http2_adaptive_window(true)
        .redirect(policy)
        .referer(false);
    match &cfg.proxy {
        ProxySetting::Environment => {}
        ProxySetting::Direct => b = b.no_proxy(),
        ProxySetting::Url(u) => {
            validate_proxy(u)?;
            // NO_PROXY applies to an explicit proxy too, as curl applies it to -x.
            let p = reqwest::Proxy::all(u.as_str())
                .map_err(|e| Error::new(ErrorCode::Proxy, format!("proxy rejected: {e}")))?
                .no_proxy(reqwest::NoProxy::from_env());
            b = b.proxy(p);
        }
    }
    b.build()
        .map_err(|e| Error::new(ErrorCode::Network, format!("cannot build HTTP client: {e}")))
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

/// Sends one GET with an optional range and `If-Range`.
pub async fn get(
    client: &Client,
    url: &url::Url,
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
    match client {
        Client::Direct(d) => {
            let (url, resp) = d.get(url, headers).await?;
            Ok(Response {
                url,
                inner: Inner::Direct(resp),
            })
        }
        Client::Proxied(c) => {
            let resp = c
                .get(url.clone())
                .headers(headers)
                .send()
                .await
                .map_err(|e| classify(&e))?;
            Ok(Response {
                url: resp.url().clone(),
                inner: Inner::Proxied(resp),
            })
        }
    }
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

pub fn is_partial(resp: &Response) -> bool {
    resp.status() == StatusCode::PARTIAL_CONTENT
}

/// The URL without user info, query or fragment: safe for events and logs.
pub fn redact(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Turns a transport error into an engine error with the right code and retry class.
pub fn classify(e: &reqwest::Error) -> Error {
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    let mut tls = false;
    while let Some(s) = source {
        if s.downcast_ref::<TooManyRedirects>().is_some() {
            return Error::new(ErrorCode::TooManyRedirects, s.to_string());
        }
        if let Some(r) = s.downcast_ref::<RefusedRedirect>() {
            return Error::new(ErrorCode::BadRedirect, r.to_string());
        }
        if is_tls_error(s) {
            tls = true;
        }
        source = s.source();
    }
    let detail = chain_text(e);
    if tls {
        return Error::new(ErrorCode::Tls, format!("TLS failure: {detail}"));
    }
    if e.is_redirect() {
        return Error::new(ErrorCode::BadRedirect, detail);
    }
    if e.is_timeout() {
        return Error::transient(ErrorCode::Timeout, format!("timed out: {detail}"));
    }
    if e.is_builder() {
        return Error::new(ErrorCode::InvalidInput, detail);
    }
    Error::transient(ErrorCode::Network, detail)
}

/// True when a rustls error is anywhere inside `s`. `io::Error` hides what it wraps from
/// `source()` (and rustls' errors arrive as an io::Error inside an io::Error), so the
/// wrapped errors are opened one by one.
pub(crate) fn is_tls_error(s: &(dyn StdError + 'static)) -> bool {
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

/// The error's causes in one line. reqwest's own message names the URL, query string
/// included, which may carry a token: we describe the kind instead and list the causes.
fn chain_text(e: &reqwest::Error) -> String {
    let mut text = String::from(if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "operation timed out"
    } else if e.is_body() || e.is_decode() {
        "reading the response body failed"
    } else if e.is_redirect() {
        "redirect failed"
    } else {
        "request failed"
    });
    append_causes(&mut text, e);
    text
}

/// Appends `": cause"` for each of `e`'s sources not already in `text`.
pub(crate) fn append_causes(text: &mut String, e: &dyn StdError) {
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
        let u = url::Url::parse("https://user:pw@h/p?token=1#f").unwrap();
        assert_eq!(redact(&u), "https://h/p");
    }
}
