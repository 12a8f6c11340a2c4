//! Retries against a loopback server that fails chosen requests: a range that runs out of
//! retries hands its bytes back instead of failing the file, and a `Retry-After` on one
//! range holds back every request to that host.

mod common;

use common::Collect;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tthsd_engine::{Config, Downloader, EventKind, Mode, RetryPolicy, parse_tasks};

const MIB: u64 = 1024 * 1024;

/// Content whose every 8 bytes spell their own offset, so misplaced bytes show.
fn content(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    let mut off = 0u64;
    while v.len() < len {
        v.extend_from_slice(&off.to_be_bytes());
        off += 8;
    }
    v.truncate(len);
    v
}

/// A failure the server answers instead of the range.
#[derive(Clone, Copy)]
struct Fail {
    /// `Retry-After` seconds, if any.
    retry_after: Option<u64>,
    /// The status: 500 for a failure of that range (retried, handed back), 503 for a
    /// refusal, which also lowers the host's connection limit (`pushback`).
    status: u16,
}

/// Decides, from a request's range start and how many requests for that start came
/// before it, whether to fail it.
type Hook = Arc<dyn Fn(u64, usize) -> Option<Fail> + Send + Sync>;

/// What the server saw: each request's arrival time and range start, in order.
#[derive(Default)]
struct Log {
    requests: Mutex<Vec<(Instant, u64, bool)>>,
}

impl Log {
    fn entries(&self) -> Vec<(Instant, u64, bool)> {
        self.requests.lock().unwrap().clone()
    }
}

/// Serves `body` with ranges over HTTP/1.1 keep-alive; `delay` before every range's head.
async fn serve(body: Arc<Vec<u8>>, hook: Hook, log: Arc<Log>, delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<HashMap<u64, usize>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (body, hook, log, seen) = (body.clone(), hook.clone(), log.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(head) = common::read_head(&mut sock, &mut buf).await else {
                        return;
                    };
                    let at = Instant::now();
                    let len = body.len() as u64;
                    let (start, end) = common::requested_range(&head, len);
                    let nth = {
                        let mut s = seen.lock().unwrap();
                        let n = s.entry(start).or_insert(0);
                        *n += 1;
                        *n - 1
                    };
                    let fail = hook(start, nth);
                    log.requests
                        .lock()
                        .unwrap()
                        .push((at, start, fail.is_some()));
                    if let Some(f) = fail {
                        let after = f
                            .retry_after
                            .map(|s| format!("Retry-After: {s}\r\n"))
                            .unwrap_or_default();
                        let r = format!(
                            "HTTP/1.1 {} Failed\r\n{after}Content-Length: 0\r\n\r\n",
                            f.status
                        );
                        if sock.write_all(r.as_bytes()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    tokio::time::sleep(delay).await;
                    let head = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\nContent-Length: {}\r\nETag: \"v1\"\r\n\r\n",
                        end - 1,
                        end - start
                    );
                    if sock.write_all(head.as_bytes()).await.is_err()
                        || sock
                            .write_all(&body[start as usize..end as usize])
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tthsd-retries-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(1)
        .build()
        .unwrap()
}

/// Downloads `base/f.bin` (8 MiB of `content`) with 4 connections and 1 MiB chunks: 8
/// pieces of 1 MiB. Returns the sink and the file's bytes.
fn download(name: &str, base: &str, retry: RetryPolicy) -> (Arc<Collect>, Vec<u8>) {
    let dir = tmpdir(name);
    let path = dir.join("f.bin");
    let tasks = format!(
        r#"[{{"url":"{base}/f.bin","save_path":"{}"}}]"#,
        path.display()
    );
    let sink = Arc::new(Collect::default());
    let config = Config {
        connections: 4,
        chunk_size: MIB,
        retry,
        durable: false,
        ..Config::default()
    };
    let d = Downloader::new(parse_tasks(&tasks, None).unwrap(), config, sink.clone()).unwrap();
    d.start(Mode::Sequential).unwrap();
    sink.wait_end(Duration::from_secs(60));
    let bytes = std::fs::read(&path).unwrap_or_default();
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
    (sink, bytes)
}

#[test]
fn a_range_out_of_retries_hands_its_bytes_back_and_the_file_completes() {
    let rt = rt();
    let body = Arc::new(content(8 * MIB as usize));
    let log = Arc::new(Log::default());
    // The piece at 3 MiB fails its first three requests: the first try and both retries
    // of the connection that took it. Every other request is answered.
    let hook: Hook = Arc::new(|start, nth| {
        (start == 3 * MIB && nth < 3).then_some(Fail {
            retry_after: None,
            status: 500,
        })
    });
    let base = rt.block_on(serve(body.clone(), hook, log.clone(), Duration::ZERO));
    let retry = RetryPolicy {
        max_retries: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
    };
    let (sink, bytes) = download("handback", &base, retry);
    let msgs = sink.messages();
    assert!(sink.succeeded(), "{msgs:?}");
    assert!(bytes == *body, "the file is not byte-exact");
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("Bytes 3145728-") && m.contains("handed back")),
        "{msgs:?}"
    );
    let at_3m: Vec<bool> = log
        .entries()
        .iter()
        .filter(|(_, s, _)| *s == 3 * MIB)
        .map(|(_, _, failed)| *failed)
        .collect();
    assert_eq!(
        at_3m,
        [true, true, true, false],
        "three failures, then another connection"
    );
}

