//! Listeners: one accept loop per listener, serving HTTP/1.1 and HTTP/2 prior knowledge (h2c)
//! on the same port, started and stopped by diffing listener sets.
//!
//! A listener whose config changes but keeps its address is updated in place (the next request
//! sees the new config). A removed listener stops accepting and asks its connections to shut down
//! gracefully: in-flight requests finish, idle connections close.

mod capture;
mod cors;
mod forward;
mod http;
mod normalize;
mod observed;
pub(crate) mod prefetched;
mod replay;
mod sniff;
mod tcp;
mod upgrade;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};
use tracing::Instrument;

use crate::config::{Listener, RouteSource, TransportProtocol};
use crate::routing::{CompiledRoutes, RouteStore};
use crate::stats::Stats;
use crate::tls::Secrets;
use crate::upstream::ClusterManager;
pub use http::{ProxyBody, REASON_HEADER, local_reply};
pub(crate) use http::{new_request_id, request_authority};
pub(crate) use observed::{BodyObserver, observe};
pub use sniff::DetectionStats;

/// Listener errors.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The address could not be bound.
    #[error("Listener {name}: address: cannot bind {address}: {source}")]
    Bind {
        /// The listener.
        name: String,
        /// The address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What the request path shares across listeners.
#[derive(Debug, Clone)]
pub struct Shared {
    /// RDS route tables.
    pub routes: Arc<RouteStore>,
    /// Clusters and endpoints.
    pub clusters: Arc<ClusterManager>,
    /// Metrics.
    pub stats: Arc<Stats>,
    /// Certificates and TLS configs.
    pub secrets: Arc<Secrets>,
    /// Remote JWKS of the JWT filter, fetched through the clusters and cached.
    pub jwks: Arc<crate::authn::JwksCache>,
    /// Spans of traced requests and their exporters.
    pub tracer: Arc<crate::trace::Tracer>,
}

/// A listener's current config, with the inline route tables of its chains compiled.
#[derive(Debug)]
pub struct ListenerRuntime {
    /// The listener config.
    pub config: Listener,
    /// Per filter chain, the compiled inline route table, if its routes are inline.
    pub inline: Vec<Option<Arc<CompiledRoutes>>>,
}

impl ListenerRuntime {
    fn new(config: Listener) -> Self {
        let inline = config
            .filter_chains
            .iter()
            .map(|c| match &c.hcm.routes {
                RouteSource::Inline(table) => Some(Arc::new(CompiledRoutes::new(table.clone()))),
                RouteSource::Rds(_) => None,
            })
            .collect();
        ListenerRuntime { config, inline }
    }
}

/// How long the TLS inspector waits for a connection's first bytes, and a TLS handshake may
/// take (Envoy's `listener_filters_timeout` default).
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// A bound listener as reported by the admin API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BoundListener {
    /// The listener's name.
    pub name: String,
    /// The address it was configured with.
    pub address: SocketAddr,
    /// The address actually bound (differs when the configured port is 0).
    pub local_address: SocketAddr,
}

struct Running {
    runtime: Arc<ArcSwap<ListenerRuntime>>,
    configured: SocketAddr,
    local: SocketAddr,
    stop: watch::Sender<bool>,
}

/// Starts, updates and stops listeners.
pub struct ListenerManager {
    shared: Shared,
    running: Mutex<HashMap<String, Running>>,
    /// Every accepted connection's task, so a drain can wait for them.
    connections: crate::lifecycle::drain::Connections,
    /// Listeners by address, for `use_original_dst` handoff (incl. unbound ones).
    handoff: capture::Handoff,
}

impl std::fmt::Debug for ListenerManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerManager").finish_non_exhaustive()
    }
}

impl ListenerManager {
    /// A manager with no listeners.
    pub fn new(shared: Shared) -> Self {
        ListenerManager {
            shared,
            running: Mutex::new(HashMap::new()),
            connections: crate::lifecycle::drain::Connections::default(),
            handoff: capture::Handoff::default(),
        }
    }

