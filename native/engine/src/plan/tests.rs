//! Tests of the planner: pieces, steals, take-overs, the probe's piece, release.

use super::*;
use crate::range::RangeSet;

#[test]
fn cuts_missing_ranges_into_pieces() {
    let p = Plan::new(&[(0, 25), (30, 35)], 10);
    let mut got = Vec::new();
    while let Some(l) = p.next() {
        got.push((l.start, l.end()));
        let (_, n) = l.claim(u64::MAX);
        assert_eq!(n, l.end() - l.start);
    }
    assert_eq!(got, vec![(0, 10), (10, 20), (20, 25), (30, 35)]);
    assert!(p.is_drained());
}

#[test]
fn steals_the_back_half_of_the_largest_piece() {
    let total = 8 * MIN_SPLIT;
    let p = Plan::new(&[(0, total)], total).with_min_steal_time(Duration::ZERO);
    let a = p.next().unwrap();
    a.claim(MIN_SPLIT);
    let b = p.next().unwrap();
    // a had [MIN_SPLIT, 8M) left: the thief takes the back half.
    assert_eq!(b.start, MIN_SPLIT + 7 * MIN_SPLIT / 2);
    assert_eq!(a.end(), b.start);
    assert_eq!(b.end(), total);
    // The owner is cut short at the split point.
    let (off, n) = a.claim(total);
    assert_eq!((off, off + n), (MIN_SPLIT, b.start));
}

#[test]
fn a_steal_takes_at_most_one_piece() {
    // A lease that ran on over three pieces: the first thief takes one piece from
    // its back, not the half (5.5 units) that would make it finish last.
    let m = MIN_SPLIT;
    let p = Plan::new(&[(0, 12 * m)], 4 * m).with_min_steal_time(Duration::ZERO);
    let a = p.next().unwrap();
    a.claim(4 * m);
    assert!(p.extend(&a, 12 * m) && p.extend(&a, 12 * m));
    assert_eq!(a.end(), 12 * m);
    let thief = p.next().unwrap();
    assert_eq!((thief.start, thief.end()), (8 * m, 12 * m));
    assert_eq!(a.end(), 8 * m);
    // (Within two pieces the back half goes: steals_the_back_half_of_the_largest_piece.)
}

#[test]
fn the_probe_lease_ends_with_its_piece() {
    // The probe asked for 10 units against pieces of 4: it keeps one piece, and the
    // piece after it waits at the back of the queue.
    let m = MIN_SPLIT;
    let p = Plan::new(&[(0, 16 * m)], 4 * m);
    let probe = p.adopt(0, 10 * m);
    assert_eq!((probe.start, probe.end()), (0, 4 * m));
    let order: Vec<_> = std::iter::from_fn(|| p.next().map(|l| (l.start, l.end()))).collect();
    assert_eq!(
        order,
        vec![(8 * m, 12 * m), (12 * m, 16 * m), (4 * m, 8 * m)]
    );
}

#[test]
fn a_response_runs_on_into_pieces_nobody_took() {
    let m = MIN_SPLIT;
    let p = Plan::new(&[(0, 12 * m)], 4 * m);
    let probe = p.adopt(0, 10 * m);
    probe.claim(4 * m);
    assert!(p.extend(&probe, 10 * m));
    assert_eq!(probe.end(), 8 * m);
    probe.claim(4 * m);
    // Only up to where the response ends: the rest of that piece stays pending.
    assert!(p.extend(&probe, 10 * m));
    assert_eq!(probe.end(), 10 * m);
    assert!(!p.extend(&probe, 10 * m));
    let rest = p.next().unwrap();
    assert_eq!((rest.start, rest.end()), (10 * m, 12 * m));
}

#[test]
fn a_piece_another_connection_took_is_not_run_into() {
    let m = MIN_SPLIT;
    let p = Plan::new(&[(0, 8 * m)], 4 * m);
    let probe = p.adopt(0, 8 * m);
    let other = p.next().unwrap();
    assert_eq!(other.start, 4 * m);
    probe.claim(4 * m);
    assert!(!p.extend(&probe, 8 * m));
    assert_eq!(probe.claim(1).1, 0);
}

