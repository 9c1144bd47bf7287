//! `trellis proxy`.

use std::process::ExitCode;

use crate::signals;
use crate::workload::{SecurityArgs, WorkloadArgs};

/// Flags of `trellis proxy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    workload: WorkloadArgs,
    #[command(flatten)]
    security: SecurityArgs,
}

/// Runs the proxy until SIGTERM/SIGINT.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let security = match (&args.security.root_cert, &args.security.token) {
        (Some(root), Some(token)) => Some(trellis_proxy::ProxySecurity::from_root_file(
            args.workload.xds_address,
            root,
            token.clone(),
            args.security.trust_domain.clone(),
            args.security.cert_ttl,
        )?),
        _ => None,
    };
    let config = trellis_proxy::ProxyConfig {
        node: args.workload.node(),
        xds_address: args.workload.xds_address,
        admin_address: args.workload.admin_address(),
        security,
    };
    signals::runtime()?.block_on(trellis_proxy::run(config, signals::shutdown()))?;
    Ok(ExitCode::SUCCESS)
}
