//! The proxied transport: reqwest, for requests a proxy may carry (an explicit proxy, or
//! proxy variables in the environment), for its HTTP, HTTPS and SOCKS proxy support.
//!
//! It sends one request and follows nothing: redirects, credentials and error codes are
//! the policy layer's (`http`), exactly as for the direct transport. HTTP/1.1 only: each
//! request then has a TCP connection of its own, so `thread_count` counts connections
//! here too (HTTP/2 through a tunnel would put every request on one).

use std::error::Error as StdError;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use url::Url;

use super::{ClientConfig, Failure, FailureKind, ProxySetting, Transport, validate_proxy};
use crate::error::{Error, ErrorCode, Result};

#[derive(Clone)]
pub struct Proxied {
    client: reqwest::Client,
}

impl Proxied {
    pub fn build(cfg: &ClientConfig) -> Result<Proxied> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .pool_max_idle_per_host(cfg.connections.max(1))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .http1_only()
            .redirect(reqwest::redirect::Policy::none())
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
        let client = b.build().map_err(|e| {
            Error::new(ErrorCode::Network, format!("cannot build HTTP client: {e}"))
        })?;
        Ok(Proxied { client })
    }
}

impl Transport for Proxied {
    type Body = reqwest::Response;

    async fn send(
        &self,
        url: &Url,
        headers: HeaderMap,
    ) -> std::result::Result<reqwest::Response, Failure> {
        self.client
            .get(url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(|e| failure(&e))
    }
}

/// The next piece of body data; None at its end.
pub async fn chunk(resp: &mut reqwest::Response) -> std::result::Result<Option<Bytes>, Failure> {
    resp.chunk().await.map_err(|e| failure(&e))
}

/// A reqwest failure in the policy layer's terms. reqwest's own message names the URL,
/// query string included, which may carry a token: we describe the kind instead and list
/// the causes.
fn failure(e: &reqwest::Error) -> Failure {
    let (kind, what) = if e.is_connect() {
        (FailureKind::Connect, "cannot connect")
    } else if e.is_timeout() {
        (FailureKind::Timeout, "operation timed out")
    } else if e.is_body() || e.is_decode() {
        (FailureKind::Body, "reading the response body failed")
    } else if e.is_builder() {
        (FailureKind::Invalid, "request failed")
    } else {
        (FailureKind::Request, "request failed")
    };
    let root: &(dyn StdError + 'static) = e;
    Failure::from_chain(kind, what, root)
}
