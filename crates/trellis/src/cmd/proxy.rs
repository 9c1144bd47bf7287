//! `trellis proxy`.

use std::process::ExitCode;

use crate::signals;
use crate::workload::WorkloadArgs;

/// Flags of `trellis proxy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    workload: WorkloadArgs,
}

/// Runs the proxy until SIGTERM/SIGINT.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = trellis_proxy::ProxyConfig {
        node: args.workload.node(),
        xds_address: args.workload.xds_address,
        admin_address: args.workload.admin_address(),
    };
    signals::runtime()?.block_on(trellis_proxy::run(config, signals::shutdown()))?;
    Ok(ExitCode::SUCCESS)
}
