//! DNS proxying for captured workloads (Istio's `ISTIO_META_DNS_CAPTURE`), shared by both data
//! planes: `trellis proxy` runs it in-process, `trellis agent` next to Envoy (Envoy never sees
//! DNS). Capture sends the app's UDP and TCP port 53 to [`DEFAULT_ADDRESS`]; the server answers
//! A/AAAA for the names of the control plane's name table ([`nds`]) and relays everything else
//! to the nameservers of the pod's `/etc/resolv.conf`, as the proxy's UID (so its own queries
//! are not captured).
//!
//! | module | job |
//! | --- | --- |
//! | `table.rs` | the name table as a lookup map, with Kubernetes short names |
//! | `server.rs` | the UDP and TCP server: local answers, relaying, SERVFAIL, FORMERR |
//! | `upstream.rs` | `resolv.conf` nameservers; asking one over UDP or TCP |
//! | `nds.rs` | the DNS proxy's own ADS stream for the name table |
//! | `stats.rs` | `trellis_dns_requests_total{outcome}` |

pub mod nds;
pub mod server;
pub mod stats;
pub mod table;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

pub use nds::NdsSource;
pub use server::DnsServer;
pub use stats::{DnsStats, Outcome, stats};
pub use table::DnsTable;

/// Where the DNS proxy listens (Istio's port 15053 on loopback: capture redirects there).
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:15053";

/// How to run a DNS proxy.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where to listen (UDP and TCP); IPv4 loopback also gets `[::1]` on the same port when
    /// the host has IPv6, for captured IPv6 queries.
    pub address: SocketAddr,
    /// Where names outside the table go; see [`upstream::nameservers`].
    pub upstreams: Vec<SocketAddr>,
    /// Where the name table comes from.
    pub source: NdsSource,
}

/// Why the DNS proxy could not start.
#[derive(Debug, thiserror::Error)]
#[error("DNS proxy cannot listen on {address}: {source}")]
pub struct DnsStartError {
    /// The address.
    pub address: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

/// Binds the server's sockets (errors surface here, before anything runs) and spawns the
/// server and the name table stream on the current runtime. They run until the runtime stops.
pub async fn start(config: DnsConfig) -> Result<Arc<DnsServer>, DnsStartError> {
    let upstreams: Vec<SocketAddr> = config
        .upstreams
        .into_iter()
        .filter(|u| *u != config.address)
        .collect();
    let server = Arc::new(DnsServer::new(upstreams));
    let mut addresses = vec![config.address];
    if config.address.ip() == std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST) {
        addresses.push(SocketAddr::new(
            std::net::Ipv6Addr::LOCALHOST.into(),
            config.address.port(),
        ));
    }
    for (i, address) in addresses.into_iter().enumerate() {
        let bound = async {
            let udp = tokio::net::UdpSocket::bind(address).await?;
            let tcp = tokio::net::TcpListener::bind(address).await?;
            Ok::<_, std::io::Error>((udp, tcp))
        }
        .await;
        match bound {
            Ok((udp, tcp)) => {
                tokio::spawn(server.clone().serve_udp(udp));
                tokio::spawn(server.clone().serve_tcp(tcp));
            }
            // `[::1]` is a convenience: a host without IPv6 serves IPv4 only.
            Err(error) if i > 0 => {
                tracing::debug!(%address, %error, "DNS proxy not listening on IPv6 loopback");
            }
            Err(source) => return Err(DnsStartError { address, source }),
        }
    }
    tracing::info!(address = %config.address, upstreams = ?server.upstreams(), "DNS proxy listening");
    tokio::spawn(nds::follow(config.source, server.clone()));
    Ok(server)
}
