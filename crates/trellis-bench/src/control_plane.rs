//! The control-plane scale simulator: N lightweight ADS clients (tonic, one HTTP/2 connection
//! and one stream each, distinct node ids, ACKing every response and following EDS/RDS names
//! like a real proxy) against one control plane serving M services.
//!
//! Measured: initial sync of all clients, time from a config change until 99% of the clients
//! have ACKed it (client side: the last ACK of a version newer than before the change, per
//! client), control-plane CPU (`/proc` utime+stime) and memory (VmRSS, VmHWM), bytes of
//! `DiscoveryResponse`s received, and the full resync after a control-plane restart.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use trellis_testkit::mesh::write_atomic;
use trellis_testkit::process::{ChildGuard, Spec, spawn_logged};
use trellis_xds::node::NodeIdentity;
use trellis_xds::type_url;

use crate::common::{
    cpus, machine_facts, now_utc, pin, progress, revision_virtual_service, scale_services_yaml,
};
use crate::procfs;
use crate::report::{ControlPlaneReport, ControlPlaneRun, Table, fmt_opt, write_file};
use crate::stats::{median, round};

/// How to run the simulator.
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// Simulated proxies.
    pub proxies: usize,
    /// Services in the config.
    pub services: usize,
    /// VirtualService changes measured (their median is `ack99_ms`), and as many endpoint
    /// changes (EDS only, reported in the phase table).
    pub changes: usize,
    /// The `trellis` binary.
    pub trellis_bin: PathBuf,
    /// Where the outputs go.
    pub out_dir: PathBuf,
    /// Pin the control plane to CPU 1 (the clients run on CPU 0).
    pub pin: bool,
    /// The command line, for the report.
    pub command: String,
}

impl ControlPlaneOptions {
    /// A full run: 2000 proxies, 1000 services, 3 changes.
    pub fn full(trellis_bin: PathBuf, out_dir: PathBuf) -> Self {
        ControlPlaneOptions {
            proxies: 2000,
            services: 1000,
            changes: 3,
            trellis_bin,
            out_dir,
            pin: true,
            command: String::new(),
        }
    }

    /// A smoke run: 20 proxies, 20 services, 1 change.
    pub fn quick(trellis_bin: PathBuf, out_dir: PathBuf) -> Self {
        ControlPlaneOptions {
            proxies: 20,
            services: 20,
            changes: 1,
            ..ControlPlaneOptions::full(trellis_bin, out_dir)
        }
    }
}

/// The control plane's addresses for the simulator.
const CP_IP: Ipv4Addr = Ipv4Addr::new(127, 211, 9, 1);
const XDS_PORT: u16 = 15010;
const MONITORING_PORT: u16 = 15014;

/// State every simulated client shares with the driver.
#[derive(Debug)]
struct Shared {
    epoch: Instant,
    stop: AtomicBool,
    bytes: AtomicU64,
    /// Streams that reached "everything ACKed" (a client counts once per stream).
    synced_streams: AtomicUsize,
    last_ack_ns: AtomicU64,
    clients: Vec<ClientStats>,
}

