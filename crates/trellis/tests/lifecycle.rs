//! Proxy lifecycle on real processes, on both data planes (`trellis proxy`, and Envoy through
//! `trellis agent`): readiness on the health port (15021), and SIGTERM under steady load.
//!
//! Besides a testkit mesh (control plane, an `echo` workload with its sidecar, mTLS), each test
//! runs two extra client sidecars, A and B, with the client's identity on their own IPs. A
//! client that retries on a new connection (to the other sidecar when one fails) sends steady
//! load through them while long requests are in flight on A; A gets SIGTERM by PID. Then: no
//! request failed, the long requests completed, A exited by itself within its drain period.
//! Then a restart: the load goes to A alone, A is stopped and started again, and no request
//! the client retried is lost.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use trellis_testkit::http::{Connection, Protocol};
use trellis_testkit::mesh::{Dataplane, Mesh, MeshOptions, echo_mesh};
use trellis_testkit::process::{ChildGuard, Spec, spawn_logged};

/// The drain period the extra sidecars run with.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a test waits for something that should happen (startup, exit, progress).
const DEADLINE: Duration = Duration::from_secs(60);
/// How long one request may keep being retried.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// The service all requests go to.
const AUTHORITY: &str = "echo:9080";

fn base(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 67, n, 0)
}

fn host(base: Ipv4Addr, last: u8) -> Ipv4Addr {
    let [a, b, c, _] = base.octets();
    Ipv4Addr::new(a, b, c, last)
}

async fn start_mesh(dataplane: Dataplane, n: u8, run_dir: &Path) -> anyhow::Result<Mesh> {
    let mut options = MeshOptions::new(env!("CARGO_BIN_EXE_trellis"), run_dir);
    options.startup_timeout = Duration::from_secs(90);
    Mesh::start(echo_mesh(base(n), dataplane, &["v1"]), options).await
}

/// A workload token for the client's identity, from the mesh's CA.
async fn client_token(mesh: &Mesh) -> String {
    trellis_testkit::mesh::mint_token(
        std::path::Path::new(env!("CARGO_BIN_EXE_trellis")),
        &mesh.run_dir().join("ca"),
        "default",
        "client",
    )
    .await
    .expect("trellis token create runs")
}

/// An extra client sidecar on `ip` (same flags as the mesh's own client sidecar).
fn sidecar_spec(mesh: &Mesh, name: &str, ip: Ipv4Addr, token: &str) -> Spec {
    let sub = match mesh.dataplane() {
        Dataplane::Trellis => "proxy",
        Dataplane::Envoy => "agent",
    };
    let secure_xds = SocketAddr::new(mesh.xds_address().ip(), 15012);
    let mut spec = Spec::new(format!("{sub} {name}"), env!("CARGO_BIN_EXE_trellis"))
        .arg(sub)
        .args([
            "--ip",
            &ip.to_string(),
            "--workload",
            "client",
            "--namespace",
            "default",
            "--service-account",
            "client",
            "--labels",
            "app=client",
            "--admin-address",
            &SocketAddr::new(ip.into(), 15000).to_string(),
            "--xds-address",
            &secure_xds.to_string(),
            "--drain-duration",
            &format!("{}ms", DRAIN.as_millis()),
            "--root-cert",
        ])
        .arg(mesh.run_dir().join("ca/root-cert.pem"))
        .env("TRELLIS_TOKEN", token);
    if mesh.dataplane() == Dataplane::Envoy {
        let envoy = trellis_testkit::envoy::find_envoy().expect("an Envoy binary");
        spec = spec
            .arg("--envoy")
            .arg(envoy)
            .arg("--bootstrap-out")
            .arg(mesh.run_dir().join(format!("bootstrap-{name}.json")))
            .args(["--concurrency", "1"]);
    }
    spec
}

trait Args {
    fn args<const N: usize>(self, args: [&str; N]) -> Self;
}

impl Args for Spec {
    fn args<const N: usize>(mut self, args: [&str; N]) -> Self {
        for a in args {
            self = self.arg(a);
        }
        self
    }
}

/// An extra sidecar: its process and addresses.
struct Sidecar {
    name: String,
    spec: Spec,
    log: PathBuf,
    ip: Ipv4Addr,
    child: Option<ChildGuard>,
}

impl Sidecar {
    fn start(mesh: &Mesh, name: &str, last: u8, token: &str) -> Sidecar {
        let ip = host(mesh.addresses().client(), last);
        let spec = sidecar_spec(mesh, name, ip, token);
        let log = mesh.run_dir().join(format!("sidecar-{name}.log"));
        let child = spawn_logged(&spec, &log).expect("sidecar starts");
        Sidecar {
            name: name.into(),
            spec,
            log,
            ip,
            child: Some(child),
        }
    }

    fn outbound(&self) -> SocketAddr {
        SocketAddr::new(self.ip.into(), 15001)
    }

    fn health_url(&self) -> String {
        format!("http://{}:15021/healthz/ready", self.ip)
    }

