//! The connection budget: `thread_count` TCP connections, whatever the protocol.
//!
//! A pool of HTTP/1.1 connections grows by one connection per concurrent request, so a
//! budget of N requests is N connections. A pool that negotiates HTTP/2 puts every
//! request to one origin on a single connection: N ranges would share one TCP window,
//! one congestion controller and one per-connection cap, and `thread_count` would mean
//! nothing exactly where a CDN throttles per connection. So the client keeps N lanes,
//! each with a pool of its own (on HTTP/2: one TCP connection), and every request takes
//! the least busy lane.
//!
//! A lane that has answered over HTTP/2 may carry up to [`H2_STREAMS`] requests at once:
//! small files then share the lanes' connections (request latency is hidden behind other
//! streams' data) instead of each waiting for a free connection. The budget of requests
//! grows by the lanes' extra streams as they learn it, never by more connections.
//!
//! A lane whose connection turned out slow ([`Slot::retire`]) gets a fresh pool, so its
//! next request opens a new connection instead of going back to the slow one.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::direct::{Direct, Factory};
use super::proxied::Proxied;
use crate::error::{Error, Result};

/// Requests one HTTP/2 connection carries at once. Four streams of 64 KiB files keep a
/// 5 MB/s connection busy across a 40 ms round trip (its bandwidth-delay product is
/// 200 KB); more would only queue behind the same window.
pub const H2_STREAMS: usize = 4;

/// How a lane's pool is made.
pub enum Backend {
    Direct(Factory),
    /// One reqwest client for every lane: it speaks HTTP/1.1 only, so requests are
    /// connections already.
    Proxied(Proxied),
}

/// One lane's pool, cheap to clone (the connections are shared).
#[derive(Clone)]
pub enum Pool {
    Direct(Direct),
    Proxied(Proxied),
}

struct Lane {
    in_flight: usize,
    /// The lane's connection speaks HTTP/2: it takes [`H2_STREAMS`] requests.
    multiplexed: bool,
    /// Built on first use: a lane nobody needs costs nothing.
    pool: Option<Pool>,
}

impl Lane {
    fn capacity(&self) -> usize {
        if self.multiplexed { H2_STREAMS } else { 1 }
    }
}

pub struct Lanes {
    backend: Backend,
    lanes: Mutex<Vec<Lane>>,
    budget: Arc<Semaphore>,
}

/// A request's right to be sent, on one lane; given back when dropped.
pub struct Slot {
    lanes: Arc<Lanes>,
    lane: usize,
    pool: Pool,
    _permit: OwnedSemaphorePermit,
}

impl Lanes {
    pub fn new(backend: Backend, connections: usize) -> Arc<Lanes> {
        let n = connections.max(1);
        let lanes = (0..n)
            .map(|_| Lane {
                in_flight: 0,
                multiplexed: false,
                pool: None,
            })
            .collect();
        Arc::new(Lanes {
            backend,
            lanes: Mutex::new(lanes),
            budget: Arc::new(Semaphore::new(n)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Lane>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn make_pool(&self) -> Pool {
        match &self.backend {
            Backend::Direct(f) => Pool::Direct(f.pool()),
            Backend::Proxied(p) => Pool::Proxied(p.clone()),
        }
    }

    /// Waits for the budget, then takes the least busy lane that has room. Ties go to
    /// the lowest lane, so an idle connection is reused before a new one is opened.
    pub async fn acquire(self: &Arc<Self>) -> Result<Slot> {
        let permit = self
            .budget
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::state("connection budget closed"))?;
        let mut lanes = self.lock();
        // The budget never exceeds the lanes' total capacity, so a lane has room.
        let lane = lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| l.in_flight < l.capacity())
            .min_by_key(|(i, l)| (l.in_flight, *i))
            .map(|(i, _)| i)
            .ok_or_else(|| Error::state("no lane free within the connection budget"))?;
        let pool = match &lanes[lane].pool {
            Some(p) => p.clone(),
            None => {
                let p = self.make_pool();
                lanes[lane].pool = Some(p.clone());
                p
            }
        };
        lanes[lane].in_flight += 1;
        drop(lanes);
        Ok(Slot {
            lanes: self.clone(),
            lane,
            pool,
            _permit: permit,
        })
    }

    /// Warms up to `n` connections for lanes that never carried a request (those that
    /// did keep theirs in their pools).
    pub fn preconnect(&self, uri: &hyper::Uri, n: usize) {
        let Backend::Direct(factory) = &self.backend else {
            return;
        };
        let fresh = self.lock().iter().filter(|l| l.pool.is_none()).count();
        factory.warm(uri, n.min(fresh));
    }

    /// Requests that may be in flight at once now (grows as lanes learn HTTP/2).
    pub fn capacity(&self) -> usize {
        self.lock().iter().map(Lane::capacity).sum()
    }

    fn learned_http2(&self, lane: usize) {
        let mut lanes = self.lock();
        if let Some(l) = lanes.get_mut(lane)
            && !l.multiplexed
        {
            l.multiplexed = true;
            self.budget.add_permits(H2_STREAMS - 1);
        }
    }

    fn retire(&self, lane: usize) {
        let fresh = self.make_pool();
        if let Some(l) = self.lock().get_mut(lane) {
            l.pool = Some(fresh);
        }
    }
}

impl Slot {
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The lane's connection answered over HTTP/2: it may carry more streams.
    pub fn learned_http2(&self) {
        self.lanes.learned_http2(self.lane);
    }

    /// The connection behind this slot is much slower than its peers: the lane's next
    /// request goes out on a new connection. (An HTTP/1.1 connection dropped mid-body
    /// is closed anyway; an HTTP/2 one would stay, and stay slow.)
    pub fn retire(&self) {
        if matches!(self.pool, Pool::Direct(_)) {
            self.lanes.retire(self.lane);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(l) = self.lanes.lock().get_mut(self.lane) {
            l.in_flight = l.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{ClientConfig, ProxySetting};
    use std::time::Duration;

    fn lanes(n: usize) -> Arc<Lanes> {
        let cfg = ClientConfig {
            user_agent: "t".into(),
            connect_timeout: Duration::from_secs(1),
            proxy: ProxySetting::Direct,
            connections: n,
            multiplex: true,
        };
        Lanes::new(Backend::Direct(Factory::new(&cfg).unwrap()), n)
    }

    #[tokio::test]
    async fn requests_spread_over_lanes_and_http2_lanes_take_more_streams() {
        let l = lanes(3);
        let a = l.acquire().await.unwrap();
        let b = l.acquire().await.unwrap();
        let c = l.acquire().await.unwrap();
        assert_eq!((a.lane, b.lane, c.lane), (0, 1, 2));
        assert_eq!(l.capacity(), 3);
        a.learned_http2();
        a.learned_http2(); // once per lane
        assert_eq!(l.capacity(), 3 + H2_STREAMS - 1);
        let d = l.acquire().await.unwrap();
        assert_eq!(d.lane, 0, "only the HTTP/2 lane has room");
        drop(b);
        let e = l.acquire().await.unwrap();
        assert_eq!(e.lane, 1, "the least busy lane first");
        drop((c, d, e));
    }
}
