//! The side-by-side data-plane benchmark: `direct` (client → app), `trellis` (client → Trellis
//! sidecar → Trellis sidecar → app) and `envoy` (the same with Envoy sidecars), all driven by
//! the same control plane build and the same Istio config, on one machine.
//!
//! Both meshes run at once (separate loopback /24s), so runs can be interleaved without
//! restarting anything: for every cell (protocol, rate) the data planes take turns, in a
//! rotated order each repetition, and the report takes the median over repetitions.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use trellis_testkit::mesh::{
    ADMIN_PORT, Dataplane, Mesh, MeshOptions, MeshSpec, SECURE_XDS_PORT, ServiceSpec, WorkloadSpec,
};
use trellis_testkit::process::{Spec, spawn_logged};

use crate::common::{
    envoy_version, fmt_duration, machine_facts, now_utc, pin, progress, revision_virtual_service,
    scale_services_yaml,
};
use crate::loadgen::{self, OpenLoop, Protocol, Target};
use crate::procfs;
use crate::report::{SidecarReport, SidecarRun, Table, fmt_delta, fmt_opt, write_file};
use crate::stats::{Percentiles, median, round};
use crate::svg;

/// A data plane under test, or none (`direct`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Plane {
    /// The client calls the app directly: the floor.
    Direct,
    /// Trellis sidecars.
    Trellis,
    /// Envoy sidecars (via `trellis agent`).
    Envoy,
    /// Trellis sidecars under a mesh-wide Telemetry that turns metrics, access logs and
    /// tracing off: what telemetry costs (opt-in).
    TrellisNoTelemetry,
    /// The same Telemetry on Envoy sidecars (it changes little there: stock Envoy has no Istio
    /// metrics to drop and skips the `istio.stats` filter; access logs and tracing are off by
    /// default anyway).
    EnvoyNoTelemetry,
}

/// The mesh-wide Telemetry of the `*-notelemetry` planes: no metrics (no Prometheus provider
/// in force drops every Istio metric), no access logs, no spans.
pub const NO_TELEMETRY_YAML: &str = "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: mesh-default
  namespace: istio-system
spec:
  metrics:
  - overrides:
    - match: {metric: ALL_METRICS}
      disabled: true
  accessLogging:
  - disabled: true
  tracing:
  - disableSpanReporting: true
";

impl Plane {
    /// `direct`, `trellis`, `envoy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Plane::Direct => "direct",
            Plane::Trellis => "trellis",
            Plane::Envoy => "envoy",
            Plane::TrellisNoTelemetry => "trellis-notelemetry",
            Plane::EnvoyNoTelemetry => "envoy-notelemetry",
        }
    }

    fn mesh(self) -> Option<Dataplane> {
        match self {
            Plane::Direct => None,
            Plane::Trellis | Plane::TrellisNoTelemetry => Some(Dataplane::Trellis),
            Plane::Envoy | Plane::EnvoyNoTelemetry => Some(Dataplane::Envoy),
        }
    }

    fn is_envoy(self) -> bool {
        self.mesh() == Some(Dataplane::Envoy)
    }

    /// A `*-notelemetry` variant: measured for latency and CPU only.
    pub fn telemetry_off(self) -> bool {
        matches!(self, Plane::TrellisNoTelemetry | Plane::EnvoyNoTelemetry)
    }
}

impl std::str::FromStr for Plane {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "direct" => Ok(Plane::Direct),
            "trellis" => Ok(Plane::Trellis),
            "envoy" => Ok(Plane::Envoy),
            "trellis-notelemetry" => Ok(Plane::TrellisNoTelemetry),
            "envoy-notelemetry" => Ok(Plane::EnvoyNoTelemetry),
            other => bail!(
                "unknown data plane {other:?} (expected direct, trellis, envoy, trellis-notelemetry or envoy-notelemetry)"
            ),
        }
    }
}

/// How to run the sidecar benchmark.
#[derive(Debug, Clone)]
pub struct SidecarOptions {
    /// Open-loop rates (requests per second).
    pub rates: Vec<u64>,
    /// The recorded part of each open-loop run.
    pub duration: Duration,
    /// The discarded warm-up before it.
    pub warmup: Duration,
    /// Repetitions of every measurement (medians are reported).
    pub runs: usize,
    /// The data planes, in the order they take turns.
    pub dataplanes: Vec<Plane>,
    /// Protocols spoken by the client (and declared on the service port).
    pub protocols: Vec<Protocol>,
    /// Keep-alive connections of the open-loop generator.
    pub connections: usize,
    /// Concurrent requests of the closed-loop (throughput) runs.
    pub throughput_concurrency: usize,
    /// The recorded part of a closed-loop run.
    pub throughput_duration: Duration,
    /// Services in the "large config" mesh (0 skips it).
    pub scale_services: usize,
    /// The `trellis` binary.
    pub trellis_bin: PathBuf,
    /// Where the outputs go (`target/bench`).
    pub out_dir: PathBuf,
    /// Pin the proxies to CPU 1 (the benchmark itself runs on CPU 0).
    pub pin: bool,
    /// Plaintext between sidecars (an explicit opt-out: by default the meshes run secure, with
    /// mutual TLS between sidecars, as Istio does).
    pub plaintext: bool,
    /// The response body size the app is asked for.
    pub body_bytes: usize,
    /// The command line, for the report.
    pub command: String,
}

impl SidecarOptions {
    /// The defaults of a full run.
    pub fn full(trellis_bin: PathBuf, out_dir: PathBuf) -> Self {
        SidecarOptions {
            rates: vec![1000, 5000],
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            runs: 3,
            dataplanes: vec![Plane::Direct, Plane::Trellis, Plane::Envoy],
            protocols: vec![Protocol::Http1, Protocol::Http2, Protocol::Grpc],
            connections: 32,
            throughput_concurrency: 32,
            throughput_duration: Duration::from_secs(5),
            scale_services: 1000,
            trellis_bin,
            out_dir,
            pin: true,
            plaintext: false,
            body_bytes: 1024,
            command: String::new(),
        }
    }

