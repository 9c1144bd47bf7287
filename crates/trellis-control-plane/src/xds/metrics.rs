//! The ADS server's metrics, under istiod's exact names (no `_total` suffix added, so istiod's
//! dashboards and alerts match): pushes and push errors per type, NACKs per type, and
//! `pilot_proxy_convergence_time` (from the moment a stream first sees a new config generation
//! until its proxy has ACKed all of it).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// istiod's buckets for `pilot_proxy_convergence_time` (seconds).
pub const CONVERGENCE_BUCKETS: [f64; 8] = [0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];

/// The `type` label values, istiod's spelling, in the order counters are kept.
const TYPES: [&str; 5] = ["cds", "eds", "lds", "rds", "sds"];

fn type_index(type_url: &str) -> Option<usize> {
    let short = trellis_xds::type_url::short_name(type_url).to_ascii_lowercase();
    TYPES.iter().position(|t| *t == short)
}

#[derive(Debug, Default)]
struct PerType([AtomicU64; 5]);

impl PerType {
    fn inc(&self, type_url: &str) {
        if let Some(i) = type_index(type_url) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn get(&self, i: usize) -> u64 {
        self.0[i].load(Ordering::Relaxed)
    }

    fn encode(&self, out: &mut String, name: &str, kind: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (i, t) in TYPES.iter().enumerate() {
            let _ = writeln!(out, "{name}{{type=\"{t}\"}} {}", self.get(i));
        }
    }
}

#[derive(Debug)]
struct Convergence {
    buckets: [u64; CONVERGENCE_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The ADS metrics; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct XdsMetrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pushes: PerType,
    push_errors: PerType,
    rejects: PerType,
    convergence: Mutex<Convergence>,
    /// The newest generation a stream has seen, and when it was first seen.
    generation_seen: Mutex<(u64, Instant)>,
}

impl Default for XdsMetrics {
    fn default() -> Self {
        XdsMetrics {
            inner: Arc::new(Inner {
                pushes: PerType::default(),
                push_errors: PerType::default(),
                rejects: PerType::default(),
                convergence: Mutex::new(Convergence {
                    buckets: [0; CONVERGENCE_BUCKETS.len()],
                    count: 0,
                    sum: 0.0,
                }),
                generation_seen: Mutex::new((0, Instant::now())),
            }),
        }
    }
}

impl XdsMetrics {
    /// Counts a response sent.
    pub fn push(&self, type_url: &str) {
        self.inner.pushes.inc(type_url);
    }

    /// Counts a response that could not be sent (the stream was gone).
    pub fn push_error(&self, type_url: &str) {
        self.inner.push_errors.inc(type_url);
    }

    /// Counts a NACK.
    pub fn reject(&self, type_url: &str) {
        self.inner.rejects.inc(type_url);
    }

    /// When `generation` was first seen by any stream (now, if this is the first).
    pub fn generation_seen(&self, generation: u64) -> Instant {
        let mut seen = self
            .inner
            .generation_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if generation > seen.0 {
            *seen = (generation, Instant::now());
        }
        if generation == seen.0 {
            seen.1
        } else {
            Instant::now()
        }
    }

    /// Records that a proxy converged on a generation first seen at `since`.
    pub fn converged(&self, since: Instant) {
        self.observe_convergence(since.elapsed().as_secs_f64());
    }

    fn observe_convergence(&self, seconds: f64) {
        let mut c = self
            .inner
            .convergence
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (bucket, le) in c.buckets.iter_mut().zip(CONVERGENCE_BUCKETS) {
            if seconds <= le {
                *bucket += 1;
            }
        }
        c.count += 1;
        c.sum += seconds;
    }

    /// Appends the Prometheus text exposition (format 0.0.4).
    pub fn encode(&self, out: &mut String) {
        let i = &self.inner;
        i.pushes.encode(
            out,
            "pilot_xds_pushes",
            "counter",
            "Pilot build and send errors for lds, rds, cds and eds.",
        );
        i.push_errors.encode(
            out,
            "pilot_xds_push_errors",
            "counter",
            "xDS responses that could not be sent to a proxy, by type.",
        );
        i.rejects.encode(
            out,
            "pilot_total_xds_rejects",
            "counter",
            "Total number of XDS responses from pilot rejected by proxy.",
        );
        for (n, t) in TYPES.iter().enumerate().take(4) {
            let name = format!("pilot_xds_{t}_reject");
            let _ = writeln!(
                out,
                "# HELP {name} Pilot rejected {} configs.\n# TYPE {name} counter\n{name} {}",
                t.to_uppercase(),
                i.rejects.get(n)
            );
        }
        let c = i.convergence.lock().unwrap_or_else(|e| e.into_inner());
        let name = "pilot_proxy_convergence_time";
        let _ = writeln!(
            out,
            "# HELP {name} Delay in seconds between config change and a proxy receiving all required configuration.\n# TYPE {name} histogram"
        );
        for (count, le) in c.buckets.iter().zip(CONVERGENCE_BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            c.count, c.sum, c.count
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_xds::type_url;

    #[test]
    fn counts_per_type_and_convergence_buckets() {
        let m = XdsMetrics::default();
        m.push(type_url::CLUSTER);
        m.push(type_url::CLUSTER);
        m.push(type_url::ROUTE);
        m.reject(type_url::LISTENER);
        m.push_error(type_url::ENDPOINT);
        m.observe_convergence(0.05);
        m.observe_convergence(2.0);
        let mut out = String::new();
        m.encode(&mut out);
        for line in [
            "pilot_xds_pushes{type=\"cds\"} 2",
            "pilot_xds_pushes{type=\"rds\"} 1",
            "pilot_xds_push_errors{type=\"eds\"} 1",
            "pilot_total_xds_rejects{type=\"lds\"} 1",
            "pilot_xds_lds_reject 1",
            "pilot_xds_cds_reject 0",
            "pilot_proxy_convergence_time_bucket{le=\"0.1\"} 1",
            "pilot_proxy_convergence_time_bucket{le=\"1\"} 1",
            "pilot_proxy_convergence_time_bucket{le=\"3\"} 2",
            "pilot_proxy_convergence_time_bucket{le=\"+Inf\"} 2",
            "pilot_proxy_convergence_time_count 2",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }

    #[test]
    fn a_generation_is_timed_from_its_first_sight() {
        let m = XdsMetrics::default();
        let first = m.generation_seen(3);
        assert_eq!(m.generation_seen(3), first);
        assert!(m.generation_seen(4) >= first);
    }
}
