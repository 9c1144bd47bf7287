//! `trellis demo`: a Bookinfo-like mesh on this machine, explicit mode (no root needed).

use std::process::ExitCode;

/// Flags of `trellis demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run non-interactively: apply a 90/10 split, measure it, tear down, exit 0 only if the
    /// observed split is within ±5 points.
    #[arg(long)]
    check: bool,
    /// Which data plane runs the sidecars.
    #[arg(long, value_enum, default_value = "trellis")]
    dataplane: Dataplane,
}

/// clap's view of the data plane choice.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Dataplane {
    /// The Trellis proxy.
    Trellis,
    /// Stock Envoy through `trellis agent`.
    Envoy,
}

/// Runs the demo.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _ = (args.check, args.dataplane);
    anyhow::bail!("the demo is not wired yet")
}