    /// A smoke run that takes seconds: one short run per cell, small sizes.
    pub fn quick(trellis_bin: PathBuf, out_dir: PathBuf) -> Self {
        SidecarOptions {
            rates: vec![500],
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(250),
            runs: 1,
            connections: 8,
            throughput_concurrency: 8,
            throughput_duration: Duration::from_secs(1),
            scale_services: 50,
            ..SidecarOptions::full(trellis_bin, out_dir)
        }
    }
}

/// The namespace of the benchmark's services.
const NAMESPACE: &str = "default";
/// The benchmark's services: (name, port, declared protocol, protocol the client speaks).
const SERVICES: [(&str, u16, &str, Protocol); 3] = [
    ("bench", 8080, "HTTP", Protocol::Http1),
    ("bench-h2", 8081, "HTTP2", Protocol::Http2),
    ("bench-grpc", 8082, "GRPC", Protocol::Grpc),
];

/// The config label of the main meshes (memory and start-to-ready rows).
const TINY: &str = "tiny (3 services)";

fn service_for(p: Protocol) -> (&'static str, u16, usize) {
    let i = match p {
        Protocol::Http1 => 0,
        Protocol::Http2 => 1,
        Protocol::Grpc => 2,
    };
    (SERVICES[i].0, SERVICES[i].1, i)
}

/// What the load generator sends for `p`: the path (HTTP: `http_path`, the padded echo query;
/// gRPC: the echo service's unary method) and the body (gRPC: one ≈`body_bytes` message).
fn request_shape(p: Protocol, http_path: &str, body_bytes: usize) -> (String, Bytes) {
    match p {
        Protocol::Http1 | Protocol::Http2 => (http_path.to_string(), Bytes::new()),
        Protocol::Grpc => (
            trellis_testkit::grpc::Method::Unary.path().to_string(),
            loadgen::grpc_echo_frame(body_bytes),
        ),
    }
}

fn authority(p: Protocol) -> String {
    let (name, port, _) = service_for(p);
    format!("{name}.{NAMESPACE}.svc.cluster.local:{port}")
}

fn host(p: Protocol) -> String {
    let (name, _, _) = service_for(p);
    format!("{name}.{NAMESPACE}.svc.cluster.local")
}

/// A sidecar the benchmark watches: its IP, the data-plane process (Envoy itself, or `trellis
/// proxy`) and, for Envoy, the supervising agent.
#[derive(Debug, Clone)]
struct ProxyProc {
    ip: Ipv4Addr,
    workload: String,
    dataplane_pid: u32,
    agent_pid: Option<u32>,
}

fn proxy_processes(mesh: &Mesh) -> Vec<ProxyProc> {
    let mut out = Vec::new();
    for pid in mesh.pids() {
        let Ok(args) = procfs::cmdline(pid) else {
            continue;
        };
        let sub = args.get(1).map(String::as_str);
        if !matches!(sub, Some("proxy") | Some("agent")) {
            continue;
        }
        let Some(ip) = procfs::flag_value(&args, "--ip").and_then(|s| s.parse().ok()) else {
            continue;
        };
        let workload = procfs::flag_value(&args, "--workload")
            .unwrap_or("?")
            .to_string();
        if sub == Some("agent") {
            let envoy = procfs::children(pid)
                .into_iter()
                .find(|c| procfs::stat(*c).is_ok_and(|s| s.comm.contains("envoy")));
            match envoy {
                Some(e) => out.push(ProxyProc {
                    ip,
                    workload,
                    dataplane_pid: e,
                    agent_pid: Some(pid),
                }),
                None => progress(format!(
                    "warning: no Envoy child found under agent PID {pid}"
                )),
            }
        } else {
            out.push(ProxyProc {
                ip,
                workload,
                dataplane_pid: pid,
                agent_pid: None,
            });
        }
    }
    out
}

struct MeshUnderTest {
    plane: Plane,
    mesh: Mesh,
    proxies: Vec<ProxyProc>,
}

impl MeshUnderTest {
    /// The two sidecars a request for `p` passes: the client's and the service's.
    fn path_proxies(&self, p: Protocol) -> Vec<ProxyProc> {
        let (_, _, i) = service_for(p);
        let plan = self.mesh.addresses();
        let want = [plan.client(), plan.workload(i)];
        want.iter()
            .filter_map(|ip| self.proxies.iter().find(|x| x.ip == *ip).cloned())
            .collect()
    }

    fn app(&self, p: Protocol) -> anyhow::Result<SocketAddr> {
        let (name, _, _) = service_for(p);
        self.mesh
            .apps()
            .into_iter()
            .find(|a| a.0 == name)
            .map(|a| a.3)
            .ok_or_else(|| anyhow!("no app for service {name}"))
    }
}

fn mesh_spec(base: Ipv4Addr, dataplane: Dataplane, extra_yaml: String) -> MeshSpec {
    MeshSpec {
        base,
        dataplane,
        services: SERVICES
            .iter()
            .map(|(name, port, proto, _)| ServiceSpec {
                name: name.to_string(),
                namespace: NAMESPACE.to_string(),
                port: *port,
                protocol: proto.to_string(),
            })
            .collect(),
        workloads: SERVICES
            .iter()
            .map(|(name, ..)| WorkloadSpec {
                service: name.to_string(),
                version: "v1".to_string(),
                instance: 0,
                calls: vec![],
            })
            .collect(),
        extra_yaml,
    }
}

async fn start_mesh(
    opts: &SidecarOptions,
    plane: Plane,
    base: Ipv4Addr,
    extra_yaml: String,
    label: &str,
) -> anyhow::Result<MeshUnderTest> {
    let dataplane = plane
        .mesh()
        .ok_or_else(|| anyhow!("direct has no mesh of its own"))?;
    let run_dir = opts.out_dir.join("run").join(label);
    let mut mo = MeshOptions::new(&opts.trellis_bin, &run_dir);
    mo.startup_timeout = Duration::from_secs(180);
    mo.mtls = !opts.plaintext;
    let t0 = Instant::now();
    let mesh = Mesh::start(mesh_spec(base, dataplane, extra_yaml), mo)
        .await
        .with_context(|| format!("starting the {label} mesh"))?;
    let proxies = proxy_processes(&mesh);
    progress(format!(
        "{label} mesh up in {:.1}s at {base}/24 ({} sidecars; logs in {})",
        t0.elapsed().as_secs_f64(),
        proxies.len(),
        run_dir.display()
    ));
    if opts.pin {
        for p in &proxies {
            pin(p.dataplane_pid, "1");
            if let Some(a) = p.agent_pid {
                pin(a, "1");
            }
        }
    }
    Ok(MeshUnderTest {
        plane,
        mesh,
        proxies,
    })
}