#[test]
fn a_young_lease_is_not_judged_a_crawl() {
    // One read into a lease of 30 ms is no evidence: its thread may just not have run.
    let m = MIN_SPLIT;
    let p = Plan::new(&[(0, 12 * m)], 4 * m).with_min_steal_time(Duration::from_millis(10));
    let fast = p.next().unwrap();
    let slow = p.next().unwrap();
    let third = p.next().unwrap();
    std::thread::sleep(Duration::from_millis(5));
    fast.claim(4 * m);
    third.claim(4 * m);
    slow.claim(1000);
    std::thread::sleep(Duration::from_millis(25));
    // Not a take-over: the back half (a steal), and the owner keeps its front.
    let thief = p.next().expect("a steal");
    assert!(!slow.relieved());
    assert_eq!(thief.end(), 8 * m);
    assert_eq!(slow.end(), thief.start);
    assert!(thief.start > 4 * m + 1000);
    // Past four `min_steal_time`s and still crawling: relieved of all it has left.
    std::thread::sleep(Duration::from_millis(20));
    let left = slow.end();
    let rescuer = p.next().expect("taken over");
    assert!(slow.relieved());
    assert_eq!((rescuer.start, rescuer.end()), (4 * m + 1000, left));
}

fn leased(n: Next) -> Lease {
    match n {
        Next::Lease(l) => l,
        other => panic!("a lease expected, got {other:?}"),
    }
}

#[test]
fn a_young_slow_lease_keeps_idle_connections_waiting_until_it_can_be_judged() {
    // The last piece went to a connection that crawls (a thief's new connection, say):
    // the others, run dry, must not leave for good before it can be judged.
    let m = MIN_SPLIT;
    let p = Plan::new(&[(0, 2 * m), (4 * m, 5 * m)], 2 * m)
        .with_min_steal_time(Duration::from_millis(10));
    let fast = p.next().unwrap();
    std::thread::sleep(Duration::from_millis(5));
    fast.claim(2 * m);
    let crawler = p.next().unwrap();
    crawler.claim(100);
    std::thread::sleep(Duration::from_millis(5));
    let Next::Wait(d) = p.next_after(None) else {
        panic!("a young slow lease: wait to judge it");
    };
    assert!(d <= Duration::from_millis(40));
    std::thread::sleep(d + Duration::from_millis(5));
    let rescuer = leased(p.next_after(None));
    assert!(crawler.relieved());
    assert_eq!((rescuer.start, rescuer.end()), (4 * m + 100, 5 * m));
    // Everything is in a healthy connection's hands now: nothing to wait for.
    rescuer.claim(1000);
    assert!(matches!(p.next_after(None), Next::Done));
}

#[test]
fn a_crawling_lease_is_taken_over_whole() {
    let m = MIN_SPLIT;
    let p = Plan::new(&[(0, 6 * m)], 2 * m).with_min_steal_time(Duration::ZERO);
    let fast = p.next().unwrap();
    let slow = p.next().unwrap();
    let third = p.next().unwrap();
    std::thread::sleep(Duration::from_millis(5));
    fast.claim(2 * m); // 1 MiB in ~5 ms: the healthy speed here
    third.claim(2 * m);
    slow.claim(1000);
    std::thread::sleep(Duration::from_millis(20));
    // ~1000 bytes in 25 ms: a crawl; the thief takes everything it has left.
    let thief = p.next().expect("taken over");
    assert_eq!((thief.start, thief.end()), (2 * m + 1000, 4 * m));
    assert!(slow.relieved());
    assert_eq!(slow.claim(1).1, 0);
    assert!(!thief.relieved());
}

#[test]
fn a_lease_at_the_common_speed_is_only_halved() {
    let m = MIN_SPLIT;
    let p = Plan::new(&[(0, 8 * m)], 4 * m).with_min_steal_time(Duration::ZERO);
    let a = p.next().unwrap();
    let b = p.next().unwrap();
    std::thread::sleep(Duration::from_millis(10));
    a.claim(4 * m);
    b.claim(2 * m); // half the speed of a: slower, not a straggler
    let thief = p.next().unwrap();
    assert!(!b.relieved());
    assert_eq!(thief.end() - thief.start, m);
}

#[test]
fn fast_owners_near_their_end_are_left_alone() {
    let total = 64 * MIN_SPLIT;
    let p = Plan::new(&[(0, total)], total).with_min_steal_time(Duration::from_secs(3600));
    let a = p.next().unwrap();
    a.claim(MIN_SPLIT);
    // At any realistic speed the owner finishes well within an hour.
    assert!(p.next().is_none());
    // A piece with no byte yet, younger than the threshold, is not split either.
    let q = Plan::new(&[(0, total)], total).with_min_steal_time(Duration::from_secs(3600));
    let _b = q.next().unwrap();
    assert!(q.next().is_none());
}