#[derive(Debug, Default)]
struct ClientStats {
    /// Nanoseconds since `epoch` of the last ACK.
    last_ack_ns: AtomicU64,
    /// The highest version (generation) ACKed.
    max_version: AtomicU64,
    /// Streams on which this client became synced.
    synced_streams: AtomicUsize,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[derive(Debug, Default)]
struct TypeState {
    version: String,
    nonce: String,
    names: BTreeSet<String>,
    acked: bool,
    subscribed: bool,
}

/// One simulated proxy: reconnects forever (100 ms .. 1 s backoff) until told to stop.
async fn run_client(
    i: usize,
    node: envoy_types::pb::envoy::config::core::v3::Node,
    addr: SocketAddr,
    shared: Arc<Shared>,
) {
    let mut backoff = Duration::from_millis(100);
    while !shared.stop.load(Relaxed) {
        let _ = one_stream(i, &node, addr, &shared).await;
        if shared.stop.load(Relaxed) {
            return;
        }
        // Spread reconnects (deterministic per client) so a restart is not a thundering herd
        // of identical timers.
        let jitter = Duration::from_millis((i as u64 * 7919) % 50);
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

fn request(
    t: &str,
    s: &TypeState,
    node: Option<&envoy_types::pb::envoy::config::core::v3::Node>,
) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: s.version.clone(),
        node: node.cloned(),
        resource_names: s.names.iter().cloned().collect(),
        type_url: t.to_string(),
        response_nonce: s.nonce.clone(),
        ..Default::default()
    }
}

async fn one_stream(
    i: usize,
    node: &envoy_types::pb::envoy::config::core::v3::Node,
    addr: SocketAddr,
    shared: &Shared,
) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(256 << 20);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut types: std::collections::HashMap<&'static str, TypeState> = type_url::PUSH_ORDER
        .iter()
        .map(|t| (*t, TypeState::default()))
        .collect();
    for t in [type_url::CLUSTER, type_url::LISTENER] {
        if let Some(s) = types.get_mut(t) {
            s.subscribed = true;
            tx.send(request(t, s, Some(node)))?;
        }
    }
    let mut inbound = client
        .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut counted = false;
    while let Some(resp) = inbound.message().await? {
        if shared.stop.load(Relaxed) {
            return Ok(());
        }
        shared.bytes.fetch_add(resp.encoded_len() as u64, Relaxed);
        let DiscoveryResponse {
            version_info,
            resources,
            type_url: t,
            nonce,
            ..
        } = resp;
        let Some(t) = type_url::PUSH_ORDER.iter().copied().find(|x| *x == t) else {
            continue;
        };
        // Follow names like a proxy: EDS for EDS clusters, RDS for the listeners' routes.
        let follow = match t {
            x if x == type_url::CLUSTER => Some((
                type_url::ENDPOINT,
                resources
                    .iter()
                    .filter_map(|a| Cluster::decode(a.value.as_slice()).ok())
                    .filter(|c| {
                        matches!(c.cluster_discovery_type, Some(ClusterDiscoveryType::Type(k)) if k == DiscoveryType::Eds as i32)
                    })
                    .map(|c| {
                        c.eds_cluster_config
                            .as_ref()
                            .map(|e| e.service_name.clone())
                            .filter(|n| !n.is_empty())
                            .unwrap_or(c.name)
                    })
                    .collect::<BTreeSet<String>>(),
            )),
            x if x == type_url::LISTENER => Some((
                type_url::ROUTE,
                resources
                    .iter()
                    .filter_map(|a| Listener::decode(a.value.as_slice()).ok())
                    .flat_map(|l| l.filter_chains.into_iter().flat_map(|fc| fc.filters))
                    .filter_map(|f| match f.config_type {
                        Some(filter::ConfigType::TypedConfig(any)) => {
                            HttpConnectionManager::decode(any.value.as_slice()).ok()
                        }
                        _ => None,
                    })
                    .filter_map(|h| match h.route_specifier {
                        Some(RouteSpecifier::Rds(r)) => Some(r.route_config_name),
                        _ => None,
                    })
                    .collect::<BTreeSet<String>>(),
            )),
            _ => None,
        };
        if let Some(s) = types.get_mut(t) {
            s.version = version_info.clone();
            s.nonce = nonce;
            s.acked = true;
            tx.send(request(t, s, None))?;
        }
        let now = shared.now_ns();
        let c = &shared.clients[i];
        c.last_ack_ns.store(now, Relaxed);
        shared.last_ack_ns.store(now, Relaxed);
        if let Ok(v) = version_info.parse::<u64>() {
            c.max_version.fetch_max(v, Relaxed);
        }
        if let Some((dep, names)) = follow
            && let Some(s) = types.get_mut(dep)
            && (names != s.names || !s.subscribed)
            && !names.is_empty()
        {
            s.names = names;
            s.acked = false;
            let first = !s.subscribed;
            s.subscribed = true;
            tx.send(request(dep, s, first.then_some(node)))?;
        }
        let synced = types.values().all(|s| !s.subscribed || s.acked);
        if synced && !counted {
            counted = true;
            c.synced_streams.fetch_add(1, Relaxed);
            shared.synced_streams.fetch_add(1, Relaxed);
        }
    }
    Ok(())
}

/// What a measured config change changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// A VirtualService of `svc-0` (its route configuration: RDS on every proxy).
    VirtualService,
    /// An endpoint of `svc-0` moves (endpoint churn: EDS only).
    Endpoint,
}

impl Change {
    fn label(self) -> &'static str {
        match self {
            Change::VirtualService => "VirtualService change",
            Change::Endpoint => "endpoint change",
        }
    }
}

/// A second endpoint of `svc-0` at an address that differs for each `k` (endpoint churn).
fn churn_workload_entry(k: usize) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: svc-0-churn, namespace: default}}\nspec: {{address: 10.99.{}.{}, labels: {{app: svc-0, version: v1}}, serviceAccount: svc-0}}\n",
        (k >> 8) & 0xff,
        k & 0xff
    )
}