fn cpu_of(procs: &[ProxyProc]) -> Vec<f64> {
    procs
        .iter()
        .map(|p| {
            procfs::stat(p.dataplane_pid)
                .map(|s| s.cpu_seconds())
                .unwrap_or(f64::NAN)
        })
        .collect()
}

fn mem_of(pid: u32) -> Option<procfs::MemStatus> {
    procfs::status(pid).ok()
}

/// One open-loop measurement.
#[derive(Debug, Clone)]
struct LatencySample {
    pct: Option<Percentiles>,
    errors: u64,
    not_sent: u64,
    first_error: Option<String>,
    body_len: usize,
    /// Per on-path proxy: CPU seconds per 1000 requests.
    cpu_per_1k: Vec<f64>,
    /// Per on-path proxy: VmRSS MiB after the run.
    rss_mb: Vec<f64>,
}

#[derive(Debug, Default)]
struct Results {
    /// (protocol, rate, plane) → samples.
    latency: BTreeMap<(Protocol, u64, Plane), Vec<LatencySample>>,
    /// (protocol, plane) → closed-loop req/s per run.
    throughput: BTreeMap<(Protocol, Plane), Vec<f64>>,
    /// plane → config change to applied (ms) per run.
    change_ms: BTreeMap<Plane, Vec<f64>>,
    /// (plane, config) → start to ready (ms) per run.
    ready_ms: BTreeMap<(Plane, String), Vec<f64>>,
    /// Memory rows.
    memory: Vec<MemoryRow>,
    /// plane → the transport between its sidecars, as verified on the data path.
    transport: BTreeMap<Plane, String>,
    notes: Vec<String>,
}

/// Memory row: (plane, config, workload, idle VmRSS, VmHWM, after-load VmRSS, agent VmRSS).
type MemoryRow = (Plane, String, String, f64, f64, Option<f64>, Option<f64>);

fn rotated<T: Clone>(v: &[T], k: usize) -> Vec<T> {
    if v.is_empty() {
        return Vec::new();
    }
    let k = k % v.len();
    v[k..].iter().chain(v[..k].iter()).cloned().collect()
}

/// Runs the sidecar benchmark and writes `sidecar.json`, `report.md` and `latency.svg` in
/// `opts.out_dir`; returns the markdown report.
pub async fn run(mut opts: SidecarOptions) -> anyhow::Result<String> {
    if opts.runs == 0 || opts.rates.is_empty() || opts.protocols.is_empty() {
        bail!("nothing to run: need at least one run, one rate and one protocol");
    }
    let started = now_utc();
    let facts = machine_facts();
    let mut envoy_desc = None;
    if opts.dataplanes.iter().any(|d| d.is_envoy()) {
        match trellis_testkit::envoy::find_envoy() {
            Ok(p) => {
                envoy_desc = Some(envoy_version(&p).unwrap_or_else(|| p.display().to_string()))
            }
            Err(e) => {
                progress(format!("warning: skipping envoy: {e:#}"));
                opts.dataplanes.retain(|d| !d.is_envoy());
            }
        }
    }
    progress(format!(
        "sidecar benchmark: data planes {}, protocols {}, rates {:?}/s, {} run(s) of {} (+{} warm-up), {} connections; {} between sidecars; pinning {}",
        opts.dataplanes
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(","),
        opts.protocols
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(","),
        opts.rates,
        opts.runs,
        fmt_duration(opts.duration),
        fmt_duration(opts.warmup),
        opts.connections,
        if opts.plaintext {
            "plaintext (--plaintext)"
        } else {
            "mutual TLS"
        },
        if opts.pin {
            "proxies on CPU 1, benchmark/apps/control plane on CPU 0"
        } else {
            "off"
        }
    ));

    // Meshes: trellis also hosts the app `direct` calls.
    let mut meshes: Vec<MeshUnderTest> = Vec::new();
    let need_trellis_mesh = opts
        .dataplanes
        .iter()
        .any(|d| matches!(d, Plane::Trellis | Plane::Direct));
    if need_trellis_mesh {
        meshes.push(
            start_mesh(
                &opts,
                Plane::Trellis,
                Ipv4Addr::new(127, 211, 1, 0),
                String::new(),
                "trellis",
            )
            .await?,
        );
    }
    if opts.dataplanes.contains(&Plane::Envoy) {
        meshes.push(
            start_mesh(
                &opts,
                Plane::Envoy,
                Ipv4Addr::new(127, 211, 2, 0),
                String::new(),
                "envoy",
            )
            .await?,
        );
    }
    // The telemetry-off variants: the same meshes under a mesh-wide Telemetry.
    for (plane, third) in [
        (Plane::TrellisNoTelemetry, 9),
        (Plane::EnvoyNoTelemetry, 10),
    ] {
        if opts.dataplanes.contains(&plane) {
            meshes.push(
                start_mesh(
                    &opts,
                    plane,
                    Ipv4Addr::new(127, 211, third, 0),
                    NO_TELEMETRY_YAML.to_string(),
                    plane.as_str(),
                )
                .await?,
            );
        }
    }
    let mut results = Results::default();
    let outcome = measure_all(&opts, &mut meshes, &mut results).await;
    for m in meshes {
        m.mesh.shutdown().await;
    }
    outcome?;
    if opts.scale_services > 0 {
        measure_scale(&opts, &mut results).await?;
    }
    let (md, json, svg_text) = render(&opts, &results, &started, &facts, envoy_desc.as_deref());
    write_file(&opts.out_dir.join("sidecar.json"), &json)?;
    write_file(&opts.out_dir.join("report.md"), &md)?;
    write_file(&opts.out_dir.join("latency.svg"), &svg_text)?;
    progress(format!(
        "wrote {}, {} and {}",
        opts.out_dir.join("report.md").display(),
        opts.out_dir.join("sidecar.json").display(),
        opts.out_dir.join("latency.svg").display()
    ));
    Ok(md)
}

