//! The registry of URL schemes the engine downloads from, and the protocol behind each.
//!
//! Contract: a URL whose scheme is not listed here is refused when the task list is
//! read (`task::parse_url`); a listed one is downloaded by the source of its
//! [`Protocol`] (`source::open`). This module is a leaf: the task list may ask it
//! without depending on the stages.

/// A family of schemes served by one source module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 and HTTP/2, plain or over TLS (`source::web`).
    Web,
}

/// Every scheme, with its protocol: the one list of what the engine can download.
pub const SCHEMES: &[(&str, Protocol)] = &[("http", Protocol::Web), ("https", Protocol::Web)];

/// The protocol of `scheme` (lower case, as `url` gives it), if the engine has one.
pub fn protocol(scheme: &str) -> Option<Protocol> {
    SCHEMES
        .iter()
        .find(|(name, _)| *name == scheme)
        .map(|(_, p)| *p)
}

/// The schemes as a sentence for error messages: "http and https".
pub fn names() -> String {
    let names: Vec<&str> = SCHEMES.iter().map(|(n, _)| *n).collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_its_schemes() {
        assert_eq!(protocol("https"), Some(Protocol::Web));
        assert_eq!(protocol("ftp"), None);
        assert_eq!(names(), "http and https");
    }
}
