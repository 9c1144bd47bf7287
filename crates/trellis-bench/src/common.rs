//! What both benchmarks share: progress output, pinning with `taskset`, locating binaries,
//! machine facts for the report, and Istio YAML generation.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

static STARTED: OnceLock<Instant> = OnceLock::new();

/// Prints a progress line to stderr, prefixed with the time since the first one.
pub fn progress(msg: impl AsRef<str>) {
    let start = *STARTED.get_or_init(Instant::now);
    eprintln!("[{:>7.1}s] {}", start.elapsed().as_secs_f64(), msg.as_ref());
}

/// Whether `taskset` can be run.
pub fn taskset_available() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The number of CPUs of the machine (`processor` lines of `/proc/cpuinfo`), whatever this
/// process's own affinity is.
pub fn cpus() -> usize {
    let from_cpuinfo = std::fs::read_to_string("/proc/cpuinfo")
        .map(|t| t.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    if from_cpuinfo > 0 {
        return from_cpuinfo;
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Pins every thread of `pid` to `cpu_list` (e.g. `1`) with `taskset -a -c -p`. Threads the
/// process creates later inherit the mask. Failures are reported, not fatal.
pub fn pin(pid: u32, cpu_list: &str) -> bool {
    let out = Command::new("taskset")
        .args(["-a", "-c", "-p", cpu_list, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match out {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            progress(format!(
                "warning: taskset could not pin PID {pid} to CPU {cpu_list}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            false
        }
        Err(e) => {
            progress(format!("warning: taskset: {e}"));
            false
        }
    }
}

/// Finds the `trellis` binary: `explicit`, else `trellis` next to this executable, else
/// `target/release/trellis` under the current directory.
pub fn find_trellis(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("--trellis-bin {} is not a file", p.display());
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join("trellis"));
    }
    candidates.push(PathBuf::from("target/release/trellis"));
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "no trellis binary found (looked at {}); build it with `cargo build --release -p trellis` or pass --trellis-bin",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Facts about the machine for the report: CPU model, CPU count, load average.
pub fn machine_facts() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string());
    format!("{} × {model}; load average at start {load}", cpus())
}

/// The first line of `envoy --version`, if it runs.
pub fn envoy_version(envoy: &Path) -> Option<String> {
    let out = Command::new(envoy)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())?
        .trim()
        .to_string();
    Some(
        line.rsplit("version:")
            .next()
            .unwrap_or(&line)
            .trim()
            .to_string(),
    )
}

/// Today's date and time (UTC), from the system clock.
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `n` services as Istio YAML: a `ServiceEntry` (`NAME-i.NAMESPACE.svc.cluster.local`, HTTP
/// port 9080, STATIC) with one `WorkloadEntry` each at an unreachable address in 10.0.0.0/8.
/// Documents are written as JSON (valid YAML) to keep generation trivial.
pub fn scale_services_yaml(n: usize, name: &str, namespace: &str) -> String {
    let mut out = String::from("# Generated by trellis-bench: services that only add config.\n");
    for i in 0..n {
        let svc = format!("{name}-{i}");
        let host = format!("{svc}.{namespace}.svc.cluster.local");
        let se = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": svc, "namespace": namespace},
            "spec": {
                "hosts": [host],
                "location": "MESH_INTERNAL",
                "resolution": "STATIC",
                "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
                "workloadSelector": {"labels": {"app": svc}},
            }
        });
        let addr = format!(
            "10.{}.{}.{}",
            100 + (i >> 16) % 100,
            (i >> 8) & 0xff,
            i & 0xff
        );
        let we = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadEntry",
            "metadata": {"name": format!("{svc}-0"), "namespace": namespace},
            "spec": {"address": addr, "labels": {"app": svc, "version": "v1"}, "serviceAccount": svc},
        });
        out.push_str("---\n");
        out.push_str(&se.to_string());
        out.push_str("\n---\n");
        out.push_str(&we.to_string());
        out.push('\n');
    }
    out
}

/// A VirtualService for `host` that routes everything to it and sets response header
/// `x-bench-rev: REV` (how a config change is made visible on the data path).
pub fn revision_virtual_service(name: &str, namespace: &str, host: &str, rev: u64) -> String {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": [host],
            "http": [{
                "headers": {"response": {"set": {"x-bench-rev": rev.to_string()}}},
                "route": [{"destination": {"host": host}}],
            }],
        }
    })
    .to_string()
        + "\n"
}

/// Formats a duration like `1.5s` / `250ms`.
pub fn fmt_duration(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Parses `10s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("duration {s:?}: expected e.g. 10s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => bail!("duration {s:?}: unit must be ms, s or m"),
    };
    if !(secs.is_finite() && secs > 0.0 && secs < 86_400.0) {
        bail!("duration {s:?} is out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() -> anyhow::Result<()> {
        assert_eq!(parse_duration("10s")?, Duration::from_secs(10));
        assert_eq!(parse_duration("250ms")?, Duration::from_millis(250));
        assert_eq!(parse_duration("2m")?, Duration::from_secs(120));
        assert_eq!(parse_duration("3")?, Duration::from_secs(3));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(fmt_duration(Duration::from_secs(10)), "10s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
        Ok(())
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
    }

    #[test]
    fn scale_yaml_is_parseable_json_documents() -> anyhow::Result<()> {
        let y = scale_services_yaml(3, "scale", "default");
        let docs: Vec<serde_json::Value> = y
            .split("---\n")
            .skip(1)
            .map(|d| serde_json::from_str(d.trim()))
            .collect::<Result<_, _>>()?;
        assert_eq!(docs.len(), 6);
        assert_eq!(docs[0]["kind"], "ServiceEntry");
        assert_eq!(
            docs[0]["spec"]["hosts"][0],
            "scale-0.default.svc.cluster.local"
        );
        assert_eq!(docs[5]["kind"], "WorkloadEntry");
        assert_eq!(docs[5]["spec"]["address"], "10.100.0.2");
        let vs: serde_json::Value = serde_json::from_str(&revision_virtual_service(
            "bench",
            "default",
            "bench.default.svc.cluster.local",
            7,
        ))?;
        assert_eq!(
            vs["spec"]["http"][0]["headers"]["response"]["set"]["x-bench-rev"],
            "7"
        );
        Ok(())
    }
}
