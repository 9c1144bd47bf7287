//! Istio's standard metrics (`istio_requests_total`, `istio_request_duration_milliseconds`,
//! `istio_request_bytes`, `istio_response_bytes`, `istio_tcp_*`) with Istio's label names, so
//! existing dashboards and alerts work unchanged.
//!
//! Label values are `Arc<str>` shared with the peer descriptions, so a label set is built by
//! reference-count bumps, not string copies. Each metric holds at most [`MAX_SERIES`] label
//! sets; a new one beyond that is counted in the overflow series, whose labels are all
//! [`OVERFLOW`] (except `reporter`), so a hostile or misconfigured mesh cannot exhaust memory.

use std::collections::HashMap;
use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::overrides::{CustomLabels, STANDARD_LABELS};
use super::peer::PeerWorkload;

/// The most label sets one metric keeps; further ones go to the overflow series.
pub const MAX_SERIES: usize = 10_000;
/// The value of every label (but `reporter`) of the overflow series.
pub const OVERFLOW: &str = "overflow";

/// Istio's buckets for `istio_request_duration_milliseconds`.
pub const DURATION_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];
/// Istio's buckets for `istio_request_bytes` and `istio_response_bytes` (1 B … 1 GB, ×10).
pub const BYTES_BUCKETS: [f64; 10] = [
    1.0,
    10.0,
    100.0,
    1000.0,
    10000.0,
    100000.0,
    1000000.0,
    10000000.0,
    100000000.0,
    1000000000.0,
];

/// `source` (the client's proxy) or `destination` (the server's proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reporter {
    /// Reported by the client side.
    Source,
    /// Reported by the server side.
    Destination,
}

impl Reporter {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// The labels every Istio metric has: who reported, both workloads and principals, the
/// destination service and the connection's security policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerLabels {
    /// `reporter`.
    pub reporter: Reporter,
    /// `source_*` (workload, namespace, app, version, cluster).
    pub source: Arc<PeerWorkload>,
    /// `source_principal`: from a verified certificate only, else `unknown`.
    pub source_principal: Arc<str>,
    /// `destination_*` (workload, namespace, app, version, cluster).
    pub destination: Arc<PeerWorkload>,
    /// `destination_principal`: from a verified certificate only, else `unknown`.
    pub destination_principal: Arc<str>,
    /// `destination_service` (the host).
    pub destination_service: Arc<str>,
    /// `destination_service_name`.
    pub destination_service_name: Arc<str>,
    /// `destination_service_namespace`.
    pub destination_service_namespace: Arc<str>,
    /// `connection_security_policy`: `mutual_tls`, `none` or `unknown` (source reporter).
    pub connection_security_policy: &'static str,
}

impl PeerLabels {
    /// The overflow series' labels.
    fn overflow(reporter: Reporter) -> Self {
        let o: Arc<str> = Arc::from(OVERFLOW);
        let peer = Arc::new(PeerWorkload {
            workload: o.clone(),
            namespace: o.clone(),
            app: o.clone(),
            version: o.clone(),
            canonical_service: o.clone(),
            canonical_revision: o.clone(),
            cluster: o.clone(),
        });
        PeerLabels {
            reporter,
            source: peer.clone(),
            source_principal: o.clone(),
            destination: peer,
            destination_principal: o.clone(),
            destination_service: o.clone(),
            destination_service_name: o.clone(),
            destination_service_namespace: o,
            connection_security_policy: OVERFLOW,
        }
    }
}

impl EncodeLabelSet for PeerLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for pair in self.pairs() {
            EncodeLabel::encode(&pair, encoder.encode_label())?;
        }
        Ok(())
    }
}

