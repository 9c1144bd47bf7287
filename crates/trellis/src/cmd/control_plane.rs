//! `trellis control-plane`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use trellis_control_plane::{ControlPlaneConfig, SecurityConfig};

use crate::signals;

/// Flags of `trellis control-plane`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of Istio YAML (watched: add, change or delete files to reconfigure the mesh).
    #[arg(long, env = "TRELLIS_CONFIG_DIR")]
    config_dir: PathBuf,
    /// Istio's mesh config (MeshConfig YAML: the `mesh` key of the `istio` ConfigMap); watched,
    /// an invalid edit keeps the last good one. Istio's defaults when absent.
    #[arg(long, env = "TRELLIS_MESH_CONFIG")]
    mesh_config: Option<PathBuf>,
    /// Where to serve ADS (xDS over gRPC, plaintext).
    #[arg(long, default_value = "127.0.0.1:15010")]
    xds_address: SocketAddr,
    /// Where to serve /ready, /debug/syncz, /debug/config, /metrics and /dashboard.
    #[arg(long, default_value = "127.0.0.1:15014")]
    monitoring_address: SocketAddr,
    /// Where to serve ADS and the certificate service over TLS (default: the xDS IP, port 15012).
    #[arg(long)]
    secure_xds_address: Option<SocketAddr>,
    /// The CA's directory, in Istio's cacerts layout (ca-cert.pem, ca-key.pem, root-cert.pem,
    /// cert-chain.pem). Created with a self-signed root on first start when empty.
    /// [default: $XDG_STATE_HOME/trellis/ca or ~/.local/state/trellis/ca]
    #[arg(long, env = "TRELLIS_CA_DIR")]
    ca_dir: Option<PathBuf>,
    /// The trust domain of workload identities (spiffe://TRUST-DOMAIN/ns/NS/sa/SA).
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// Default lifetime of workload certificates (Istio duration, e.g. 24h, 90m, 30s).
    #[arg(long, default_value = "24h", value_parser = crate::workload::parse_duration)]
    workload_cert_ttl: std::time::Duration,
    /// How often proxies fetch a RequestAuthentication's `jwksUri` again (Istio duration; at
    /// least 1s), so rotated signing keys are picked up; istiod's variable of that name.
    #[arg(long, env = "PILOT_JWT_PUB_KEY_REFRESH_INTERVAL", default_value = "20m",
          value_parser = parse_refresh_interval)]
    jwks_refresh_interval: std::time::Duration,
    /// Where gateway `credentialName`s are resolved: DIR/NAME/ holds tls.crt, tls.key and
    /// ca.crt (or cert, key, cacert) as Istio's secrets do. [default: `credentials` next to
    /// the config directory]
    #[arg(long, env = "TRELLIS_CREDENTIALS_DIR")]
    credentials_dir: Option<PathBuf>,
}

/// An Istio duration of at least one second: Envoy counts `cache_duration` in whole seconds.
fn parse_refresh_interval(text: &str) -> anyhow::Result<std::time::Duration> {
    let d = crate::workload::parse_duration(text)?;
    if d < std::time::Duration::from_secs(1) {
        anyhow::bail!("{text:?} is shorter than 1s");
    }
    Ok(d)
}

/// Runs the control plane until SIGTERM/SIGINT.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.config_dir.is_dir() {
        anyhow::bail!(
            "config directory {} does not exist; create it and put Istio YAML in it",
            args.config_dir.display()
        );
    }
    let credentials_dir = args.credentials_dir.unwrap_or_else(|| {
        let dir = std::path::absolute(&args.config_dir).unwrap_or(args.config_dir.clone());
        dir.parent()
            .map_or_else(|| PathBuf::from("credentials"), |p| p.join("credentials"))
    });
    let config = ControlPlaneConfig {
        credentials_dir: Some(credentials_dir),
        config_dir: args.config_dir,
        mesh_config: args.mesh_config,
        xds_address: args.xds_address,
        monitoring_address: args.monitoring_address,
        secure_xds_address: args
            .secure_xds_address
            .unwrap_or(SocketAddr::new(args.xds_address.ip(), 15012)),
        security: SecurityConfig {
            ca_dir: args.ca_dir.unwrap_or_else(SecurityConfig::default_ca_dir),
            trust_domain: args.trust_domain,
            workload_ttl: args.workload_cert_ttl,
            jwks_refresh_interval: args.jwks_refresh_interval,
        },
    };
    signals::runtime()?.block_on(trellis_control_plane::run(config, signals::shutdown()))?;
    Ok(ExitCode::SUCCESS)
}
