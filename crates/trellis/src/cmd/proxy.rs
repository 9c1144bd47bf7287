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
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(flatten)]
    lifecycle: LifecycleArgs,
    #[command(flatten)]
    dns: crate::dns::DnsArgs,
}

/// Readiness and shutdown (shared with `trellis agent`, which does the same for Envoy).
#[derive(Debug, clap::Args)]
pub(crate) struct LifecycleArgs {
    /// Istio's health port: `GET /healthz/ready` answers 200 once the first full config (LDS,
    /// CDS, the EDS and RDS they reference, and the certificate in secure mode) is applied, 503
    /// before and while draining (default: the workload IP, port 15021).
    #[arg(long)]
    pub(crate) health_address: Option<std::net::SocketAddr>,
    /// On SIGTERM or SIGINT the proxy drains: readiness turns 503, listeners close (new
    /// connections are refused), idle connections close, HTTP/1.1 responses in flight end with
    /// `Connection: close`, HTTP/2 connections get GOAWAY; the proxy exits once every connection
    /// is done or when this period ends (Istio's terminationDrainDuration), e.g. 5s, 500ms.
    #[arg(long, default_value = "5s", value_parser = crate::workload::parse_duration)]
    pub(crate) drain_duration: std::time::Duration,
}

impl LifecycleArgs {
    /// The health address, defaulting to Istio's port 15021 on the workload IP.
    pub(crate) fn health_address(&self, ip: std::net::IpAddr) -> std::net::SocketAddr {
        self.health_address
            .unwrap_or(std::net::SocketAddr::new(ip, 15021))
    }
}

/// Where Prometheus scrapes the proxy and the app.
#[derive(Debug, clap::Args)]
struct MetricsArgs {
    /// Istio's proxy Prometheus endpoint, `/stats/prometheus` (default: the workload IP, port
    /// 15090).
    #[arg(long)]
    prometheus_address: Option<std::net::SocketAddr>,
    /// Istio's merged metrics endpoint, `/stats/prometheus`: the proxy's metrics followed by
    /// the app's (default: the workload IP, port 15020).
    #[arg(long)]
    merged_metrics_address: Option<std::net::SocketAddr>,
    /// Where the app exposes its own metrics, `PORT[/PATH]` on its IP (Istio's
    /// `prometheus.io/port` and `prometheus.io/path` annotations); merged into 15020.
    #[arg(long)]
    app_metrics: Option<trellis_proxy::telemetry::merge::AppMetrics>,
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
    let mut node = args.workload.node();
    node.sds = security.is_some();
    let dns_node = node.clone();
    let config = trellis_proxy::ProxyConfig {
        node,
        xds_address: args.workload.xds_address,
        admin_address: args.workload.admin_address(),
        security,
        metrics: {
            let mut m = trellis_proxy::MetricsConfig::istio_ports(
                args.workload.ip,
                args.metrics.app_metrics,
            );
            if let Some(a) = args.metrics.prometheus_address {
                m.prometheus_address = Some(a);
            }
            if let Some(a) = args.metrics.merged_metrics_address {
                m.merged_address = Some(a);
            }
            m
        },
        lifecycle: trellis_proxy::lifecycle::LifecycleConfig {
            health_address: Some(args.lifecycle.health_address(args.workload.ip)),
            drain_duration: args.lifecycle.drain_duration,
            warm_listeners: true,
        },
    };
    let root_cert = args.security.root_cert.as_deref();
    signals::runtime()?.block_on(async {
        args.dns
            .start(&dns_node, args.workload.xds_address, root_cert)
            .await?;
        trellis_proxy::run(config, signals::shutdown()).await
    })?;
    Ok(ExitCode::SUCCESS)
}
