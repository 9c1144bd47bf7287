//! `trellis demo`: a Bookinfo-like mesh on this machine: productpage → reviews v1/v2/v3 →
//! ratings, plus details, each behind a sidecar, with traffic. As root with iptables (`--mode
//! auto`, the default) it runs as pods — network namespaces with captured sidecars, traffic from
//! curl in a client pod (`pods`); otherwise in explicit mode on loopback addresses, where apps
//! and the client use their sidecar as an HTTP proxy (`explicit`). `--check` applies a 90/10
//! split, measures it, and tears down.

mod pods;
mod prometheus;
mod traffic;

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use trellis_testkit::mesh::{self, Dataplane, Mesh, MeshOptions, ServiceSpec, WorkloadSpec};

use traffic::{ReviewsCounter, Split};

/// Flags of `trellis demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run non-interactively: apply a 90/10 split of reviews between v1 and v2, send traffic,
    /// print the observed split, tear everything down, and exit 0 only if it is within ±5 points.
    #[arg(long)]
    check: bool,
    /// Which data plane runs the sidecars.
    #[arg(long, value_enum, default_value = "trellis")]
    dataplane: DataplaneArg,
    /// The loopback /24 the demo uses (control plane on .1, client sidecar on .2).
    #[arg(long, default_value = "127.0.90.0")]
    base: Ipv4Addr,
    /// Requests `--check` sends.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// How to run the workloads: `pods` (network namespaces with iptables capture; root),
    /// `explicit` (loopback addresses, sidecars as HTTP proxies; any user), or `auto`: pods
    /// when running as root with iptables, setpriv and curl, explicit otherwise.
    #[arg(long, value_enum, default_value = "auto")]
    mode: ModeArg,
}

/// clap's view of the demo mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    /// Pods when possible, explicit otherwise.
    Auto,
    /// Network namespaces with captured sidecars (root).
    Pods,
    /// Loopback addresses, sidecars as explicit HTTP proxies.
    Explicit,
}

/// The mode `auto` picks, and why.
fn pick_mode(mode: ModeArg) -> anyhow::Result<(ModeArg, String)> {
    let missing = trellis_testkit::pods::missing_requirements().or_else(|| {
        let curl = std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        (!curl).then(|| "pods need curl (the demo's client in a pod)".to_string())
    });
    match (mode, missing) {
        (ModeArg::Pods, Some(missing)) => {
            anyhow::bail!("--mode pods: {missing}; use --mode explicit, which needs neither")
        }
        (ModeArg::Pods, None) => Ok((ModeArg::Pods, "asked for".into())),
        (ModeArg::Explicit, _) => Ok((ModeArg::Explicit, "asked for".into())),
        (ModeArg::Auto, None) => Ok((ModeArg::Pods, "auto: root with iptables".into())),
        (ModeArg::Auto, Some(missing)) => Ok((ModeArg::Explicit, format!("auto: {missing}"))),
    }
}

/// clap's view of the data plane choice.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DataplaneArg {
    /// The Trellis proxy.
    Trellis,
    /// Stock Envoy through `trellis agent`.
    Envoy,
}

/// The tolerance of `--check`, in percentage points.
const TOLERANCE: f64 = 5.0;

/// Subsets for every Bookinfo service (as Istio's `destination-rule-all.yaml` does).
const DESTINATION_RULES: &str = include_str!("destination-rules.yaml");
/// reviews: 90% v1, 10% v2 (Istio's `virtual-service-reviews-90-10.yaml`).
const REVIEWS_90_10: &str = include_str!("reviews-90-10.yaml");

/// Runs the demo.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = crate::signals::runtime()?;
    runtime.block_on(async move {
        let dataplane = match args.dataplane {
            DataplaneArg::Trellis => Dataplane::Trellis,
            DataplaneArg::Envoy => Dataplane::Envoy,
        };
        let (mode, why) = pick_mode(args.mode)?;
        match mode {
            ModeArg::Pods => {
                println!("Mode: pods ({why})");
                return pods::run(args.base, dataplane, args.check, args.requests).await;
            }
            _ => println!("Mode: explicit ({why})"),
        }
        let run_dir = std::env::temp_dir().join(format!("trellis-demo-{}", std::process::id()));
        let trellis = std::env::current_exe().context("locating the trellis binary")?;
        println!(
            "Starting the demo mesh ({dataplane} sidecars) in {} ...",
            args.base
        );
        let started = Instant::now();
        let mesh = Mesh::start(
            spec(args.base, dataplane),
            MeshOptions::new(trellis, &run_dir),
        )
        .await
        .with_context(|| format!("starting the demo mesh (logs in {})", run_dir.display()))?;
        println!(
            "  mesh up in {:.1}s: control plane, {} sidecars, {} apps",
            started.elapsed().as_secs_f64(),
            mesh.proxies().len(),
            mesh.proxies().len() - 1
        );
        if args.check {
            check(mesh, args.requests).await
        } else {
            interactive(mesh).await
        }
    })
}

