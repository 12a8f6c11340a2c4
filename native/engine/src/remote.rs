//! Remote event sinks (ABI.md §6): every event also goes to a listener over TCP (one
//! JSON object per line) or a WebSocket (one text message each), as
//! `{"Type": ..., "Msg": "<msg JSON as a string>", "Event": {...}}`.
//!
//! A listener never slows a download: `emit` only queues. One writer task per sink
//! sends in order; when the queue grows, `update` messages are dropped first; every send
//! and connect is bounded in time; after [`MAX_FAILURES`] failures in a row, or more than
//! [`MAX_RECONNECTS`] reconnections, the sink gives up, and says so once as a `msg` event
//! on the local sink. So that this notice can never follow `end`, a [`Tee`] hands `end`
//! to the local sink through the writer, after the remote side is done with it; and so
//! that a listener that takes no data cannot hold `end` back, the sink gives up on it if
//! `end` has not gone through within [`END_GRACE`] (notice first, then `end`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{Error, Result};
use crate::events::{Event, EventKind, EventSink};

/// Above this many queued messages, `update`s are dropped.
const UPDATE_BACKLOG: usize = 256;
/// Above this many, everything is dropped (a dead listener cannot grow memory).
const HARD_BACKLOG: usize = 65_536;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Connect or send failures in a row before the sink gives up for good.
pub const MAX_FAILURES: u32 = 3;
/// Connections opened after the first, before the sink gives up on a flapping listener.
pub const MAX_RECONNECTS: u32 = 3;
/// How long `end` may wait for a slow listener before the listener is given up on.
pub const END_GRACE: Duration = Duration::from_secs(1);

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `host:port`, one JSON object per line.
    Tcp(String),
    /// `ws://` or `wss://` URL.
    WebSocket(String),
}

/// Reads the remote URL as ABI.md §6 does: a TCP `host:port` when `use_socket`, else a
/// WebSocket URL (`http://` → `ws://`, `https://` → `wss://`).
pub fn parse_target(url: &str, use_socket: bool) -> Result<Target> {
    let url = url.trim();
    let shown = quotable(url);
    if use_socket {
        let rest = url
            .split_once("://")
            .map(|(_, r)| r)
            .unwrap_or(url)
            .trim_end_matches('/');
        let ok = rest
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return Err(Error::invalid(format!(
                "remote_callback_url {shown:?} is not host:port (use_socket is true)"
            )));
        }
        return Ok(Target::Tcp(rest.to_owned()));
    }
    let ws = if let Some(r) = url.strip_prefix("http://") {
        format!("ws://{r}")
    } else if let Some(r) = url.strip_prefix("https://") {
        format!("wss://{r}")
    } else if url.starts_with("ws://") || url.starts_with("wss://") {
        url.to_owned()
    } else {
        return Err(Error::invalid(format!(
            "remote_callback_url {shown:?} must be an http(s):// or ws(s):// URL"
        )));
    };
    url::Url::parse(&ws)
        .map_err(|e| Error::invalid(format!("remote_callback_url {shown:?}: {e}")))?;
    Ok(Target::WebSocket(ws))
}

/// A refused URL as an error may quote it: without user info, query or fragment (it
/// may not parse, so this works on the text).
fn quotable(url: &str) -> String {
    let bare = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = match bare.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, bare),
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, None), |(a, p)| (a, Some(p)));
    let host = authority.rsplit('@').next().unwrap_or_default();
    let mut out = scheme.map_or_else(String::new, |s| format!("{s}://"));
    out.push_str(host);
    if let Some(p) = path {
        out.push('/');
        out.push_str(p);
    }
    out
}

/// The wire form of one event.
pub fn wire_message(e: &Event) -> String {
    json!({"Type": e.type_name(), "Msg": e.msg_json(), "Event": e.event_value()}).to_string()
}

enum Item {
    Event(Event),
    /// `end`, with its sequence number: handed to the local sink after the listener.
    End(Event, u64),
    Close,
}

/// What the writer, the `end` timers and `flush` share.
struct Shared {
    local: Arc<dyn EventSink>,
    target: String,
    /// Every emission this sink makes to the local sink goes under this lock, so the
    /// notice and `end` keep their order whoever sends them.
    gate: Mutex<Gate>,
    forwarded: Condvar,
    abandoned: AtomicBool,
}

#[derive(Default)]
struct Gate {
    notice_sent: bool,
    /// Sequence number of the last `end` handed to the local sink.
    ends_forwarded: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notice(&self, gate: &mut Gate, why: &str) {
        if !gate.notice_sent {
            gate.notice_sent = true;
            self.local.emit(Event::global(EventKind::Msg {
                text: format!(
                    "Remote event listener {} {why}; events are no longer sent to it",
                    self.target
                ),
            }));
        }
    }

    /// The writer is done with `end` number `seq`: hand it on, unless a timer did.
    fn forward_end(&self, event: Event, seq: u64) {
        let mut g = self.lock();
        if g.ends_forwarded < seq {
            self.local.emit(event);
            g.ends_forwarded = seq;
            self.forwarded.notify_all();
        }
    }

