//! The ranged transfer: the file's missing bytes cut into pieces ([`Plan`]), worked by
//! up to `connections` workers, each a loop of "take a lease, request it, stream it".
//!
//! Contract: a byte is written only where a range answer that starts where we asked and
//! names the file's size puts it (the [`Source`] checks the answer; for HTTP, a 206 and
//! its `Content-Range`), and only after its lease granted it (so no two connections
//! write the same byte); every answer must be of the version the file started with,
//! else the file changed (`file_changed`, not transient). While the
//! workers run, the journal, the writeback and the prefix hasher run beside them. The
//! transfer ends with every byte on disk and the file finalized, or with an error.
//!
//! A task with mirrors fetches each lease from one of its [`Sources`]: the worker picks
//! the source before the lease, and a source that fails for good gives its lease back
//! to the plan and is dropped (`mirrors`).

use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Notify;
use url::Url;

use crate::body::{Batch, read_batch};
use crate::error::{Error, ErrorCode, Result};
use crate::finalize::{finalize, writeback};
use crate::journal::Validators;
use crate::mirrors::{Busy, SAMPLE, Sources};
use crate::plan::{Lease, MIN_SPLIT, Next, Plan, piece_size};
use crate::pushback::HostPermit;
use crate::relink::Renewal;
use crate::request::{Connection, FileCtx, connection};
use crate::resume::journaler;
use crate::retry::{FileBudget, RangeStep, Streak, after_range_failure};
use crate::source::{AnyBody, AnySource, Source};
use crate::state::{FileState, lock};
use crate::storage::{self, PartFile};
use crate::verify::prefix_hasher;

/// Shared by the connections of one ranged file.
struct RangeCtx<'a> {
    file: &'a FileCtx<'a>,
    /// Where ranges go: the URL the probe's bytes came from (renewed when it
    /// expires), and the task's mirrors.
    sources: Sources<'a>,
    total: u64,
    part: PartFile,
    plan: Plan,
    /// Told whenever a worker's lease ends: a worker waiting to judge a young, slow
    /// lease ([`Next::Wait`]) looks again at once.
    lease_ended: Notify,
}

#[allow(clippy::too_many_arguments)] // the probe's answer, taken apart
pub(crate) async fn transfer<'a>(
    ctx: &'a FileCtx<'a>,
    reference: usize,
    source: &AnySource<'a>,
    total: u64,
    validators: Validators,
    final_url: Url,
    first: (u64, u64),
    first_resp: AnyBody,
    conn: Connection,
    permit: HostPermit,
) -> Result<()> {
    let task = ctx.task;
    let (missing, fresh) = {
        let mut st = lock(&task.file);
        let state = st.get_or_insert_with(FileState::empty);
        // Bytes count as on disk only while the part file is the regular file of the
        // download's size they were written to (nothing to check for a fresh file).
        let intact = state.done.covered() == 0
            || std::fs::symlink_metadata(storage::part_path(&task.spec.save_path))
                .is_ok_and(|m| m.is_file() && m.len() == total);
        if !intact {
            state.done.clear();
            task.downloaded.store(0, Ordering::Relaxed);
        }
        let fresh = state.done.covered() == 0;
        state.total = Some(total);
        state.validators = validators.clone();
        state.final_url = Some(final_url.clone());
        state.ranged = true;
        (state.done.missing(total), fresh)
    };
    task.total.store(total, Ordering::Relaxed);
    let part = PartFile::open(&ctx.part_path(), fresh)
        .map_err(|e| Error::from_io("opening the part file", &e))?;
    // Sized up front: writes at any offset are valid, and the size is what later tells
    // a part file that belongs to its journal from one that does not. A file the first
    // response carries whole is written in order and needs neither (a journal written
    // meanwhile is never trusted for a part file shorter than the download: it restarts).
    let whole_in_first = missing.first() == Some(&(first.0, total)) && first.1 >= total;
    if !(fresh && whole_in_first)
        && part
            .len()
            .map_err(|e| Error::from_io("reading the part file", &e))?
            != total
    {
        part.set_len(total)
            .map_err(|e| Error::from_io("sizing the part file", &e))?;
    }
    let sources = Sources::new(ctx, reference, source, &final_url, &validators);
    let remaining: u64 = missing.iter().map(|(s, e)| e - s).sum();
    // As many workers as the hosts may ever get: those beyond a host's learned limit
    // wait for room (`pushback`) instead of sending requests it would refuse.
    let workers = ctx
        .host_ceiling()
        .saturating_mul(sources.len())
        .min(ctx.cfg.connections.max(1))
        .min(remaining.div_ceil(MIN_SPLIT) as usize)
        .max(1);
    let piece = piece_size(total, ctx.cfg.chunk_size, workers.max(ctx.host_ceiling()));
    let plan = Plan::new(&missing, piece);
    let lease0 = plan.adopt(first.0, first.1);
    // The mirrors are compared with the first bytes the task's URL sends.
    let window = (first.0, first.0 + SAMPLE.min(first.1 - first.0));
    let rctx = RangeCtx {
        file: ctx,
        sources,
        total,
        part,
        plan,
        lease_ended: Notify::new(),
    };
    let budget = FileBudget::new(&ctx.cfg.retry);
    let mut pool = FuturesUnordered::new();
    pool.push(worker(
        &rctx,
        &budget,
        Some((lease0, first_resp, first.1, conn, permit)),
        None,
    ));
    // The first leases are spread over the sources round robin (`mirrors`).
    let n_sources = rctx.sources.len();
    for i in 1..workers {
        let assigned = (n_sources > 1).then_some((reference + i) % n_sources);
        pool.push(worker(&rctx, &budget, None, assigned));
    }
    let all = async {
        // Workers that found nothing left to do: their connections worked to the end.
        let mut healthy = 0usize;
        let mut handed_back: Option<Error> = None;
        while let Some(end) = pool.next().await {
            match end? {
                WorkerEnd::Drained => healthy += 1,
                WorkerEnd::HandedBack(e) => handed_back = Some(e),
            }
            // Running workers take handed-back bytes when their lease ends; once none
            // runs, a connection that worked takes them, and with none left the file
            // has no connection that works.
            if pool.is_empty()
                && !rctx.plan.is_drained()
                && let Some(e) = handed_back.take()
            {
                if healthy == 0 {
                    let mut e = e;
                    e.transient = false;
                    e.message = format!("{} (no other connection could take its bytes)", e.message);
                    return Err(e);
                }
                healthy -= 1;
                pool.push(worker(&rctx, &budget, None, None));
            }
        }
        Ok::<(), Error>(())
    };
    let vetting = async {
        rctx.sources.vet_all(window, total, &rctx.part).await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        r = all => r?,
        _ = vetting => {}
        _ = journaler(task.clone(), ctx.cfg) => {}
        _ = writeback(task, &rctx.part, ctx.cfg.durable) => {}
        _ = prefix_hasher(task.clone()) => {}
    }
    drop(pool);
    let complete = lock(&task.file)
        .as_ref()
        .is_some_and(|s| s.done.is_complete(total));
    if !complete {
        return Err(Error::transient(
            ErrorCode::Network,
            "some ranges were left unfinished",
        ));
    }
    finalize(ctx, Some(rctx.part), total).await
}

