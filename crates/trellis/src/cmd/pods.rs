//! `trellis pods`: run a mesh as "pods" on this machine, as root — each workload in a network
//! namespace on a bridge with its app and a sidecar behind Istio's iptables capture — and
//! reach into the pods. `up` runs in the foreground until Ctrl-C and removes everything on the
//! way out; `down` removes what a crashed `up` left (namespaces and processes, by name
//! prefix); `status` lists the pods; `exec` runs a command in one.

mod workloads;

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use trellis_testkit::mesh::Dataplane;
use trellis_testkit::pods::{
    CLIENT_POD, CONTROL_PLANE_POD, OUTSIDE_POD, PodMesh, PodOptions, cleanup, exec_command,
    missing_requirements,
};

/// Flags of `trellis pods`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

const EXAMPLES: &str = "\
Examples:
  sudo trellis pods up                                  # Bookinfo-like pods, Trellis sidecars
  sudo trellis pods up --config-dir istio/ --workloads workloads.yaml --dataplane envoy
  sudo trellis pods exec productpage -- curl -s http://reviews:9080/
  sudo trellis pods status
  sudo trellis pods down                                # after a crash: remove leftovers

A workloads file lists services (name, port: 9080, protocol: HTTP, namespace: default) and
workloads (service, version: v1, calls: [URLs the app calls on every request]):
  services:
  - {name: reviews}
  workloads:
  - {service: reviews, version: v1}
  - {service: reviews, version: v2}";

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Start the pods and run until Ctrl-C (or SIGTERM), then remove everything.
    Up(UpArgs),
    /// Remove the namespaces and processes a crashed `up` left behind.
    Down(PrefixArg),
    /// List the pods of a running mesh: address and processes.
    Status(PrefixArg),
    /// Run a command inside a pod (as `ip netns exec` does, with the pod's /etc/resolv.conf).
    Exec(ExecArgs),
}