fn node_for(i: usize) -> envoy_types::pb::envoy::config::core::v3::Node {
    let ip = Ipv4Addr::new(127, 212, (i / 250) as u8, (i % 250 + 2) as u8);
    NodeIdentity {
        proxy_type: trellis_xds::node::ProxyType::Sidecar,
        ip: IpAddr::V4(ip),
        workload: format!("sim-{i}"),
        namespace: "default".to_string(),
        service_account: "sim".to_string(),
        labels: [("app".to_string(), format!("sim-{}", i % 10))]
            .into_iter()
            .collect(),
        app_ip: None,
        sds: false,
        interception: trellis_xds::InterceptionMode::None,
    }
    .to_node()
}

fn start_cp(
    opts: &ControlPlaneOptions,
    config_dir: &std::path::Path,
    log: &std::path::Path,
) -> anyhow::Result<ChildGuard> {
    let spec = Spec::new("control-plane", &opts.trellis_bin)
        .arg("control-plane")
        .arg("--config-dir")
        .arg(config_dir.as_os_str())
        .arg("--xds-address")
        .arg(SocketAddr::new(CP_IP.into(), XDS_PORT).to_string())
        .arg("--monitoring-address")
        .arg(SocketAddr::new(CP_IP.into(), MONITORING_PORT).to_string())
        // Its default worker count, whatever the benchmark's environment says.
        .env("TOKIO_WORKER_THREADS", cpus().to_string());
    let guard = spawn_logged(&spec, log)?;
    if opts.pin
        && let Some(pid) = guard.pid()
    {
        pin(pid, "1");
    }
    Ok(guard)
}

