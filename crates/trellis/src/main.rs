//! `trellis`: one binary for the control plane, the proxy, the Envoy agent, and the operator
//! commands. This file only parses the command line and hands off to `cmd/`.

mod cmd;
mod dns;
mod signals;
mod workload;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Trellis: an Istio-compatible service mesh, smaller and faster.
#[derive(Debug, Parser)]
#[command(name = "trellis", version, about, long_about = None)]
struct Cli {
    /// Log filter (e.g. `info`, `trellis_proxy=debug`); also read from RUST_LOG.
    #[arg(long, global = true, env = "TRELLIS_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: watch Istio YAML, serve xDS (ADS) to proxies (≈ istiod).
    ControlPlane(cmd::control_plane::Args),
    /// Run the Trellis proxy for one workload (sidecar) or gateway.
    Proxy(cmd::proxy::Args),
    /// Run a stock Envoy as a Trellis data plane (≈ pilot-agent): bootstrap and supervise it.
    Agent(cmd::agent::Args),
    /// Print the URL of the control plane's dashboard (`--open` opens it in a browser).
    Dashboard(cmd::dashboard::Args),
    /// Start a demo mesh (Bookinfo-like services with sidecars and traffic) on this machine.
    Demo(cmd::demo::Args),
    /// Run a mesh as pods (network namespaces with captured sidecars) on this machine, as root.
    Pods(cmd::pods::Args),
    /// Install or remove the iptables rules that send a pod's traffic through its proxy.
    Capture(cmd::capture::Args),
    /// Check Istio YAML files or directories and report every problem with its field path.
    Validate(cmd::validate::Args),
    /// Mint workload tokens that the CA accepts for certificate requests.
    Token(cmd::token::Args),
    /// Run the echo test application (answers with JSON describing the request).
    Echo(cmd::echo::Args),
    /// Print the version.
    Version,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or(cli.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::ControlPlane(args) => cmd::control_plane::run(args),
        Command::Proxy(args) => cmd::proxy::run(args),
        Command::Agent(args) => cmd::agent::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Dashboard(args) => cmd::dashboard::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Capture(args) => cmd::capture::run(args),
        Command::Pods(args) => cmd::pods::run(args),
        Command::Token(args) => cmd::token::run(args),
        Command::Echo(args) => cmd::echo::run(args),
        Command::Version => {
            println!("trellis {}", env!("CARGO_PKG_VERSION"));
            Ok(std::process::ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_lists_every_subcommand() {
        let help = Cli::command().render_help().to_string();
        for sub in [
            "control-plane",
            "proxy",
            "agent",
            "demo",
            "pods",
            "validate",
            "echo",
            "version",
        ] {
            assert!(help.contains(sub), "`trellis --help` misses {sub}:\n{help}");
        }
    }
}
