//! `trellis capture`: install or remove the iptables rules that send a pod's traffic through
//! its proxy (≈ Istio's `istio-iptables`). Run it as root inside the pod's network namespace
//! (`ip netns exec POD trellis capture apply`).

use std::process::ExitCode;

use trellis_capture::{CaptureConfig, Cidr, Family, iptables};

/// Flags of `trellis capture`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Install the rules in the current network namespace (replacing earlier Trellis rules).
    Apply(RuleArgs),
    /// Print the rules (iptables-restore format) without installing them.
    Print(RuleArgs),
    /// Remove every Trellis rule and chain from the current network namespace.
    Remove {
        /// Also remove the IPv6 rules.
        #[arg(long)]
        ipv6: bool,
    },
}

#[derive(Debug, clap::Args)]
struct RuleArgs {
    /// The proxy's UID: its own traffic is never captured.
    #[arg(short = 'u', long, default_value_t = 1337)]
    proxy_uid: u32,
    /// The proxy's GID: its own traffic is never captured.
    #[arg(short = 'g', long, default_value_t = 1337)]
    proxy_gid: u32,
    /// Where outbound TCP is redirected.
    #[arg(short = 'p', long, default_value_t = 15001)]
    outbound_port: u16,
    /// Where inbound TCP is redirected.
    #[arg(short = 'z', long, default_value_t = 15006)]
    inbound_port: u16,
    /// Inbound ports to capture (comma-separated); all when empty.
    #[arg(short = 'b', long, value_delimiter = ',')]
    inbound_ports: Vec<u16>,
    /// Inbound ports never to capture (15020, 15021 and 15090 always are excluded).
    #[arg(short = 'd', long, value_delimiter = ',')]
    exclude_inbound_ports: Vec<u16>,
    /// Outbound ports never to capture.
    #[arg(short = 'o', long, value_delimiter = ',')]
    exclude_outbound_ports: Vec<u16>,
    /// Outbound destinations to capture (CIDRs, comma-separated); all when empty.
    #[arg(short = 'i', long, value_delimiter = ',')]
    include_outbound_cidrs: Vec<Cidr>,
    /// Outbound destinations never to capture (CIDRs, comma-separated).
    #[arg(short = 'x', long, value_delimiter = ',')]
    exclude_outbound_cidrs: Vec<Cidr>,
    /// Also install IPv6 rules (ip6tables).
    #[arg(long)]
    ipv6: bool,
    /// Also send the app's DNS (UDP and TCP port 53, any server) to the proxy's DNS proxy on
    /// 15053, as Istio's `--redirect-dns` (run the proxy with `--dns-capture`).
    #[arg(long)]
    redirect_dns: bool,
}

impl RuleArgs {
    fn config(&self) -> CaptureConfig {
        CaptureConfig {
            proxy_uid: self.proxy_uid,
            proxy_gid: Some(self.proxy_gid),
            outbound_port: self.outbound_port,
            inbound_port: self.inbound_port,
            inbound_ports: self.inbound_ports.clone(),
            exclude_inbound_ports: self.exclude_inbound_ports.clone(),
            exclude_outbound_ports: self.exclude_outbound_ports.clone(),
            include_outbound_cidrs: self.include_outbound_cidrs.clone(),
            exclude_outbound_cidrs: self.exclude_outbound_cidrs.clone(),
            dns_port: self
                .redirect_dns
                .then_some(trellis_capture::iptables::DNS_PROXY_PORT),
        }
    }

    fn families(&self) -> Vec<Family> {
        if self.ipv6 {
            vec![Family::V4, Family::V6]
        } else {
            vec![Family::V4]
        }
    }
}

/// Applies, prints or removes the rules.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Apply(rules) => {
            let config = rules.config();
            for family in rules.families() {
                config.apply(family)?;
            }
            println!(
                "capture rules installed (outbound → {}, inbound → {})",
                config.outbound_port, config.inbound_port
            );
        }
        Action::Print(rules) => {
            let config = rules.config();
            for family in rules.families() {
                print!("{}", config.rules(family));
            }
        }
        Action::Remove { ipv6 } => {
            iptables::remove(Family::V4);
            if ipv6 {
                iptables::remove(Family::V6);
            }
            println!("capture rules removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