async fn wait_ready(guard: &mut ChildGuard, deadline: Instant) -> anyhow::Result<()> {
    let url = format!("http://{CP_IP}:{MONITORING_PORT}/ready");
    loop {
        guard.check_running()?;
        if let Ok(r) = trellis_testkit::http::get(&url, Duration::from_secs(2)).await
            && r.status == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("control plane not ready at {url}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `pred` holds (checked every 10 ms) or `timeout` passes; whether it held.
async fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn cp_cpu(guard: Option<&ChildGuard>) -> f64 {
    guard
        .and_then(ChildGuard::pid)
        .and_then(|p| procfs::stat(p).ok())
        .map(|s| s.cpu_seconds())
        .unwrap_or(f64::NAN)
}

/// Runs the simulator and writes `control-plane.json` (and appends its tables to the returned
/// markdown).
pub async fn run(opts: ControlPlaneOptions) -> anyhow::Result<String> {
    if opts.proxies == 0 {
        bail!("--proxies must be at least 1");
    }
    let started = now_utc();
    let facts = machine_facts();
    let dir = opts.out_dir.join("run").join("control-plane");
    let config_dir = dir.join("config");
    if config_dir.exists() {
        std::fs::remove_dir_all(&config_dir)
            .with_context(|| format!("clearing {}", config_dir.display()))?;
    }
    std::fs::create_dir_all(&config_dir)
        .with_context(|| format!("creating {}", config_dir.display()))?;
    write_atomic(
        &config_dir.join("services.yaml"),
        &scale_services_yaml(opts.services, "svc", "default"),
    )?;
    let log = dir.join("control-plane.log");
    progress(format!(
        "control-plane simulator: {} proxies, {} services (config in {})",
        opts.proxies,
        opts.services,
        config_dir.display()
    ));
    let t_start = Instant::now();
    let mut cp = Some(start_cp(&opts, &config_dir, &log)?);
    if let Some(g) = cp.as_mut() {
        wait_ready(g, Instant::now() + Duration::from_secs(120)).await?;
    }
    progress(format!(
        "control plane ready in {:.2}s",
        t_start.elapsed().as_secs_f64()
    ));

    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        stop: AtomicBool::new(false),
        bytes: AtomicU64::new(0),
        synced_streams: AtomicUsize::new(0),
        last_ack_ns: AtomicU64::new(0),
        clients: (0..opts.proxies).map(|_| ClientStats::default()).collect(),
    });
    let addr = SocketAddr::new(CP_IP.into(), XDS_PORT);
    let cpu0 = cp_cpu(cp.as_ref());
    let t_connect = Instant::now();
    let mut tasks = Vec::with_capacity(opts.proxies);
    for i in 0..opts.proxies {
        tasks.push(tokio::spawn(run_client(
            i,
            node_for(i),
            addr,
            shared.clone(),
        )));
    }
    let n = opts.proxies;
    let result = async {
        let all = wait_until(Duration::from_secs(600), || shared.synced_streams.load(Relaxed) >= n).await;
        if !all {
            bail!(
                "only {}/{n} simulated proxies synced within 600s (log {})",
                shared.synced_streams.load(Relaxed),
                log.display()
            );
        }
        let initial_s = t_connect.elapsed().as_secs_f64();
        let initial_bytes = shared.bytes.load(Relaxed);
        let initial_cpu = cp_cpu(cp.as_ref()) - cpu0;
        let mem = cp.as_ref().and_then(ChildGuard::pid).and_then(|p| procfs::status(p).ok());
        progress(format!(
            "initial sync of {n} proxies: {initial_s:.2}s, {:.1} MB pushed, control plane {initial_cpu:.2} CPU s, VmRSS {} MiB",
            initial_bytes as f64 / 1e6,
            fmt_opt(mem.map(|m| m.rss_mb()), 1)
        ));

        // Config changes: VirtualService changes (ack99_ms), then endpoint churn (EDS only).
        let mut ack99 = Vec::new();
        let mut change_rows = Vec::new();
        let rounds = opts.changes.max(1);
        let kinds = (1..=rounds).map(|k| (Change::VirtualService, k)).chain((1..=rounds).map(|k| (Change::Endpoint, k)));
        for (kind, k) in kinds {
            let g0 = shared.clients.iter().map(|c| c.max_version.load(Relaxed)).max().unwrap_or(0);
            let bytes0 = shared.bytes.load(Relaxed);
            let cpu_before = cp_cpu(cp.as_ref());
            match kind {
                Change::VirtualService => {
                    let yaml = revision_virtual_service("svc-0", "default", "svc-0.default.svc.cluster.local", k as u64);
                    write_atomic(&config_dir.join("change.yaml"), &yaml)?;
                }
                Change::Endpoint => write_atomic(&config_dir.join("churn.yaml"), &churn_workload_entry(k))?,
            }
            let t0 = shared.now_ns();
            let need = (n * 99).div_ceil(100);
            let reached = wait_until(Duration::from_secs(300), || {
                shared.clients.iter().filter(|c| c.max_version.load(Relaxed) > g0).count() >= need
            })
            .await;
            if !reached {
                bail!("{} {k}: fewer than 99% of the proxies ACKed within 300s", kind.label());
            }
            // Let the push finish (no ACK for 500 ms) so each client's last ACK is recorded.
            wait_until(Duration::from_secs(60), || {
                shared.now_ns().saturating_sub(shared.last_ack_ns.load(Relaxed)) > 500_000_000
            })
            .await;
            let mut times: Vec<f64> = shared
                .clients
                .iter()
                .filter(|c| c.max_version.load(Relaxed) > g0)
                .map(|c| c.last_ack_ns.load(Relaxed).saturating_sub(t0) as f64 / 1e6)
                .collect();
            times.sort_by(f64::total_cmp);
            let idx = (need.max(1) - 1).min(times.len().saturating_sub(1));
            let p99 = times.get(idx).copied().unwrap_or(f64::NAN);
            let p50 = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
            let bytes = shared.bytes.load(Relaxed) - bytes0;
            let cpu = cp_cpu(cp.as_ref()) - cpu_before;
            progress(format!(
                "{} {k}: 50% ACKed in {p50:.0} ms, 99% in {p99:.0} ms; {:.1} MB pushed; control plane {cpu:.2} CPU s",
                kind.label(),
                bytes as f64 / 1e6
            ));
            if kind == Change::VirtualService {
                ack99.push(p99);
            }
            change_rows.push((kind, k, p50, p99, bytes, cpu));
        }
        let mem_after = cp.as_ref().and_then(ChildGuard::pid).and_then(|p| procfs::status(p).ok());
        let cpu_first = cp_cpu(cp.as_ref()) - cpu0;

        // Restart: stop by PID, start a fresh one, time until every client is resynced.
        let synced_before: Vec<usize> = shared.clients.iter().map(|c| c.synced_streams.load(Relaxed)).collect();
        let bytes_before_restart = shared.bytes.load(Relaxed);
        if let Some(mut old) = cp.take() {
            tokio::task::spawn_blocking(move || old.terminate())
                .await
                .map_err(|e| anyhow!("stopping the control plane: {e}"))?;
        }
        let t_restart = Instant::now();
        let mut fresh = start_cp(&opts, &config_dir, &log)?;
        let cpu_new0 = cp_cpu(Some(&fresh)).max(0.0);
        let ready = wait_ready(&mut fresh, Instant::now() + Duration::from_secs(120)).await;
        cp = Some(fresh);
        ready?;
        let resynced = wait_until(Duration::from_secs(600), || {
            shared
                .clients
                .iter()
                .zip(&synced_before)
                .all(|(c, b)| c.synced_streams.load(Relaxed) > *b)
        })
        .await;
        let resync_s = t_restart.elapsed().as_secs_f64();
        if !resynced {
            bail!("not every proxy resynced within 600s after the restart");
        }
        let resync_cpu = cp_cpu(cp.as_ref()) - cpu_new0;
        let resync_bytes = shared.bytes.load(Relaxed) - bytes_before_restart;
        progress(format!(
            "restart: every proxy resynced {resync_s:.2}s after the new control plane was started ({:.1} MB, {resync_cpu:.2} CPU s)",
            resync_bytes as f64 / 1e6
        ));
        let total_bytes = shared.bytes.load(Relaxed);
        let run = ControlPlaneRun {
            services: opts.services as u64,
            proxies: n as u64,
            ack99_ms: median(ack99.iter().copied()).map(|x| round(x, 1)),
            cp_rss_mb: mem.map(|m| round(m.rss_mb(), 1)),
            cp_cpu_s: Some(round(cpu_first + resync_cpu, 2)),
            resync_s: Some(round(resync_s, 3)),
            bytes_pushed: Some(total_bytes),
        };
        let mut md = String::new();
        let _ = writeln!(md, "# Trellis control-plane scale simulation\n");
        let _ = writeln!(md, "- date: {started}");
        if !opts.command.is_empty() {
            let _ = writeln!(md, "- command: `{}`", opts.command);
        }
        let _ = writeln!(md, "- machine: {facts}");
        let _ = writeln!(
            md,
            "- {n} simulated proxies (tonic ADS clients, one connection each, ACK every response, follow EDS/RDS names); {} services (ServiceEntry + WorkloadEntry each), all visible to every proxy; control plane {}\n",
            opts.services,
            if opts.pin { "pinned to CPU 1, clients on CPU 0" } else { "not pinned" }
        );
        let mut t = Table::new(["services", "proxies", "ack99 ms", "CP VmRSS MiB", "CP CPU s", "resync s", "bytes pushed"]);
        t.row([
            run.services.to_string(),
            run.proxies.to_string(),
            fmt_opt(run.ack99_ms, 1),
            fmt_opt(run.cp_rss_mb, 1),
            fmt_opt(run.cp_cpu_s, 2),
            fmt_opt(run.resync_s, 2),
            total_bytes.to_string(),
        ]);
        let _ = writeln!(md, "{}", t.to_markdown());
        let mut phases = Table::new(["phase", "time", "bytes pushed", "CP CPU s", "CP memory"]);
        phases.row([
            format!("initial sync of {n} proxies"),
            format!("{initial_s:.2} s"),
            initial_bytes.to_string(),
            format!("{initial_cpu:.2}"),
            format!(
                "VmRSS {} MiB, VmHWM {} MiB",
                fmt_opt(mem.map(|m| m.rss_mb()), 1),
                fmt_opt(mem_after.map(|m| m.hwm_mb()), 1)
            ),
        ]);
        for (kind, k, p50, p99, bytes, cpu) in &change_rows {
            phases.row([
                format!("{} {k}", kind.label()),
                format!("50% ACKed {p50:.0} ms, 99% {p99:.0} ms"),
                bytes.to_string(),
                format!("{cpu:.2}"),
                String::new(),
            ]);
        }
        phases.row([
            "restart → all resynced".to_string(),
            format!("{resync_s:.2} s"),
            resync_bytes.to_string(),
            format!("{resync_cpu:.2}"),
            String::new(),
        ]);
        let _ = writeln!(md, "{}", phases.to_markdown());
        let json = serde_json::to_string_pretty(&ControlPlaneReport { runs: vec![run] })? + "\n";
        write_file(&opts.out_dir.join("control-plane.json"), &json)?;
        anyhow::Ok(md)
    }
    .await;
    shared.stop.store(true, Relaxed);
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    if let Some(mut g) = cp.take() {
        tokio::task::spawn_blocking(move || g.terminate())
            .await
            .map_err(|e| anyhow!("stopping the control plane: {e}"))?;
    }
    let md = result?;
    write_file(&opts.out_dir.join("control-plane.md"), &md)?;
    progress(format!(
        "wrote {} and {}",
        opts.out_dir.join("control-plane.json").display(),
        opts.out_dir.join("control-plane.md").display()
    ));
    Ok(md)
}
