//! Credentials and which requests may carry them.
//!
//! URL user info (`https://user:pw@host/`) is never sent in the URL: it becomes a Basic
//! `Authorization` header. Headers that authenticate the user to one origin are dropped
//! before a request goes to another origin (a cross-origin redirect, or range requests
//! sent straight to where a redirect led), as browsers and curl do.

use reqwest::header::{self, HeaderMap, HeaderValue};
use url::Url;

/// Headers that speak for the user to one origin only.
const ORIGIN_BOUND: [&str; 5] = [
    "authorization",
    "cookie",
    "cookie2",
    "proxy-authorization",
    "www-authenticate",
];

/// Same scheme, host and port (with the scheme's default port filled in).
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Drops the origin-bound headers when `to` is not `from`'s origin.
pub fn strip_cross_origin(headers: &mut HeaderMap, from: &Url, to: &Url) {
    if !same_origin(from, to) {
        for name in ORIGIN_BOUND {
            headers.remove(name);
        }
    }
}

/// Removes `user:password@` from `url` and returns it as a Basic authorization value.
pub fn take_from_url(url: &mut Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let user = percent_decode(url.username());
    let pass = url.password().map(percent_decode);
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

/// Moves URL credentials into `headers`; they replace an `Authorization` header, being
/// the more specific of the two.
pub fn apply_url_credentials(url: &mut Url, headers: &mut HeaderMap) {
    if let Some(auth) = take_from_url(url) {
        headers.insert(header::AUTHORIZATION, auth);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_leave_the_url() {
        let mut u = Url::parse("http://us%40er:p%3Aw@h:8080/p?q=1").unwrap();
        let v = take_from_url(&mut u).unwrap();
        assert_eq!(u.as_str(), "http://h:8080/p?q=1");
        assert_eq!(
            v.to_str().unwrap(),
            format!("Basic {}", base64(b"us@er:p:w"))
        );
        assert_eq!(base64(b"us@er:p:w"), "dXNAZXI6cDp3");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        let mut plain = Url::parse("http://h/p").unwrap();
        assert!(take_from_url(&mut plain).is_none());
    }

    #[test]
    fn origins() {
        let a = Url::parse("http://h/x").unwrap();
        assert!(same_origin(&a, &Url::parse("http://h:80/y").unwrap()));
        assert!(!same_origin(&a, &Url::parse("https://h/x").unwrap()));
        assert!(!same_origin(&a, &Url::parse("http://h:81/x").unwrap()));
        assert!(!same_origin(&a, &Url::parse("http://g/x").unwrap()));
    }

    #[test]
    fn cross_origin_requests_lose_every_origin_bound_header() {
        let mut h = HeaderMap::new();
        for name in ORIGIN_BOUND.iter().chain(["x-keep"].iter()) {
            h.insert(*name, HeaderValue::from_static("v"));
        }
        let a = Url::parse("https://a/x").unwrap();
        let mut same = h.clone();
        strip_cross_origin(&mut same, &a, &Url::parse("https://a:443/y").unwrap());
        assert_eq!(same.len(), ORIGIN_BOUND.len() + 1);
        strip_cross_origin(&mut h, &a, &Url::parse("https://b/x").unwrap());
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }
}
