//! The flags that say who a workload is, shared by `trellis proxy` and `trellis agent`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use trellis_xds::{InterceptionMode, NodeIdentity, ProxyType};

/// Who the workload is and where its control plane is.
#[derive(Debug, clap::Args)]
pub struct WorkloadArgs {
    /// The workload's IP: the proxy owns it (explicit mode: a loopback address like 127.0.10.2).
    #[arg(long, env = "INSTANCE_IP")]
    pub ip: IpAddr,
    /// The workload's name (as in its WorkloadEntry).
    #[arg(long, env = "WORKLOAD_NAME")]
    pub workload: String,
    /// The workload's namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// The workload's service account (its identity).
    #[arg(long, env = "SERVICE_ACCOUNT", default_value = "default")]
    pub service_account: String,
    /// The workload's labels, as `key=value,key=value`.
    #[arg(long, value_parser = parse_labels, default_value = "")]
    pub labels: Labels,
    /// Explicit mode: the IP the application listens on (same ports as the workload).
    #[arg(long)]
    pub app_ip: Option<IpAddr>,
    /// The control plane's xDS address.
    #[arg(long, env = "TRELLIS_XDS_ADDRESS", default_value = "127.0.0.1:15010")]
    pub xds_address: SocketAddr,
    /// The admin API address (default: the workload IP, port 15000).
    #[arg(long)]
    pub admin_address: Option<SocketAddr>,
    /// `sidecar` for a workload's proxy, `router` for a gateway.
    #[arg(long = "type", value_enum, default_value = "sidecar")]
    pub proxy_type: ProxyKind,
    /// How the app's traffic reaches the proxy: `none` (explicit mode: the app uses the proxy as
    /// its HTTP_PROXY) or `redirect` (transparent capture: `trellis capture apply` in the pod's
    /// network namespace sends its TCP to 15001/15006; run the proxy as UID 1337). Sent to the
    /// control plane as Istio's `INTERCEPTION_MODE`.
    #[arg(long, value_enum, default_value = "none")]
    pub interception: Interception,
    /// Shorthand for `--interception redirect`.
    #[arg(long, conflicts_with = "interception")]
    pub capture: bool,
}

/// clap's view of `InterceptionMode`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Interception {
    /// Explicit mode (no capture).
    None,
    /// iptables REDIRECT to 15001 (outbound) and 15006 (inbound).
    Redirect,
}

/// Secure mode: how a proxy (or the agent, for Envoy) gets its identity from the CA.
#[derive(Debug, clap::Args)]
pub struct SecurityArgs {
    /// Secure mode: the mesh root (the control plane's `root-cert.pem`). ADS then goes over TLS
    /// to --xds-address (the control plane's secure port, 15012), and the workload gets its
    /// certificate from the CA there.
    #[arg(long, requires = "token")]
    pub root_cert: Option<std::path::PathBuf>,
    /// Secure mode: the workload token (from `trellis token create`).
    #[arg(long, env = "TRELLIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Secure mode: the trust domain of the workload's identity.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// Secure mode: the workload certificate lifetime to ask for (e.g. 24h, 1h, 30s).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub cert_ttl: std::time::Duration,
}

/// Parsed `--labels`.
pub type Labels = BTreeMap<String, String>;

/// clap's view of `ProxyType`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ProxyKind {
    /// A workload's sidecar.
    Sidecar,
    /// A gateway.
    Router,
}

/// Parses an Istio/protobuf duration such as `24h`, `1.5s` or `100ms`.
pub fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    trellis_api::Duration::parse(s)
        .map(|d| d.as_std())
        .map_err(|reason| {
            anyhow::anyhow!("{s:?} is not a duration ({reason}); write e.g. 24h, 90m, 30s")
        })
}

fn parse_labels(s: &str) -> anyhow::Result<Labels> {
    let mut labels = Labels::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("label {pair:?} is not key=value"))?;
        if k.is_empty() {
            bail!("label {pair:?} has an empty key");
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

impl WorkloadArgs {
    /// The node identity these flags describe.
    pub fn node(&self) -> NodeIdentity {
        NodeIdentity {
            proxy_type: match self.proxy_type {
                ProxyKind::Sidecar => ProxyType::Sidecar,
                ProxyKind::Router => ProxyType::Router,
            },
            ip: self.ip,
            workload: self.workload.clone(),
            namespace: self.namespace.clone(),
            service_account: self.service_account.clone(),
            labels: self.labels.clone(),
            app_ip: self.app_ip,
            sds: false,
            interception: match (self.capture, self.interception) {
                (true, _) | (_, Interception::Redirect) => InterceptionMode::Redirect,
                (false, Interception::None) => InterceptionMode::None,
            },
        }
    }

    /// The admin address, defaulting to Istio's port 15000 on the workload IP.
    pub fn admin_address(&self) -> SocketAddr {
        self.admin_address
            .unwrap_or(SocketAddr::new(self.ip, 15000))
    }
}
