//! Connection pools (HTTP/1.1 keep-alive, or HTTP/2 prior knowledge), with Envoy's
//! connection-pool circuit breakers and options: `max_connections` (cluster-wide),
//! `max_pending_requests` (requests without a connection, including those waiting for theirs to
//! be established), `max_requests`, `idle_timeout`, `max_requests_per_connection`,
//! `max_connection_duration`, HTTP/2 `max_concurrent_streams` and TCP keepalive.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;
use tracing::Instrument;

use super::breaker::{Counters, Resource, ResourceGuard};
use super::{BoxError, RequestBody, UpstreamError};
use crate::config::{
    CircuitBreakers, Cluster, ConnectionPoolOptions, TcpKeepalive, TransportSocket,
    TransportSocketMatch, UpstreamProtocol, UpstreamTls,
};
use crate::tls::Secrets;

mod idle;

/// An upstream connection: plain TCP or TLS over it.
pub trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> IoStream for T {}
/// An upstream connection, boxed.
pub type BoxIo = Box<dyn IoStream>;

/// A response body from an upstream; holds the request's resources (in-flight counts, the
/// HTTP/2 stream slot) until it ends or is dropped.
pub struct ResponseBody {
    inner: Incoming,
    _hold: Vec<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A cluster's connection pool; cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    protocol: UpstreamProtocol,
    connect_timeout: Duration,
    opts: ConnectionPoolOptions,
    /// Upstream connections are made from this address (`upstream_bind_config`).
    source: Option<std::net::IpAddr>,
    counters: Arc<Counters>,
    state: Mutex<PoolState>,
    next_id: AtomicU64,
    secrets: Arc<Secrets>,
    transport: (Vec<TransportSocketMatch>, TransportSocket),
    /// Closes connections idle for `idle_timeout`.
    reaper: idle::Reaper,
}

#[derive(Debug, Default)]
struct PoolState {
    h1_idle: HashMap<SocketAddr, Vec<H1Idle>>,
    h2: HashMap<SocketAddr, Vec<Arc<H2Conn>>>,
    h2_connecting: HashSet<SocketAddr>,
}

#[derive(Debug)]
struct ConnMeta {
    id: u64,
    created: Instant,
    served: AtomicU32,
    draining: AtomicBool,
    /// The URI SAN of the upstream's verified certificate (TLS connections).
    peer_identity: Option<Arc<str>>,
}

#[derive(Debug)]
struct H1Idle {
    sender: http1::SendRequest<RequestBody>,
    meta: Arc<ConnMeta>,
    /// When it was returned to the pool.
    since: Instant,
}

#[derive(Debug)]
struct H2Conn {
    sender: http2::SendRequest<RequestBody>,
    meta: Arc<ConnMeta>,
    streams: AtomicU32,
    /// When its last stream ended (meaningful while `streams` is 0).
    idle_since: Mutex<Option<Instant>>,
}

impl Pool {
    /// A new, empty pool for `cluster`'s protocol and options (no secrets: TLS to upstreams
    /// that need the workload certificate fails).
    pub fn new(cluster: &Cluster) -> Self {
        Self::with_secrets(cluster, Arc::new(Secrets::new()))
    }

    /// A new, empty pool whose TLS connections use `secrets`.
    pub fn with_secrets(cluster: &Cluster, secrets: Arc<Secrets>) -> Self {
        Pool {
            inner: Arc::new(PoolInner {
                protocol: cluster.protocol,
                connect_timeout: cluster.connect_timeout,
                opts: cluster.connection_pool,
                source: cluster.upstream_bind,
                counters: Arc::new(Counters::default()),
                state: Mutex::new(PoolState::default()),
                next_id: AtomicU64::new(1),
                secrets,
                transport: (
                    cluster.transport_socket_matches.clone(),
                    cluster.transport_socket.clone(),
                ),
                reaper: idle::Reaper::default(),
            }),
        }
    }

    /// Whether this pool can serve `cluster` as it is (same protocol and pool settings).
    pub(crate) fn settings_match(&self, cluster: &Cluster) -> bool {
        self.inner.protocol == cluster.protocol
            && self.inner.connect_timeout == cluster.connect_timeout
            && self.inner.opts == cluster.connection_pool
            && self.inner.source == cluster.upstream_bind
            && self.inner.transport.0 == cluster.transport_socket_matches
            && self.inner.transport.1 == cluster.transport_socket
    }