impl PeerLabels {
    /// The 21 labels, in [`STANDARD_LABELS`] order.
    fn pairs(&self) -> [(&'static str, &str); 21] {
        [
            ("reporter", self.reporter.as_str()),
            ("source_workload", &self.source.workload),
            ("source_workload_namespace", &self.source.namespace),
            ("source_principal", &self.source_principal),
            ("source_app", &self.source.app),
            ("source_version", &self.source.version),
            ("source_cluster", &self.source.cluster),
            ("destination_workload", &self.destination.workload),
            (
                "destination_workload_namespace",
                &self.destination.namespace,
            ),
            ("destination_principal", &self.destination_principal),
            ("destination_app", &self.destination.app),
            ("destination_version", &self.destination.version),
            ("destination_service", &self.destination_service),
            ("destination_service_name", &self.destination_service_name),
            (
                "destination_service_namespace",
                &self.destination_service_namespace,
            ),
            ("destination_cluster", &self.destination.cluster),
            ("source_canonical_service", &self.source.canonical_service),
            ("source_canonical_revision", &self.source.canonical_revision),
            (
                "destination_canonical_service",
                &self.destination.canonical_service,
            ),
            (
                "destination_canonical_revision",
                &self.destination.canonical_revision,
            ),
            (
                "connection_security_policy",
                self.connection_security_policy,
            ),
        ]
    }
}

/// Labels of the HTTP metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestLabels {
    /// The shared labels.
    pub peers: Arc<PeerLabels>,
    /// `request_protocol`: `http` or `grpc`.
    pub request_protocol: &'static str,
    /// `response_code` (`0` when no response was sent).
    pub response_code: u16,
    /// `grpc_response_status` (empty for non-gRPC, as Istio).
    pub grpc_response_status: Arc<str>,
    /// `response_flags`: `-` when none.
    pub response_flags: Arc<str>,
    /// Telemetry overrides: standard labels left out, labels set (`None`: Istio's labels).
    pub custom: Option<Arc<CustomLabels>>,
}

impl RequestLabels {
    /// The labels with a metric's overrides applied: removed ones left out, upserted standard
    /// ones replaced in place, new ones appended.
    fn encode_custom(
        &self,
        custom: &CustomLabels,
        encoder: &mut LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        let code = self.response_code.to_string();
        let request: [(&'static str, &str); 4] = [
            ("request_protocol", self.request_protocol),
            ("response_code", &code),
            ("grpc_response_status", &self.grpc_response_status),
            ("response_flags", &self.response_flags),
        ];
        let standard = self.peers.pairs().into_iter().chain(request);
        for (i, (name, value)) in standard.enumerate() {
            if custom.removed & (1 << i) != 0 {
                continue;
            }
            let value = custom
                .values
                .iter()
                .find(|(n, _)| &**n == name)
                .map_or(value, |(_, v)| &**v);
            EncodeLabel::encode(&(name, value), encoder.encode_label())?;
        }
        for (name, value) in &custom.values {
            if !STANDARD_LABELS.contains(&&**name) {
                EncodeLabel::encode(&(&**name, &**value), encoder.encode_label())?;
            }
        }
        Ok(())
    }
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        if let Some(custom) = &self.custom {
            return self.encode_custom(custom, encoder);
        }
        self.peers.encode(encoder)?;
        EncodeLabel::encode(
            &("request_protocol", self.request_protocol),
            encoder.encode_label(),
        )?;
        EncodeLabel::encode(
            &("response_code", self.response_code),
            encoder.encode_label(),
        )?;
        EncodeLabel::encode(
            &("grpc_response_status", &*self.grpc_response_status),
            encoder.encode_label(),
        )?;
        EncodeLabel::encode(
            &("response_flags", &*self.response_flags),
            encoder.encode_label(),
        )
    }
}

/// Labels of the TCP metrics (`request_protocol="tcp"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpLabels {
    /// The shared labels.
    pub peers: Arc<PeerLabels>,
    /// `response_flags`: `-` when none.
    pub response_flags: Arc<str>,
}

impl EncodeLabelSet for TcpLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.peers.encode(encoder)?;
        EncodeLabel::encode(&("request_protocol", "tcp"), encoder.encode_label())?;
        EncodeLabel::encode(
            &("response_flags", &*self.response_flags),
            encoder.encode_label(),
        )
    }
}

/// The overflow series' labels for a request's (see [`MAX_SERIES`]).
fn overflow_request(l: &RequestLabels) -> RequestLabels {
    RequestLabels {
        peers: Arc::new(PeerLabels::overflow(l.peers.reporter)),
        request_protocol: l.request_protocol,
        response_code: 0,
        grpc_response_status: Arc::from(OVERFLOW),
        response_flags: Arc::from(OVERFLOW),
        custom: None,
    }
}

/// Builds histograms with fixed buckets (a `fn` pointer so the family stays `Clone`).
#[derive(Debug, Clone, Copy)]
pub struct Buckets(fn() -> Histogram);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        (self.0)()
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS_MS)
}

fn bytes_histogram() -> Histogram {
    Histogram::new(BYTES_BUCKETS)
}

type HistogramFamily<L> = Family<L, Histogram, Buckets>;

/// One finished HTTP request, as the metrics see it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// The labels.
    pub labels: RequestLabels,
    /// From the request's start to the response's end.
    pub duration_ms: f64,
    /// Request headers and body.
    pub request_bytes: u64,
    /// Response headers and body.
    pub response_bytes: u64,
}