    /// `end` number `seq` waited too long: give the listener up, say so, hand `end` on.
    fn force_end(&self, event: Event, seq: u64) {
        let mut g = self.lock();
        if g.ends_forwarded < seq {
            self.abandoned.store(true, Ordering::Relaxed);
            self.notice(&mut g, "is not keeping up");
            self.local.emit(event);
            g.ends_forwarded = seq;
            self.forwarded.notify_all();
        }
    }
}

pub struct RemoteSink {
    tx: mpsc::UnboundedSender<Item>,
    backlog: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    ends: AtomicU64,
}

impl RemoteSink {
    /// Starts the writer task; connecting happens there, lazily.
    pub fn start(target: Target, local: Arc<dyn EventSink>) -> Result<Self> {
        let rt = crate::runtime::runtime()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            local,
            target: describe(&target),
            gate: Mutex::new(Gate::default()),
            forwarded: Condvar::new(),
            abandoned: AtomicBool::new(false),
        });
        rt.spawn(writer(target, rx, backlog.clone(), shared.clone()));
        Ok(RemoteSink {
            tx,
            backlog,
            shared,
            ends: AtomicU64::new(0),
        })
    }

    /// Queues `end` for the listener; it reaches the local sink after the listener had
    /// it, or after [`END_GRACE`], whichever is first.
    fn queue_end(&self, event: Event) {
        let seq = self.ends.fetch_add(1, Ordering::Relaxed) + 1;
        let shared = self.shared.clone();
        let late = event.clone();
        if self.tx.send(Item::End(event, seq)).is_err() {
            shared.force_end(late, seq);
            return;
        }
        match crate::runtime::runtime() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(END_GRACE).await;
                    shared.force_end(late, seq);
                });
            }
            Err(_) => shared.force_end(late, seq),
        }
    }
}