    /// Idle HTTP/1.1 connections now.
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.inner.lock().h1_idle.values().map(Vec::len).sum()
    }

    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.inner.counters
    }

    /// Sends `req` (whose URI carries at least the path and query) to `addr`. `authority` is the
    /// request's authority: the `Host` header for HTTP/1.1, `:authority` for HTTP/2. `hold` is
    /// kept until the response body ends.
    pub async fn send(
        &self,
        addr: SocketAddr,
        authority: &str,
        req: Request<RequestBody>,
        limits: &CircuitBreakers,
        hold: Box<dyn Send + Sync>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        self.send_over(addr, None, authority, req, limits, hold)
            .await
    }

    /// [`Self::send`] over TLS when `tls` is set (new connections to `addr` handshake with it).
    pub async fn send_over(
        &self,
        addr: SocketAddr,
        tls: Option<&UpstreamTls>,
        authority: &str,
        mut req: Request<RequestBody>,
        limits: &CircuitBreakers,
        hold: Box<dyn Send + Sync>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let counters = &self.inner.counters;
        if !counters.can_create(Resource::Requests, limits.max_requests) {
            return Err(UpstreamError::Overflow {
                resource: Resource::Requests,
                limit: limits.max_requests,
            });
        }
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        match self.inner.protocol {
            UpstreamProtocol::Http1 => {
                // Origin-form on the wire; the authority travels in `Host`.
                *req.uri_mut() =
                    path.parse()
                        .map_err(|e: http::uri::InvalidUri| UpstreamError::Connect {
                            addr,
                            source: Box::new(e),
                        })?;
                *req.version_mut() = Version::HTTP_11;
                if !self.inner.opts.preserve_header_case {
                    // hyper writes the names as its case map says whenever one is present.
                    *req.extensions_mut() = http::Extensions::new();
                }
                if let Ok(host) = HeaderValue::from_str(authority) {
                    req.headers_mut().insert(http::header::HOST, host);
                }
                self.send_h1(addr, tls, req, limits, hold).await
            }
            UpstreamProtocol::Http2 => {
                let authority = if authority.is_empty() {
                    addr.to_string()
                } else {
                    authority.to_string()
                };
                *req.uri_mut() = uri(&authority, &path)?;
                *req.version_mut() = Version::HTTP_2;
                *req.extensions_mut() = http::Extensions::new();
                req.headers_mut().remove(http::header::HOST);
                self.send_h2(addr, tls, req, limits, hold).await
            }
        }
    }

    /// A new, unpooled connection to `addr` for a tunnel (an HTTP upgrade, a TCP proxy
    /// session), counted against `max_connections` until the returned guard is dropped.
    pub async fn connect_tunnel(
        &self,
        addr: SocketAddr,
        tls: Option<&UpstreamTls>,
        limits: &CircuitBreakers,
    ) -> Result<(BoxIo, ResourceGuard), UpstreamError> {
        let slot = self
            .inner
            .counters
            .try_acquire(Resource::Connections, limits.max_connections)
            .ok_or(UpstreamError::Overflow {
                resource: Resource::Connections,
                limit: limits.max_connections,
            })?;
        let io = self.inner.connect(addr, tls).await?;
        Ok((io, slot))
    }

    async fn send_h1(
        &self,
        addr: SocketAddr,
        tls: Option<&UpstreamTls>,
        mut req: Request<RequestBody>,
        limits: &CircuitBreakers,
        hold: Box<dyn Send + Sync>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        // A reused connection may have been closed by the peer meanwhile: if the request was
        // not sent, it is retried on another connection (as hyper-util's pool does).
        for _ in 0..3 {
            let (mut sender, meta, reused) = self.acquire_h1(addr, tls, limits).await?;
            let request_guard = self
                .inner
                .counters
                .try_acquire(Resource::Requests, u32::MAX);
            meta.served.fetch_add(1, Ordering::Relaxed);
            match sender.try_send_request(req).await {
                Ok(mut resp) => {
                    if let Some(id) = &meta.peer_identity {
                        resp.extensions_mut()
                            .insert(crate::telemetry::UpstreamIdentity(id.clone()));
                    }
                    let pool = Arc::downgrade(&self.inner);
                    tokio::spawn(async move {
                        // Ready again once the response has been read to the end.
                        if sender.ready().await.is_ok()
                            && let Some(pool) = pool.upgrade()
                        {
                            pool.put_idle(addr, sender, meta);
                        }
                    });
                    let (parts, body) = resp.into_parts();
                    return Ok(Response::from_parts(
                        parts,
                        ResponseBody {
                            inner: body,
                            _hold: vec![hold, Box::new(request_guard)],
                        },
                    ));
                }
                Err(mut e) => match e.take_message() {
                    Some(r) if reused => req = r,
                    _ => {
                        return Err(UpstreamError::Reset {
                            addr,
                            source: Box::new(e.into_error()),
                        });
                    }
                },
            }
        }
        Err(UpstreamError::Reset {
            addr,
            source: "pooled connections kept closing".into(),
        })
    }

    /// An idle connection, or a new one; waits as a pending request when `max_connections`
    /// are open.
    async fn acquire_h1(
        &self,
        addr: SocketAddr,
        tls: Option<&UpstreamTls>,
        limits: &CircuitBreakers,
    ) -> Result<(http1::SendRequest<RequestBody>, Arc<ConnMeta>, bool), UpstreamError> {
        let counters = &self.inner.counters;
        let mut pending: Option<ResourceGuard> = None;
        loop {
            let notified = counters.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some((sender, meta)) = self.inner.take_idle(addr) {
                return Ok((sender, meta, true));
            }
            if pending.is_none() {
                pending = Some(
                    counters
                        .try_acquire(Resource::PendingRequests, limits.max_pending_requests)
                        .ok_or(UpstreamError::Overflow {
                            resource: Resource::PendingRequests,
                            limit: limits.max_pending_requests,
                        })?,
                );
            }
            if let Some(slot) = counters.try_acquire(Resource::Connections, limits.max_connections)
            {
                let (stream, identity) = self.inner.connect_identified(addr, tls).await?;
                let (sender, conn) = http1::Builder::new()
                    .preserve_header_case(self.inner.opts.preserve_header_case)
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| UpstreamError::Connect {
                        addr,
                        source: Box::new(e),
                    })?;
                tokio::spawn(
                    async move {
                        let _slot = slot;
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "upstream connection closed with error");
                        }
                    }
                    .instrument(tracing::debug_span!("h1 upstream", %addr)),
                );
                let meta = self.inner.new_meta(identity);
                return Ok((sender, meta, false));
            }
            // At max_connections: free an idle connection to another endpoint, or wait.
            self.inner.evict_idle_other_than(addr);
            notified.await;
        }
    }

    async fn send_h2(
        &self,
        addr: SocketAddr,
        tls: Option<&UpstreamTls>,
        req: Request<RequestBody>,
        limits: &CircuitBreakers,
        hold: Box<dyn Send + Sync>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let stream = self.acquire_h2(addr, tls, limits).await?;
        let request_guard = self
            .inner
            .counters
            .try_acquire(Resource::Requests, u32::MAX);
        let mut sender = stream.conn.sender.clone();
        sender.ready().await.map_err(|e| UpstreamError::Reset {
            addr,
            source: Box::new(e),
        })?;
        let mut resp = sender
            .send_request(req)
            .await
            .map_err(|e| UpstreamError::Reset {
                addr,
                source: Box::new(e),
            })?;
        if let Some(id) = &stream.conn.meta.peer_identity {
            resp.extensions_mut()
                .insert(crate::telemetry::UpstreamIdentity(id.clone()));
        }
        let (parts, body) = resp.into_parts();
        Ok(Response::from_parts(
            parts,
            ResponseBody {
                inner: body,
                _hold: vec![hold, Box::new(request_guard), Box::new(stream)],
            },
        ))
    }

    async fn acquire_h2(
        &self,
        addr: SocketAddr,
        tls: Option<&UpstreamTls>,
        limits: &CircuitBreakers,
    ) -> Result<StreamGuard, UpstreamError> {
        let inner = &self.inner;
        let counters = &inner.counters;
        let max_streams = inner.opts.max_concurrent_streams.unwrap_or(u32::MAX);
        let mut pending: Option<ResourceGuard> = None;
        loop {
            let notified = counters.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let connect_slot = {
                let mut state = inner.lock();
                let conns = state.h2.entry(addr).or_default();
                conns.retain(|c| !c.sender.is_closed() && !c.meta.draining.load(Ordering::Acquire));
                if let Some(c) = conns
                    .iter()
                    .find(|c| c.streams.load(Ordering::Acquire) < max_streams)
                    .cloned()
                {
                    return Ok(inner.start_stream(&mut state, c));
                }
                if pending.is_none() {
                    pending = Some(
                        counters
                            .try_acquire(Resource::PendingRequests, limits.max_pending_requests)
                            .ok_or(UpstreamError::Overflow {
                                resource: Resource::PendingRequests,
                                limit: limits.max_pending_requests,
                            })?,
                    );
                }
                if state.h2_connecting.contains(&addr) {
                    None
                } else {
                    let slot = counters.try_acquire(Resource::Connections, limits.max_connections);
                    if slot.is_some() {
                        state.h2_connecting.insert(addr);
                    }
                    slot
                }
            };
            if let Some(slot) = connect_slot {
                let connected = self.connect_h2(addr, tls, slot).await;
                inner.lock().h2_connecting.remove(&addr);
                counters.released.notify_waiters();
                let conn = connected?;
                let mut state = inner.lock();
                state.h2.entry(addr).or_default().push(conn.clone());
                return Ok(inner.start_stream(&mut state, conn));
            }
            notified.await;
        }
    }

    async fn connect_h2(
        &self,
        addr: SocketAddr,
        tls: Option<&UpstreamTls>,
        slot: ResourceGuard,
    ) -> Result<Arc<H2Conn>, UpstreamError> {
        let (stream, identity) = self.inner.connect_identified(addr, tls).await?;
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::Connect {
                addr,
                source: Box::new(e),
            })?;
        tokio::spawn(
            async move {
                let _slot = slot;
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream h2 connection closed with error");
                }
            }
            .instrument(tracing::debug_span!("h2 upstream", %addr)),
        );
        Ok(Arc::new(H2Conn {
            sender,
            meta: self.inner.new_meta(identity),
            streams: AtomicU32::new(0),
            idle_since: Mutex::new(None),
        }))
    }
}