/// The Istio metric families.
#[derive(Debug, Clone)]
pub struct IstioMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<RequestLabels>,
    request_bytes: HistogramFamily<RequestLabels>,
    response_bytes: HistogramFamily<RequestLabels>,
    tcp_sent: Family<TcpLabels, Counter>,
    tcp_received: Family<TcpLabels, Counter>,
    tcp_opened: Family<TcpLabels, Counter>,
    tcp_closed: Family<TcpLabels, Counter>,
    max_series: usize,
    /// Label sets created per family: requests (shared by the four HTTP metrics), then the
    /// TCP ones. Shared by clones.
    series: Arc<[AtomicUsize; 5]>,
    /// The four HTTP metrics of each label set seen, found with one hash of the labels per
    /// request instead of five (the families hash every label string on each lookup). Holds
    /// at most the label sets the families hold. Shared by clones.
    handles: Arc<std::sync::Mutex<HashMap<RequestLabels, RequestHandles>>>,
}

/// One label set's HTTP metrics (handles sharing the families' values).
#[derive(Debug, Clone)]
struct RequestHandles {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

impl Default for IstioMetrics {
    fn default() -> Self {
        Self::with_max_series(MAX_SERIES)
    }
}

impl IstioMetrics {
    /// Families that keep at most `max_series` label sets each.
    pub fn with_max_series(max_series: usize) -> Self {
        IstioMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(Buckets(duration_histogram)),
            request_bytes: Family::new_with_constructor(Buckets(bytes_histogram)),
            response_bytes: Family::new_with_constructor(Buckets(bytes_histogram)),
            tcp_sent: Family::default(),
            tcp_received: Family::default(),
            tcp_opened: Family::default(),
            tcp_closed: Family::default(),
            max_series,
            series: Arc::new(Default::default()),
            handles: Arc::default(),
        }
    }

