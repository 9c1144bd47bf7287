//! The TCP proxy filter: each downstream connection gets one upstream connection (cluster or
//! weighted clusters picked per connection, endpoint by the cluster's load balancer, within its
//! `max_connections`), and bytes are copied both ways until both sides are done. A side that
//! ends its sending (FIN) is half-closed towards the other while the other direction keeps
//! flowing; `idle_timeout` without bytes either way closes both. A connection that cannot be
//! proxied (no cluster, no healthy endpoint, connect failure, overflow) is closed, as Envoy does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::Shared;
use crate::config::TcpProxy;
use crate::routing::pick_cluster;
use crate::upstream::{LbContext, UpstreamError};

/// What one proxied connection did (for logs and the `istio_tcp_*` metrics).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The cluster picked (empty when none could be).
    pub cluster: String,
    /// Bytes from downstream to upstream.
    pub sent: u64,
    /// Bytes from upstream to downstream.
    pub received: u64,
    /// Why the connection could not be proxied, as `FLAG cause` (`UF`, `UH`, `UO`, `NC`).
    pub failure: Option<String>,
    /// The idle timeout closed the connection.
    pub idle_closed: bool,
}

/// Proxies one downstream connection according to `tcp`; `original_dst` is the connection's
/// (original) destination, where ORIGINAL_DST clusters connect.
pub(crate) async fn serve<S>(
    downstream: S,
    tcp: &TcpProxy,
    shared: &Shared,
    original_dst: Option<std::net::SocketAddr>,
) -> Session
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    match connect(tcp, shared, original_dst).await {
        Ok(upstream) => relay(downstream, upstream, &[], tcp.idle_timeout).await,
        Err(session) => session,
    }
}

/// An upstream connection made for a TCP proxy session, not yet relaying.
pub(crate) struct Upstream {
    io: crate::upstream::BoxIo,
    _slot: crate::upstream::ResourceGuard,
    _active: crate::upstream::ActiveGuard,
    cluster: String,
}

impl Upstream {
    /// The connection, to read a server-first greeting from before relaying.
    pub(crate) fn io(&mut self) -> &mut crate::upstream::BoxIo {
        &mut self.io
    }
}

/// Picks the cluster and endpoint of `tcp` and connects; a failure is the finished session.
pub(crate) async fn connect(
    tcp: &TcpProxy,
    shared: &Shared,
    original_dst: Option<std::net::SocketAddr>,
) -> Result<Upstream, Session> {
    let cluster_name = pick_cluster(&tcp.target, &mut rand::rng()).to_string();
    let failed = |failure: String| Session {
        cluster: cluster_name.clone(),
        failure: Some(failure),
        ..Default::default()
    };
    let Some(cluster) = shared.clusters.get(&cluster_name) else {
        return Err(failed(format!(
            "NC cluster {cluster_name} is not configured"
        )));
    };
    let ctx = LbContext {
        hash: None,
        exclude: &[],
        original_dst,
    };
    let Some(endpoint) = cluster.pick_with(&ctx) else {
        return Err(failed(format!(
            "UH no healthy endpoints in cluster {cluster_name}"
        )));
    };
    match cluster.connect_tunnel(&endpoint).await {
        Ok((io, slot, active)) => Ok(Upstream {
            io,
            _slot: slot,
            _active: active,
            cluster: cluster_name,
        }),
        Err(e @ UpstreamError::Overflow { .. }) => Err(failed(format!("UO {e}"))),
        Err(e) => Err(failed(format!("UF {e}"))),
    }
}

/// Relays between `downstream` and a connected `upstream`; `greeting` is what the upstream
/// already sent (read while the downstream was silent), delivered first.
pub(crate) async fn relay<S>(
    mut downstream: S,
    upstream: Upstream,
    greeting: &[u8],
    idle: Option<Duration>,
) -> Session
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut session = Session {
        cluster: upstream.cluster.clone(),
        ..Default::default()
    };
    if !greeting.is_empty() {
        if let Err(e) = downstream.write_all(greeting).await {
            session.failure = Some(format!("DC downstream closed before the greeting: {e}"));
            return session;
        }
        session.received = greeting.len() as u64;
    }
    let Upstream {
        io, _slot, _active, ..
    } = upstream;
    let (sent, received, idle) = pump(downstream, io, idle).await;
    session.sent = sent;
    session.received += received;
    session.idle_closed = idle;
    session
}

/// Copies both ways with half-close until both directions ended or `idle` passed without
/// bytes either way. Returns (bytes a→b, bytes b→a, whether the idle timeout fired).
pub(crate) async fn pump<A, B>(a: A, b: B, idle: Option<Duration>) -> (u64, u64, bool)
where
    A: AsyncRead + AsyncWrite + Unpin + Send,
    B: AsyncRead + AsyncWrite + Unpin + Send,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let ab = AtomicU64::new(0);
    let ba = AtomicU64::new(0);
    let copy = async {
        tokio::join!(
            copy_half(ar, bw, &ab, &last, start),
            copy_half(br, aw, &ba, &last, start)
        )
    };
    let idled = match idle {
        None => {
            copy.await;
            false
        }
        Some(idle) => {
            tokio::select! {
                _ = copy => false,
                _ = idle_watch(&last, start, idle) => true,
            }
        }
    };
    (
        ab.load(Ordering::Relaxed),
        ba.load(Ordering::Relaxed),
        idled,
    )
}

async fn copy_half<R, W>(mut r: R, mut w: W, count: &AtomicU64, last: &AtomicU64, start: Instant)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    // Half-close: the other side sees our peer's FIN, and may keep sending.
    let _ = w.shutdown().await;
}

async fn idle_watch(last: &AtomicU64, start: Instant, idle: Duration) {
    loop {
        let at = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        if Instant::now() >= at {
            return;
        }
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn half_close_keeps_the_other_direction_open() {
        let (client, proxy_down) = tokio::io::duplex(1024);
        let (proxy_up, server) = tokio::io::duplex(1024);
        let pumping = tokio::spawn(pump(proxy_down, proxy_up, Some(Duration::from_secs(30))));
        let (mut cr, mut cw) = tokio::io::split(client);
        let (mut sr, mut sw) = tokio::io::split(server);
        cw.write_all(b"request").await.ok();
        cw.shutdown().await.ok();
        let mut got = Vec::new();
        sr.read_to_end(&mut got).await.ok();
        assert_eq!(got, b"request");
        // The server answers after the client's FIN: still delivered.
        sw.write_all(b"late answer").await.ok();
        sw.shutdown().await.ok();
        let mut back = Vec::new();
        cr.read_to_end(&mut back).await.ok();
        assert_eq!(back, b"late answer");
        let (sent, received, idle) = pumping.await.unwrap_or_default();
        assert_eq!((sent, received, idle), (7, 11, false));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_closes_both_sides() {
        let (client, proxy_down) = tokio::io::duplex(1024);
        let (proxy_up, server) = tokio::io::duplex(1024);
        let pumping = tokio::spawn(pump(proxy_down, proxy_up, Some(Duration::from_secs(5))));
        let (_cr, mut cw) = tokio::io::split(client);
        let (mut sr, _sw) = tokio::io::split(server);
        cw.write_all(b"x").await.ok();
        let mut one = [0u8; 1];
        sr.read_exact(&mut one).await.ok();
        let (_, _, idle) = pumping.await.unwrap_or_default();
        assert!(idle);
        let mut rest = Vec::new();
        assert_eq!(sr.read_to_end(&mut rest).await.ok(), Some(0));
    }
}
