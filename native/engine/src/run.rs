//! One run of a downloader: its tasks in order or side by side, the 200 ms progress
//! ticker, and the bookkeeping when a run is cancelled.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Semaphore;

use crate::events::{Event, EventKind, TaskInfo};
use crate::fetch;
use crate::resume;
use crate::state::{Mode, Shared, TaskPhase, TaskState, lock};

/// Update events are sent at most this often per task.
pub const UPDATE_INTERVAL: Duration = Duration::from_millis(200);

/// Works every task that still needs it; true when all succeeded.
pub(crate) async fn run_tasks(shared: &Arc<Shared>, mode: Mode) -> bool {
    // A task done earlier in this series of runs (before a pause) is not touched again;
    // after a fresh start `announced` is false and a done task is re-checked.
    let todo: Vec<&Arc<TaskState>> = shared
        .tasks
        .iter()
        .filter(|t| !(t.phase() == TaskPhase::Done && t.announced.load(Ordering::Relaxed)))
        .collect();
    let already_failed = shared.tasks.iter().any(|t| t.phase() == TaskPhase::Failed);
    let jobs = async {
        match mode {
            Mode::Sequential => {
                let mut ok = true;
                for t in todo {
                    ok &= run_task(shared, t).await;
                }
                ok
            }
            Mode::Parallel => {
                // As many files transferring at once as requests may be in flight (which
                // bounds open files too): `connections`, and more once the connections
                // turn out to speak HTTP/2 and carry several streams each. A file gives
                // its slot up when its bytes are in, so the next file transfers while the
                // publisher makes the last ones durable.
                let mut granted = shared.config().connections.max(1);
                let slots = Arc::new(Semaphore::new(granted));
                let client = shared.client().ok();
                let mut queue = todo.into_iter().peekable();
                let mut running = FuturesUnordered::new();
                let mut ok = true;
                loop {
                    if let Some(capacity) = client.as_ref().map(|c| c.capacity())
                        && capacity > granted
                    {
                        slots.add_permits(capacity - granted);
                        granted = capacity;
                    }
                    tokio::select! {
                        biased;
                        Some(r) = running.next(), if !running.is_empty() => ok &= r,
                        permit = slots.clone().acquire_owned(), if queue.peek().is_some() => {
                            let (Ok(permit), Some(t)) = (permit, queue.next()) else { break };
                            *lock(&t.slot) = Some(permit);
                            running.push(run_task(shared, t));
                        }
                        else => break,
                    }
                }
                ok
            }
        }
    };
    tokio::select! {
        ok = jobs => ok && !already_failed,
        _ = progress_ticker(shared) => false,
    }
}

fn task_info(t: &TaskState, total: usize) -> TaskInfo {
    TaskInfo {
        url: crate::task::display_url(&t.spec.url),
        save_path: t.spec.save_path.to_string_lossy().into_owned(),
        show_name: t.spec.show_name.clone(),
        index: t.index,
        total,
        saved_as: lock(&t.publish_as)
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        sources: if t.spec.mirrors.is_empty() {
            Vec::new()
        } else {
            lock(&t.sources).clone()
        },
    }
}

async fn run_task(shared: &Arc<Shared>, task: &Arc<TaskState>) -> bool {
    let count = shared.tasks.len();
    let (name, id) = (task.spec.show_name.as_str(), task.spec.id.as_str());
    task.set_phase(TaskPhase::Running);
    if !task.announced.swap(true, Ordering::Relaxed) {
        shared.emit(Event::task(
            EventKind::StartOne(task_info(task, count)),
            name,
            id,
        ));
    }
    let outcome = fetch::download_file(shared, task).await;
    lock(&task.slot).take();
    match outcome {
        Ok(()) => {
            task.set_phase(TaskPhase::Done);
            let total = task.total.load(Ordering::Relaxed);
            shared.emit(Event::task(
                EventKind::Update {
                    downloaded: task.downloaded.load(Ordering::Relaxed),
                    total,
                    speed: task.speed(),
                    contiguous: task.contiguous(),
                },
                name,
                id,
            ));
            shared.emit(Event::task(
                EventKind::EndOne {
                    info: task_info(task, count),
                    success: true,
                },
                name,
                id,
            ));
            true
        }
        Err(e) => {
            task.set_phase(TaskPhase::Failed);
            *lock(&task.error) = Some(e.message.clone());
            shared.emit(Event::task(
                EventKind::Err {
                    error: e.message,
                    code: e.code.as_str(),
                },
                name,
                id,
            ));
            shared.emit(Event::task(
                EventKind::EndOne {
                    info: task_info(task, count),
                    success: false,
                },
                name,
                id,
            ));
            false
        }
    }
}

/// Sends `update` for each running task whose byte count moved, and keeps the smoothed
/// speeds. Never returns; the run drops it when the tasks are done.
async fn progress_ticker(shared: &Arc<Shared>) {
    let mut tick = tokio::time::interval(UPDATE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Vec<u64> = shared
        .tasks
        .iter()
        .map(|t| t.downloaded.load(Ordering::Relaxed))
        .collect();
    let mut last_fetched = shared.counters.bytes_fetched.load(Ordering::Relaxed);
    let mut last_at = Instant::now();
    let mut total_speed: Option<f64> = None;
    tick.tick().await; // the first tick is immediate
    loop {
        tick.tick().await;
        let now = Instant::now();
        let dt = now.duration_since(last_at).as_secs_f64().max(1e-3);
        last_at = now;
        for (i, t) in shared.tasks.iter().enumerate() {
            let d = t.downloaded.load(Ordering::Relaxed);
            let running = t.phase() == TaskPhase::Running;
            let delta = d.saturating_sub(last[i]);
            last[i] = d;
            let inst = delta as f64 / dt;
            let old = t.speed();
            let speed = if old == 0.0 {
                inst
            } else {
                0.3 * inst + 0.7 * old
            };
            t.speed.store(speed.to_bits(), Ordering::Relaxed);
            if running && delta > 0 {
                shared.emit(Event::task(
                    EventKind::Update {
                        downloaded: d,
                        total: t.total.load(Ordering::Relaxed),
                        speed,
                        contiguous: t.contiguous(),
                    },
                    &t.spec.show_name,
                    &t.spec.id,
                ));
            }
        }
        let fetched = shared.counters.bytes_fetched.load(Ordering::Relaxed);
        let inst = fetched.saturating_sub(last_fetched) as f64 / dt;
        last_fetched = fetched;
        let s = match total_speed {
            None => inst,
            Some(old) => 0.3 * inst + 0.7 * old,
        };
        total_speed = Some(s);
        shared.speed.store(s.to_bits(), Ordering::Relaxed);
    }
}

/// After a pause or stop cancelled the run: running tasks become paused.
pub(crate) fn mark_paused(shared: &Shared) {
    for t in &shared.tasks {
        if t.phase() == TaskPhase::Running {
            t.set_phase(TaskPhase::Paused);
        }
        t.speed.store(0f64.to_bits(), Ordering::Relaxed);
    }
}

/// Brings each partial file's journal up to date, so a later process can resume it.
pub(crate) async fn flush_journals(shared: &Arc<Shared>) {
    let tasks: Vec<Arc<TaskState>> = shared.tasks.clone();
    let durable = shared.config().durable;
    let _ = tokio::task::spawn_blocking(move || {
        for t in &tasks {
            resume::flush_journal(t, durable);
        }
    })
    .await;
}