    /// Registers every family under Istio's names.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "istio_requests",
            "Requests, with Istio's standard labels",
            self.requests.clone(),
        );
        registry.register(
            "istio_request_duration_milliseconds",
            "Request duration in milliseconds",
            self.duration.clone(),
        );
        registry.register(
            "istio_request_bytes",
            "Request size (headers and body) in bytes",
            self.request_bytes.clone(),
        );
        registry.register(
            "istio_response_bytes",
            "Response size (headers and body) in bytes",
            self.response_bytes.clone(),
        );
        registry.register(
            "istio_tcp_sent_bytes",
            "Bytes sent to the downstream during TCP connections",
            self.tcp_sent.clone(),
        );
        registry.register(
            "istio_tcp_received_bytes",
            "Bytes received from the downstream during TCP connections",
            self.tcp_received.clone(),
        );
        registry.register(
            "istio_tcp_connections_opened",
            "TCP connections opened",
            self.tcp_opened.clone(),
        );
        registry.register(
            "istio_tcp_connections_closed",
            "TCP connections closed",
            self.tcp_closed.clone(),
        );
    }

    /// Counts a finished HTTP request in all four HTTP metrics.
    pub fn record_request(&self, r: &RequestRecord) {
        let h = self.handles_for(&r.labels);
        h.requests.inc();
        h.duration.observe(r.duration_ms);
        h.request_bytes.observe(r.request_bytes as f64);
        h.response_bytes.observe(r.response_bytes as f64);
    }

    /// Counts a finished HTTP request with per-metric labels (Telemetry overrides): `labels[i]`
    /// for metric `i` (`requests`, `duration`, `request_bytes`, `response_bytes`), `None` for a
    /// dropped metric. `r.labels` is not used.
    pub fn record_request_split(&self, r: &RequestRecord, labels: &[Option<RequestLabels>; 4]) {
        if let [Some(a), Some(b), Some(c), Some(d)] = labels
            && a == b
            && b == c
            && c == d
        {
            let h = self.handles_for(a);
            h.requests.inc();
            h.duration.observe(r.duration_ms);
            h.request_bytes.observe(r.request_bytes as f64);
            h.response_bytes.observe(r.response_bytes as f64);
            return;
        }
        if let Some(l) = &labels[0] {
            self.requests
                .get_or_create(&self.admitted(&self.requests, l))
                .inc();
        }
        for (i, family, value) in [
            (1, &self.duration, r.duration_ms),
            (2, &self.request_bytes, r.request_bytes as f64),
            (3, &self.response_bytes, r.response_bytes as f64),
        ] {
            if let Some(l) = &labels[i] {
                family
                    .get_or_create(&self.admitted(family, l))
                    .observe(value);
            }
        }
    }

    /// `labels`, or the overflow set when `family` has no room for them.
    fn admitted<M, C: MetricConstructor<M>>(
        &self,
        family: &Family<RequestLabels, M, C>,
        labels: &RequestLabels,
    ) -> RequestLabels {
        self.admit(family, &self.series[0], labels, overflow_request)
            .unwrap_or_else(|| labels.clone())
    }

    /// The four HTTP metrics of `labels` (the overflow set's when there is no room for them).
    fn handles_for(&self, labels: &RequestLabels) -> RequestHandles {
        let known = self
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(labels)
            .cloned();
        match known {
            Some(h) => h,
            None => self.admit_request(labels),
        }
    }

    /// The metrics of a label set not seen yet: its own when there is room for it, else the
    /// overflow set's.
    fn admit_request(&self, labels: &RequestLabels) -> RequestHandles {
        let labels_in = labels;
        let labels = self.admit(&self.requests, &self.series[0], labels_in, overflow_request);
        self.handles(labels.as_ref().unwrap_or(labels_in))
    }

    /// The HTTP metrics of `labels`, created in the families on first use.
    fn handles(&self, labels: &RequestLabels) -> RequestHandles {
        let mut cache = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = cache.get(labels) {
            return h.clone();
        }
        let h = RequestHandles {
            requests: self.requests.get_or_create(labels).clone(),
            duration: self.duration.get_or_create(labels).clone(),
            request_bytes: self.request_bytes.get_or_create(labels).clone(),
            response_bytes: self.response_bytes.get_or_create(labels).clone(),
        };
        cache.insert(labels.clone(), h.clone());
        h
    }

    /// Counts a TCP connection opened (`istio_tcp_connections_opened_total`).
    pub fn record_tcp_open(&self, labels: &TcpLabels) {
        self.tcp_family(&self.tcp_opened, &self.series[1], labels, |c| {
            c.inc();
        });
    }

    /// Counts a TCP connection closed, and the bytes it carried (`sent` to the downstream,
    /// `received` from it).
    pub fn record_tcp_close(&self, labels: &TcpLabels, sent: u64, received: u64) {
        self.tcp_family(&self.tcp_closed, &self.series[2], labels, |c| {
            c.inc();
        });
        self.add_tcp_bytes(labels, sent, received);
    }

    /// Adds bytes of a TCP connection still open (for long-lived connections, so the
    /// counters move before they close).
    pub fn add_tcp_bytes(&self, labels: &TcpLabels, sent: u64, received: u64) {
        if sent > 0 {
            self.tcp_family(&self.tcp_sent, &self.series[3], labels, |c| {
                c.inc_by(sent);
            });
        }
        if received > 0 {
            self.tcp_family(&self.tcp_received, &self.series[4], labels, |c| {
                c.inc_by(received);
            });
        }
    }

    fn tcp_family(
        &self,
        family: &Family<TcpLabels, Counter>,
        series: &AtomicUsize,
        labels: &TcpLabels,
        f: impl FnOnce(&Counter),
    ) {
        let overflow = self.admit(family, series, labels, |l| TcpLabels {
            peers: Arc::new(PeerLabels::overflow(l.peers.reporter)),
            response_flags: Arc::from(OVERFLOW),
        });
        f(&family.get_or_create(overflow.as_ref().unwrap_or(labels)));
    }

    /// `None` when `labels` may be used (it exists, or there is room); else the overflow set.
    fn admit<L, M, C>(
        &self,
        family: &Family<L, M, C>,
        series: &AtomicUsize,
        labels: &L,
        overflow: impl FnOnce(&L) -> L,
    ) -> Option<L>
    where
        L: Clone + std::hash::Hash + Eq,
        C: MetricConstructor<M>,
    {
        if family.get(labels).is_some() {
            return None;
        }
        // A new label set: take a slot (two threads racing on the same new set may both
        // count it, which only makes the cap a little stricter).
        let taken = series.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < self.max_series).then_some(n + 1)
        });
        match taken {
            Ok(_) => None,
            Err(_) => Some(overflow(labels)),
        }
    }

    /// How many label sets `istio_requests_total` holds (its overflow series included).
    pub fn request_series(&self) -> usize {
        self.series[0].load(Ordering::Acquire) + usize::from(self.overflowed(&self.requests))
    }

    fn overflowed(&self, family: &Family<RequestLabels, Counter>) -> bool {
        self.series[0].load(Ordering::Acquire) >= self.max_series
            && family
                .get(&RequestLabels {
                    peers: Arc::new(PeerLabels::overflow(Reporter::Source)),
                    request_protocol: "http",
                    response_code: 0,
                    grpc_response_status: Arc::from(OVERFLOW),
                    response_flags: Arc::from(OVERFLOW),
                    custom: None,
                })
                .is_some()
    }
}
