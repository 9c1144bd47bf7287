//! The DNS proxy flags shared by `trellis proxy` and `trellis agent` (Istio's
//! `ISTIO_META_DNS_CAPTURE`), and starting it next to either data plane.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::Context;
use trellis_agent::dns::{DnsConfig, NdsSource, upstream};
use trellis_xds::NodeIdentity;

/// DNS proxying for captured workloads.
#[derive(Debug, clap::Args)]
pub struct DnsArgs {
    /// Answer the app's DNS from the control plane's name table (mesh services, ServiceEntry
    /// hosts) on --dns-address and relay other names upstream; pair with
    /// `trellis capture apply --redirect-dns`, which sends the app's port 53 there.
    #[arg(long)]
    pub dns_capture: bool,
    /// Where the DNS proxy listens, UDP and TCP.
    #[arg(long, default_value = trellis_agent::dns::DEFAULT_ADDRESS)]
    pub dns_address: SocketAddr,
    /// Upstream resolvers (IP or IP:PORT, repeatable) for names outside the table (default:
    /// the nameservers of /etc/resolv.conf).
    #[arg(long, value_parser = parse_upstream)]
    pub dns_upstream: Vec<SocketAddr>,
}

fn parse_upstream(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(address) = s.parse::<SocketAddr>() {
        return Ok(address);
    }
    let ip: IpAddr = s
        .parse()
        .with_context(|| format!("{s:?} is neither IP nor IP:PORT"))?;
    Ok(SocketAddr::new(ip, 53))
}

impl DnsArgs {
    /// Starts the DNS proxy on the current runtime when `--dns-capture` is on: binds its
    /// sockets (failing here) and follows the name table from `xds_address` as `node`
    /// (over TLS with `root_cert` in secure mode).
    pub async fn start(
        &self,
        node: &NodeIdentity,
        xds_address: SocketAddr,
        root_cert: Option<&Path>,
    ) -> anyhow::Result<()> {
        if !self.dns_capture {
            return Ok(());
        }
        let upstreams = if self.dns_upstream.is_empty() {
            let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            upstream::nameservers(&resolv_conf)
        } else {
            self.dns_upstream.clone()
        };
        let tls_root = match root_cert {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            None => None,
        };
        trellis_agent::dns::start(DnsConfig {
            address: self.dns_address,
            upstreams,
            source: NdsSource {
                node: node.to_node(),
                namespace: node.namespace.clone(),
                address: xds_address,
                tls_root,
            },
        })
        .await?;
        Ok(())
    }
}