impl EventSink for RemoteSink {
    fn emit(&self, event: Event) {
        if matches!(event.kind, EventKind::End) {
            return self.queue_end(event);
        }
        let queued = self.backlog.load(Ordering::Relaxed);
        if queued >= HARD_BACKLOG || (event.is_update() && queued >= UPDATE_BACKLOG) {
            return;
        }
        self.backlog.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Item::Event(event)).is_err() {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Waits (at most a little over [`END_GRACE`]) until the last `end` was handed on.
    fn flush(&self) {
        let want = self.ends.load(Ordering::Relaxed);
        let deadline = std::time::Instant::now() + END_GRACE + Duration::from_millis(500);
        let mut g = self.shared.lock();
        while g.ends_forwarded < want {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            g = self
                .shared
                .forwarded
                .wait_timeout(g, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

impl Drop for RemoteSink {
    fn drop(&mut self) {
        let _ = self.tx.send(Item::Close);
    }
}

/// Sends every event to the local sink and, when there is one, the remote one.
pub struct Tee {
    pub local: Arc<dyn EventSink>,
    pub remote: Option<RemoteSink>,
}

impl EventSink for Tee {
    fn emit(&self, event: Event) {
        match &self.remote {
            // `end` reaches the local sink through the remote sink, so a notice about
            // the listener cannot come after it.
            Some(r) if matches!(event.kind, EventKind::End) => r.emit(event),
            Some(r) => {
                r.emit(event.clone());
                self.local.emit(event);
            }
            None => self.local.emit(event),
        }
    }

    fn flush(&self) {
        if let Some(r) = &self.remote {
            r.flush();
        }
        self.local.flush();
    }
}

enum Conn {
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
}

impl Conn {
    async fn open(target: &Target) -> std::result::Result<Conn, String> {
        match target {
            Target::Tcp(addr) => {
                let s = TcpStream::connect(addr.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = s.set_nodelay(true);
                Ok(Conn::Tcp(s))
            }
            Target::WebSocket(url) => {
                let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Conn::Ws(Box::new(ws)))
            }
        }
    }

    /// False when a TCP listener has visibly closed its end (a write would still
    /// "succeed" once into a dead socket and lose the event).
    fn alive(&self) -> bool {
        match self {
            Conn::Tcp(s) => {
                let mut probe = [0u8; 256];
                match s.try_read(&mut probe) {
                    Ok(0) => false, // the listener closed its end
                    Ok(_) => true,  // it talks; what it says is ignored
                    Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                }
            }
            Conn::Ws(_) => true,
        }
    }

    async fn send(&mut self, text: &str) -> std::result::Result<(), String> {
        match self {
            Conn::Tcp(s) => {
                let mut line = Vec::with_capacity(text.len() + 1);
                line.extend_from_slice(text.as_bytes());
                line.push(b'\n');
                s.write_all(&line).await.map_err(|e| e.to_string())
            }
            Conn::Ws(ws) => ws
                .send(Message::text(text.to_owned()))
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn close(self) {
        match self {
            Conn::Tcp(mut s) => {
                let _ = s.shutdown().await;
            }
            Conn::Ws(mut ws) => {
                let _ = ws.close().await;
            }
        }
    }
}

/// The target as events may show it: no user info, no query string (tokens live there).
fn describe(target: &Target) -> String {
    match target {
        Target::Tcp(a) => a.rsplit('@').next().unwrap_or(a).to_owned(),
        Target::WebSocket(u) => match url::Url::parse(u) {
            Ok(parsed) => crate::http::redact(&parsed),
            Err(_) => "(unparsable URL)".to_owned(),
        },
    }
}

async fn writer(
    target: Target,
    mut rx: mpsc::UnboundedReceiver<Item>,
    backlog: Arc<AtomicUsize>,
    shared: Arc<Shared>,
) {
    let mut conn: Option<Conn> = None;
    let mut failures = 0u32;
    let mut connects = 0u32;
    let mut gave_up = false;
    while let Some(item) = rx.recv().await {
        let (event, end_seq) = match item {
            Item::Event(e) => {
                backlog.fetch_sub(1, Ordering::Relaxed);
                (e, None)
            }
            Item::End(e, seq) => (e, Some(seq)),
            Item::Close => break,
        };
        gave_up |= shared.abandoned.load(Ordering::Relaxed);
        if !gave_up {
            let text = wire_message(&event);
            let mut last_error = String::new();
            let mut sent = false;
            while failures < MAX_FAILURES && !shared.abandoned.load(Ordering::Relaxed) {
                if conn.as_ref().is_some_and(|c| !c.alive()) {
                    conn = None;
                    last_error = "the listener closed the connection".into();
                }
                if conn.is_none() {
                    // The first connection plus MAX_RECONNECTS more, then no more.
                    if connects > MAX_RECONNECTS {
                        last_error =
                            format!("{last_error}; {MAX_RECONNECTS} reconnections used up");
                        break;
                    }
                    connects += 1;
                    match tokio::time::timeout(CONNECT_TIMEOUT, Conn::open(&target)).await {
                        Ok(Ok(c)) => conn = Some(c),
                        Ok(Err(e)) => last_error = e,
                        Err(_) => last_error = "connect timed out".into(),
                    }
                }
                if let Some(c) = conn.as_mut() {
                    match tokio::time::timeout(SEND_TIMEOUT, c.send(&text)).await {
                        Ok(Ok(())) => {
                            failures = 0;
                            sent = true;
                            break;
                        }
                        Ok(Err(e)) => last_error = e,
                        Err(_) => last_error = "send timed out".into(),
                    }
                    conn = None;
                }
                failures += 1;
                if failures < MAX_FAILURES {
                    tokio::time::sleep(Duration::from_millis(100 << failures)).await;
                }
            }
            if !sent {
                gave_up = true;
                if let Some(c) = conn.take() {
                    c.close().await;
                }
                if !shared.abandoned.load(Ordering::Relaxed) {
                    let mut g = shared.lock();
                    shared.notice(&mut g, &format!("is unreachable ({last_error})"));
                }
            }
        }
        if let Some(seq) = end_seq {
            shared.forward_end(event, seq);
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_the_abi() {
        assert_eq!(
            parse_target("127.0.0.1:9000", true).unwrap(),
            Target::Tcp("127.0.0.1:9000".into())
        );
        assert_eq!(
            parse_target("tcp://h:1/", true).unwrap(),
            Target::Tcp("h:1".into())
        );
        assert_eq!(
            parse_target("http://h:1/ev", false).unwrap(),
            Target::WebSocket("ws://h:1/ev".into())
        );
        assert_eq!(
            parse_target("https://h/ev", false).unwrap(),
            Target::WebSocket("wss://h/ev".into())
        );
        assert!(parse_target("h", true).is_err());
        assert!(parse_target("h:x", true).is_err());
        assert!(parse_target("ftp://h", false).is_err());
    }

    #[test]
    fn refused_urls_are_quoted_without_secrets() {
        for (url, socket) in [
            ("ftp://u:pw@h:21/x?t=tok", false),
            ("ws://u:pw@[::1/ev?t=tok", false),
            ("u:pw@host", true),
            ("http://h:1/ev?t=tok", true),
        ] {
            let e = parse_target(url, socket).unwrap_err().message;
            assert!(!e.contains("pw") && !e.contains("tok"), "{e}");
        }
        assert_eq!(quotable("ftp://u:pw@h:21/x?t=1"), "ftp://h:21/x");
        assert_eq!(quotable("u:pw@host"), "host");
    }

    #[test]
    fn descriptions_hide_credentials() {
        let t = parse_target("ws://u:pw@h:1/ev?token=x", false).unwrap();
        assert_eq!(describe(&t), "ws://h:1/ev");
        assert_eq!(describe(&Target::Tcp("u:p@h:1".into())), "h:1");
    }

    #[test]
    fn wire_message_carries_msg_as_a_string() {
        let e = Event::global(EventKind::Msg { text: "hi".into() });
        let v: serde_json::Value = serde_json::from_str(&wire_message(&e)).unwrap();
        assert_eq!(v["Type"], "msg");
        assert_eq!(v["Msg"], "{\"Text\":\"hi\"}");
        assert_eq!(v["Event"]["ShowName"], "Global");
    }
}
