//! The listener-filter step of an accepted connection: the inspectors decide what its first
//! bytes are, and a silent connection whose chain is a plain TCP proxy is served here, the
//! upstream connected early so a server-first greeting flows (see the parent module).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Detected, Inspection, Race, SERVER_FIRST_WINDOW, inspect, race};
use crate::config::{Listener, TransportProtocol};
use crate::listener::{
    HANDSHAKE_TIMEOUT, ListenerRuntime, Shared, TcpChain, capture, http, record_tcp, tcp,
    tcp_authorized,
};

/// Runs the listener's inspectors on `stream`. Returns the connection and what it is, for the
/// caller to pick its chain; `None` when the connection is done: closed or stalled before it
/// decided, or served here as a server-first TCP session.
pub(in crate::listener) async fn detect(
    stream: TcpStream,
    config: &Listener,
    peer: SocketAddr,
    dst: capture::Destination,
    runtime: &Arc<ArcSwap<ListenerRuntime>>,
    shared: &Shared,
) -> Option<(TcpStream, Detected)> {
    let (tls, http) = (config.tls_inspector, config.http_inspector);
    if !tls && !http {
        return Some((stream, Detected::Tcp));
    }
    let stats = &shared.stats.detection;
    let port = dst.local.map(|a| a.port());
    // The chain a silent plaintext connection takes: a plain TCP proxy can start at once.
    let silent = config
        .chain_for_connection(port, TransportProtocol::RawBuffer, None, None)
        .filter(|(_, c)| c.tls.is_none() && c.tcp_proxy.is_some());
    let window = silent.is_some().then_some(SERVER_FIRST_WINDOW);
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    match inspect(&stream, tls, http, window, deadline).await {
        Inspection::Detected(d) => {
            stats.record(d.label(), "client_first");
            return Some((stream, d));
        }
        Inspection::Gone(reason) => {
            stats.record("unknown", reason);
            return None;
        }
        Inspection::Silent => {}
    }
    let (index, chain) = silent?;
    let tcp_chain: TcpChain = (
        chain.tcp_proxy.clone()?,
        chain.network_rbac.clone(),
        chain.network_ext_authz.clone(),
    );
    let ctx = http::ConnCtx {
        listener: runtime.clone(),
        shared: shared.clone(),
        peer: Some(peer),
        local: dst.local,
        redirected: dst.redirected,
        transport: TransportProtocol::RawBuffer,
        peer_identity: None,
        peer_cert_hash: None,
        sni: None,
        application_protocol: None,
        preserve_header_case: chain.hcm.preserve_header_case,
    };
    if !tcp_authorized(&ctx, &tcp_chain).await {
        return None;
    }
    let mut upstream = match tcp::connect(&tcp_chain.0, shared, dst.local).await {
        Ok(u) => u,
        Err(session) => {
            record_tcp(&ctx, &session);
            return None;
        }
    };
    let raced = race(&stream, upstream.io(), tls, http, HANDSHAKE_TIMEOUT);
    let raced = match tcp_chain.0.idle_timeout {
        Some(idle) => tokio::time::timeout(idle, raced)
            .await
            .unwrap_or(Race::Gone("timeout")),
        None => raced.await,
    };
    let greeting = match raced {
        Race::ServerFirst(greeting) => {
            stats.record(Detected::Tcp.label(), "server_first");
            greeting
        }
        Race::ClientFirst(d) => {
            stats.record(d.label(), "client_first");
            let by_name = d == Detected::Tls && config.matches_server_names();
            let same = !by_name
                && config
                    .chain_for_connection(port, d.transport(), None, d.application_protocol())
                    .is_some_and(|(i, _)| i == index);
            if !same {
                // Another chain serves these bytes: the early upstream closes unused.
                return Some((stream, d));
            }
            Vec::new()
        }
        Race::Gone(reason) => {
            stats.record("unknown", reason);
            return None;
        }
    };
    let session = tcp::relay(stream, upstream, &greeting, tcp_chain.0.idle_timeout).await;
    record_tcp(&ctx, &session);
    None
}
