//! Expiring links against a loopback server: `/f.bin` redirects to a link `/s/<n>/f.bin`
//! that answers a fixed number of range requests, then 403. The file completes
//! byte-exact with one resolution per expiry; a link refused at once, again and again,
//! ends the file after a bounded number of renewals.

mod common;

use common::Collect;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tthsd_engine::{Config, Downloader, Mode, parse_tasks};

const MIB: u64 = 1024 * 1024;

fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
        .collect()
}

/// What the server did: links handed out, requests refused.
#[derive(Default)]
struct Counts {
    resolutions: AtomicUsize,
    refusals: AtomicUsize,
    /// Range requests answered per link.
    served: Mutex<Vec<usize>>,
}

/// `per_link`: range requests a link answers before it refuses them all.
async fn serve(body: Arc<Vec<u8>>, per_link: usize, counts: Arc<Counts>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (body, counts) = (body.clone(), counts.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(head) = common::read_head(&mut sock, &mut buf).await else {
                        return;
                    };
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    let reply = if path == "/f.bin" {
                        let n = counts.resolutions.fetch_add(1, Ordering::SeqCst);
                        counts.served.lock().unwrap().push(0);
                        format!(
                            "HTTP/1.1 302 Found\r\nLocation: /s/{n}/f.bin\r\nContent-Length: 0\r\n\r\n"
                        )
                        .into_bytes()
                    } else {
                        let link: usize = path
                            .split('/')
                            .nth(2)
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(usize::MAX);
                        let ok = {
                            let mut served = counts.served.lock().unwrap();
                            match served.get_mut(link) {
                                Some(s) if *s < per_link => {
                                    *s += 1;
                                    true
                                }
                                _ => false,
                            }
                        };
                        if ok {
                            range_reply(&head, &body)
                        } else {
                            counts.refusals.fetch_add(1, Ordering::SeqCst);
                            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec()
                        }
                    };
                    if sock.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn range_reply(head: &str, body: &[u8]) -> Vec<u8> {
    let len = body.len() as u64;
    let (start, end) = common::requested_range(head, len);
    let mut out = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\nContent-Length: {}\r\nETag: \"v1\"\r\n\r\n",
        end - 1,
        end - start
    )
    .into_bytes();
    out.extend_from_slice(&body[start as usize..end as usize]);
    out
}

/// Downloads `base/f.bin` with 4 connections and 1 MiB chunks; the sink and the bytes.
fn download(name: &str, base: &str) -> (Arc<Collect>, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("tthsd-relink-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("f.bin");
    let tasks = format!(
        r#"[{{"url":"{base}/f.bin","save_path":"{}"}}]"#,
        path.display()
    );
    let sink = Arc::new(Collect::default());
    let config = Config {
        connections: 4,
        chunk_size: MIB,
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

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(1)
        .build()
        .unwrap()
}

fn renewals(sink: &Collect) -> usize {
    sink.messages()
        .iter()
        .filter(|m| m.contains("resolving") && m.contains("again"))
        .count()
}

#[test]
fn links_that_expire_are_renewed_once_per_expiry_and_the_file_completes() {
    let rt = rt();
    let body = Arc::new(content(12 * MIB as usize + 777));
    let counts = Arc::new(Counts::default());
    let base = rt.block_on(serve(body.clone(), 3, counts.clone()));
    let (sink, bytes) = download("expire", &base);
    assert!(sink.succeeded(), "{:?}", sink.messages());
    assert!(bytes == *body, "the file differs");
    let resolutions = counts.resolutions.load(Ordering::SeqCst);
    let refusals = counts.refusals.load(Ordering::SeqCst);
    println!("{resolutions} resolutions, {refusals} refused requests");
    assert!(resolutions >= 3, "links never expired: {resolutions}");
    // Every resolution after the probe's is one announced renewal: several connections
    // refused by one expired link made one of them, not one each.
    assert_eq!(renewals(&sink), resolutions - 1, "{:?}", sink.messages());
    assert!(counts.refusals.load(Ordering::SeqCst) >= resolutions - 1);
}

#[test]
fn a_link_refused_at_once_every_time_fails_after_a_bounded_number_of_renewals() {
    let rt = rt();
    let body = Arc::new(content(8 * MIB as usize));
    let counts = Arc::new(Counts::default());
    // Each link answers its resolving request only.
    let base = rt.block_on(serve(body, 1, counts.clone()));
    let (sink, _) = download("dead", &base);
    assert!(!sink.succeeded());
    let msgs = sink.messages();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("err: ") && m.contains("refused again")),
        "{msgs:?}"
    );
    // The probe's link, then two renewals whose links served nothing of their own.
    assert_eq!(counts.resolutions.load(Ordering::SeqCst), 3, "{msgs:?}");
}
