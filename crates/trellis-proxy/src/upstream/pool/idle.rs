//! Idle-connection expiry (`idle_timeout`): one reaper task per pool, started when a connection
//! first becomes idle, closes the connections idle for longer than the timeout. It replaces a
//! timer task per returned connection, which at Envoy's default timeout (1 h) kept one task per
//! request alive for an hour: memory grew with the request rate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::PoolInner;

/// A pool's reaper: whether it runs, and how to wake it when it had nothing to watch.
#[derive(Debug, Default)]
pub(super) struct Reaper {
    started: AtomicBool,
    wake: Arc<Notify>,
}

impl Reaper {
    /// A connection of `pool` just became idle: makes sure the reaper runs and will see it.
    pub(super) fn idle_added(&self, pool: &Arc<PoolInner>, idle: Duration) {
        if !self.started.swap(true, Ordering::AcqRel) {
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                // No runtime (a pool dropped at exit): nothing to expire.
                self.started.store(false, Ordering::Release);
                return;
            };
            rt.spawn(run(Arc::downgrade(pool), self.wake.clone(), idle));
        }
        self.wake.notify_one();
    }
}

/// Expires idle connections until the pool is gone. Between rounds it holds only a weak
/// reference: it sleeps until the earliest idle deadline (deadlines only grow, as every
/// connection gets the same timeout), or, with nothing idle, until woken or `idle` has passed.
async fn run(pool: Weak<PoolInner>, wake: Arc<Notify>, idle: Duration) {
    loop {
        let next = match pool.upgrade() {
            Some(p) => p.expire_idle(idle, Instant::now()),
            None => return,
        };
        match next {
            Some(at) => tokio::time::sleep_until(at).await,
            None => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(idle) => {}
                }
            }
        }
    }
}

impl PoolInner {
    /// Closes the connections idle since `idle` before `now` (HTTP/1.1: idle in the pool;
    /// HTTP/2: no open stream) and returns the earliest deadline among the others.
    pub(super) fn expire_idle(&self, idle: Duration, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut keep = |deadline: Instant| {
            if deadline > now {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
                true
            } else {
                false
            }
        };
        let mut state = self.lock();
        for list in state.h1_idle.values_mut() {
            // Dropping a sender closes its connection.
            list.retain(|i| keep(i.since + idle));
        }
        for list in state.h2.values_mut() {
            list.retain(|c| {
                if c.streams.load(Ordering::Acquire) > 0 {
                    return true;
                }
                let Some(since) = *c.idle_since.lock().unwrap_or_else(|e| e.into_inner()) else {
                    return true;
                };
                let alive = keep(since + idle);
                if !alive {
                    c.meta.draining.store(true, Ordering::Release);
                }
                alive
            });
        }
        state.h1_idle.retain(|_, l| !l.is_empty());
        next
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http::Request;
    use http_body_util::BodyExt;

    use super::*;
    use crate::config::{CircuitBreakers, Cluster, Discovery, LbPolicy, UpstreamProtocol};
    use crate::upstream::pool::Pool;
    use crate::upstream::tests::counting_upstream as upstream;

    async fn get(pool: &Pool, addr: SocketAddr) {
        let req = Request::get("/")
            .body(
                http_body_util::Empty::<Bytes>::new()
                    .map_err(|e| match e {})
                    .boxed_unsync(),
            )
            .expect("request");
        let resp = pool
            .send(addr, "up", req, &CircuitBreakers::default(), Box::new(()))
            .await
            .expect("response");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"ok");
    }

    /// Connections the pool holds to `addr` (idle HTTP/1.1 ones, all HTTP/2 ones).
    fn held(pool: &Pool, addr: SocketAddr) -> usize {
        let state = pool.inner.lock();
        state.h1_idle.get(&addr).map_or(0, Vec::len) + state.h2.get(&addr).map_or(0, Vec::len)
    }

    /// Polls (bounded) until the pool holds `want` connections to `addr` (HTTP/1.1 ones go
    /// back in a task, once the response has been read).
    async fn until_held(pool: &Pool, addr: SocketAddr, want: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while held(pool, addr) != want {
            assert!(
                Instant::now() < deadline,
                "the pool never held {want} connection(s)"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_expire_and_busy_ones_are_reused() {
        for protocol in [UpstreamProtocol::Http1, UpstreamProtocol::Http2] {
            let (addr, conns) = upstream(protocol == UpstreamProtocol::Http2).await;
            let mut c = Cluster::with_defaults(
                "idle",
                Discovery::Eds {
                    service_name: "idle".into(),
                },
                LbPolicy::RoundRobin,
                protocol,
            );
            c.connection_pool.idle_timeout = Some(Duration::from_millis(300));
            let pool = Pool::new(&c);
            // Within the timeout: one connection, reused.
            for _ in 0..3 {
                get(&pool, addr).await;
                until_held(&pool, addr, 1).await;
            }
            assert_eq!(conns.load(Ordering::SeqCst), 1, "{protocol:?}: reused");
            // Idle past the timeout: closed by the reaper; the next request connects again.
            until_held(&pool, addr, 0).await;
            get(&pool, addr).await;
            assert_eq!(conns.load(Ordering::SeqCst), 2, "{protocol:?}: reconnected");
            // One reaper for the pool, however many requests went through it.
            assert!(pool.inner.reaper.started.load(Ordering::Acquire));
        }
    }
}
