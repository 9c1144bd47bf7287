//! `trellis echo`: the test application the demo and the conformance scenarios run behind
//! sidecars.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use trellis_testkit::echo::{self, EchoConfig};

use crate::signals;

/// Flags of `trellis echo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to listen (HTTP/1.1 and HTTP/2 cleartext on the same port).
    #[arg(long)]
    listen: SocketAddr,
    /// The service name to report.
    #[arg(long)]
    service: String,
    /// The version to report.
    #[arg(long, default_value = "v1")]
    version: String,
    /// The instance id to report (default: SERVICE-VERSION).
    #[arg(long)]
    instance: Option<String>,
    /// A URL to call on every request, its answer embedded in ours (repeatable).
    #[arg(long = "call")]
    calls: Vec<String>,
    /// Send the calls through this HTTP proxy (the sidecar's outbound listener, IP:15001).
    #[arg(long, env = "HTTP_PROXY", value_parser = parse_proxy)]
    http_proxy: Option<SocketAddr>,
}

/// Accepts `IP:PORT` or `http://IP:PORT[/]`, as HTTP_PROXY is usually written.
fn parse_proxy(s: &str) -> anyhow::Result<SocketAddr> {
    let trimmed = s.trim_start_matches("http://").trim_end_matches('/');
    trimmed
        .parse()
        .with_context(|| format!("HTTP proxy {s:?} is not IP:PORT or http://IP:PORT"))
}

/// Serves until SIGTERM/SIGINT.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let instance = args
        .instance
        .unwrap_or_else(|| format!("{}-{}", args.service, args.version));
    let config = EchoConfig {
        service: args.service,
        version: args.version,
        instance,
        calls: args.calls,
        http_proxy: args.http_proxy,
    };
    let listen = args.listen;
    signals::runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        echo::serve(listener, config, signals::shutdown()).await
    })?;
    Ok(ExitCode::SUCCESS)
}
