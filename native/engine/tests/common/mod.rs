//! What the integration tests' loopback HTTP/1.1 servers and event sinks share.

// Each test binary compiles this module and uses its own share of it.
#![allow(dead_code)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tthsd_engine::{Event, EventKind, EventSink};

/// The next request head on `sock` (without its blank line), keeping in `buf` what came
/// after it; None once the client closed.
pub async fn read_head<R: AsyncRead + Unpin>(sock: &mut R, buf: &mut Vec<u8>) -> Option<String> {
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let mut tmp = [0u8; 4096];
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end + 4);
    Some(head)
}

/// The `[start, end)` a request head's `Range: bytes=a-b` asks of a body of `len` bytes;
/// the whole body without one.
pub fn requested_range(head: &str, len: u64) -> (u64, u64) {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("range")
                .then(|| v.trim().to_string())
        })
        .and_then(|r| {
            let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
            let a: u64 = a.parse().ok()?;
            let b = b.parse::<u64>().map_or(len - 1, |b| b.min(len - 1));
            Some((a, b + 1))
        })
        .unwrap_or((0, len))
}

/// Every event of a run, in order.
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

impl Collect {
    pub fn types(&self) -> Vec<&'static str> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.type_name())
            .collect()
    }

    /// Waits for the run's `end`, failing the test after `timeout`.
    pub fn wait_end(&self, timeout: Duration) {
        let t0 = Instant::now();
        while !self.types().contains(&"end") {
            assert!(t0.elapsed() < timeout, "no end event: {:?}", self.types());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The `msg` texts, and each `err` as "err: ...".
    pub fn messages(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Msg { text } => Some(text.clone()),
                EventKind::Err { error, .. } => Some(format!("err: {error}")),
                _ => None,
            })
            .collect()
    }

    /// Some file ended with success.
    pub fn succeeded(&self) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e.kind, EventKind::EndOne { success: true, .. }))
    }
}
