//! `trellis dashboard`: where the control plane's dashboard is, so a user need not remember
//! the monitoring port; `--open` hands the URL to the desktop's browser.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

/// Flags of `trellis dashboard`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The control plane's monitoring address (its `--monitoring-address`).
    #[arg(long, default_value = "127.0.0.1:15014")]
    address: SocketAddr,
    /// Also open the page in a browser (with `xdg-open`, when it exists).
    #[arg(long)]
    open: bool,
}

/// The dashboard's URL on a monitoring address.
pub fn url(address: SocketAddr) -> String {
    format!("http://{address}/dashboard")
}

/// Prints the URL; warns when nothing listens there; opens it on request.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let url = url(args.address);
    println!("{url}");
    if TcpStream::connect_timeout(&args.address, Duration::from_secs(1)).is_err() {
        eprintln!(
            "warning: nothing answers on {}; is the control plane running with --monitoring-address {}?",
            args.address, args.address
        );
    }
    if args.open {
        match Command::new("xdg-open")
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(_) => eprintln!("opening {url} in your browser"),
            Err(_) => eprintln!("xdg-open not found: open {url} yourself"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