    /// Makes the running listeners match `listeners`. New addresses are bound first; if any bind
    /// fails nothing changes and the error is returned.
    pub async fn apply(&self, listeners: Vec<Listener>) -> Result<(), ListenerError> {
        let mut running = self.running.lock().await;
        let mut bound = HashMap::new();
        for l in &listeners {
            let keep = running
                .get(&l.name)
                .is_some_and(|r| r.configured == l.address);
            if !keep && l.capture.bind_to_port {
                let socket =
                    TcpListener::bind(l.address)
                        .await
                        .map_err(|source| ListenerError::Bind {
                            name: l.name.clone(),
                            address: l.address,
                            source,
                        })?;
                bound.insert(l.name.clone(), socket);
            }
        }
        let wanted: std::collections::HashSet<&str> = listeners
            .iter()
            .filter(|l| l.capture.bind_to_port)
            .map(|l| l.name.as_str())
            .collect();
        let mut unbound = Vec::new();
        running.retain(|name, r| {
            let keep = wanted.contains(name.as_str()) && !bound.contains_key(name);
            if !keep {
                tracing::info!(listener = %name, address = %r.local, "stopping listener");
                let _ = r.stop.send(true);
            }
            keep
        });
        for l in listeners {
            match bound.remove(&l.name) {
                Some(socket) => {
                    let local = socket.local_addr().unwrap_or(l.address);
                    let (stop, stop_rx) = watch::channel(false);
                    let configured = l.address;
                    let name = l.name.clone();
                    let runtime = Arc::new(ArcSwap::from_pointee(ListenerRuntime::new(l)));
                    tracing::info!(listener = %name, address = %local, "listening");
                    tokio::spawn(accept_loop(
                        socket,
                        runtime.clone(),
                        self.shared.clone(),
                        stop_rx,
                        self.connections.clone(),
                        self.handoff.clone(),
                    ));
                    running.insert(
                        name,
                        Running {
                            runtime,
                            configured,
                            local,
                            stop,
                        },
                    );
                }
                None if !l.capture.bind_to_port => unbound.push(l),
                None => {
                    if let Some(r) = running.get(&l.name)
                        && r.runtime.load().config != l
                    {
                        r.runtime.store(Arc::new(ListenerRuntime::new(l)));
                    }
                }
            }
        }
        self.handoff.rebuild(
            running.values().map(|r| (r.configured, r.runtime.clone())),
            unbound,
        );
        Ok(())
    }

    /// The listeners that are accepting, with their bound addresses.
    pub async fn bound(&self) -> Vec<BoundListener> {
        let running = self.running.lock().await;
        let mut out: Vec<_> = running
            .iter()
            .map(|(name, r)| BoundListener {
                name: name.clone(),
                address: r.configured,
                local_address: r.local,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The tasks of accepted connections (see [`crate::lifecycle::drain`]).
    pub fn connections(&self) -> &crate::lifecycle::drain::Connections {
        &self.connections
    }

    /// Stops every listener (connections finish gracefully).
    pub async fn stop_all(&self) {
        let mut running = self.running.lock().await;
        for (_, r) in running.drain() {
            let _ = r.stop.send(true);
        }
    }
}

async fn accept_loop(
    socket: TcpListener,
    runtime: Arc<ArcSwap<ListenerRuntime>>,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
    connections: crate::lifecycle::drain::Connections,
    handoff: capture::Handoff,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            accepted = socket.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically EMFILE: back off briefly rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (serving, dst) = capture::dispatch(&stream, &runtime, &handoff);
        let name = serving.load().config.name.clone();
        let span = tracing::info_span!("conn", listener = %name, %peer);
        connections.spawn(
            accept_connection(stream, peer, dst, serving, shared.clone(), stop.clone())
                .instrument(span),
        );
    }
}

/// The listener filters and the filter chain match: detects TLS (when the listener has the TLS
/// inspector), picks the chain, terminates TLS if the chain does, and serves HTTP.
async fn accept_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    dst: capture::Destination,
    runtime: Arc<ArcSwap<ListenerRuntime>>,
    shared: Shared,
    stop: watch::Receiver<bool>,
) {
    let _counted = shared.stats.downstream_opened();
    let local = dst.local;
    let current = runtime.load_full();
    let port = local.map(|a| a.port());
    // The listener filters: what the first bytes are, or a server-first session served here.
    let Some((stream, detected)) =
        sniff::server_first::detect(stream, &current.config, peer, dst, &runtime, &shared).await
    else {
        return;
    };
    let transport = detected.transport();
    // The TLS inspector's SNI, when a chain is picked by server name.
    let sni = if transport == TransportProtocol::Tls && current.config.matches_server_names() {
        tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            crate::tls::client_hello::peek_sni(&stream),
        )
        .await
        .ok()
        .flatten()
    } else {
        None
    };
    let Some((_, chain)) = current.config.chain_for_connection(
        port,
        transport,
        sni.as_deref(),
        detected.application_protocol(),
    ) else {
        tracing::debug!(
            ?transport,
            "no filter chain matches the connection; closing"
        );
        return;
    };
    let mut ctx = http::ConnCtx {
        listener: runtime.clone(),
        shared: shared.clone(),
        peer: Some(peer),
        local,
        redirected: dst.redirected,
        transport,
        peer_identity: None,
        peer_cert_hash: None,
        sni: sni.clone(),
        application_protocol: detected.application_protocol(),
        preserve_header_case: chain.hcm.preserve_header_case,
    };
    let tcp_proxy = chain.tcp_proxy.clone().map(|t| {
        (
            t,
            chain.network_rbac.clone(),
            chain.network_ext_authz.clone(),
        )
    });
    let Some(tls) = chain.tls.clone() else {
        serve_chain(stream, ctx, tcp_proxy, stop).await;
        return;
    };
    drop(current);
    let acceptor =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let handshake = async {
        let start = acceptor.await.map_err(|e| e.to_string())?;
        let alpn = start.client_hello().alpn().is_some_and(|mut offered| {
            offered.any(|p| tls.alpn_protocols.iter().any(|ours| ours.as_bytes() == p))
        });
        let config = shared
            .secrets
            .server_config(&tls, alpn)
            .map_err(|e| e.to_string())?;
        start.into_stream(config).await.map_err(|e| e.to_string())
    };
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            return;
        }
    };
    if let Some(leaf) = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    {
        ctx.peer_identity = crate::tls::uri_san(leaf.as_ref());
        ctx.peer_cert_hash = Some(crate::tls::cert_hash(leaf.as_ref()));
    }
    ctx.sni = stream.get_ref().1.server_name().map(str::to_string);
    serve_chain(stream, ctx, tcp_proxy, stop).await;
}