fn target_for(
    meshes: &[MeshUnderTest],
    plane: Plane,
    p: Protocol,
    (path, body): &(String, Bytes),
) -> anyhow::Result<Target> {
    let mesh_plane = if plane == Plane::Direct {
        Plane::Trellis
    } else {
        plane
    };
    let m = meshes
        .iter()
        .find(|m| m.plane == mesh_plane)
        .ok_or_else(|| anyhow!("no mesh for {}", plane.as_str()))?;
    Ok(match plane {
        Plane::Direct => Target {
            addr: m.app(p)?,
            authority: authority(p),
            path: path.clone(),
            protocol: p,
            via_proxy: false,
            body: body.clone(),
        },
        _ => Target {
            addr: m.mesh.client_outbound(),
            authority: authority(p),
            path: path.clone(),
            protocol: p,
            via_proxy: true,
            body: body.clone(),
        },
    })
}

async fn measure_all(
    opts: &SidecarOptions,
    meshes: &mut [MeshUnderTest],
    results: &mut Results,
) -> anyhow::Result<()> {
    // Idle memory with the tiny config.
    for m in meshes.iter() {
        if !opts.dataplanes.contains(&m.plane) {
            continue;
        }
        for p in &m.proxies {
            if let Some(mem) = mem_of(p.dataplane_pid) {
                results.memory.push((
                    m.plane,
                    TINY.to_string(),
                    p.workload.clone(),
                    mem.rss_mb(),
                    mem.hwm_mb(),
                    None,
                    p.agent_pid.and_then(mem_of).map(|a| a.rss_mb()),
                ));
            }
        }
    }
    // Body size: pad the app's JSON answer to about `body_bytes` (measured directly).
    let probe = target_for(
        meshes,
        Plane::Direct,
        Protocol::Http1,
        &("/bench?size=0".to_string(), Bytes::new()),
    )?;
    let base_len = loadgen::fetch(&probe)
        .await
        .context("probing the app")?
        .body_len;
    let pad = opts.body_bytes.saturating_sub(base_len);
    let path = format!("/bench?size={pad}");
    progress(format!(
        "app answer without padding is {base_len} bytes: requesting {path} (≈{} bytes directly)",
        base_len + pad
    ));
    let shape = |p: Protocol| request_shape(p, &path, opts.body_bytes);
    // Every path answers before anything is measured.
    for &p in &opts.protocols {
        for &d in &opts.dataplanes {
            let t = target_for(meshes, d, p, &shape(p))?;
            let a = loadgen::fetch(&t)
                .await
                .with_context(|| format!("probe of {} {}", d.as_str(), p.as_str()))?;
            if !a.is_ok(p) {
                bail!("probe of {} {}: {}", d.as_str(), p.as_str(), a.failure());
            }
        }
    }
    // The transport between the sidecars is what was asked for.
    for m in meshes.iter() {
        if !opts.dataplanes.contains(&m.plane) {
            continue;
        }
        let transport = verify_transport(opts, m).await?;
        progress(format!("{}: {transport}", m.plane.as_str()));
        results.transport.insert(m.plane, transport);
    }

    // (1) + (3): latency at fixed rates, with proxy CPU and memory.
    for &p in &opts.protocols {
        for &rate in &opts.rates {
            for rep in 0..opts.runs {
                for d in rotated(&opts.dataplanes, rep) {
                    let target = target_for(meshes, d, p, &shape(p))?;
                    let procs = meshes
                        .iter()
                        .find(|m| m.plane == d)
                        .map(|m| m.path_proxies(p))
                        .unwrap_or_default();
                    let before = cpu_of(&procs);
                    let r = loadgen::open_loop(
                        &target,
                        OpenLoop {
                            rate: rate as f64,
                            connections: opts.connections,
                            warmup: opts.warmup,
                            duration: opts.duration,
                        },
                    )
                    .await
                    .with_context(|| format!("{} {} {rate}/s", d.as_str(), p.as_str()))?;
                    let after = cpu_of(&procs);
                    let cpu_per_1k: Vec<f64> = before
                        .iter()
                        .zip(&after)
                        .map(|(b, a)| (a - b) / (r.ok_total.max(1) as f64) * 1000.0)
                        .collect();
                    let rss_mb: Vec<f64> = procs
                        .iter()
                        .filter_map(|x| mem_of(x.dataplane_pid).map(|m| m.rss_mb()))
                        .collect();
                    let pct = Percentiles::from_histogram(&r.histogram);
                    progress(format!(
                        "{:<7} {} {rate:>5}/s run {}/{}: p50 {} p90 {} p99 {} p99.9 {} ms; {} ok, {} errors{}{}",
                        d.as_str(),
                        p.as_str(),
                        rep + 1,
                        opts.runs,
                        fmt_opt(pct.map(|x| x.p50_ms), 3),
                        fmt_opt(pct.map(|x| x.p90_ms), 3),
                        fmt_opt(pct.map(|x| x.p99_ms), 3),
                        fmt_opt(pct.map(|x| x.p999_ms), 3),
                        r.ok_measured,
                        r.errors,
                        if r.not_sent > 0 {
                            format!(", {} not sent", r.not_sent)
                        } else {
                            String::new()
                        },
                        r.first_error
                            .as_deref()
                            .map(|e| format!(" (first: {e})"))
                            .unwrap_or_default()
                    ));
                    results
                        .latency
                        .entry((p, rate, d))
                        .or_default()
                        .push(LatencySample {
                            pct,
                            errors: r.errors,
                            not_sent: r.not_sent,
                            first_error: r.first_error,
                            body_len: r.body_len,
                            cpu_per_1k,
                            rss_mb,
                        });
                }
            }
        }
    }
    // Memory after load.
    for m in meshes.iter() {
        for p in &m.proxies {
            if let Some(row) = results
                .memory
                .iter_mut()
                .find(|r| r.0 == m.plane && r.2 == p.workload)
            {
                row.5 = mem_of(p.dataplane_pid).map(|x| x.rss_mb());
                if let Some(x) = mem_of(p.dataplane_pid) {
                    row.4 = row.4.max(x.hwm_mb());
                }
            }
        }
    }

    // (2) Max throughput, closed loop.
    for &p in &opts.protocols {
        for rep in 0..opts.runs {
            for d in rotated(&opts.dataplanes, rep) {
                let target = target_for(meshes, d, p, &shape(p))?;
                let r = loadgen::closed_loop(
                    &target,
                    opts.throughput_concurrency,
                    4,
                    opts.warmup.min(Duration::from_secs(1)),
                    opts.throughput_duration,
                )
                .await?;
                progress(format!(
                    "{:<7} {} max throughput run {}/{}: {:.0} req/s ({} errors)",
                    d.as_str(),
                    p.as_str(),
                    rep + 1,
                    opts.runs,
                    r.rps,
                    r.errors
                ));
                results.throughput.entry((p, d)).or_default().push(r.rps);
            }
        }
    }

    // (4a) Config change to applied on the data path.
    let mut rev = 0u64;
    let planes: Vec<Plane> = opts
        .dataplanes
        .iter()
        .copied()
        .filter(|d| *d != Plane::Direct && !d.telemetry_off())
        .collect();
    for rep in 0..opts.runs {
        for d in rotated(&planes, rep) {
            rev += 1;
            let m = meshes
                .iter_mut()
                .find(|m| m.plane == d)
                .ok_or_else(|| anyhow!("no mesh for {}", d.as_str()))?;
            let ms = change_to_applied(m, rev).await?;
            progress(format!(
                "{:<7} config change to applied run {}/{}: {ms:.1} ms",
                d.as_str(),
                rep + 1,
                opts.runs
            ));
            results.change_ms.entry(d).or_default().push(ms);
        }
    }

    // (4b) Proxy start to ready (tiny config).
    for rep in 0..opts.runs {
        for d in rotated(&planes, rep) {
            let m = meshes
                .iter()
                .find(|m| m.plane == d)
                .ok_or_else(|| anyhow!("no mesh for {}", d.as_str()))?;
            let ms = start_to_ready(opts, m, rep).await?;
            progress(format!(
                "{:<7} proxy start to ready (tiny config) run {}/{}: {ms:.0} ms",
                d.as_str(),
                rep + 1,
                opts.runs
            ));
            results
                .ready_ms
                .entry((d, TINY.to_string()))
                .or_default()
                .push(ms);
        }
    }
    Ok(())
}

