//! The direct transport: our own hyper client for requests that no proxy may touch.
//!
//! Why not reqwest for these too: reqwest gives no say over hyper's HTTP/1 read buffer,
//! which grows to ~400 KiB per connection. Each body chunk is a slice of that buffer and
//! pins all of it until the chunk is written; with one chunk in hyper's channel, one
//! being written and one buffer filling, a connection held ~1.2 MiB, and 64 connections
//! ~55 MiB of heap (heaptrack, 4 GiB file). Here the buffer is capped at
//! [`READ_BUFFER`], which on loopback was also faster (less memory to touch).
//!
//! What reqwest did for us is done here by the same rules: TLS through rustls with the
//! platform verifier (its roots loaded on first use, see `roots`) and ALPN
//! `h2`/`http/1.1`; `User-Agent` and `Accept: */*`; URL
//! credentials sent as Basic authorization and removed from the URL; redirects followed
//! up to [`MAX_REDIRECTS`], only to http and https, dropping credentials when the origin
//! changes. Proxied requests still go through reqwest (see `http::Client`).

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use reqwest::header::{self, HeaderMap, HeaderValue};
use url::Url;

use crate::error::{Error, ErrorCode, Result};
use crate::http::{ClientConfig, MAX_REDIRECTS, append_causes, is_tls_error};
use crate::roots::LazyRoots;

/// The most an HTTP/1 connection buffers from its socket (hyper's minimum is 8 KiB).
pub const READ_BUFFER: usize = 64 * 1024;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

#[derive(Clone)]
pub struct Direct {
    client: LegacyClient<Connector, Empty<Bytes>>,
    user_agent: HeaderValue,
}

impl Direct {
    pub fn build(cfg: &ClientConfig) -> Result<Direct> {
        let user_agent = HeaderValue::from_str(&cfg.user_agent).map_err(|_| {
            Error::new(
                ErrorCode::InvalidInput,
                "the user agent is not a valid header value",
            )
        })?;
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
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = LegacyClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(cfg.max_idle_per_host.max(1))
            .http1_max_buf_size(READ_BUFFER)
            // HTTP/2 multiplexes our ranges on one connection; BDP-sized windows keep
            // that connection from being flow-control bound.
            .http2_adaptive_window(true)
            .timer(TokioTimer::new())
            .build(https);
        Ok(Direct { client, user_agent })
    }

    /// Sends a GET with `headers`, following redirects. Returns the final URL (without
    /// credentials) and the response, which may still be a redirect whose `Location`
    /// cannot be followed (`http::status_error` explains those).
    pub async fn get(
        &self,
        url: &Url,
        mut headers: HeaderMap,
    ) -> Result<(Url, hyper::Response<Incoming>)> {
        let mut url = url.clone();
        // A fragment is never sent (and `http::Uri` refuses one).
        url.set_fragment(None);
        if !headers.contains_key(header::USER_AGENT) {
            headers.insert(header::USER_AGENT, self.user_agent.clone());
        }
        if !headers.contains_key(header::ACCEPT) {
            headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        if let Some(auth) = take_credentials(&mut url) {
            headers.insert(header::AUTHORIZATION, auth);
        }
        for hop in 0..=MAX_REDIRECTS {
            let mut req = hyper::Request::get(url.as_str())
                .body(Empty::new())
                .map_err(|e| Error::new(ErrorCode::InvalidInput, format!("bad request: {e}")))?;
            *req.headers_mut() = headers.clone();
            let resp = self.client.request(req).await.map_err(|e| classify(&e))?;
            let Some(next) = redirect_target(&url, &resp) else {
                return Ok((url, resp));
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
            if !same_origin(&url, &next) {
                for h in [
                    header::AUTHORIZATION,
                    header::COOKIE,
                    header::PROXY_AUTHORIZATION,
                    header::WWW_AUTHENTICATE,
                ] {
                    headers.remove(h);
                }
                headers.remove("cookie2");
            }
            url = next;
        }
        // The loop returns on every path; this keeps the compiler content.
        Err(Error::new(
            ErrorCode::TooManyRedirects,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }
}

/// The next URL of a redirect response we would follow; None for any other response, or
/// a redirect without a usable `Location` (handed back to the caller).
fn redirect_target(url: &Url, resp: &hyper::Response<Incoming>) -> Option<Url> {
    if !matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = resp.headers().get(header::LOCATION)?.to_str().ok()?;
    let mut next = url.join(location).ok()?;
    next.set_fragment(None); // never sent
    Some(next)
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Removes `user:password@` from `url` and returns it as a Basic authorization value.
fn take_credentials(url: &mut Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_decode(s);
    let user = decode(url.username());
    let pass = url.password().map(decode);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut plain = user;
    plain.push(b':');
    if let Some(p) = pass {
        plain.extend_from_slice(&p);
    }
    let mut value = HeaderValue::from_str(&format!("Basic {}", base64(&plain))).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for group in input.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for k in 0..4 {
            if k <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * k) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The body's size from `Content-Length`, when the framing says it exactly.
pub fn content_length(resp: &hyper::Response<Incoming>) -> Option<u64> {
    resp.body().size_hint().exact()
}

/// The next piece of body data; None at its end.
pub async fn chunk(resp: &mut hyper::Response<Incoming>) -> Result<Option<Bytes>> {
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
                return Err(Error::transient(
                    ErrorCode::Network,
                    format!(
                        "reading the response body failed{}",
                        causes(&e as &(dyn StdError + 'static))
                    ),
                ));
            }
        }
    }
}

/// A transport failure as an engine error, with the same codes as `http::classify`.
fn classify(e: &hyper_util::client::legacy::Error) -> Error {
    let root: &(dyn StdError + 'static) = e;
    let mut tls = false;
    let mut timed_out = false;
    let mut source = Some(root);
    while let Some(s) = source {
        if is_tls_error(s) {
            tls = true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            timed_out = true;
        }
        source = s.source();
    }
    let kind = if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let detail = format!("{kind}{}", causes(root));
    if tls {
        return Error::new(ErrorCode::Tls, format!("TLS failure: {detail}"));
    }
    if timed_out {
        return Error::transient(ErrorCode::Timeout, format!("timed out: {detail}"));
    }
    Error::transient(ErrorCode::Network, detail)
}

/// `": cause: cause..."` for an error's sources, each once. hyper's messages name no
/// URL, so nothing secret can appear here.
fn causes(e: &(dyn StdError + 'static)) -> String {
    let mut text = String::new();
    append_causes(&mut text, e);
    if text.is_empty() {
        text = format!(": {e}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_leave_the_url() {
        let mut u = Url::parse("http://us%40er:p%3Aw@h:8080/p?q=1").unwrap();
        let v = take_credentials(&mut u).unwrap();
        assert_eq!(u.as_str(), "http://h:8080/p?q=1");
        // "us@er:p:w"
        assert_eq!(
            v.to_str().unwrap(),
            format!("Basic {}", base64(b"us@er:p:w"))
        );
        assert_eq!(base64(b"us@er:p:w"), "dXNAZXI6cDp3");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        let mut plain = Url::parse("http://h/p").unwrap();
        assert!(take_credentials(&mut plain).is_none());
    }

    #[test]
    fn origins() {
        let a = Url::parse("http://h/x").unwrap();
        assert!(same_origin(&a, &Url::parse("http://h:80/y").unwrap()));
        assert!(!same_origin(&a, &Url::parse("https://h/x").unwrap()));
        assert!(!same_origin(&a, &Url::parse("http://h:81/x").unwrap()));
        assert!(!same_origin(&a, &Url::parse("http://g/x").unwrap()));
    }
}
