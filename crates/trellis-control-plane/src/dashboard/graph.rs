//! Turns scraped `istio_requests_total` / `istio_request_duration_milliseconds_bucket` samples
//! (reporter="source") into mesh-graph edges with request rate, error rate and p99, computed
//! from counter deltas between scrapes, and keeps a short history of them. A stock Envoy has no
//! Istio metrics: its edges come from its outbound clusters' `upstream_rq_xx` and
//! `upstream_rq_time` stats instead, with the scraped proxy's canonical service as the caller
//! (so both data planes name the nodes of the graph alike).

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::prom::Sample;

/// The request counter the graph reads.
pub const REQUESTS: &str = "istio_requests_total";
/// The duration histogram buckets the graph reads.
pub const DURATION_BUCKETS: &str = "istio_request_duration_milliseconds_bucket";

/// Envoy's per-cluster response counter (by `envoy_response_code_class`).
pub const ENVOY_REQUESTS: &str = "envoy_cluster_upstream_rq_xx";
/// Envoy's per-cluster request duration histogram buckets (ms).
pub const ENVOY_DURATION_BUCKETS: &str = "envoy_cluster_upstream_rq_time_bucket";

/// Whether the graph reads samples of metric `name`.
pub fn wanted(name: &str) -> bool {
    [
        REQUESTS,
        DURATION_BUCKETS,
        ENVOY_REQUESTS,
        ENVOY_DURATION_BUCKETS,
    ]
    .contains(&name)
}

/// An edge of the mesh graph: who called whom.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EdgeKey {
    /// The caller (canonical service, else workload).
    pub source: String,
    /// The called service's short name.
    pub destination: String,
}

/// Cumulative (or, after [`Counters::delta`], per-interval) counts of one edge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Requests.
    pub requests: f64,
    /// Requests answered with a 5xx.
    pub errors: f64,
    /// Cumulative duration histogram: upper bound (ms) → count, `+Inf` included.
    pub buckets: BTreeMap<Bound, f64>,
}

/// A bucket's upper bound, ordered (NaN bounds are never stored).
#[derive(Debug, Clone, Copy)]
pub struct Bound(pub f64);