#[derive(Debug, clap::Args)]
struct PrefixArg {
    /// The namespace prefix: pods are namespaces named PREFIX-POD.
    #[arg(long, default_value = "trellis")]
    prefix: String,
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Directory of Istio YAML to apply (copied into the run's config directory, which the
    /// control plane watches: edit the copy to reconfigure live).
    #[arg(long)]
    config_dir: Option<PathBuf>,
    /// A YAML file with `services` and `workloads` (see the examples below).
    #[arg(long, conflicts_with = "workload")]
    workloads: Option<PathBuf>,
    /// A workload as SERVICE/VERSION (repeatable; services are HTTP on port 9080 in
    /// `default`). Without --workload or --workloads: a Bookinfo-like mesh.
    #[arg(long, value_name = "SERVICE/VERSION")]
    workload: Vec<String>,
    /// Which data plane the sidecars run.
    #[arg(long, default_value = "trellis")]
    dataplane: Dataplane,
    /// The pod network's /24: 10.X.Y.0 (control plane .1, client .2, outside .3, workloads
    /// from .10, service addresses from .200).
    #[arg(long, default_value = "10.77.0.0")]
    subnet: Ipv4Addr,
    /// Istio mesh config (MeshConfig YAML) for the control plane, e.g.
    /// `outboundTrafficPolicy: {mode: REGISTRY_ONLY}`.
    #[arg(long)]
    mesh_config: Option<PathBuf>,
    /// Also start the `outside` pod: an echo app on :9080 with no sidecar (a host outside the
    /// mesh, reachable as `outside`).
    #[arg(long)]
    outside: bool,
    /// Where config, certificates and logs go [default: /tmp/trellis-pods-PREFIX].
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// The Envoy binary for `--dataplane envoy` [default: found on PATH].
    #[arg(long)]
    envoy: Option<PathBuf>,
    /// How long startup may take, in seconds.
    #[arg(long, default_value_t = 120)]
    startup_timeout: u64,
    #[command(flatten)]
    prefix: PrefixArg,
}

#[derive(Debug, clap::Args)]
struct ExecArgs {
    /// The pod (`productpage-v1-0`, `client`, `cp`) or a service name (its first pod).
    pod: String,
    /// Run as this UID (and GID); root by default. The sidecars run as 1337, whose traffic is
    /// not captured.
    #[arg(long)]
    uid: Option<u32>,
    #[command(flatten)]
    prefix: PrefixArg,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Runs `trellis pods`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Up(up) => run_up(up),
        Action::Down(p) => {
            require_root()?;
            let (removed, killed) = cleanup::remove_prefix(&p.prefix)?;
            if removed.is_empty() {
                println!("Nothing to remove: no namespace is named {}-*.", p.prefix);
            } else {
                println!(
                    "Removed {} namespace(s) ({}) and killed {killed} process(es).",
                    removed.len(),
                    removed.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Status(p) => {
            require_root()?;
            status(&p.prefix)
        }
        Action::Exec(e) => {
            require_root()?;
            let ns = find_namespace(&e.prefix.prefix, &e.pod)?;
            let (program, rest) = e.command.split_first().context("no command to run")?;
            // Replaces this process: the command's output and exit status are the user's.
            let error = exec_command(&ns, e.uid, program).args(rest).exec();
            Err(error).with_context(|| format!("running {program} in {ns}"))
        }
    }
}

/// Fails with what to do when not root.
fn require_root() -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("trellis pods needs root (network namespaces and iptables): run it with sudo");
    }
    Ok(())
}

fn run_up(up: UpArgs) -> anyhow::Result<ExitCode> {
    if let Some(missing) = missing_requirements() {
        bail!(
            "{missing}. Run as root on Linux with iptables and util-linux installed (scripts/install-deps.sh), \
             or use `trellis demo --mode explicit`, which needs neither"
        );
    }
    let o = up.subnet.octets();
    if o[0] != 10 || o[3] != 0 {
        bail!("--subnet must be of the form 10.X.Y.0, not {}", up.subnet);
    }
    let base = Ipv4Addr::new(127, o[1], o[2], 0);
    let spec = match (&up.workloads, up.workload.is_empty()) {
        (Some(file), _) => workloads::from_file(file, base, up.dataplane)?,
        (None, false) => workloads::from_flags(&up.workload, base, up.dataplane)?,
        (None, true) => crate::cmd::demo::spec(base, up.dataplane),
    };
    let prefix = up.prefix.prefix.clone();
    let run_dir = up
        .run_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("trellis-pods-{prefix}")));
    let mut options = PodOptions::new(
        std::env::current_exe().context("locating the trellis binary")?,
        &run_dir,
        &prefix,
    );
    options.config_from = up.config_dir.clone();
    options.outside = up.outside;
    options.envoy_bin = up.envoy.clone();
    options.startup_timeout = Duration::from_secs(up.startup_timeout);
    if let Some(path) = &up.mesh_config {
        options.mesh_config = Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        );
    }
    println!(
        "Starting {} pod(s) with {} sidecars on {}/24 (namespaces {prefix}-*) ...",
        spec.workloads.len() + 2 + usize::from(up.outside),
        up.dataplane,
        up.subnet
    );
    let runtime = crate::signals::runtime()?;
    runtime.block_on(async move {
        let stop = crate::signals::shutdown();
        tokio::pin!(stop);
        let mut starting = tokio::task::spawn_blocking(move || PodMesh::start(spec, options));
        let mut mesh = tokio::select! {
            started = &mut starting => started.context("the start task failed")??,
            () = &mut stop => {
                println!("Stopping: waiting for the start to finish, then removing everything ...");
                drop(starting.await);
                return Ok(ExitCode::FAILURE);
            }
        };
        print_reachable(&mesh);
        let code = loop {
            tokio::select! {
                () = &mut stop => break ExitCode::SUCCESS,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if let Err(e) = mesh.check_processes() {
                eprintln!("error: {e:#}");
                break ExitCode::FAILURE;
            }
        };
        println!("Stopping: removing the pods ...");
        tokio::task::spawn_blocking(move || mesh.shutdown())
            .await
            .context("the stop task failed")?;
        println!("All pods and their processes are gone.");
        Ok(code)
    })
}

