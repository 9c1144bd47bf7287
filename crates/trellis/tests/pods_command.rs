//! `trellis pods` end to end, as a user runs it: `up` as a child process (two workloads,
//! Trellis sidecars), `status` and `exec` (curl by name from a pod, through both sidecars)
//! while it runs, then SIGINT: `up` must remove every namespace and end every process it
//! started. Also: `down` on a prefix with nothing left, and `up` refusing a non-root user with
//! what to do. Needs root, iptables, setpriv and curl; skipped otherwise.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use trellis_testkit::pods::{cleanup, missing_requirements};

const TRELLIS: &str = env!("CARGO_BIN_EXE_trellis");
const STARTUP: Duration = Duration::from_secs(120);

fn can_run() -> bool {
    let curl = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    match (missing_requirements(), curl) {
        (None, true) => true,
        (missing, _) => {
            eprintln!("skipping: {} / curl: {curl}", missing.unwrap_or_default());
            false
        }
    }
}

fn trellis(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(TRELLIS)
        .args(args)
        .output()
        .expect("trellis runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn pods_up_exec_and_ctrl_c_leave_nothing_behind() {
    if !can_run() {
        return;
    }
    let prefix = format!("pc{}", std::process::id() % 10000);
    let dir = tempfile::tempdir().expect("tempdir");
    let run_dir = dir.path().join("run");
    let mut up = Command::new(TRELLIS)
        .args(["pods", "up", "--prefix", &prefix, "--subnet", "10.236.1.0"])
        .args(["--workload", "productpage/v1", "--workload", "reviews/v1"])
        .arg("--run-dir")
        .arg(&run_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("trellis pods up starts");
    // Read stdout on a thread; the test waits on the channel with a deadline.
    let stdout = up.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + STARTUP;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.starts_with("Ctrl-C stops") {
                    break;
                }
            }
            Err(e) => {
                let _ = up.kill();
                let _ = up.wait();
                cleanup::remove_prefix(&prefix).expect("cleanup");
                panic!("`pods up` did not come up ({e}); output:\n{seen}");
            }
        }
    }
    assert!(
        seen.contains(&format!(
            "trellis pods exec --prefix {prefix} productpage -- curl"
        )),
        "{seen}"
    );

    let (ok, status, err) = trellis(&["pods", "status", "--prefix", &prefix]);
    assert!(ok, "{err}");
    for pod in ["cp", "client", "productpage-v1-0", "reviews-v1-0"] {
        assert!(status.contains(pod), "status misses {pod}:\n{status}");
    }
    assert!(status.contains("10.236.1.10/24"), "{status}");

    let (ok, body, err) = trellis(&[
        "pods",
        "exec",
        "--prefix",
        &prefix,
        "productpage",
        "--",
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        "10",
        "http://reviews:9080/from-pods-exec",
    ]);
    assert!(
        ok,
        "curl in the productpage pod failed: {err}{body}\n{seen}"
    );
    let answer: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(answer["service"], "reviews", "{answer}");
    let xfcc = answer["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap_or_default();
    assert!(xfcc.contains("sa/productpage"), "{answer}");

    let namespaces = cleanup::namespaces_with_prefix(&prefix).expect("ip netns list");
    let pids: Vec<i32> = namespaces
        .iter()
        .flat_map(|n| cleanup::pids_in(n))
        .collect();
    assert!(pids.len() >= 5, "processes in the pods: {pids:?}");

    kill(Pid::from_raw(up.id() as i32), Signal::SIGINT).expect("SIGINT");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = up.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = up.kill();
            cleanup::remove_prefix(&prefix).expect("cleanup");
            panic!("`pods up` did not exit within 30 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(status.success(), "{status}: {}", rest.join("\n"));
    assert!(
        rest.iter()
            .any(|l| l.contains("All pods and their processes are gone")),
        "{rest:?}"
    );
    let left = cleanup::namespaces_with_prefix(&prefix).expect("ip netns list");
    assert!(left.is_empty(), "namespaces left: {left:?}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} of the pods still runs"
        );
    }
    for ns in namespaces {
        assert!(
            !Path::new("/etc/netns").join(&ns).exists(),
            "/etc/netns/{ns} left"
        );
    }

    // Nothing left for `down`.
    let (ok, out, err) = trellis(&["pods", "down", "--prefix", &prefix]);
    assert!(ok && out.contains("Nothing to remove"), "{out}{err}");
}

#[test]
fn pods_up_refuses_non_root_users_with_what_to_do() {
    if !can_run() {
        return;
    }
    // Through setpriv as UID 1337: the binary must be reachable for that user.
    let out = Command::new("setpriv")
        .args(["--reuid=1337", "--regid=1337", "--clear-groups", "--"])
        .args([TRELLIS, "pods", "up", "--prefix", "nonroot"])
        .output()
        .expect("setpriv runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("root") && err.contains("trellis demo --mode explicit"),
        "{err}"
    );
    let (ok, _, err) = trellis(&["pods", "exec", "--prefix", "nosuchpfx", "cp", "--", "true"]);
    assert!(!ok && err.contains("is `trellis pods up` running"), "{err}");
}
