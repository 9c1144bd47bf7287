//! `trellis-bench`: the side-by-side sidecar benchmark and the control-plane scale simulator.
//! See `docs/benchmarks.md`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use trellis_bench::common::{cpus, find_trellis, parse_duration, progress, taskset_available};
use trellis_bench::control_plane::{self, ControlPlaneOptions};
use trellis_bench::loadgen::Protocol;
use trellis_bench::report::write_file;
use trellis_bench::sidecar::{self, Plane, SidecarOptions};

/// Set in the re-executed benchmark (pinned, with one runtime worker for the processes it starts).
const REEXEC_ENV: &str = "TRELLIS_BENCH_REEXEC";

#[derive(Parser, Debug)]
#[command(
    name = "trellis-bench",
    about = "Trellis benchmarks: sidecar data planes side by side, and control-plane scale"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// A short smoke run (seconds, small sizes): checks the benchmark end to end, numbers are
    /// not meaningful.
    #[arg(long)]
    quick: bool,
    /// The `trellis` binary (default: next to this binary, else target/release/trellis).
    #[arg(long)]
    trellis_bin: Option<PathBuf>,
    /// Where the outputs go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// Do not pin processes to CPUs with taskset.
    #[arg(long)]
    no_pin: bool,
}

#[derive(Args, Debug, Clone)]
struct SidecarArgs {
    #[command(flatten)]
    common: Common,
    /// Open-loop request rates (req/s), comma separated.
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<u64>>,
    /// Recorded duration of each open-loop run (e.g. 10s, 500ms).
    #[arg(long)]
    duration: Option<String>,
    /// Discarded warm-up before each run.
    #[arg(long)]
    warmup: Option<String>,
    /// Repetitions of each measurement (interleaved across data planes; medians reported).
    #[arg(long)]
    runs: Option<usize>,
    /// Data planes: direct, trellis, envoy, and the opt-in trellis-notelemetry /
    /// envoy-notelemetry (a mesh-wide Telemetry turns metrics, access logs and tracing off).
    #[arg(long, value_delimiter = ',')]
    dataplanes: Option<Vec<String>>,
    /// Protocols: http1, http2, grpc (unary calls, ≈1 KiB messages).
    #[arg(long, value_delimiter = ',')]
    protocols: Option<Vec<String>>,
    /// Keep-alive connections of the open-loop generator.
    #[arg(long)]
    connections: Option<usize>,
    /// Services in the large-config mesh (0 skips it).
    #[arg(long)]
    scale_services: Option<usize>,
    /// Plaintext between sidecars (default: mutual TLS, the meshes run secure as Istio does).
    #[arg(long)]
    plaintext: bool,
}

#[derive(Args, Debug, Clone)]
struct CpArgs {
    #[command(flatten)]
    common: Common,
    /// Simulated proxies.
    #[arg(long)]
    proxies: Option<usize>,
    /// Services in the config.
    #[arg(long)]
    services: Option<usize>,
    /// Config changes measured.
    #[arg(long)]
    changes: Option<usize>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// direct vs trellis vs envoy sidecars: latency, throughput, CPU, memory, start and
    /// config propagation times.
    Sidecar(SidecarArgs),
    /// N simulated proxies against one control plane with M services.
    ControlPlane(CpArgs),
    /// Both, with their defaults (or `--quick`).
    All(Common),
}

impl Cmd {
    fn common(&self) -> &Common {
        match self {
            Cmd::Sidecar(a) => &a.common,
            Cmd::ControlPlane(a) => &a.common,
            Cmd::All(c) => c,
        }
    }
}