/// One HTTP/2 stream on a pooled connection, until dropped.
struct StreamGuard {
    pool: Weak<PoolInner>,
    conn: Arc<H2Conn>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let pool = self.pool.upgrade();
        let idle = pool.as_ref().and_then(|p| p.opts.idle_timeout);
        if idle.is_some() {
            // Set before the stream is counted out, so the reaper never pairs "no streams"
            // with the end of an earlier idle period.
            *self
                .conn
                .idle_since
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
        let left = self.conn.streams.fetch_sub(1, Ordering::AcqRel) - 1;
        let Some(pool) = pool else {
            return;
        };
        pool.counters.released.notify_waiters();
        if left == 0
            && let Some(idle) = idle
        {
            pool.reaper.idle_added(&pool, idle);
        }
    }
}

impl PoolInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_meta(self: &Arc<Self>, peer_identity: Option<Arc<str>>) -> Arc<ConnMeta> {
        let meta = Arc::new(ConnMeta {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            created: Instant::now(),
            served: AtomicU32::new(0),
            draining: AtomicBool::new(false),
            peer_identity,
        });
        if let Some(d) = self.opts.max_connection_duration {
            let (weak, m) = (Arc::downgrade(self), meta.clone());
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                m.draining.store(true, Ordering::Release);
                if let Some(pool) = weak.upgrade() {
                    let mut state = pool.lock();
                    for list in state.h1_idle.values_mut() {
                        list.retain(|i| i.meta.id != m.id);
                    }
                    for list in state.h2.values_mut() {
                        list.retain(|c| c.meta.id != m.id);
                    }
                }
            });
        }
        meta
    }

    fn reusable(&self, meta: &ConnMeta) -> bool {
        !meta.draining.load(Ordering::Acquire)
            && self
                .opts
                .max_requests_per_connection
                .is_none_or(|max| meta.served.load(Ordering::Relaxed) < max)
            && self
                .opts
                .max_connection_duration
                .is_none_or(|d| meta.created.elapsed() < d)
    }

    fn start_stream(self: &Arc<Self>, _state: &mut PoolState, conn: Arc<H2Conn>) -> StreamGuard {
        conn.streams.fetch_add(1, Ordering::AcqRel);
        let served = conn.meta.served.fetch_add(1, Ordering::AcqRel) + 1;
        if self
            .opts
            .max_requests_per_connection
            .is_some_and(|max| served >= max)
        {
            // No new streams on it; it closes once its streams end and it is dropped.
            conn.meta.draining.store(true, Ordering::Release);
        }
        StreamGuard {
            pool: Arc::downgrade(self),
            conn,
        }
    }

    fn take_idle(
        &self,
        addr: SocketAddr,
    ) -> Option<(http1::SendRequest<RequestBody>, Arc<ConnMeta>)> {
        let mut state = self.lock();
        let list = state.h1_idle.get_mut(&addr)?;
        while let Some(idle) = list.pop() {
            if idle.sender.is_ready() && self.reusable(&idle.meta) {
                return Some((idle.sender, idle.meta));
            }
        }
        None
    }

    fn evict_idle_other_than(&self, addr: SocketAddr) {
        let mut state = self.lock();
        if let Some(list) = state
            .h1_idle
            .iter_mut()
            .find(|(a, l)| **a != addr && !l.is_empty())
            .map(|(_, l)| l)
        {
            list.remove(0);
        }
    }

    fn put_idle(
        self: Arc<Self>,
        addr: SocketAddr,
        sender: http1::SendRequest<RequestBody>,
        meta: Arc<ConnMeta>,
    ) {
        if !self.reusable(&meta) {
            return; // dropping the sender closes the connection
        }
        self.lock().h1_idle.entry(addr).or_default().push(H1Idle {
            sender,
            meta,
            since: Instant::now(),
        });
        self.counters.released.notify_waiters();
        if let Some(idle) = self.opts.idle_timeout {
            self.reaper.idle_added(&self, idle);
        }
    }

    /// A TCP connection to `addr`, with the TLS handshake when `tls` is set.
    async fn connect(
        &self,
        addr: SocketAddr,
        tls: Option<&UpstreamTls>,
    ) -> Result<BoxIo, UpstreamError> {
        self.connect_identified(addr, tls).await.map(|(io, _)| io)
    }

    /// [`Self::connect`], with the URI SAN of the upstream's verified certificate (TLS).
    async fn connect_identified(
        &self,
        addr: SocketAddr,
        tls: Option<&UpstreamTls>,
    ) -> Result<(BoxIo, Option<Arc<str>>), UpstreamError> {
        let stream = self.tcp_connect(addr).await?;
        let Some(tls) = tls else {
            return Ok((Box::new(stream), None));
        };
        let err = |source: BoxError| UpstreamError::Connect { addr, source };
        let config = self
            .secrets
            .client_config(tls)
            .map_err(|e| err(format!("TLS: {e}").into()))?;
        let name = if tls.sni.is_empty() {
            rustls::pki_types::ServerName::IpAddress(addr.ip().into())
        } else {
            rustls::pki_types::ServerName::try_from(tls.sni.clone())
                .map_err(|e| err(format!("TLS: SNI {:?}: {e}", tls.sni).into()))?
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        let stream = tokio::time::timeout(self.connect_timeout, connector.connect(name, stream))
            .await
            .map_err(|_| {
                err(format!("TLS handshake timed out after {:?}", self.connect_timeout).into())
            })?
            .map_err(|e| err(format!("TLS handshake failed: {e}").into()))?;
        let identity = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|leaf| crate::tls::uri_san(leaf.as_ref()))
            .map(Arc::from);
        Ok((Box::new(stream), identity))
    }

    async fn tcp_connect(&self, addr: SocketAddr) -> Result<tokio::net::TcpStream, UpstreamError> {
        let err = |source: BoxError| UpstreamError::Connect { addr, source };
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(|e| err(Box::new(e)))?;
        if let Some(k) = &self.opts.tcp_keepalive {
            set_keepalive(&socket, k).map_err(|e| err(Box::new(e)))?;
        }
        if let Some(ip) = self.source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| err(format!("bind {ip}: {e}").into()))?;
        }
        let stream = tokio::time::timeout(self.connect_timeout, socket.connect(addr))
            .await
            .map_err(|_| err(format!("timed out after {:?}", self.connect_timeout).into()))?
            .map_err(|e| err(Box::new(e)))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

fn set_keepalive(socket: &tokio::net::TcpSocket, k: &TcpKeepalive) -> std::io::Result<()> {
    let mut ka = socket2::TcpKeepalive::new();
    if let Some(t) = k.time {
        ka = ka.with_time(t);
    }
    if let Some(i) = k.interval {
        ka = ka.with_interval(i);
    }
    if let Some(p) = k.probes {
        ka = ka.with_retries(p);
    }
    socket2::SockRef::from(socket).set_tcp_keepalive(&ka)
}

fn uri(authority: &str, path: &str) -> Result<Uri, UpstreamError> {
    format!("http://{authority}{path}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| UpstreamError::Connect {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source: Box::new(e),
        })
}