#[test]
fn slow_owners_are_relieved() {
    let total = 64 * MIN_SPLIT;
    let p = Plan::new(&[(0, total)], total).with_min_steal_time(Duration::from_millis(20));
    let a = p.next().unwrap();
    a.claim(1);
    std::thread::sleep(Duration::from_millis(30));
    // One byte in 30 ms: the rest would take ages.
    let b = p.next().expect("stolen");
    assert!(b.start > 1 && a.end() == b.start);
}

#[test]
fn small_remainders_are_not_split() {
    let p = Plan::new(&[(0, 2 * MIN_SPLIT - 1)], u64::MAX);
    let _a = p.next().unwrap();
    assert!(p.next().is_none());
}

#[test]
fn adopt_removes_the_probe_range() {
    let p = Plan::new(&[(0, 100)], 40);
    let probe = p.adopt(0, 30);
    assert_eq!((probe.start, probe.end()), (0, 30));
    let mut got = Vec::new();
    while let Some(l) = p.next() {
        if l.start == 0 {
            // re-handed the adopted piece? must not happen while it is active
            panic!("probe range handed out twice");
        }
        got.push((l.start, l.end()));
        l.claim(u64::MAX);
    }
    assert_eq!(got, vec![(40, 80), (80, 100), (30, 40)]);
}

#[test]
fn the_probe_connection_continues_its_piece() {
    // Pieces of 40; the probe took [0, 30): [30, 40) waits for its connection.
    let p = Plan::new(&[(0, 120)], 40);
    let probe = p.adopt(0, 30);
    let other = p.next().unwrap();
    assert_eq!((other.start, other.end()), (40, 80));
    probe.claim(u64::MAX);
    let next = leased(p.next_after(Some(probe.end())));
    assert_eq!((next.start, next.end()), (30, 40));
    // Without an adjacent pending piece, the queue's order holds.
    next.claim(u64::MAX);
    let last = leased(p.next_after(Some(next.end())));
    assert_eq!((last.start, last.end()), (80, 120));
}

#[test]
fn release_puts_back_the_unfinished_part() {
    let p = Plan::new(&[(0, 100)], 100);
    let a = p.next().unwrap();
    a.claim(30);
    p.release(&a);
    assert_eq!(a.claim(10).1, 0, "old owner can no longer claim");
    let b = p.next().unwrap();
    assert_eq!((b.start, b.end()), (30, 100));
}

/// Many threads claiming and stealing at once still cover every byte exactly once.
#[test]
fn concurrent_claims_and_steals_cover_each_byte_once() {
    let total = 64 * MIN_SPLIT + 12345;
    let plan =
        Arc::new(Plan::new(&[(0, total)], 5 * MIN_SPLIT).with_min_steal_time(Duration::ZERO));
    let written = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for _ in 0..8 {
        let plan = plan.clone();
        let written = written.clone();
        threads.push(std::thread::spawn(move || {
            while let Some(l) = plan.next() {
                loop {
                    let (off, n) = l.claim(65_536);
                    if n == 0 {
                        break;
                    }
                    written.lock().unwrap().push((off, off + n));
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let mut w = written.lock().unwrap().clone();
    w.sort();
    let sum: u64 = w.iter().map(|(s, e)| e - s).sum();
    assert_eq!(sum, total, "no byte twice");
    assert!(RangeSet::from_ranges(w).is_complete(total));
}

#[test]
fn pieces_are_even_per_connection_and_at_most_a_chunk() {
    // 256 MiB, 16 connections, 10 MiB chunks: 2 rounds of 16 pieces of 8 MiB.
    assert_eq!(piece_size(256 << 20, 10 << 20, 16), 8 << 20);
    assert_eq!(piece_size(64 << 20, 10 << 20, 16), 4 << 20);
    assert_eq!(piece_size(100, 10 << 20, 16), MIN_SPLIT);
    for (total, chunk, conns) in [(1u64 << 30, 10u64 << 20, 16usize), (12345678, 1 << 20, 7)] {
        let p = piece_size(total, chunk, conns);
        assert!(p <= chunk);
        assert_eq!(
            total.div_ceil(p) % conns as u64,
            0,
            "{total} {chunk} {conns}"
        );
    }
}