/// A TCP chain's network filters: the TCP proxy, the network RBAC filters before it, and the
/// network ext_authz filter (with its shadow RBAC filters) before those.
type TcpChain = (
    crate::config::TcpProxy,
    Vec<Arc<crate::config::Rbac>>,
    Option<Arc<crate::config::NetworkExtAuthz>>,
);

/// Runs the chain's network filter on the (decrypted) connection: the TCP proxy, or HTTP.
async fn serve_chain<S>(
    stream: S,
    ctx: http::ConnCtx,
    tcp_proxy: Option<TcpChain>,
    stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Some(tcp_chain) = tcp_proxy else {
        serve_connection(stream, Arc::new(ctx), stop).await;
        return;
    };
    if !tcp_authorized(&ctx, &tcp_chain).await {
        return;
    }
    let session = tcp::serve(stream, &tcp_chain.0, &ctx.shared, ctx.local).await;
    record_tcp(&ctx, &session);
}

/// The network ext_authz and RBAC filters of a TCP chain: whether the connection may go on.
async fn tcp_authorized(ctx: &http::ConnCtx, chain: &TcpChain) -> bool {
    let (_, network_rbac, network_ext_authz) = chain;
    // envoy.filters.network.ext_authz (Istio's CUSTOM): checked once, before network RBAC.
    if let Some(n) = network_ext_authz {
        let headers = ::http::HeaderMap::new();
        let attributes = crate::authz::RequestAttributes {
            headers: &headers,
            authority: "",
            method: "",
            path_and_query: "",
            local: ctx.local,
            peer: ctx.peer,
            peer_identity: ctx.peer_identity.as_deref(),
            sni: ctx.sni.as_deref(),
            jwt: None,
        };
        let check = crate::ext_authz::CheckContext {
            clusters: &ctx.shared.clusters,
            method: "",
            authority: "",
            path_and_query: "",
            scheme: "",
            protocol: "",
            headers: &headers,
            peer: ctx.peer,
            local: ctx.local,
            peer_identity: ctx.peer_identity.as_deref(),
            sni: ctx.sni.as_deref(),
            body: None,
        };
        if let Err(cause) = crate::ext_authz::check_connection(n, &attributes, &check).await {
            tracing::debug!(%cause, "ext_authz closed the TCP connection");
            return false;
        }
    }
    // envoy.filters.network.rbac: a denied connection is closed before any byte is proxied.
    if !network_rbac.is_empty() {
        let headers = ::http::HeaderMap::new();
        let attributes = crate::authz::RequestAttributes {
            headers: &headers,
            authority: "",
            method: "",
            path_and_query: "",
            local: ctx.local,
            peer: ctx.peer,
            peer_identity: ctx.peer_identity.as_deref(),
            sni: ctx.sni.as_deref(),
            jwt: None,
        };
        if let crate::authz::Verdict::Denied(cause) =
            crate::authz::evaluate(network_rbac, &attributes)
        {
            tracing::debug!(%cause, "RBAC closed the TCP connection");
            return false;
        }
    }
    true
}

/// Records a finished TCP proxy session (the `istio_tcp_*` metrics) and logs how it ended.
fn record_tcp(ctx: &http::ConnCtx, session: &tcp::Session) {
    // The `istio_tcp_*` metrics (connections opened/closed, bytes both ways): the session
    // reports the cluster and byte counts.
    let telemetry = &ctx.shared.stats.telemetry;
    let labels = telemetry.tcp_labels(
        crate::telemetry::Downstream {
            inbound: capture::is_inbound(&ctx.listener.load().config.name),
            peer_identity: ctx.peer_identity.as_deref(),
        },
        &session.cluster,
        session.failure.as_deref(),
    );
    // Recorded when the connection ends: opened and closed together, bytes each way (sent =
    // to the downstream, as Istio's `istio_tcp_sent_bytes_total`).
    telemetry.metrics.record_tcp_open(&labels);
    telemetry
        .metrics
        .record_tcp_close(&labels, session.received, session.sent);
    match &session.failure {
        Some(reason) => {
            tracing::debug!(cluster = %session.cluster, reason, "tcp proxy: connection closed")
        }
        None => tracing::debug!(
            cluster = %session.cluster,
            sent = session.sent,
            received = session.received,
            idle_closed = session.idle_closed,
            "tcp proxy: connection done"
        ),
    }
}

async fn serve_connection<S>(stream: S, ctx: Arc<http::ConnCtx>, mut stop: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let preserve_header_case = ctx.preserve_header_case;
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, std::convert::Infallible>(http::handle(ctx, req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The received names' case rides in the request's extensions to the upstream connection.
    builder.http1().preserve_header_case(preserve_header_case);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with error");
    }
}
