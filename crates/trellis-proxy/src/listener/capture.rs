//! Transparent capture on the accept path. A connection iptables redirected to a listener with
//! `use_original_dst` (`virtualOutbound`) is handed to the listener for its original
//! destination — the exact address, else `0.0.0.0:PORT` (usually a `bind_to_port: false`
//! listener) — or, without one, served by the accepting listener itself, as Envoy does. With
//! the `original_dst` listener filter (`virtualInbound`) the connection stays but its local
//! address becomes the original destination. Either way that address is what filter chains
//! match `destination_port` on and where ORIGINAL_DST clusters connect.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::ListenerRuntime;
use crate::config::Listener;

/// A listener's current config, shared with its accept loop.
pub(super) type Runtime = Arc<ArcSwap<ListenerRuntime>>;

/// Every listener by address (bound or not): where `use_original_dst` hands connections to.
#[derive(Clone, Default)]
pub(super) struct Handoff(Arc<ArcSwap<HashMap<SocketAddr, Runtime>>>);

impl Handoff {
    /// Replaces the table after a listener update: the bound listeners' runtimes, and the
    /// `bind_to_port: false` listeners (a runtime kept while its config is unchanged).
    pub(super) fn rebuild(
        &self,
        bound: impl Iterator<Item = (SocketAddr, Runtime)>,
        unbound: Vec<Listener>,
    ) {
        let old = self.0.load();
        let mut table: HashMap<SocketAddr, Runtime> = bound.collect();
        for l in unbound {
            let runtime = match old.get(&l.address) {
                Some(r) if r.load().config == l => r.clone(),
                _ => Arc::new(ArcSwap::from_pointee(ListenerRuntime::new(l.clone()))),
            };
            table.insert(l.address, runtime);
        }
        self.0.store(Arc::new(table));
    }

    /// The listener for `dst`: its exact address, else the wildcard address on its port.
    fn find(&self, dst: SocketAddr) -> Option<Runtime> {
        let table = self.0.load();
        let wildcard = match dst.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        table
            .get(&dst)
            .or_else(|| table.get(&SocketAddr::new(wildcard, dst.port())))
            .cloned()
    }
}

/// Whether a listener serves the workload's inbound side (Istio's reporter `destination`):
/// explicit mode's `inbound|PORT`, captured mode's `virtualInbound`.
pub(super) fn is_inbound(listener: &str) -> bool {
    listener.starts_with("inbound") || listener == "virtualInbound"
}

/// Where an accepted connection was going.
#[derive(Debug, Clone, Copy)]
pub(super) struct Destination {
    /// The local address chains and clusters see: the original destination when the listener
    /// reads it.
    pub(super) local: Option<SocketAddr>,
    /// iptables redirected the connection (`local` is not this proxy's own socket), so an
    /// ORIGINAL_DST cluster may connect to `local` without looping.
    pub(super) redirected: bool,
}

/// The listener that serves an accepted connection, and where the connection was going.
pub(super) fn dispatch(
    stream: &tokio::net::TcpStream,
    runtime: &Runtime,
    handoff: &Handoff,
) -> (Runtime, Destination) {
    let local = stream.local_addr().ok();
    let capture = runtime.load().config.capture;
    let Some(local_addr) = local.filter(|_| capture.reads_original_dst()) else {
        let dst = Destination {
            local,
            redirected: false,
        };
        return (runtime.clone(), dst);
    };
    // Not redirected (no NAT entry): the local address is the destination.
    let original =
        trellis_capture::original_dst(stream, local_addr.is_ipv6()).unwrap_or(local_addr);
    let dst = Destination {
        local: Some(original),
        redirected: original != local_addr,
    };
    if capture.use_original_dst
        && dst.redirected
        && let Some(target) = handoff.find(original)
        && !Arc::ptr_eq(&target, runtime)
    {
        return (target, dst);
    }
    (runtime.clone(), dst)
}
