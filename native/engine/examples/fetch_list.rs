//! Downloads a list of URLs with the engine alone (no FFI, no Python): the engine-level
//! row of the benchmark, and a way to tell engine cost from binding cost.
//!
//! Usage: `fetch_list URLS_FILE OUT_DIR [CONNECTIONS] [--parallel] [--no-durable]`
//! Prints `wall_s events` on success; exits 1 when a file failed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tthsd_engine::{Config, Downloader, Event, EventKind, EventSink, Mode, TaskSpec, parse_url};

#[derive(Default)]
struct Counter {
    events: AtomicUsize,
    failed: AtomicUsize,
    ended: Mutex<bool>,
    cv: Condvar,
}

impl EventSink for Counter {
    fn emit(&self, event: Event) {
        self.events.fetch_add(1, Ordering::Relaxed);
        match event.kind {
            EventKind::Err { .. } => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            EventKind::End => {
                *self.ended.lock().unwrap_or_else(|e| e.into_inner()) = true;
                self.cv.notify_all();
            }
            _ => {}
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err(
            "usage: fetch_list URLS_FILE OUT_DIR [CONNECTIONS] [--parallel] [--no-durable]".into(),
        );
    }
    let out = PathBuf::from(&args[2]);
    let mut config = Config::default();
    let mut mode = Mode::Sequential;
    for a in &args[3..] {
        match a.as_str() {
            "--parallel" => mode = Mode::Parallel,
            "--no-durable" => config.durable = false,
            n => config.connections = n.parse()?,
        }
    }
    let mut tasks = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, line) in std::fs::read_to_string(&args[1])?.lines().enumerate() {
        let url = parse_url(line.trim())?;
        let mut name = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or("index")
            .to_owned();
        // Saved under the URL's last segment, like curl -O; a repeated name gets its
        // line number in front.
        if !names.insert(name.clone()) {
            name = format!("{i}-{name}");
        }
        tasks.push(TaskSpec {
            save_path: out.join(&name),
            show_name: name,
            id: i.to_string(),
            headers: Vec::new(),
            checksum: None,
            name_from_server: false,
            overwrite: false,
            max_connections_per_host: None,
            mirrors: Vec::new(),
            url,
        });
    }
    let sink = Arc::new(Counter::default());
    let t0 = Instant::now();
    let d = Downloader::new(tasks, config, sink.clone())?;
    d.start(mode)?;
    let mut ended = sink.ended.lock().unwrap_or_else(|e| e.into_inner());
    while !*ended {
        ended = sink.cv.wait(ended).unwrap_or_else(|e| e.into_inner());
    }
    println!(
        "{:.3} {}",
        t0.elapsed().as_secs_f64(),
        sink.events.load(Ordering::Relaxed)
    );
    if sink.failed.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
    Ok(())
}
