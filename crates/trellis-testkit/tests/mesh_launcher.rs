//! The mesh launcher against a fake `trellis` binary (tests/fake_trellis.py) that follows the
//! command-line and `/debug/syncz` contracts: start-up, readiness, config changes, NACKs,
//! early exits and clean teardown.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use trellis_testkit::mesh::{Dataplane, Mesh, MeshOptions, MeshSpec, echo_mesh};

fn fake_trellis() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fake_trellis.py")
}

fn python_available() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A /24 of its own per test (and away from xtask's 127.100-149.x.0).
fn base(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 200 + (std::process::id() % 50) as u8, n, 0)
}

fn spec(base: Ipv4Addr, versions: &[&str]) -> MeshSpec {
    echo_mesh(base, Dataplane::Trellis, versions)
}

fn run_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("trellis-testkit-{name}-{}", std::process::id()))
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_apply_nack_remove_and_teardown() -> anyhow::Result<()> {
    if !python_available() {
        eprintln!("python3 not available: skipped");
        return Ok(());
    }
    let dir = run_dir("mesh");
    let mut options = MeshOptions::new(fake_trellis(), &dir);
    options.mtls = false;
    options.startup_timeout = Duration::from_secs(30);
    let mut mesh = Mesh::start(spec(base(1), &["v1", "v2"]), options).await?;
    let b = base(1).octets();
    assert_eq!(
        mesh.client_outbound().to_string(),
        format!("127.{}.{}.2:15001", b[1], b[2])
    );
    let s = mesh.syncz().await?;
    assert_eq!(s.proxies.len(), 3, "{s:?}");
    assert!(mesh.config_dir().join("mesh.yaml").is_file());

    // The echo app was started with HTTP_PROXY pointing at its own sidecar.
    let app = format!("http://127.{}.{}.110:9080/", b[1], b[2]);
    let r = trellis_testkit::http::get(&app, Duration::from_secs(5)).await?;
    let v: serde_json::Value = r.json()?;
    assert_eq!(v["version"], "v1");
    assert_eq!(
        v["http_proxy"],
        format!("http://127.{}.{}.10:15001", b[1], b[2])
    );

    // A change is waited for.
    let before = s.generation;
    mesh.apply(
        "vs.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n",
    )
    .await?;
    let s = mesh
        .wait_synced(Instant::now() + Duration::from_secs(10))
        .await?;
    assert!(s.generation > before);

    // A NACK fails fast, with the proxy's error.
    mesh.apply("bad.yaml", "# FAKE_NACK\n").await?;
    let started = Instant::now();
    let err = mesh
        .wait_synced(Instant::now() + Duration::from_secs(20))
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(
        err.contains("NACKed") && err.contains("fake rejection"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(mesh.nack_count().await >= 1);

    // Removing the file recovers.
    mesh.remove("bad.yaml").await?;
    mesh.wait_synced(Instant::now() + Duration::from_secs(10))
        .await?;

    // Every process is gone after shutdown.
    let pids = mesh.pids();
    assert_eq!(pids.len(), 1 + 2 + 3, "control plane, 2 apps, 3 proxies");
    mesh.shutdown().await;
    for pid in pids {
        assert!(!alive(pid), "process {pid} survived shutdown");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_dies_fails_start_with_its_log() -> anyhow::Result<()> {
    if !python_available() {
        eprintln!("python3 not available: skipped");
        return Ok(());
    }
    let dir = run_dir("crash");
    let mut options = MeshOptions::new(fake_trellis(), &dir);
    options.mtls = false;
    options.startup_timeout = Duration::from_secs(30);
    let started = Instant::now();
    let err = Mesh::start(spec(base(2), &["v1", "crash"]), options)
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(err.contains("exited early"), "{err}");
    assert!(err.contains("refusing to start"), "{err}");
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