type FirstResponse = (Lease, AnyBody, u64, Connection, HostPermit);

/// How a worker stopped (other than with an error that ends the file).
enum WorkerEnd {
    /// Nothing left to take: the plan is drained or every piece is in good hands.
    Drained,
    /// Its range ran out of retries; the bytes went back to the plan (the error said why).
    HandedBack(Error),
}

/// How a lease ended.
enum LeaseEnd {
    Done,
    /// The host pushed back and is over its limit: the bytes go back to the plan and
    /// the worker waits for room.
    StepAside,
    /// Out of retries (the error says why).
    HandBack(Error),
    /// Its source was dropped: the bytes go back to the plan and the worker picks
    /// another source.
    Moved,
}

/// One connection's loop: pick a source, wait for room at its host, take a lease, fetch
/// it, repeat until the plan is drained. The room is taken before the lease, so a
/// waiting worker holds no bytes others could fetch. `assigned`: the source of its
/// first lease (`mirrors`).
async fn worker(
    ctx: &RangeCtx<'_>,
    budget: &FileBudget,
    first: Option<FirstResponse>,
    assigned: Option<usize>,
) -> Result<WorkerEnd> {
    let f = ctx.file;
    let mut first = first;
    let mut assigned = assigned;
    // Room at the host of the source of the last lease, kept for the next request there.
    let mut room: Option<(usize, HostPermit)> = None;
    let mut prev_end = None;
    loop {
        let (lease, pre, mut permit, busy) = match first.take() {
            Some((lease, resp, end, conn, permit)) => {
                let busy = ctx.sources.first_choice(ctx.sources.reference()).await;
                (lease, Some((resp, end, conn)), permit, busy)
            }
            None => {
                let busy = match assigned.take() {
                    Some(i) => ctx.sources.first_choice(i).await,
                    None => ctx.sources.choose(),
                };
                let permit = match room.take() {
                    Some((i, p)) if i == busy.index => p,
                    _ => {
                        let url = ctx.sources.link(busy.index).current().1.url().clone();
                        f.shared.limits.acquire(&url, f.host_ceiling()).await
                    }
                };
                // Armed before asking, so a lease that ends in between still wakes us.
                let ended = ctx.lease_ended.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                match ctx.plan.next_after(prev_end) {
                    Next::Lease(l) => (l, None, permit, busy),
                    Next::Done => return Ok(WorkerEnd::Drained),
                    Next::Wait(d) => {
                        drop((permit, busy)); // the host's room is for requests, not for waiting
                        tokio::select! {
                            _ = ended => {}
                            _ = tokio::time::sleep(d) => {}
                        }
                        continue;
                    }
                }
            }
        };
        let fetched = fetch_lease(ctx, budget, &lease, pre, &mut permit, &busy).await;
        ctx.lease_ended.notify_waiters();
        let e = match fetched? {
            LeaseEnd::Done => {
                room = Some((busy.index, permit));
                prev_end = Some(lease.end());
                continue;
            }
            LeaseEnd::StepAside | LeaseEnd::Moved => {
                ctx.plan.release(&lease);
                drop(permit); // room for the host's other requests
                prev_end = None;
                continue;
            }
            LeaseEnd::HandBack(e) => e,
        };
        ctx.plan.release(&lease);
        f.shared.task_msg(
            f.task,
            format!(
                "Bytes {}-{} handed back to the other connections: {}",
                lease.pos(),
                lease.end().saturating_sub(1).max(lease.pos()),
                e.message
            ),
        );
        return Ok(WorkerEnd::HandedBack(e));
    }
}