#[test]
fn retry_after_on_one_range_holds_back_every_request_to_the_host() {
    let rt = rt();
    let body = Arc::new(content(8 * MIB as usize));
    let log = Arc::new(Log::default());
    let hook: Hook = Arc::new(|start, nth| {
        (start == 2 * MIB && nth == 0).then_some(Fail {
            retry_after: Some(1),
            status: 503,
        })
    });
    // Each range answers after 300 ms, so without the hold the other connections would
    // ask for their next pieces well within the second the server asked for.
    let base = rt.block_on(serve(
        body.clone(),
        hook,
        log.clone(),
        Duration::from_millis(300),
    ));
    let retry = RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
    };
    let (sink, bytes) = download("holdback", &base, retry);
    assert!(sink.succeeded(), "{:?}", sink.messages());
    assert!(bytes == *body, "the file is not byte-exact");
    let entries = log.entries();
    let (t503, _, _) = *entries
        .iter()
        .find(|(_, _, failed)| *failed)
        .expect("a 503 was sent");
    // Requests sent together with the failing one may arrive just after it (allowed
    // 200 ms on a busy machine); any later request must wait for the hold to pass.
    let early: Vec<f64> = entries
        .iter()
        .filter_map(|(at, _, _)| at.checked_duration_since(t503))
        .map(|d| d.as_secs_f64())
        .filter(|&d| d > 0.2 && d < 0.95)
        .collect();
    assert!(
        early.is_empty(),
        "requests {early:?} s after the Retry-After"
    );
    assert!(
        entries.iter().any(|(at, _, _)| at
            .checked_duration_since(t503)
            .is_some_and(|d| d >= Duration::from_millis(950))),
        "the download went on after the hold"
    );
}

#[test]
fn bytes_no_connection_can_get_fail_the_file_once_its_budget_is_spent() {
    let rt = rt();
    let body = Arc::new(content(8 * MIB as usize));
    let log = Arc::new(Log::default());
    let hook: Hook = Arc::new(|start, _| {
        (start == 3 * MIB).then_some(Fail {
            retry_after: None,
            status: 500,
        })
    });
    let base = rt.block_on(serve(body.clone(), hook, log.clone(), Duration::ZERO));
    let retry = RetryPolicy {
        max_retries: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
    };
    let (sink, _) = download("budget", &base, retry);
    assert!(!sink.succeeded());
    let failures = sink
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Err { code, .. } => Some(*code),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(failures, ["http_status"]);
    // Three connections in turn (the first and two hand-backs), each with the first try
    // and two retries; then the file gives up, and no request is made again.
    let at_3m = log
        .entries()
        .iter()
        .filter(|(_, s, _)| *s == 3 * MIB)
        .count();
    assert_eq!(at_3m, 9, "{:?}", sink.messages());
}
