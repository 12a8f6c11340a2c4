//! End-to-end runs of the engine against a small range-capable server on loopback,
//! pinning the event order of ABI.md §4 and byte-exact results.

mod common;

use common::Collect;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tthsd_engine::{Config, Downloader, EventKind, Mode, parse_tasks};

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

#[derive(Clone, Copy)]
enum Behaviour {
    Ranges,
    IgnoreRange,
    NotFound,
}

/// Serves `body` over HTTP/1.1 with keep-alive; counts body bytes sent.
async fn serve(body: Arc<Vec<u8>>, behaviour: Behaviour, sent: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(head) = common::read_head(&mut sock, &mut buf).await else {
                        return;
                    };
                    let range = head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        (k.eq_ignore_ascii_case("range")).then(|| v.trim().to_string())
                    });
                    let len = body.len() as u64;
                    let (status, start, end) = match (behaviour, range) {
                        (Behaviour::NotFound, _) => {
                            let r = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
                            if sock.write_all(r).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        (Behaviour::Ranges, Some(r)) => {
                            let spec = r.trim_start_matches("bytes=");
                            let (a, b) = spec.split_once('-').unwrap();
                            let a: u64 = a.parse().unwrap();
                            let b: u64 = if b.is_empty() {
                                len - 1
                            } else {
                                b.parse::<u64>().unwrap().min(len - 1)
                            };
                            if a >= len {
                                let r = format!(
                                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n\r\n"
                                );
                                if sock.write_all(r.as_bytes()).await.is_err() {
                                    return;
                                }
                                continue;
                            }
                            (206, a, b + 1)
                        }
                        _ => (200, 0, len),
                    };
                    let mut head = if status == 206 {
                        format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\n",
                            end - 1
                        )
                    } else {
                        "HTTP/1.1 200 OK\r\n".to_string()
                    };
                    head.push_str(&format!(
                        "Content-Length: {}\r\nETag: \"v1\"\r\n\r\n",
                        end - start
                    ));
                    if sock.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let slice = &body[start as usize..end as usize];
                    if sock.write_all(slice).await.is_err() {
                        return;
                    }
                    sent.fetch_add(slice.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    format!("http://{addr}")
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tthsd-engine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn downloader(tasks: &str, sink: Arc<Collect>, chunk: u64) -> Downloader {
    let config = Config {
        connections: 8,
        chunk_size: chunk,
        ..Config::default()
    };
    Downloader::new(parse_tasks(tasks, None).unwrap(), config, sink).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(1)
        .build()
        .unwrap()
}

#[test]
fn ranged_download_is_byte_exact_and_events_are_in_order() {
    let rt = rt();
    let body = Arc::new(content(5 * 1024 * 1024 + 123));
    let sent = Arc::new(AtomicU64::new(0));
    let base = rt.block_on(serve(body.clone(), Behaviour::Ranges, sent.clone()));
    let dir = tmpdir("ranged");
    let path = dir.join("a.bin");
    let tasks = format!(
        r#"[{{"url":"{base}/a.bin","save_path":"{}","id":"t1"}}]"#,
        path.display()
    );
    let sink = Arc::new(Collect::default());
    let d = downloader(&tasks, sink.clone(), 1024 * 1024);
    d.start(Mode::Sequential).unwrap();
    sink.wait_end(Duration::from_secs(30));
    assert_eq!(std::fs::read(&path).unwrap(), *body);
    let types = sink.types();
    assert_eq!(types.first(), Some(&"start"));
    assert_eq!(types.get(1), Some(&"startOne"));
    assert_eq!(types.last(), Some(&"end"));
    assert_eq!(types[types.len() - 2], "endOne");
    assert_eq!(
        types[types.len() - 3],
        "update",
        "a final update precedes endOne"
    );
    assert!(types[2..types.len() - 2].iter().all(|t| *t == "update"));
    let events = sink.0.lock().unwrap();
    let last_update = &events[events.len() - 3];
    assert_eq!(last_update.id, "t1");
    match &last_update.kind {
        EventKind::Update {
            downloaded, total, ..
        } => {
            assert_eq!(*downloaded, body.len() as u64);
            assert_eq!(*total, body.len() as u64);
        }
        other => panic!("{other:?}"),
    }
    match &events[events.len() - 2].kind {
        EventKind::EndOne { success, info } => {
            assert!(*success);
            assert_eq!(info.index, 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(sent.load(Ordering::Relaxed) >= body.len() as u64);
    assert_eq!(d.stats()["state"], "finished");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn server_ignoring_range_still_gives_the_exact_file() {
    let rt = rt();
    let body = Arc::new(content(3 * 1024 * 1024));
    let sent = Arc::new(AtomicU64::new(0));
    let base = rt.block_on(serve(body.clone(), Behaviour::IgnoreRange, sent.clone()));
    let dir = tmpdir("norange");
    let path = dir.join("b.bin");
    let tasks = format!(r#"[{{"url":"{base}/b","save_path":"{}"}}]"#, path.display());
    let sink = Arc::new(Collect::default());
    let d = downloader(&tasks, sink.clone(), 1024 * 1024);
    d.start(Mode::Parallel).unwrap();
    sink.wait_end(Duration::from_secs(30));
    assert_eq!(std::fs::read(&path).unwrap(), *body);
    // One request, one full body: ranges were not attempted again.
    assert_eq!(sent.load(Ordering::Relaxed), body.len() as u64);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn not_found_is_an_err_event_with_a_code_and_no_file() {
    let rt = rt();
    let sent = Arc::new(AtomicU64::new(0));
    let base = rt.block_on(serve(Arc::new(Vec::new()), Behaviour::NotFound, sent));
    let dir = tmpdir("404");
    let path = dir.join("c.bin");
    let tasks = format!(r#"[{{"url":"{base}/c","save_path":"{}"}}]"#, path.display());
    let sink = Arc::new(Collect::default());
    let d = downloader(&tasks, sink.clone(), 1024 * 1024);
    d.start(Mode::Sequential).unwrap();
    sink.wait_end(Duration::from_secs(30));
    assert_eq!(
        sink.types(),
        vec!["start", "startOne", "err", "endOne", "end"]
    );
    let events = sink.0.lock().unwrap();
    match &events[2].kind {
        EventKind::Err { code, error } => {
            assert_eq!(*code, "http_status");
            assert!(error.contains("404"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!path.exists());
    assert_eq!(d.stats()["state"], "failed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pause_keeps_bytes_and_resume_finishes_without_refetching() {
    let rt = rt();
    let body = Arc::new(content(24 * 1024 * 1024));
    let sent = Arc::new(AtomicU64::new(0));
    let base = rt.block_on(serve(body.clone(), Behaviour::Ranges, sent.clone()));
    let dir = tmpdir("pause");
    let path = dir.join("d.bin");
    let tasks = format!(r#"[{{"url":"{base}/d","save_path":"{}"}}]"#, path.display());
    let sink = Arc::new(Collect::default());
    let d = downloader(&tasks, sink.clone(), 1024 * 1024);
    d.set_speed_limit(12 * 1024 * 1024);
    d.start(Mode::Sequential).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let t0 = Instant::now();
    d.pause().unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(200),
        "pause took {:?}",
        t0.elapsed()
    );
    let paused_at = d.stats()["downloaded"].as_u64().unwrap();
    assert!(paused_at > 0 && paused_at < body.len() as u64);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!sink.types().contains(&"end"));
    d.set_speed_limit(0);
    d.resume().unwrap();
    sink.wait_end(Duration::from_secs(30));
    assert_eq!(std::fs::read(&path).unwrap(), *body);
    let texts: Vec<String> = sink
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Msg { text } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert!(texts.contains(&"Download paused".to_string()));
    assert!(texts.contains(&"Download resumed".to_string()));
    // Resumed, not restarted: what the server sent stays near one copy of the file
    // (the in-flight window of each connection at pause is the only waste).
    let total_sent = sent.load(Ordering::Relaxed);
    assert!(
        total_sent < body.len() as u64 + 8 * 2 * 1024 * 1024,
        "server sent {total_sent} for a {} byte file",
        body.len()
    );
    assert_eq!(sink.types().iter().filter(|t| **t == "startOne").count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stop_ends_with_end_and_keeps_a_resumable_journal() {
    let rt = rt();
    let body = Arc::new(content(16 * 1024 * 1024));
    let sent = Arc::new(AtomicU64::new(0));
    let base = rt.block_on(serve(body.clone(), Behaviour::Ranges, sent.clone()));
    let dir = tmpdir("stop");
    let path = dir.join("e.bin");
    let tasks = format!(r#"[{{"url":"{base}/e","save_path":"{}"}}]"#, path.display());
    let sink = Arc::new(Collect::default());
    let d = downloader(&tasks, sink.clone(), 1024 * 1024);
    d.set_speed_limit(8 * 1024 * 1024);
    d.start(Mode::Sequential).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    d.stop().unwrap();
    let types = sink.types();
    assert_eq!(types.last(), Some(&"end"));
    assert!(d.stop().is_err(), "double stop is refused");
    assert!(!path.exists());
    assert!(tthsd_engine::storage::journal_path(&path).exists());
    // A new downloader (as a new process would) resumes from the journal.
    let before = sent.load(Ordering::Relaxed);
    let sink2 = Arc::new(Collect::default());
    let d2 = downloader(&tasks, sink2.clone(), 1024 * 1024);
    d2.start(Mode::Sequential).unwrap();
    sink2.wait_end(Duration::from_secs(30));
    assert_eq!(std::fs::read(&path).unwrap(), *body);
    let again = sent.load(Ordering::Relaxed) - before;
    assert!(
        again < body.len() as u64,
        "refetched {again} bytes: not resumed"
    );
    assert!(!tthsd_engine::storage::journal_path(&path).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn checksum_is_verified_before_publishing() {
    let rt = rt();
    let body = Arc::new(content(6 * 1024 * 1024 + 7));
    let sent = Arc::new(AtomicU64::new(0));
    let base = rt.block_on(serve(body.clone(), Behaviour::Ranges, sent.clone()));
    let dir = tmpdir("checksum");
    let good = dir.join("good.bin");
    let bad = dir.join("bad.bin");
    let tasks = format!(
        r#"[{{"url":"{base}/g","save_path":"{}","checksum":"sha256:{}"}},
            {{"url":"{base}/b","save_path":"{}","checksum":"sha256:{}"}}]"#,
        good.display(),
        sha256_hex(&body),
        bad.display(),
        "0".repeat(64)
    );
    let sink = Arc::new(Collect::default());
    let d = downloader(&tasks, sink.clone(), 1024 * 1024);
    d.set_speed_limit(20 * 1024 * 1024); // slow enough for the prefix hasher to run
    d.start(Mode::Parallel).unwrap();
    sink.wait_end(Duration::from_secs(30));
    assert_eq!(std::fs::read(&good).unwrap(), *body);
    assert!(
        !bad.exists(),
        "a file failing its checksum is never published"
    );
    let codes: Vec<&'static str> = sink
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Err { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec!["checksum_mismatch"]);
    // Instant completion: the good file is already there and matches; nothing fetched.
    let before = sent.load(Ordering::Relaxed);
    let one = format!(
        r#"[{{"url":"{base}/g","save_path":"{}","checksum":"sha256:{}"}}]"#,
        good.display(),
        sha256_hex(&body)
    );
    let sink2 = Arc::new(Collect::default());
    let d2 = downloader(&one, sink2.clone(), 1024 * 1024);
    d2.start(Mode::Sequential).unwrap();
    sink2.wait_end(Duration::from_secs(30));
    assert_eq!(sent.load(Ordering::Relaxed), before);
    assert_eq!(
        sink2.types(),
        vec!["start", "startOne", "update", "endOne", "end"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