/// Fetches a lease to its end, retrying under the retry policy; `permit` is the worker's
/// room at the host, told how each request was answered.
async fn fetch_lease(
    ctx: &RangeCtx<'_>,
    budget: &FileBudget,
    lease: &Lease,
    pre: Option<(AnyBody, u64, Connection)>,
    permit: &mut HostPermit,
    busy: &Busy<'_, '_>,
) -> Result<LeaseEnd> {
    let f = ctx.file;
    let at = busy.index;
    let link = ctx.sources.link(at);
    let validators = ctx.sources.validators(at);
    let mut pre = pre;
    let mut streak = Streak::new(f.cfg.retry);
    while lease.remaining() > 0 {
        let before = lease.pos();
        if pre.is_none() && ctx.sources.is_dropped(at) {
            // Dropped while this range waited to retry: another source takes it.
            return Ok(LeaseEnd::Moved);
        }
        if pre.is_none() && permit.over_limit() {
            // Lowered while this range waited to retry: room for the others first.
            return Ok(LeaseEnd::StepAside);
        }
        let sent = permit.sent();
        let result = match pre.take() {
            Some((resp, end, conn)) => {
                permit.answered();
                stream_range(ctx, lease, at, resp, end, conn).await
            }
            None => {
                let (generation, source) = link.current();
                // A host that asked for a pause gets no request before its time.
                f.shared.hosts.wait(source.url()).await;
                let conn = connection(f.shared, &f.client).await?;
                let asked = source.range(&conn, lease.pos(), lease.end(), ctx.total, &validators);
                match asked.await {
                    Ok((resp, end)) => {
                        permit.answered();
                        link.served(generation);
                        stream_range(ctx, lease, at, resp, end, conn).await
                    }
                    // An expired link: the link renews it (once for all connections).
                    Err(e) if link.may_renew(&e) => {
                        let renewed = link.renew(
                            generation,
                            e,
                            &conn,
                            lease.pos(),
                            lease.end(),
                            ctx.total,
                            &validators,
                        );
                        match renewed.await {
                            // Not a failure of this range: ask again on the new link.
                            Ok(Renewal::Replaced) => continue,
                            Ok(Renewal::Body(resp, end)) => {
                                permit.answered();
                                stream_range(ctx, lease, at, resp, end, conn).await
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
        };
        let Err(e) = result else { continue };
        if let Some(wait) = e.retry_after {
            f.shared.hosts.hold(link.current().1.url(), wait);
        }
        // A source that fails for good is dropped while another can take its bytes.
        if !e.transient && !e.pushback && ctx.sources.droppable(at) {
            permit.failed();
            ctx.sources.drop_source(at, &e.message);
            return Ok(LeaseEnd::Moved);
        }
        if !e.pushback {
            permit.failed();
        } else {
            let pb = permit.pushed_back(sent);
            if let Some(limit) = pb.lowered_to {
                f.shared.task_msg(
                    f.task,
                    format!(
                        "{}: at most {limit} connections to this host now",
                        e.message
                    ),
                );
            }
            if pb.step_aside {
                // Over the host's (lowered) limit: not this range's failure, no retry spent.
                f.shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                return Ok(LeaseEnd::StepAside);
            }
        }
        if lease.pos() > before {
            streak.progressed();
        }
        match after_range_failure(&e, &mut streak, budget) {
            RangeStep::Retry(wait) => {
                f.shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                f.shared.task_msg(
                    f.task,
                    format!(
                        "Retry {}/{} of bytes {}-{} in {:.1} s: {}",
                        streak.retries(),
                        streak.max_retries(),
                        lease.pos(),
                        lease.end().saturating_sub(1),
                        wait.as_secs_f64(),
                        e.message
                    ),
                );
                tokio::time::sleep(wait).await;
            }
            RangeStep::HandBack if ctx.sources.droppable(at) => {
                ctx.sources.drop_source(at, &e.message);
                return Ok(LeaseEnd::Moved);
            }
            RangeStep::HandBack => return Ok(LeaseEnd::HandBack(e)),
            RangeStep::Fail => {
                let mut e = e;
                if e.transient {
                    e.transient = false;
                    if e.code == ErrorCode::RangeUnsupported {
                        e.message = format!("{} (after {} retries)", e.message, streak.retries());
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(LeaseEnd::Done)
}

/// Streams a 206 body of source `at` for `[lease.pos(), promised_end)` into the part
/// file; the source's speed is measured over it.
async fn stream_range(
    ctx: &RangeCtx<'_>,
    lease: &Lease,
    at: usize,
    resp: AnyBody,
    promised_end: u64,
    conn: Connection,
) -> Result<()> {
    let began = std::time::Instant::now();
    let from = lease.pos();
    let r = stream_body(ctx, lease, at, resp, promised_end, conn).await;
    ctx.sources
        .measured(at, lease.pos().saturating_sub(from), began.elapsed());
    r
}

async fn stream_body(
    ctx: &RangeCtx<'_>,
    lease: &Lease,
    at: usize,
    mut resp: AnyBody,
    promised_end: u64,
    conn: Connection,
) -> Result<()> {
    let f = ctx.file;
    let expected = promised_end.saturating_sub(lease.pos());
    let mut received: u64 = 0;
    let mut batch = Batch::default();
    loop {
        let read = read_batch(f, &mut resp, &mut batch).await;
        // Bytes past the end the Content-Range promised are not the file's: a server
        // whose body outruns its header gets what it promised taken, nothing more.
        let room = expected.saturating_sub(received);
        let overrun = batch.len as u64 > room;
        if overrun {
            batch.truncate(room as usize);
        }
        received += batch.len as u64;
        f.shared.limiter.acquire(batch.len as u64).await;
        let at_end = match read {
            Ok(at_end) => at_end,
            Err(e) => {
                // Keep what arrived before the failure.
                commit(ctx, lease, at, &mut batch, promised_end)?;
                return Err(e);
            }
        };
        if overrun {
            commit(ctx, lease, at, &mut batch, promised_end)?;
            return Ok(()); // the connection is dropped with the rest of the body
        }
        let more = commit(ctx, lease, at, &mut batch, promised_end)?;
        if !more || lease.remaining() == 0 && !ctx.plan.extend(lease, promised_end) {
            // Cut short by a thief, or everything we need is here: stop reading.
            if lease.relieved() {
                // Taken over for crawling: the lane's next request gets a new connection.
                conn.slot.retire();
            }
            return Ok(());
        }
        if at_end {
            break;
        }
    }
    if received < expected && lease.remaining() > 0 {
        return Err(Error::transient(
            ErrorCode::Network,
            format!("the connection closed after {received} of {expected} bytes"),
        ));
    }
    Ok(())
}

/// Claims and writes the batch at the lease's position, emptying it. False when the
/// lease was cut short (the rest of the batch belongs to another connection). A batch
/// that runs past the lease's end first tries to take the next pending piece, up to
/// where the response ends (`promised_end`).
fn commit(
    ctx: &RangeCtx<'_>,
    lease: &Lease,
    at: usize,
    batch: &mut Batch,
    promised_end: u64,
) -> Result<bool> {
    if batch.is_empty() {
        return Ok(true);
    }
    let wanted = batch.len as u64;
    if lease.remaining() < wanted {
        ctx.plan.extend(lease, promised_end);
    }
    let (offset, granted) = lease.claim(wanted);
    if granted > 0 {
        batch.truncate(granted as usize);
        if let Err(e) = ctx.part.write_vectored_at(&batch.bufs, offset) {
            lease.unclaim(offset);
            batch.clear();
            return Err(Error::from_io("writing the part file", &e));
        }
        if let Some(s) = lock(&ctx.file.task.file).as_mut() {
            s.done.insert(offset, offset + granted);
        }
        ctx.file
            .task
            .downloaded
            .fetch_add(granted, Ordering::Relaxed);
        ctx.sources.served(at, granted);
    }
    batch.clear();
    Ok(granted == wanted)
}
