//! `trellis control-plane`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use trellis_control_plane::ControlPlaneConfig;

use crate::signals;

/// Flags of `trellis control-plane`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of Istio YAML (watched: add, change or delete files to reconfigure the mesh).
    #[arg(long, env = "TRELLIS_CONFIG_DIR")]
    config_dir: PathBuf,
    /// Where to serve ADS (xDS over gRPC, plaintext).
    #[arg(long, default_value = "127.0.0.1:15010")]
    xds_address: SocketAddr,
    /// Where to serve /ready, /debug/syncz, /debug/config and /metrics.
    #[arg(long, default_value = "127.0.0.1:15014")]
    monitoring_address: SocketAddr,
}

/// Runs the control plane until SIGTERM/SIGINT.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.config_dir.is_dir() {
        anyhow::bail!(
            "config directory {} does not exist; create it and put Istio YAML in it",
            args.config_dir.display()
        );
    }
    let config = ControlPlaneConfig {
        config_dir: args.config_dir,
        xds_address: args.xds_address,
        monitoring_address: args.monitoring_address,
    };
    signals::runtime()?.block_on(trellis_control_plane::run(config, signals::shutdown()))?;
    Ok(ExitCode::SUCCESS)
}
