//! `trellis token`: workload tokens that let a workload get certificates for its identity from
//! the CA (universal mode's stand-in for Kubernetes service-account tokens).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use trellis_ca::{SpiffeId, TokenIssuer};
use trellis_control_plane::SecurityConfig;

/// Flags of `trellis token`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Mint a token binding a namespace and service account; prints it on stdout.
    Create {
        /// The CA directory of the control plane that will verify the token.
        #[arg(long, env = "TRELLIS_CA_DIR")]
        ca_dir: Option<PathBuf>,
        /// The workload's namespace.
        #[arg(long)]
        namespace: String,
        /// The workload's service account.
        #[arg(long)]
        service_account: String,
        /// The trust domain (must match the control plane's).
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        /// How long the token is valid (Istio duration: e.g. 1h, 24h, 720h).
        #[arg(long, default_value = "24h", value_parser = crate::workload::parse_duration)]
        ttl: Duration,
    },
}

/// Mints a token.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Create {
            ca_dir,
            namespace,
            service_account,
            trust_domain,
            ttl,
        } => {
            let ca_dir = ca_dir.unwrap_or_else(SecurityConfig::default_ca_dir);
            let issuer = TokenIssuer::load_or_create(&ca_dir)?;
            let identity = SpiffeId::new(&trust_domain, &namespace, &service_account);
            let token = issuer.mint(&identity, ttl)?;
            eprintln!(
                "token for {identity}, valid for {}s (CA directory {})",
                ttl.as_secs(),
                ca_dir.display()
            );
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