fn sidecar_options(a: &SidecarArgs, command: &str) -> anyhow::Result<SidecarOptions> {
    let bin = find_trellis(a.common.trellis_bin.as_deref())?;
    let out = a.common.out_dir.clone();
    let mut o = if a.common.quick {
        SidecarOptions::quick(bin, out)
    } else {
        SidecarOptions::full(bin, out)
    };
    if let Some(r) = &a.rates {
        o.rates = r.clone();
    }
    if let Some(d) = &a.duration {
        o.duration = parse_duration(d)?;
    }
    if let Some(d) = &a.warmup {
        o.warmup = parse_duration(d)?;
    }
    if let Some(r) = a.runs {
        o.runs = r;
    }
    if let Some(d) = &a.dataplanes {
        o.dataplanes = d
            .iter()
            .map(|s| s.parse::<Plane>())
            .collect::<Result<_, _>>()?;
    }
    if let Some(p) = &a.protocols {
        o.protocols = p
            .iter()
            .map(|s| s.parse::<Protocol>())
            .collect::<Result<_, _>>()?;
    }
    if let Some(c) = a.connections {
        o.connections = c;
    }
    if let Some(n) = a.scale_services {
        o.scale_services = n;
    }
    o.plaintext = a.plaintext;
    o.pin = pinning(&a.common);
    o.command = command.to_string();
    Ok(o)
}

fn cp_options(a: &CpArgs, command: &str) -> anyhow::Result<ControlPlaneOptions> {
    let bin = find_trellis(a.common.trellis_bin.as_deref())?;
    let out = a.common.out_dir.clone();
    let mut o = if a.common.quick {
        ControlPlaneOptions::quick(bin, out)
    } else {
        ControlPlaneOptions::full(bin, out)
    };
    if let Some(n) = a.proxies {
        o.proxies = n;
    }
    if let Some(n) = a.services {
        o.services = n;
    }
    if let Some(n) = a.changes {
        o.changes = n;
    }
    o.pin = pinning(&a.common);
    o.command = command.to_string();
    Ok(o)
}

/// Whether to pin: decided once, before the re-execution (which runs under `taskset -c 0` and
/// so would see a single CPU), and passed on in [`REEXEC_ENV`].
fn pinning(c: &Common) -> bool {
    match std::env::var(REEXEC_ENV) {
        Ok(v) => v == "pinned",
        Err(_) => !c.no_pin && cpus() >= 2 && taskset_available(),
    }
}

/// Re-executes this binary with `TOKIO_WORKER_THREADS=1` (so every Trellis process it starts
/// runs one worker, like Envoy's `--concurrency 1`) and, when pinning, under `taskset -c 0`.
/// Returns only if that fails.
fn reexec(pin: bool) -> anyhow::Error {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return anyhow::anyhow!("finding this executable: {e}"),
    };
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.arg("-c").arg("0").arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(&args)
        .env("TOKIO_WORKER_THREADS", "1")
        .env(REEXEC_ENV, if pin { "pinned" } else { "1" });
    anyhow::anyhow!("re-executing {}: {}", exe.display(), cmd.exec())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os(REEXEC_ENV).is_none() {
        let e = reexec(pinning(cli.command.common()));
        eprintln!("warning: {e:#}; continuing without pinning or worker settings");
    }
    let command = std::iter::once("trellis-bench".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(if pinning(cli.command.common()) { 1 } else { 2 })
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: building the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // On Ctrl-C or SIGTERM the benchmark future is dropped, which stops (by PID) every process
    // it started: the meshes, the extra proxies and the control plane.
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(cli.command, &command) => r,
            _ = interrupted() => Err(anyhow::anyhow!("interrupted; stopping every process the benchmark started")),
        }
    });
    match outcome {
        Ok(md) => {
            println!("{md}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM (never, if the handlers cannot be installed).
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn run(cmd: Cmd, command: &str) -> anyhow::Result<String> {
    match cmd {
        Cmd::Sidecar(a) => sidecar::run(sidecar_options(&a, command)?).await,
        Cmd::ControlPlane(a) => control_plane::run(cp_options(&a, command)?).await,
        Cmd::All(c) => {
            let s = SidecarArgs {
                common: c.clone(),
                rates: None,
                duration: None,
                warmup: None,
                runs: None,
                dataplanes: None,
                protocols: None,
                connections: None,
                scale_services: None,
                plaintext: false,
            };
            let mut md = sidecar::run(sidecar_options(&s, command)?).await?;
            let cp = CpArgs {
                common: c,
                proxies: None,
                services: None,
                changes: None,
            };
            progress("now the control-plane simulator");
            md.push('\n');
            md.push_str(&control_plane::run(cp_options(&cp, command)?).await?);
            let out = cp_options(&cp, command)?.out_dir.join("report.md");
            write_file(&out, &md).context("writing the combined report")?;
            Ok(md)
        }
    }
}