impl PartialEq for Bound {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for Bound {}
impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

fn named(value: &str) -> Option<&str> {
    (!value.is_empty() && value != "unknown").then_some(value)
}

/// The edge a sample belongs to, or `None` when it is not a usable reporter="source" sample.
fn edge_of(sample: &Sample) -> Option<EdgeKey> {
    if sample.label("reporter") != "source" || !sample.value.is_finite() || sample.value < 0.0 {
        return None;
    }
    let source = named(sample.label("source_canonical_service"))
        .or_else(|| named(sample.label("source_workload")))?;
    let destination = named(sample.label("destination_service_name"))
        .or_else(|| named(sample.label("destination_canonical_service")))
        .or_else(|| named(sample.label("destination_service")))?;
    Some(EdgeKey {
        source: source.to_string(),
        destination: destination.to_string(),
    })
}

/// The edge of an Envoy cluster sample of the proxy `caller`: clusters named
/// `outbound|PORT|SUBSET|HOST` lead to HOST's short name; `None` for other clusters.
fn envoy_edge_of(sample: &Sample, caller: &str) -> Option<EdgeKey> {
    if !sample.value.is_finite() || sample.value < 0.0 {
        return None;
    }
    let mut parts = sample.label("envoy_cluster_name").split('|');
    let (Some("outbound"), Some(_), Some(_), Some(host), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let destination = named(host.split('.').next().unwrap_or_default())?;
    Some(EdgeKey {
        source: named(caller)?.to_string(),
        destination: destination.to_string(),
    })
}

/// Sums one proxy's samples per edge; `caller` names the proxy for Envoy's cluster stats
/// (Istio's metrics name their source themselves).
pub fn edge_totals(samples: &[Sample], caller: &str) -> BTreeMap<EdgeKey, Counters> {
    let mut edges: BTreeMap<EdgeKey, Counters> = BTreeMap::new();
    // A proxy with Istio's metrics is read from them alone (Trellis exports both kinds).
    let istio = samples.iter().any(|s| s.name == REQUESTS);
    for sample in samples {
        let envoy = sample.name == ENVOY_REQUESTS || sample.name == ENVOY_DURATION_BUCKETS;
        if envoy == istio {
            continue;
        }
        let key = if envoy {
            envoy_edge_of(sample, caller)
        } else {
            edge_of(sample)
        };
        let Some(key) = key else { continue };
        if sample.name == REQUESTS || sample.name == ENVOY_REQUESTS {
            let counters = edges.entry(key).or_default();
            counters.requests += sample.value;
            let five = if envoy {
                sample.label("envoy_response_code_class") == "5"
            } else {
                sample.label("response_code").starts_with('5')
            };
            if five {
                counters.errors += sample.value;
            }
        } else if sample.name == DURATION_BUCKETS || sample.name == ENVOY_DURATION_BUCKETS {
            let le = match sample.label("le") {
                "+Inf" | "Inf" => f64::INFINITY,
                le => match le.parse::<f64>() {
                    Ok(v) if !v.is_nan() => v,
                    _ => continue,
                },
            };
            *edges
                .entry(key)
                .or_default()
                .buckets
                .entry(Bound(le))
                .or_default() += sample.value;
        }
    }
    edges
}

impl Counters {
    /// What happened between `previous` and `self`; a counter that went down was reset (the
    /// proxy restarted), so everything it shows now is new.
    pub fn delta(&self, previous: &Counters) -> Counters {
        let reset = self.requests < previous.requests
            || self
                .buckets
                .iter()
                .any(|(le, v)| *v < previous.buckets.get(le).copied().unwrap_or(0.0));
        if reset {
            return self.clone();
        }
        Counters {
            requests: self.requests - previous.requests,
            errors: (self.errors - previous.errors).max(0.0),
            buckets: self
                .buckets
                .iter()
                .map(|(le, v)| (*le, v - previous.buckets.get(le).copied().unwrap_or(0.0)))
                .collect(),
        }
    }

    /// Adds another interval's counts.
    pub fn add(&mut self, other: &Counters) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (le, v) in &other.buckets {
            *self.buckets.entry(*le).or_default() += v;
        }
    }

    /// The `q` quantile of the durations (ms), interpolated inside its bucket as PromQL's
    /// `histogram_quantile` does; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self
            .buckets
            .get(&Bound(f64::INFINITY))
            .copied()
            .or_else(|| {
                self.buckets
                    .values()
                    .copied()
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
            })?;
        if total <= 0.0 || !total.is_finite() {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut lower = 0.0;
        let mut below = 0.0;
        for (Bound(le), count) in &self.buckets {
            if *count >= rank {
                if le.is_infinite() {
                    // Beyond the largest finite bound: report that bound, as Prometheus does.
                    return Some(lower);
                }
                let width = count - below;
                let fraction = if width > 0.0 {
                    (rank - below) / width
                } else {
                    1.0
                };
                return Some(lower + (le - lower) * fraction.clamp(0.0, 1.0));
            }
            lower = *le;
            below = *count;
        }
        Some(lower)
    }
}

/// The deltas of one scrape round.
#[derive(Debug, Clone)]
pub struct Tick {
    /// When the round finished (ms since the Unix epoch).
    pub at_ms: u64,
    /// Seconds since the previous round.
    pub interval: f64,
    /// Per-edge counts in that interval.
    pub edges: BTreeMap<EdgeKey, Counters>,
}

/// An edge as the page draws it.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeView {
    /// Caller.
    pub source: String,
    /// Called service.
    pub destination: String,
    /// Requests per second over the window.
    pub rps: f64,
    /// Fraction of requests answered with a 5xx (0 when idle).
    pub error_rate: f64,
    /// 99th percentile duration (ms), absent when idle.
    pub p99_ms: Option<f64>,
}

/// One point of a service's golden signals.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// ms since the Unix epoch.
    pub t: u64,
    /// Requests per second into the service.
    pub rps: f64,
    /// Fraction of 5xx.
    pub error_rate: f64,
    /// p99 duration (ms).
    pub p99_ms: Option<f64>,
}

/// The graph and history the dashboard serves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GraphView {
    /// Every caller and called service seen in the history.
    pub nodes: Vec<String>,
    /// Edges with their current (windowed) signals.
    pub edges: Vec<EdgeView>,
    /// Seconds the current signals are averaged over.
    pub window_seconds: f64,
    /// Per destination service: its golden signals over the history.
    pub services: BTreeMap<String, Vec<Point>>,
}

/// A bounded history of scrape rounds.
#[derive(Debug)]
pub struct History {
    ticks: VecDeque<Tick>,
    capacity: usize,
}