/// What runs where, and how to reach it.
fn print_reachable(mesh: &PodMesh) {
    let prefix = mesh.prefix();
    println!("Pods are up (namespaces {prefix}-*):");
    for pod in mesh.pods() {
        let what = match pod.name.as_str() {
            CONTROL_PLANE_POD => "control plane: xDS :15010/:15012, monitoring :15014".to_string(),
            CLIENT_POD => "sidecar, no app: send from here".to_string(),
            OUTSIDE_POD => "echo app on :9080, no sidecar (outside the mesh)".to_string(),
            _ => format!(
                "app {} + sidecar (UID 1337, captured)",
                pod.service.as_deref().unwrap_or("?")
            ),
        };
        println!("  {:<22} {:<14} {what}", pod.name, pod.ip);
    }
    let flag = if prefix == "trellis" {
        String::new()
    } else {
        format!(" --prefix {prefix}")
    };
    let first = mesh
        .spec()
        .services
        .first()
        .map(|s| format!("{}:{}", s.name, s.port))
        .unwrap_or_else(|| "SERVICE:PORT".into());
    println!();
    println!("Reach it:");
    println!("  trellis pods exec{flag} {CLIENT_POD} -- curl -s http://{first}/");
    let has = |name: &str| mesh.spec().services.iter().any(|s| s.name == name);
    if has("productpage") && has("reviews") {
        println!("  trellis pods exec{flag} productpage -- curl -s http://reviews:9080/");
    }
    println!(
        "  trellis pods exec{flag} {CLIENT_POD} -- curl -s http://{}/debug/syncz",
        mesh.monitoring_address()
    );
    println!("  trellis pods status{flag}");
    println!(
        "Config (watched, edit to apply live): {}",
        mesh.config_dir().display()
    );
    println!("Logs: {}", mesh.run_dir().display());
    println!("Ctrl-C stops every process and removes the pods.");
}

/// The namespace of pod `pod`: `PREFIX-POD`, else the first `PREFIX-POD-*` (a service name).
fn find_namespace(prefix: &str, pod: &str) -> anyhow::Result<String> {
    let mut names = cleanup::namespaces_with_prefix(prefix)?;
    names.sort();
    let exact = format!("{prefix}-{pod}");
    if names.contains(&exact) {
        return Ok(exact);
    }
    let service = format!("{exact}-");
    if let Some(n) = names.iter().find(|n| n.starts_with(&service)) {
        return Ok(n.clone());
    }
    if names.is_empty() {
        bail!("no pods named {prefix}-*: is `trellis pods up` running (with this --prefix)?");
    }
    let pods: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_prefix(&format!("{prefix}-")))
        .filter(|n| *n != "switch")
        .collect();
    bail!("no pod {pod:?}; pods: {}", pods.join(", "))
}

/// Prints every pod: its address and the processes in it.
fn status(prefix: &str) -> anyhow::Result<ExitCode> {
    let mut names = cleanup::namespaces_with_prefix(prefix)?;
    names.sort();
    names.retain(|n| *n != format!("{prefix}-switch"));
    if names.is_empty() {
        println!("No pods named {prefix}-*.");
        return Ok(ExitCode::SUCCESS);
    }
    for ns in names {
        let ip = trellis_capture::netns::run(
            "ip",
            &[
                "netns", "exec", &ns, "ip", "-4", "-o", "addr", "show", "dev", "eth0",
            ],
        )
        .ok()
        .and_then(|out| {
            out.split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "-".into());
        let processes: Vec<String> = cleanup::pids_in(&ns)
            .into_iter()
            .map(|pid| format!("{pid} {}", command_of(pid)))
            .collect();
        let pod = ns.strip_prefix(&format!("{prefix}-")).unwrap_or(&ns);
        println!("{pod:<22} {ip:<18} {}", processes.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

/// A process's command line, shortened.
fn command_of(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| {
            let w = String::from_utf8_lossy(w);
            w.rsplit('/').next().unwrap_or(&w).to_string()
        })
        .take(3)
        .collect();
    words.join(" ")
}