/// The Bookinfo-like topology: testkit's bookinfo plus details, which productpage also calls.
pub(crate) fn spec(base: Ipv4Addr, dataplane: Dataplane) -> mesh::MeshSpec {
    let mut spec = mesh::bookinfo(base, dataplane);
    if !spec.services.iter().any(|s| s.name == "details") {
        spec.services.push(ServiceSpec {
            name: "details".into(),
            namespace: "default".into(),
            port: 9080,
            protocol: "HTTP".into(),
        });
        spec.workloads.push(WorkloadSpec {
            service: "details".into(),
            version: "v1".into(),
            instance: 0,
            calls: Vec::new(),
        });
        if let Some(productpage) = spec
            .workloads
            .iter_mut()
            .find(|w| w.service == "productpage")
        {
            productpage.calls.insert(
                0,
                "http://details.default.svc.cluster.local:9080/details/0".into(),
            );
        }
    }
    spec
}

async fn check(mut mesh: Mesh, requests: usize) -> anyhow::Result<ExitCode> {
    let outcome = async {
        println!("Applying DestinationRules and the 90/10 VirtualService for reviews ...");
        mesh.apply("destination-rules.yaml", DESTINATION_RULES)
            .await?;
        mesh.apply("reviews.yaml", REVIEWS_90_10).await?;
        mesh.wait_synced(Instant::now() + Duration::from_secs(30))
            .await?;
        println!("Sending {requests} requests to productpage through the client sidecar ...");
        let mut counter = ReviewsCounter::new(mesh.client_outbound());
        counter.send(requests).await;
        anyhow::Ok(counter)
    }
    .await;
    let nacks = mesh.nack_count().await;
    mesh.shutdown().await;
    let counter = outcome?;
    let ok = verdict(&counter, nacks);
    println!("All demo processes stopped.");
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints the observed split against the 90/10 the check applied and the verdict: whether the
/// split is within [`TOLERANCE`] with no failed request and no NACK.
fn verdict(counter: &ReviewsCounter, nacks: usize) -> bool {
    let expected = [Split::new("v1", 90.0), Split::new("v2", 10.0)];
    println!();
    println!("{}", counter.table(&expected));
    let off = counter.worst_deviation(&expected);
    let ok = off <= TOLERANCE && counter.failures() == 0 && nacks == 0;
    println!(
        "largest deviation {off:.1} points (allowed {TOLERANCE}), {} failed request(s), {nacks} NACK(s): {}",
        counter.failures(),
        if ok { "PASS" } else { "FAIL" }
    );
    ok
}

async fn interactive(mut mesh: Mesh) -> anyhow::Result<ExitCode> {
    mesh.apply("destination-rules.yaml", DESTINATION_RULES)
        .await?;
    mesh.wait_synced(Instant::now() + Duration::from_secs(30))
        .await?;
    let client = mesh.client_outbound();
    let config_dir = mesh.config_dir().display().to_string();
    println!();
    println!("The mesh is running. Where to look:");
    println!(
        "  dashboard           {}",
        crate::cmd::dashboard::url(mesh.monitoring_address())
    );
    println!("  call productpage    curl -x http://{client} http://productpage:9080/");
    println!(
        "  proxy sync status   curl {}",
        mesh.monitoring_url("/debug/syncz")
    );
    println!(
        "  applied config      curl {}",
        mesh.monitoring_url("/debug/config")
    );
    for proxy in mesh.proxies() {
        println!(
            "  {:<18}  http://{}/config_dump  /stats/prometheus",
            proxy.workload,
            proxy.admin()
        );
    }
    println!("  config directory    {config_dir}   (edit it: changes apply live)");
    println!("  logs                {}", mesh.run_dir().display());
    println!();
    println!("Try a canary: send 10% of reviews traffic to v2 —");
    println!(
        "  cat > {config_dir}/reviews.yaml <<'EOF'\n{}EOF",
        REVIEWS_90_10
    );
    println!();
    println!(
        "Watch it with Prometheus (istio_requests_total, istio_request_duration_milliseconds, ...): add to prometheus.yml —"
    );
    print!("{}", prometheus::scrape_config(&mesh));
    println!();
    println!(
        "Traffic: 10 requests/s to productpage; the reviews version each one reached, every 3 s (Ctrl-C to stop):"
    );
    let mut counter = ReviewsCounter::new(client);
    let stop = crate::signals::shutdown();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            line = counter.window(Duration::from_secs(3), 10) => println!("  {line}"),
        }
    }
    println!("Stopping the demo ...");
    mesh.shutdown().await;
    println!("All demo processes stopped.");
    Ok(ExitCode::SUCCESS)
}