/// Checks on the data path that the sidecars speak what was asked for, and describes it for the
/// report: through the client sidecar, the `bench` app echoes the request headers it got, and
/// the server sidecar adds `x-forwarded-client-cert` (with the client's SPIFFE identity) exactly
/// when the connection from the client sidecar was mutual TLS.
async fn verify_transport(opts: &SidecarOptions, m: &MeshUnderTest) -> anyhow::Result<String> {
    let p = Protocol::Http1;
    let target = Target {
        addr: m.mesh.client_outbound(),
        authority: authority(p),
        path: "/bench?size=0".to_string(),
        protocol: p,
        via_proxy: true,
        body: Bytes::new(),
    };
    let answer = loadgen::fetch(&target).await?;
    let client_identity = xfcc_client_identity(&answer.body);
    match (opts.plaintext, client_identity) {
        (false, Some(id)) => Ok(format!(
            "mutual TLS between sidecars (verified: the server sidecar forwarded the client identity {id} in x-forwarded-client-cert)"
        )),
        (false, None) => bail!(
            "{}: the server sidecar saw no client certificate (no x-forwarded-client-cert in the echo answer): the sidecars do not speak mutual TLS (logs in {})",
            m.plane.as_str(),
            m.mesh.run_dir().display()
        ),
        (true, None) => Ok("plaintext between sidecars (--plaintext; verified: no client certificate reached the server sidecar)".to_string()),
        (true, Some(id)) => bail!(
            "{}: --plaintext asked, but the server sidecar saw the client certificate {id}",
            m.plane.as_str()
        ),
    }
}

/// The `URI=` of the `x-forwarded-client-cert` header echoed in an echo app's JSON answer.
fn xfcc_client_identity(echo_json: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(echo_json).ok()?;
    let xfcc = v["headers"][XFCC].as_str()?;
    xfcc.split([';', ','])
        .find_map(|kv| kv.trim().strip_prefix("URI="))
        .map(|s| s.trim_matches('"').to_string())
}

/// The header the server sidecar sets from the peer certificate.
const XFCC: &str = "x-forwarded-client-cert";