    /// Polls the health port until it answers `want`.
    async fn wait_health(&self, want: u16) {
        let deadline = Instant::now() + DEADLINE;
        let url = self.health_url();
        let mut last = String::new();
        while Instant::now() < deadline {
            match trellis_testkit::http::get(&url, Duration::from_secs(2)).await {
                Ok(r) if r.status.as_u16() == want => return,
                Ok(r) => last = format!("{} {}", r.status, r.text().trim()),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{}: {url} never answered {want}; last: {last}; log:\n{}",
            self.name,
            trellis_testkit::process::log_tail(&self.log, 30)
        );
    }

    /// SIGTERM to the sidecar's process only (as a kubelet signals a container's first
    /// process; the agent, not Envoy), then waits for it to exit by itself.
    async fn sigterm_and_wait(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let pid = child.pid().expect("pid");
        let sent = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        loop {
            if let Some(status) = child.try_wait() {
                return (status, sent.elapsed());
            }
            assert!(
                sent.elapsed() < DRAIN + Duration::from_secs(15),
                "{} did not exit after SIGTERM; log:\n{}",
                self.name,
                trellis_testkit::process::log_tail(&self.log, 30)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn restart(&mut self) {
        self.child = Some(spawn_logged(&self.spec, &self.log).expect("sidecar restarts"));
    }
}

/// What happened to one request of the retrying client.
#[derive(Debug, Clone)]
struct Done {
    status: Option<u16>,
    /// Connections tried (1 when the first one answered).
    attempts: usize,
    /// The index of the sidecar that answered.
    via: usize,
    error: Option<String>,
    at: Instant,
}

/// A client that sends each request on its connection and, when that fails (refused, reset,
/// closed), retries on a new connection to the next sidecar, for up to [`RETRY_FOR`].
struct RetryingClient {
    targets: Vec<SocketAddr>,
    current: usize,
    conn: Option<Connection>,
}

impl RetryingClient {
    fn new(targets: Vec<SocketAddr>) -> Self {
        RetryingClient {
            targets,
            current: 0,
            conn: None,
        }
    }

    async fn get(&mut self, path: &str) -> Done {
        let began = Instant::now();
        let mut attempts = 0;
        let mut last = String::new();
        while began.elapsed() < RETRY_FOR {
            attempts += 1;
            match self.try_once(path).await {
                Ok(status) => {
                    return Done {
                        status: Some(status),
                        attempts,
                        via: self.current,
                        error: None,
                        at: Instant::now(),
                    };
                }
                Err(e) => {
                    last = e;
                    self.conn = None;
                    self.current = (self.current + 1) % self.targets.len();
                    // A retry backoff, not a wait for readiness.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        Done {
            status: None,
            attempts,
            via: self.current,
            error: Some(last),
            at: Instant::now(),
        }
    }

    async fn try_once(&mut self, path: &str) -> Result<u16, String> {
        if !self.conn.as_ref().is_some_and(Connection::is_open) {
            let target = self.targets[self.current];
            self.conn = Some(
                Connection::connect(target, Protocol::Http1)
                    .await
                    .map_err(|e| format!("{e:#}"))?,
            );
        }
        let conn = self.conn.as_mut().ok_or("no connection")?;
        let request = http::Request::get(format!("http://{AUTHORITY}{path}"))
            .header(http::header::HOST, AUTHORITY)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(10), conn.send(request))
            .await
            .map_err(|_| "no response within 10s".to_string())?
            .map_err(|e| format!("{e:#}"))?;
        Ok(response.status.as_u16())
    }
}

/// Steady load: `workers` retrying clients sending back to back until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Done>>>,
}

impl Load {
    fn start(targets: &[SocketAddr], workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let completed = Arc::new(AtomicUsize::new(0));
        let tasks = (0..workers)
            .map(|i| {
                let mut targets = targets.to_vec();
                let first = i % targets.len();
                targets.rotate_left(first);
                let (stop, completed) = (stop.clone(), completed.clone());
                tokio::spawn(async move {
                    let mut client = RetryingClient::new(targets);
                    let mut out = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        out.push(client.get("/?delay_ms=30").await);
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                    out
                })
            })
            .collect();
        Load {
            stop,
            completed,
            tasks,
        }
    }

    /// Waits until `more` requests have completed from now.
    async fn progress(&self, more: usize) {
        let goal = self.completed.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + DEADLINE;
        while self.completed.load(Ordering::Relaxed) < goal {
            assert!(Instant::now() < deadline, "the load made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> Vec<Done> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.expect("load worker"));
        }
        all
    }
}

fn assert_no_failures(what: &str, done: &[Done]) {
    let failed: Vec<String> = done
        .iter()
        .filter(|d| !d.status.is_some_and(|s| (200..300).contains(&s)))
        .map(|d| {
            format!(
                "{:?} after {} attempts: {:?}",
                d.status, d.attempts, d.error
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} requests failed, e.g. {:?}",
        failed.len(),
        done.len(),
        &failed[..failed.len().min(5)]
    );
}

/// Requests served by the echo app so far (counted when they arrive).
async fn app_requests(mesh: &Mesh) -> u64 {
    mesh.app_counts()
        .await
        .expect("echo stats")
        .values()
        .map(|(n, _)| n)
        .sum()
}

/// Long requests through `target`, each on its own connection that has already served one
/// request (so the sidecar has accepted it); returns once all have reached the app.
async fn long_requests(
    mesh: &Mesh,
    target: SocketAddr,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<u16, String>>> {
    let mut conns = Vec::new();
    for _ in 0..n {
        let mut client = RetryingClient::new(vec![target]);
        let warm = client.get("/?warm=1").await;
        assert_eq!(warm.status, Some(200), "{warm:?}");
        conns.push(client);
    }
    let before = app_requests(mesh).await;
    let tasks = conns
        .into_iter()
        .map(|mut c| tokio::spawn(async move { c.try_once("/?delay_ms=2000").await }))
        .collect();
    let deadline = Instant::now() + DEADLINE;
    while app_requests(mesh).await < before + n as u64 {
        assert!(
            Instant::now() < deadline,
            "the long requests never reached the app"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tasks
}

async fn sigterm_under_load(dataplane: Dataplane, n: u8) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mesh = start_mesh(dataplane, n, tmp.path())
        .await
        .expect("mesh starts");
    let token = client_token(&mesh).await;
    let mut a = Sidecar::start(&mesh, "a", 3, &token);
    let b = Sidecar::start(&mesh, "b", 4, &token);
    a.wait_health(200).await;
    b.wait_health(200).await;

    // SIGTERM to A while long requests are in flight on it and steady load runs on A and B.
    let long = long_requests(&mesh, a.outbound(), 3).await;
    let load = Load::start(&[a.outbound(), b.outbound()], 4);
    load.progress(20).await;
    let (status, took) = a.sigterm_and_wait().await;
    let exited = Instant::now();
    load.progress(20).await;
    let done = load.stop().await;

    assert!(status.success(), "A exited with {status}");
    assert!(
        took < DRAIN + Duration::from_secs(3),
        "A took {took:?} to exit, drain period {DRAIN:?}"
    );
    for (i, t) in long.into_iter().enumerate() {
        let r = t.await.expect("long request task");
        assert_eq!(r, Ok(200), "long request {i} in flight on A at SIGTERM");
    }
    assert_no_failures("SIGTERM to A", &done);
    let after = done.iter().filter(|d| d.at > exited).count();
    let retried = done.iter().filter(|d| d.attempts > 1).count();
    eprintln!(
        "{dataplane:?}: A exited {status} {took:?} after SIGTERM; {} requests, {retried} retried, {after} after A exited",
        done.len()
    );
    assert!(
        done.iter().any(|d| d.at > exited && d.via == 1),
        "no request went to B after A exited"
    );

    // A restart: the load goes to A alone; A is stopped and started again.
    a.restart();
    a.wait_health(200).await;
    let load = Load::start(&[a.outbound()], 2);
    load.progress(10).await;
    let (status, _) = a.sigterm_and_wait().await;
    assert!(status.success(), "A exited with {status}");
    a.restart();
    a.wait_health(200).await;
    load.progress(10).await;
    let done = load.stop().await;
    assert_no_failures("restart of A", &done);
    let retried = done.iter().filter(|d| d.attempts > 1).count();
    eprintln!(
        "{dataplane:?}: restart under load: {} requests, {retried} retried",
        done.len()
    );
    drop(b);
    mesh.shutdown().await;
}

async fn unready_without_config(dataplane: Dataplane, n: u8) {
    // No control plane at the xDS address: never configured, never ready.
    let tmp = tempfile::tempdir().expect("tempdir");
    let ip = host(base(n), 5);
    let sub = match dataplane {
        Dataplane::Trellis => "proxy",
        Dataplane::Envoy => "agent",
    };
    let mut spec = Spec::new(sub, env!("CARGO_BIN_EXE_trellis"))
        .arg(sub)
        .args([
            "--ip",
            &ip.to_string(),
            "--workload",
            "lonely",
            "--xds-address",
            &SocketAddr::new(host(base(n), 1).into(), 15010).to_string(),
        ]);
    if dataplane == Dataplane::Envoy {
        let envoy = trellis_testkit::envoy::find_envoy().expect("an Envoy binary");
        spec = spec.arg("--envoy").arg(envoy);
    }
    let log = tmp.path().join("sidecar.log");
    let _child = spawn_logged(&spec, &log).expect("starts");
    let sidecar = Sidecar {
        name: "lonely".into(),
        spec,
        log,
        ip,
        child: None,
    };
    sidecar.wait_health(503).await;
    let r = trellis_testkit::http::get(&sidecar.health_url(), Duration::from_secs(2))
        .await
        .expect("health answers");
    assert!(
        r.text().starts_with("PRE_INITIALIZING"),
        "{}",
        r.text().trim()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trellis_sigterm_under_load_loses_nothing() {
    sigterm_under_load(Dataplane::Trellis, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sigterm_under_load_loses_nothing() {
    sigterm_under_load(Dataplane::Envoy, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trellis_health_is_503_before_config() {
    unready_without_config(Dataplane::Trellis, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_health_is_503_before_config() {
    unready_without_config(Dataplane::Envoy, 4).await;
}