impl History {
    /// Keeps at most `capacity` rounds.
    pub fn new(capacity: usize) -> Self {
        History {
            ticks: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// Records a round, dropping the oldest beyond the capacity.
    pub fn push(&mut self, tick: Tick) {
        if self.ticks.len() == self.capacity {
            self.ticks.pop_front();
        }
        self.ticks.push_back(tick);
    }

    /// The graph, with current signals averaged over the last `window` rounds.
    pub fn view(&self, window: usize) -> GraphView {
        let mut nodes = std::collections::BTreeSet::new();
        let mut services: BTreeMap<String, Vec<Point>> = BTreeMap::new();
        for tick in &self.ticks {
            let mut per_service: BTreeMap<&str, Counters> = BTreeMap::new();
            for (key, counters) in &tick.edges {
                nodes.insert(key.source.clone());
                nodes.insert(key.destination.clone());
                per_service
                    .entry(&key.destination)
                    .or_default()
                    .add(counters);
            }
            for (service, c) in per_service {
                services
                    .entry(service.to_string())
                    .or_default()
                    .push(Point {
                        t: tick.at_ms,
                        rps: rate(c.requests, tick.interval),
                        error_rate: ratio(c.errors, c.requests),
                        p99_ms: c.quantile(0.99),
                    });
            }
        }
        let recent = self.ticks.iter().rev().take(window.max(1));
        let mut seconds = 0.0;
        let mut sums: BTreeMap<&EdgeKey, Counters> = BTreeMap::new();
        for tick in recent {
            seconds += tick.interval;
            for (key, counters) in &tick.edges {
                sums.entry(key).or_default().add(counters);
            }
        }
        // Edges seen anywhere in the history stay drawn (idle ones at zero).
        let mut all: BTreeMap<&EdgeKey, Counters> = self
            .ticks
            .iter()
            .flat_map(|t| t.edges.keys())
            .map(|k| (k, Counters::default()))
            .collect();
        all.extend(sums);
        let edges = all
            .into_iter()
            .map(|(key, c)| EdgeView {
                source: key.source.clone(),
                destination: key.destination.clone(),
                rps: rate(c.requests, seconds),
                error_rate: ratio(c.errors, c.requests),
                p99_ms: c.quantile(0.99),
            })
            .collect();
        GraphView {
            nodes: nodes.into_iter().collect(),
            edges,
            window_seconds: seconds,
            services,
        }
    }
}

fn rate(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 && count.is_finite() {
        count / seconds
    } else {
        0.0
    }
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        (part / whole).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::super::prom::parse;
    use super::*;

    fn body(ok: u64, errors: u64, fast: u64, slow: u64) -> String {
        let l = "reporter=\"source\",source_workload=\"client\",source_canonical_service=\"client\",destination_service_name=\"echo\"";
        format!(
            "istio_requests_total{{{l},response_code=\"200\"}} {ok}\n\
             istio_requests_total{{{l},response_code=\"503\"}} {errors}\n\
             istio_requests_total{{reporter=\"destination\",source_workload=\"client\",destination_service_name=\"echo\",response_code=\"200\"}} 1000\n\
             istio_request_duration_milliseconds_bucket{{{l},response_code=\"200\",le=\"10\"}} {fast}\n\
             istio_request_duration_milliseconds_bucket{{{l},response_code=\"200\",le=\"100\"}} {}\n\
             istio_request_duration_milliseconds_bucket{{{l},response_code=\"200\",le=\"+Inf\"}} {}\n",
            fast + slow,
            fast + slow
        )
    }

    fn totals(text: &str) -> BTreeMap<EdgeKey, Counters> {
        edge_totals(&parse(text, |_| true).samples, "client-v1-0")
    }

    #[test]
    fn envoy_cluster_stats_make_edges_from_the_scraped_proxy() {
        let c = "envoy_cluster_name=\"outbound|9080|v1|echo.default.svc.cluster.local\"";
        let text = format!(
            "envoy_cluster_upstream_rq_xx{{envoy_response_code_class=\"2\",{c}}} 90\n\
             envoy_cluster_upstream_rq_xx{{envoy_response_code_class=\"5\",{c}}} 10\n\
             envoy_cluster_upstream_rq_xx{{envoy_response_code_class=\"2\",envoy_cluster_name=\"inbound|9080||\"}} 7\n\
             envoy_cluster_upstream_rq_xx{{envoy_response_code_class=\"2\",envoy_cluster_name=\"xds-grpc\"}} 3\n\
             envoy_cluster_upstream_rq_time_bucket{{{c},le=\"5\"}} 99\n\
             envoy_cluster_upstream_rq_time_bucket{{{c},le=\"+Inf\"}} 100\n"
        );
        let edges = totals(&text);
        assert_eq!(edges.len(), 1, "{edges:?}");
        let edge = &edges[&EdgeKey {
            source: "client-v1-0".into(),
            destination: "echo".into(),
        }];
        assert_eq!((edge.requests, edge.errors), (100.0, 10.0));
        assert_eq!(edge.buckets.len(), 2);
        // Istio's metrics win when a proxy has both.
        let both = format!("{text}{}", body(5, 0, 5, 0));
        assert_eq!(totals(&both).keys().collect::<Vec<_>>(), [&key()]);
    }

    fn key() -> EdgeKey {
        EdgeKey {
            source: "client".into(),
            destination: "echo".into(),
        }
    }

    #[test]
    fn rates_and_p99_from_deltas() {
        let before = totals(&body(100, 0, 100, 0));
        let after = totals(&body(190, 10, 101, 99));
        let delta = after[&key()].delta(&before[&key()]);
        assert_eq!(delta.requests, 100.0);
        assert_eq!(delta.errors, 10.0);
        // 1 of 100 new observations ≤10 ms, the rest in (10, 100]: p99 interpolates near 100.
        let p99 = delta.quantile(0.99).expect("observations");
        assert!((p99 - 99.09).abs() < 0.1, "{p99}");
        let mut history = History::new(3);
        history.push(Tick {
            at_ms: 1,
            interval: 2.0,
            edges: BTreeMap::from([(key(), delta)]),
        });
        let view = history.view(5);
        assert_eq!(view.nodes, vec!["client".to_string(), "echo".to_string()]);
        assert_eq!(view.edges.len(), 1);
        assert_eq!(view.edges[0].rps, 50.0);
        assert!((view.edges[0].error_rate - 0.1).abs() < 1e-9);
        assert_eq!(view.services["echo"].len(), 1);
    }

    #[test]
    fn counter_reset_counts_from_zero() {
        let before = totals(&body(500, 5, 505, 0));
        let after = totals(&body(7, 0, 7, 0));
        let delta = after[&key()].delta(&before[&key()]);
        assert_eq!(delta.requests, 7.0);
        assert_eq!(delta.errors, 0.0);
    }

    #[test]
    fn quantile_edge_cases() {
        assert_eq!(Counters::default().quantile(0.99), None);
        let only_inf = Counters {
            buckets: BTreeMap::from([(Bound(f64::INFINITY), 5.0)]),
            ..Counters::default()
        };
        assert_eq!(only_inf.quantile(0.99), Some(0.0));
        let beyond = Counters {
            buckets: BTreeMap::from([(Bound(10.0), 0.0), (Bound(f64::INFINITY), 5.0)]),
            ..Counters::default()
        };
        assert_eq!(beyond.quantile(0.99), Some(10.0));
        // Non-monotonic (hostile) buckets: no panic, a finite answer.
        let weird = Counters {
            buckets: BTreeMap::from([
                (Bound(1.0), 9.0),
                (Bound(2.0), 3.0),
                (Bound(f64::INFINITY), 4.0),
            ]),
            ..Counters::default()
        };
        assert!(weird.quantile(0.99).is_some_and(f64::is_finite));
    }

    #[test]
    fn hostile_samples_are_ignored() {
        let text = "istio_requests_total{reporter=\"source\",source_workload=\"a\",destination_service_name=\"b\"} NaN\n\
            istio_requests_total{reporter=\"source\",source_workload=\"a\",destination_service_name=\"b\"} -5\n\
            istio_requests_total{reporter=\"source\",destination_service_name=\"b\"} 5\n\
            istio_request_duration_milliseconds_bucket{reporter=\"source\",source_workload=\"a\",destination_service_name=\"b\",le=\"NaN\"} 1\n\
            istio_request_duration_milliseconds_bucket{reporter=\"source\",source_workload=\"a\",destination_service_name=\"b\",le=\"x\"} 1\n";
        assert!(totals(text).is_empty());
    }

    #[test]
    fn history_is_bounded_and_idle_edges_stay() {
        let mut history = History::new(2);
        for i in 0..5 {
            let edges = if i == 0 {
                BTreeMap::from([(
                    key(),
                    Counters {
                        requests: 4.0,
                        ..Counters::default()
                    },
                )])
            } else {
                BTreeMap::new()
            };
            history.push(Tick {
                at_ms: i,
                interval: 1.0,
                edges,
            });
        }
        let view = history.view(1);
        assert!(
            view.edges.is_empty(),
            "the round with traffic fell out of the history"
        );
        assert_eq!(view.window_seconds, 1.0);
    }
}