/// Applies a VirtualService that sets `x-bench-rev: REV` on answers and polls the data path
/// (through the client sidecar) until an answer carries it. Milliseconds from the file write.
async fn change_to_applied(m: &mut MeshUnderTest, rev: u64) -> anyhow::Result<f64> {
    let p = Protocol::Http1;
    let yaml = revision_virtual_service("bench", NAMESPACE, &host(p), rev);
    let target = Target {
        addr: m.mesh.client_outbound(),
        authority: authority(p),
        path: "/bench?size=0".to_string(),
        protocol: p,
        via_proxy: true,
        body: Bytes::new(),
    };
    let conn = loadgen::Conn::connect(target.addr, p).await?;
    let mut conn = Some(conn);
    m.mesh.apply("bench-vs.yaml", &yaml).await?;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(60);
    let want = rev.to_string();
    loop {
        let c = match conn.take().filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => loadgen::Conn::connect(target.addr, p).await?,
        };
        if let Ok(a) = c.send(target.request()?).await {
            let seen = a
                .headers
                .get("x-bench-rev")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if seen.as_deref() == Some(want.as_str()) {
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                m.mesh
                    .wait_synced(Instant::now() + Duration::from_secs(60))
                    .await?;
                return Ok(ms);
            }
            conn = Some(c);
        }
        if Instant::now() > deadline {
            bail!(
                "{}: the VirtualService change (x-bench-rev {rev}) did not reach the data path within 60s (logs in {})",
                m.plane.as_str(),
                m.mesh.run_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Starts one more sidecar in the mesh (at `BASE.3`, no app) and measures the time from spawning
/// the process until its admin `/ready` answers 200; then stops it (by PID).
async fn start_to_ready(
    opts: &SidecarOptions,
    m: &MeshUnderTest,
    rep: usize,
) -> anyhow::Result<f64> {
    let base = m.mesh.addresses().client().octets();
    let ip = Ipv4Addr::new(base[0], base[1], base[2], 3);
    let admin = SocketAddr::new(ip.into(), ADMIN_PORT);
    let workload = format!("bench-extra-{rep}");
    let sub = if m.plane.is_envoy() { "agent" } else { "proxy" };
    let mut spec = Spec::new(format!("{sub} {workload}"), &opts.trellis_bin)
        .arg(sub)
        .arg("--ip")
        .arg(ip.to_string())
        .arg("--workload")
        .arg(&workload)
        .arg("--namespace")
        .arg(NAMESPACE)
        .arg("--service-account")
        .arg("bench-extra")
        .arg("--labels")
        .arg("app=bench-extra")
        .arg("--admin-address")
        .arg(admin.to_string());
    if opts.plaintext {
        spec = spec
            .arg("--xds-address")
            .arg(m.mesh.xds_address().to_string());
    } else {
        // Secure, as the mesh's own sidecars: a workload token, xDS over TLS (15012), the
        // certificate from the mesh CA. The token is minted before the clock starts.
        let ca_dir = m.mesh.run_dir().join("ca");
        let token =
            trellis_testkit::mesh::mint_token(&opts.trellis_bin, &ca_dir, NAMESPACE, "bench-extra")
                .await?;
        let secure = SocketAddr::new(m.mesh.xds_address().ip(), SECURE_XDS_PORT);
        spec = spec
            .arg("--xds-address")
            .arg(secure.to_string())
            .arg("--root-cert")
            .arg(ca_dir.join("root-cert.pem").as_os_str())
            .env("TRELLIS_TOKEN", token);
    }
    if m.plane.is_envoy() {
        let envoy = trellis_testkit::envoy::find_envoy()?;
        spec = spec
            .arg("--envoy")
            .arg(envoy.as_os_str())
            .arg("--bootstrap-out")
            .arg(
                m.mesh
                    .run_dir()
                    .join("bootstrap-bench-extra.json")
                    .as_os_str(),
            )
            .arg("--concurrency")
            .arg("1");
    }
    let log = m.mesh.run_dir().join("bench-extra-proxy.log");
    let t0 = Instant::now();
    let mut guard = spawn_logged(&spec, &log)?;
    if opts.pin
        && let Some(pid) = guard.pid()
    {
        pin(pid, "1");
    }
    let url = format!("http://{admin}/ready");
    let deadline = t0 + Duration::from_secs(60);
    let result = loop {
        if let Err(e) = guard.check_running() {
            break Err(e);
        }
        if let Ok(r) = trellis_testkit::http::get(&url, Duration::from_secs(1)).await
            && r.status == 200
        {
            break Ok(t0.elapsed().as_secs_f64() * 1000.0);
        }
        if Instant::now() > deadline {
            break Err(anyhow!(
                "{url} not ready within 60s (log {})",
                log.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::task::spawn_blocking(move || guard.terminate())
        .await
        .map_err(|e| anyhow!("stopping the extra proxy: {e}"))?;
    result
}

/// (3) and (4b) with a large config: a mesh per data plane whose proxies see
/// `scale_services` more services; idle memory and start-to-ready.
async fn measure_scale(opts: &SidecarOptions, results: &mut Results) -> anyhow::Result<()> {
    let n = opts.scale_services;
    let label = format!("{n} services");
    let yaml = scale_services_yaml(n, "scale", NAMESPACE);
    for (i, &d) in opts
        .dataplanes
        .iter()
        .filter(|d| **d != Plane::Direct && !d.telemetry_off())
        .enumerate()
    {
        progress(format!("{} with {label}: starting", d.as_str()));
        let base = Ipv4Addr::new(127, 211, 3 + i as u8, 0);
        let m = start_mesh(
            opts,
            d,
            base,
            yaml.clone(),
            &format!("{}-scale", d.as_str()),
        )
        .await?;
        let outcome = async {
            // Let allocators settle after the initial push.
            tokio::time::sleep(Duration::from_secs(1)).await;
            for p in &m.proxies {
                if let Some(mem) = mem_of(p.dataplane_pid) {
                    results.memory.push((
                        d,
                        label.clone(),
                        p.workload.clone(),
                        mem.rss_mb(),
                        mem.hwm_mb(),
                        None,
                        p.agent_pid.and_then(mem_of).map(|a| a.rss_mb()),
                    ));
                }
            }
            for rep in 0..opts.runs {
                let ms = start_to_ready(opts, &m, rep).await?;
                progress(format!(
                    "{:<7} proxy start to ready ({label}) run {}/{}: {ms:.0} ms",
                    d.as_str(),
                    rep + 1,
                    opts.runs
                ));
                results
                    .ready_ms
                    .entry((d, label.clone()))
                    .or_default()
                    .push(ms);
            }
            anyhow::Ok(())
        }
        .await;
        m.mesh.shutdown().await;
        outcome?;
    }
    Ok(())
}

fn mean(v: &[f64]) -> Option<f64> {
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn render(
    opts: &SidecarOptions,
    r: &Results,
    started: &str,
    facts: &str,
    envoy: Option<&str>,
) -> (String, String, String) {
    let mut md = String::new();
    let _ = writeln!(md, "# Trellis sidecar benchmark\n");
    let _ = writeln!(md, "- date: {started}");
    if !opts.command.is_empty() {
        let _ = writeln!(md, "- command: `{}`", opts.command);
    }
    let _ = writeln!(md, "- machine: {facts}");
    let _ = writeln!(
        md,
        "- data planes: {} (Envoy {}); one worker each (Envoy `--concurrency 1`, Trellis `TOKIO_WORKER_THREADS=1`)",
        opts.dataplanes
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        envoy.unwrap_or("not run")
    );
    if r.transport.is_empty() {
        let _ = writeln!(
            md,
            "- transport between sidecars: {}",
            if opts.plaintext {
                "plaintext (--plaintext)"
            } else {
                "mutual TLS"
            }
        );
    }
    for (d, t) in &r.transport {
        let _ = writeln!(md, "- transport, {}: {t}", d.as_str());
    }
    let _ = writeln!(
        md,
        "- open loop: {} keep-alive connections, {} recorded after {} warm-up, latency from each request's intended send time; {} run(s) per cell, interleaved, medians shown",
        opts.connections,
        fmt_duration(opts.duration),
        fmt_duration(opts.warmup),
        opts.runs
    );
    let _ = writeln!(
        md,
        "- body: the echo app's JSON padded to ≈{} bytes; pinning: {}\n",
        opts.body_bytes,
        if opts.pin {
            "proxies on CPU 1; load generator, apps and control plane on CPU 0 (taskset)"
        } else {
            "none"
        }
    );

    let mut runs = Vec::new();
    let mut notes: Vec<String> = r.notes.clone();
    let mut lat = Table::new([
        "protocol",
        "rate/s",
        "data plane",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "+p50",
        "+p90",
        "+p99",
        "+p99.9",
        "errors",
        "body B",
    ]);
    let mut cpu = Table::new([
        "protocol",
        "rate/s",
        "data plane",
        "client sidecar CPU s/1k req",
        "server sidecar CPU s/1k req",
        "RSS MiB (client, server)",
    ]);
    let mut categories = Vec::new();
    let mut series: BTreeMap<Plane, Vec<Option<f64>>> = BTreeMap::new();
    for &p in &opts.protocols {
        for &rate in &opts.rates {
            let direct = r.latency.get(&(p, rate, Plane::Direct)).and_then(|s| {
                Percentiles::median_of(&s.iter().filter_map(|x| x.pct).collect::<Vec<_>>())
            });
            for (i, label) in crate::stats::PERCENTILE_LABELS.iter().enumerate() {
                categories.push(format!("{} {rate}/s {label}", p.as_str()));
                for &d in &opts.dataplanes {
                    let v = r
                        .latency
                        .get(&(p, rate, d))
                        .and_then(|s| {
                            Percentiles::median_of(
                                &s.iter().filter_map(|x| x.pct).collect::<Vec<_>>(),
                            )
                        })
                        .map(|m| m.values()[i]);
                    series.entry(d).or_default().push(v);
                }
            }
            for &d in &opts.dataplanes {
                let Some(samples) = r.latency.get(&(p, rate, d)) else {
                    continue;
                };
                let m = Percentiles::median_of(
                    &samples.iter().filter_map(|x| x.pct).collect::<Vec<_>>(),
                );
                let errors: u64 = samples.iter().map(|s| s.errors + s.not_sent).sum();
                let body = samples.last().map(|s| s.body_len).unwrap_or(0);
                let delta = |i: usize| -> Option<f64> {
                    if d == Plane::Direct {
                        return None;
                    }
                    Some(m?.values()[i] - direct?.values()[i])
                };
                let v = |i: usize| m.map(|x| x.values()[i]);
                lat.row([
                    p.as_str().to_string(),
                    rate.to_string(),
                    d.as_str().to_string(),
                    fmt_opt(v(0), 3),
                    fmt_opt(v(1), 3),
                    fmt_opt(v(2), 3),
                    fmt_opt(v(3), 3),
                    fmt_delta(delta(0), 3),
                    fmt_delta(delta(1), 3),
                    fmt_delta(delta(2), 3),
                    fmt_delta(delta(3), 3),
                    errors.to_string(),
                    body.to_string(),
                ]);
                let per_proxy =
                    |k: usize| median(samples.iter().filter_map(|s| s.cpu_per_1k.get(k).copied()));
                let rss =
                    |k: usize| median(samples.iter().filter_map(|s| s.rss_mb.get(k).copied()));
                let (cpu_json, rss_json) = if d == Plane::Direct {
                    (None, None)
                } else {
                    cpu.row([
                        p.as_str().to_string(),
                        rate.to_string(),
                        d.as_str().to_string(),
                        fmt_opt(per_proxy(0), 4),
                        fmt_opt(per_proxy(1), 4),
                        format!("{}, {}", fmt_opt(rss(0), 1), fmt_opt(rss(1), 1)),
                    ]);
                    (
                        mean(&[
                            per_proxy(0).unwrap_or(f64::NAN),
                            per_proxy(1).unwrap_or(f64::NAN),
                        ]),
                        mean(&[rss(0).unwrap_or(f64::NAN), rss(1).unwrap_or(f64::NAN)]),
                    )
                };
                if let Some(first) = samples.iter().find_map(|s| s.first_error.clone()) {
                    notes.push(format!(
                        "{} {} {rate}/s: {errors} failed or unsent request(s); first failure: {first}",
                        d.as_str(),
                        p.as_str()
                    ));
                }
                runs.push(SidecarRun {
                    dataplane: d.as_str().to_string(),
                    protocol: p.as_str().to_string(),
                    rate: Some(rate),
                    p50_ms: v(0).map(|x| round(x, 4)),
                    p90_ms: v(1).map(|x| round(x, 4)),
                    p99_ms: v(2).map(|x| round(x, 4)),
                    p999_ms: v(3).map(|x| round(x, 4)),
                    max_rps: None,
                    cpu_s_per_1k: cpu_json.map(|x| round(x, 5)),
                    rss_mb: rss_json.map(|x| round(x, 2)),
                });
            }
        }
    }
    let _ = writeln!(
        md,
        "## Latency, open loop (ms; `+` = added vs direct, median of {} run(s))\n\n{}",
        opts.runs,
        lat.to_markdown()
    );
    let mut tp = Table::new([
        "protocol",
        "data plane",
        "max req/s (median)",
        "runs (req/s)",
    ]);
    for &p in &opts.protocols {
        for &d in &opts.dataplanes {
            let Some(v) = r.throughput.get(&(p, d)) else {
                continue;
            };
            let m = median(v.iter().copied());
            tp.row([
                p.as_str().to_string(),
                d.as_str().to_string(),
                fmt_opt(m, 0),
                v.iter()
                    .map(|x| format!("{x:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]);
            runs.push(SidecarRun {
                dataplane: d.as_str().to_string(),
                protocol: p.as_str().to_string(),
                rate: None,
                p50_ms: None,
                p90_ms: None,
                p99_ms: None,
                p999_ms: None,
                max_rps: m.map(|x| round(x, 0)),
                cpu_s_per_1k: None,
                rss_mb: None,
            });
        }
    }
    let _ = writeln!(
        md,
        "## Max throughput, closed loop ({} concurrent requests; HTTP/2: 4 streams per connection)\n\n{}",
        opts.throughput_concurrency,
        tp.to_markdown()
    );
    if !cpu.is_empty() {
        let _ = writeln!(
            md,
            "## Proxy CPU per 1000 requests (utime+stime from /proc, warm-up included) and RSS after the run\n\n{}",
            cpu.to_markdown()
        );
    }
    let mut mem = Table::new([
        "data plane",
        "config",
        "sidecar",
        "VmRSS MiB (idle)",
        "VmHWM MiB",
        "VmRSS after load",
        "agent VmRSS MiB",
    ]);
    for (d, config, w, rss, hwm, after, agent) in &r.memory {
        mem.row([
            d.as_str().to_string(),
            config.clone(),
            w.clone(),
            format!("{rss:.1}"),
            format!("{hwm:.1}"),
            fmt_opt(*after, 1),
            fmt_opt(*agent, 1),
        ]);
    }
    if !mem.is_empty() {
        let _ = writeln!(md, "## Proxy memory\n\n{}", mem.to_markdown());
    }
    let mut t = Table::new(["data plane", "measure", "median ms", "runs (ms)"]);
    for (d, v) in &r.change_ms {
        t.row([
            d.as_str().to_string(),
            "VirtualService change → seen on the data path".to_string(),
            fmt_opt(median(v.iter().copied()), 1),
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    for ((d, config), v) in &r.ready_ms {
        t.row([
            d.as_str().to_string(),
            format!("proxy start → /ready ({config})"),
            fmt_opt(median(v.iter().copied()), 0),
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    if !t.is_empty() {
        let _ = writeln!(md, "## Start and config propagation\n\n{}", t.to_markdown());
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "## Notes\n");
        for n in &notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    let json = serde_json::to_string_pretty(&SidecarReport { runs }).unwrap_or_default() + "\n";
    let svg_series: Vec<svg::Series> = opts
        .dataplanes
        .iter()
        .map(|d| svg::Series {
            name: d.as_str().to_string(),
            values: series.get(d).cloned().unwrap_or_default(),
        })
        .collect();
    let svg_text = svg::grouped_bars(
        "Latency percentiles per data plane (open loop, median of runs)",
        "latency, ms (log scale)",
        &categories,
        &svg_series,
    );
    (md, json, svg_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_identity_comes_from_xfcc() {
        let body = serde_json::json!({"headers": {
            "x-forwarded-client-cert": "By=spiffe://cluster.local/ns/default/sa/bench;Hash=ab12;URI=spiffe://cluster.local/ns/default/sa/client"
        }})
        .to_string();
        assert_eq!(
            xfcc_client_identity(body.as_bytes()).as_deref(),
            Some("spiffe://cluster.local/ns/default/sa/client")
        );
        let plain = serde_json::json!({"headers": {"host": "bench"}}).to_string();
        assert_eq!(xfcc_client_identity(plain.as_bytes()), None);
        assert_eq!(xfcc_client_identity(b"not json"), None);
    }

    #[test]
    fn grpc_requests_carry_a_1k_message() {
        let (path, body) = request_shape(Protocol::Grpc, "/bench?size=10", 1024);
        assert_eq!(path, "/trellis.echo.Echo/Unary");
        assert_eq!(body.len(), 1024);
        let (path, body) = request_shape(Protocol::Http2, "/bench?size=10", 1024);
        assert_eq!(path, "/bench?size=10");
        assert!(body.is_empty());
        assert_eq!(service_for(Protocol::Grpc), ("bench-grpc", 8082, 2));
    }

    #[test]
    fn rotation_interleaves() {
        let v = [Plane::Direct, Plane::Trellis, Plane::Envoy];
        assert_eq!(rotated(&v, 0), v.to_vec());
        assert_eq!(
            rotated(&v, 1),
            vec![Plane::Trellis, Plane::Envoy, Plane::Direct]
        );
        assert_eq!(rotated(&v, 3), v.to_vec());
        assert!(rotated::<Plane>(&[], 2).is_empty());
    }

    #[test]
    fn render_produces_all_outputs() -> anyhow::Result<()> {
        let opts = SidecarOptions::quick(PathBuf::from("trellis"), PathBuf::from("target/bench"));
        let mut r = Results::default();
        for (d, base) in [
            (Plane::Direct, 0.2),
            (Plane::Trellis, 0.5),
            (Plane::Envoy, 0.6),
        ] {
            r.latency.insert(
                (Protocol::Http1, 500, d),
                vec![LatencySample {
                    pct: Some(Percentiles {
                        p50_ms: base,
                        p90_ms: base * 2.0,
                        p99_ms: base * 4.0,
                        p999_ms: base * 8.0,
                    }),
                    errors: 0,
                    not_sent: 0,
                    first_error: None,
                    body_len: 1024,
                    cpu_per_1k: vec![0.02, 0.03],
                    rss_mb: vec![10.0, 12.0],
                }],
            );
            r.throughput.insert((Protocol::Http1, d), vec![9000.0]);
        }
        let (md, json, svg_text) =
            render(&opts, &r, "2026-01-01 00:00 UTC", "2 CPUs", Some("1.40.0"));
        assert!(md.contains("| http1    | 500    | trellis"), "{md}");
        assert!(md.contains("+0.300"), "added p50 of trellis: {md}");
        let v: serde_json::Value = serde_json::from_str(&json)?;
        let runs = v["runs"].as_array().ok_or_else(|| anyhow!("runs"))?;
        assert_eq!(runs.len(), 6);
        let trellis = runs
            .iter()
            .find(|x| x["dataplane"] == "trellis" && x["rate"] == 500)
            .ok_or_else(|| anyhow!("trellis row"))?;
        assert_eq!(trellis["cpu_s_per_1k"], serde_json::json!(0.025));
        assert_eq!(trellis["rss_mb"], serde_json::json!(11.0));
        let direct = runs
            .iter()
            .find(|x| x["dataplane"] == "direct" && x["rate"] == 500)
            .ok_or_else(|| anyhow!("direct row"))?;
        assert!(direct["cpu_s_per_1k"].is_null());
        assert!(svg_text.contains(">envoy</text>") && svg_text.contains(">direct</text>"));
        Ok(())
    }
}
