use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use prometheus_client::registry::Registry;
use prost::Message as _;

use super::exchange::{cluster_host, strip_port};
use super::istio::{IstioMetrics, OVERFLOW};
use super::merge::{AppMetrics, merge};
use super::peer::{
    PEER_METADATA_HEADER, PEER_METADATA_ID_HEADER, PeerError, PeerWorkload, header_value,
    spiffe_namespace,
};
use super::*;

fn node(workload: &str, ns: &str, labels: &[(&str, &str)]) -> trellis_xds::NodeIdentity {
    trellis_xds::NodeIdentity {
        proxy_type: trellis_xds::ProxyType::Sidecar,
        ip: "127.0.0.2".parse().expect("ip"),
        workload: workload.into(),
        namespace: ns.into(),
        service_account: "sa".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        app_ip: None,
        sds: false,
        interception: trellis_xds::InterceptionMode::None,
    }
}

fn encode(s: &Struct) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.encode_to_vec())
}

fn string(v: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(v.into())),
    }
}

#[test]
fn header_round_trips_with_canonical_labels() {
    let n = node(
        "reviews-v2",
        "bookinfo",
        &[("app", "reviews"), ("version", "v2")],
    );
    let p = PeerWorkload::from_header(header_value(&n).as_bytes()).expect("parses");
    assert_eq!(&*p.workload, "reviews-v2");
    assert_eq!(&*p.namespace, "bookinfo");
    assert_eq!(&*p.app, "reviews");
    assert_eq!(&*p.version, "v2");
    assert_eq!(&*p.cluster, "Kubernetes");
    // No labels: Istio's canonical defaults.
    let p =
        PeerWorkload::from_header(header_value(&node("w", "ns", &[])).as_bytes()).expect("parses");
    assert_eq!((&*p.app, &*p.version), ("unknown", "unknown"));
    assert_eq!(
        (&*p.canonical_service, &*p.canonical_revision),
        ("w", "latest")
    );
}

#[test]
fn hostile_headers_are_rejected_with_the_reason() {
    assert_eq!(
        PeerWorkload::from_header(&vec![b'A'; 9000]),
        Err(PeerError::TooLarge(9000))
    );
    assert!(matches!(
        PeerWorkload::from_header(b"%%%not base64"),
        Err(PeerError::Base64(_))
    ));
    let not_proto = base64::engine::general_purpose::STANDARD.encode([0xff, 0xff, 0xff]);
    assert!(matches!(
        PeerWorkload::from_header(not_proto.as_bytes()),
        Err(PeerError::Protobuf(_))
    ));
    let mut s = Struct::default();
    s.fields.insert("NAMESPACE".into(), string("ns"));
    assert_eq!(
        PeerWorkload::from_header(encode(&s).as_bytes()),
        Err(PeerError::Missing("WORKLOAD_NAME"))
    );
    s.fields
        .insert("WORKLOAD_NAME".into(), string("evil\"} 1\nfake_metric 2"));
    assert_eq!(
        PeerWorkload::from_header(encode(&s).as_bytes()),
        Err(PeerError::BadValue("WORKLOAD_NAME"))
    );
    s.fields
        .insert("WORKLOAD_NAME".into(), string(&"x".repeat(300)));
    assert_eq!(
        PeerWorkload::from_header(encode(&s).as_bytes()),
        Err(PeerError::BadValue("WORKLOAD_NAME"))
    );
    s.fields.insert("WORKLOAD_NAME".into(), string("w"));
    s.fields.insert(
        "LABELS".into(),
        Value {
            kind: Some(Kind::StructValue(Struct {
                fields: [(
                    "app".to_string(),
                    Value {
                        kind: Some(Kind::NumberValue(1.0)),
                    },
                )]
                .into_iter()
                .collect(),
            })),
        },
    );
    assert_eq!(
        PeerWorkload::from_header(encode(&s).as_bytes()),
        Err(PeerError::BadValue("LABELS"))
    );
}

#[test]
fn endpoint_metadata_parses_and_rejects() {
    let p = PeerWorkload::from_endpoint_metadata("ratings-v1;default;ratings;v1;Kubernetes")
        .expect("parses");
    assert_eq!(&*p.workload, "ratings-v1");
    assert_eq!(&*p.version, "v1");
    assert_eq!(
        p.endpoint_metadata(),
        "ratings-v1;default;ratings;v1;Kubernetes"
    );
    let p = PeerWorkload::from_endpoint_metadata(";;;;").expect("empty parts are unknown");
    assert_eq!(&*p.app, "unknown");
    assert!(matches!(
        PeerWorkload::from_endpoint_metadata("a;b;c"),
        Err(PeerError::BadWorkload(_))
    ));
    assert!(matches!(
        PeerWorkload::from_endpoint_metadata("a;b;c;d\n;e"),
        Err(PeerError::BadWorkload(_))
    ));
}

#[test]
fn helpers() {
    assert_eq!(
        spiffe_namespace("spiffe://cluster.local/ns/prod/sa/web"),
        Some("prod")
    );
    assert_eq!(
        spiffe_namespace("spiffe://cluster.local/x/prod/sa/web"),
        None
    );
    assert_eq!(spiffe_namespace("https://x"), None);
    assert_eq!(
        cluster_host("outbound|80|v1|r.default.svc.cluster.local"),
        "r.default.svc.cluster.local"
    );
    assert_eq!(cluster_host("inbound|80||"), "");
    assert_eq!(strip_port("r.default:8080"), "r.default");
    assert_eq!(strip_port("[::1]:80"), "[::1");
    let (s, n, ns) = service_labels("reviews.bookinfo.svc.cluster.local");
    assert_eq!(
        (&*s, &*n, &*ns),
        ("reviews.bookinfo.svc.cluster.local", "reviews", "bookinfo")
    );
    let (_, n, ns) = service_labels("httpbin.org");
    assert_eq!((&*n, &*ns), ("httpbin.org", "unknown"));
}

fn encode_registry(m: &IstioMetrics) -> String {
    let mut registry = Registry::default();
    m.register(&mut registry);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
    out
}

async fn drain<B: hyper::body::Body + Unpin>(b: B) {
    let _ = b.collect().await;
}

/// A request through an outbound (source) and an inbound (destination) proxy's telemetry.
#[tokio::test]
async fn both_reporters_label_a_request() {
    let client = Arc::new(Telemetry::new(
        Some(&node(
            "productpage-v1",
            "default",
            &[("app", "productpage"), ("version", "v1")],
        )),
        Some("spiffe://cluster.local/ns/default/sa/productpage".into()),
        IstioMetrics::default(),
    ));
    let server = Arc::new(Telemetry::new(
        Some(&node(
            "reviews-v2",
            "default",
            &[("app", "reviews"), ("version", "v2")],
        )),
        Some("spiffe://cluster.local/ns/default/sa/reviews".into()),
        IstioMetrics::default(),
    ));
    // Client side: the app's forged header is replaced by the proxy's own.
    let mut req = Request::builder()
        .uri("http://reviews.default.svc.cluster.local/")
        .header(PEER_METADATA_HEADER, "forged")
        .body(Full::new(Bytes::from_static(b"hello")))
        .expect("request");
    let out = client.begin(
        Downstream {
            inbound: false,
            peer_identity: None,
        },
        &mut req,
    );
    assert_ne!(req.headers()[PEER_METADATA_HEADER], "forged");
    // Server side, over mTLS.
    let inbound = server.begin(
        Downstream {
            inbound: true,
            peer_identity: Some("spiffe://cluster.local/ns/default/sa/productpage"),
        },
        &mut req,
    );
    assert!(
        req.headers().get(PEER_METADATA_HEADER).is_none(),
        "removed before the app"
    );
    assert!(req.headers().get(PEER_METADATA_ID_HEADER).is_none());
    let resp = Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .body(Full::new(Bytes::from_static(b"down")))
        .expect("response");
    let resp = server.finish(inbound, Some("inbound|9080||"), &[], resp);
    assert!(resp.headers().get(PEER_METADATA_HEADER).is_some());
    let (parts, body) = resp.into_parts();
    drain(body).await;
    // Back on the client: no EDS metadata here, so the response header tells the destination.
    let resp = Response::from_parts(parts, Full::new(Bytes::from_static(b"down")));
    let resp = client.finish(
        out,
        Some("outbound|9080||reviews.default.svc.cluster.local"),
        &["URX"],
        resp,
    );
    assert!(
        resp.headers().get(PEER_METADATA_HEADER).is_none(),
        "removed before the app"
    );
    drain(resp.into_body()).await;

    let text = encode_registry(&client.metrics);
    assert!(text.contains("istio_requests_total{reporter=\"source\",source_workload=\"productpage-v1\",source_workload_namespace=\"default\",source_principal=\"spiffe://cluster.local/ns/default/sa/productpage\",source_app=\"productpage\",source_version=\"v1\",source_cluster=\"Kubernetes\",destination_workload=\"reviews-v2\",destination_workload_namespace=\"default\",destination_principal=\"unknown\",destination_app=\"reviews\",destination_version=\"v2\",destination_service=\"reviews.default.svc.cluster.local\",destination_service_name=\"reviews\",destination_service_namespace=\"default\",destination_cluster=\"Kubernetes\",source_canonical_service=\"productpage\",source_canonical_revision=\"v1\",destination_canonical_service=\"reviews\",destination_canonical_revision=\"v2\",connection_security_policy=\"unknown\",request_protocol=\"http\",response_code=\"503\",grpc_response_status=\"\",response_flags=\"URX\"} 1"), "{text}");
    let text = encode_registry(&server.metrics);
    assert!(
        text.contains("reporter=\"destination\",source_workload=\"productpage-v1\""),
        "{text}"
    );
    assert!(text.contains("source_principal=\"spiffe://cluster.local/ns/default/sa/productpage\""));
    assert!(
        text.contains("destination_principal=\"spiffe://cluster.local/ns/default/sa/reviews\"")
    );
    assert!(text.contains("connection_security_policy=\"mutual_tls\""));
    assert!(text.contains("response_flags=\"-\""));
    assert!(text.contains("istio_request_duration_milliseconds_bucket{"));
    assert!(text.contains("le=\"0.5\""));
    assert!(text.contains("istio_response_bytes_sum{"));
}

/// A header naming another namespace than the verified certificate is not believed; without
/// a certificate the principal is `unknown` whatever the header says.
#[tokio::test]
async fn peer_header_cannot_contradict_the_certificate() {
    let server = Arc::new(Telemetry::new(
        Some(&node("db", "prod", &[])),
        None,
        IstioMetrics::default(),
    ));
    let liar = node("admin", "kube-system", &[]);
    for identity in [Some("spiffe://cluster.local/ns/default/sa/web"), None] {
        let mut req = Request::builder()
            .uri("/")
            .header("host", "db.prod.svc.cluster.local:5432")
            .header(PEER_METADATA_HEADER, header_value(&liar))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let ex = server.begin(
            Downstream {
                inbound: true,
                peer_identity: identity,
            },
            &mut req,
        );
        let resp = server.finish(ex, None, &[], Response::new(Full::new(Bytes::new())));
        drain(resp.into_body()).await;
    }
    let text = encode_registry(&server.metrics);
    assert!(text.contains("source_workload=\"unknown\",source_workload_namespace=\"unknown\",source_principal=\"spiffe://cluster.local/ns/default/sa/web\""), "{text}");
    assert!(text.contains("source_workload=\"admin\",source_workload_namespace=\"kube-system\",source_principal=\"unknown\""), "{text}");
    assert!(
        text.contains("destination_service_name=\"db\",destination_service_namespace=\"prod\""),
        "{text}"
    );
}

#[tokio::test]
async fn grpc_status_comes_from_trailers_or_headers() {
    let t = Arc::new(Telemetry::new(
        Some(&node("c", "default", &[])),
        None,
        IstioMetrics::default(),
    ));
    let mut req = Request::builder()
        .uri("http://g.default.svc.cluster.local/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let ex = t.begin(
        Downstream {
            inbound: false,
            peer_identity: None,
        },
        &mut req,
    );
    let resp = Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", "14")
        .body(Full::new(Bytes::new()))
        .expect("response");
    drain(
        t.finish(
            ex,
            Some("outbound|50051||g.default.svc.cluster.local"),
            &[],
            resp,
        )
        .into_body(),
    )
    .await;
    let text = encode_registry(&t.metrics);
    assert!(
        text.contains(
            "request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"14\""
        ),
        "{text}"
    );
}

#[test]
fn cardinality_is_capped_into_the_overflow_series() {
    let m = IstioMetrics::with_max_series(3);
    let t = Telemetry::new(None, None, IstioMetrics::default());
    for i in 0..10u16 {
        let peers = Arc::new(PeerLabels {
            reporter: Reporter::Source,
            source: t.own().clone(),
            source_principal: Arc::from("unknown"),
            destination: t.own().clone(),
            destination_principal: Arc::from("unknown"),
            destination_service: Arc::from(format!("svc-{i}")),
            destination_service_name: Arc::from("x"),
            destination_service_namespace: Arc::from("y"),
            connection_security_policy: "unknown",
        });
        m.record_request(&istio::RequestRecord {
            labels: istio::RequestLabels {
                peers: peers.clone(),
                request_protocol: "http",
                response_code: 200,
                grpc_response_status: Arc::from(""),
                response_flags: Arc::from("-"),
                custom: None,
            },
            duration_ms: 1.0,
            request_bytes: 10,
            response_bytes: 10,
        });
        m.record_tcp_open(&TcpLabels {
            peers,
            response_flags: Arc::from("-"),
        });
    }
    // Three real series, then one overflow series holding the other seven.
    assert_eq!(m.request_series(), 4);
    let text = encode_registry(&m);
    assert!(text.contains(&format!("destination_service=\"{OVERFLOW}\"")));
    assert!(
        text.contains(&format!("response_flags=\"{OVERFLOW}\"}} 7")),
        "{text}"
    );
    assert!(text.contains("istio_tcp_connections_opened_total{"));
    // An existing series keeps counting when the family is full.
    assert!(text.contains("destination_service=\"svc-0\""));
}

#[test]
fn app_metrics_flag_and_merge() {
    assert_eq!(
        "9090".parse::<AppMetrics>(),
        Ok(AppMetrics {
            port: 9090,
            path: "/metrics".into()
        })
    );
    assert_eq!(
        "8080/stats".parse::<AppMetrics>(),
        Ok(AppMetrics {
            port: 8080,
            path: "/stats".into()
        })
    );
    assert!("0".parse::<AppMetrics>().is_err());
    assert!("x/metrics".parse::<AppMetrics>().is_err());
    let merged = merge("# TYPE a counter\na_total 1\n# EOF\n", "b 2\n");
    assert_eq!(merged, "# TYPE a counter\na_total 1\nb 2\n# EOF\n");
    assert_eq!(merge("a 1\n# EOF\n", ""), "a 1\n# EOF\n");
}

/// One request through an inbound proxy under `config`; the registry's text afterwards.
async fn record_with(config: &Arc<MetricsConfig>, tenant: Option<&str>) -> String {
    let t = Arc::new(Telemetry::new(
        Some(&node(
            "echo",
            "default",
            &[("app", "echo"), ("version", "v1")],
        )),
        None,
        IstioMetrics::default(),
    ));
    let mut req = Request::builder().uri("http://echo.default.svc.cluster.local/x?q=1");
    if let Some(tenant) = tenant {
        req = req.header("x-tenant", tenant);
    }
    let mut req = req.body(Full::new(Bytes::new())).expect("request");
    let ex = t.begin_with(
        Downstream {
            inbound: true,
            peer_identity: None,
        },
        &mut req,
        Some(config),
    );
    let resp = Response::builder()
        .status(StatusCode::CREATED)
        .body(Full::new(Bytes::from_static(b"ok")))
        .expect("response");
    let resp = t.finish(ex, None, &[], resp);
    assert!(
        resp.headers().contains_key(PEER_METADATA_HEADER),
        "the exchange answers even when metrics are dropped"
    );
    drain(resp.into_body()).await;
    encode_registry(&t.metrics)
}

fn upsert(name: &str, expr: &str) -> overrides::Upsert {
    overrides::Upsert {
        name: Arc::from(name),
        source: expr.to_string(),
        expr: trellis_xds::stats::ValueExpr::parse(expr).expect("expression"),
    }
}

#[tokio::test]
async fn overrides_drop_remove_and_upsert_labels() {
    let bit = |l: &str| {
        1 << overrides::STANDARD_LABELS
            .iter()
            .position(|s| *s == l)
            .expect("standard label")
    };
    let changes = Arc::new(overrides::LabelChanges {
        removed: bit("destination_version"),
        upserts: vec![
            upsert("destination_app", "'renamed'"),
            upsert("method", "request.method"),
            upsert("tenant", "request.headers['x-tenant'] | 'none'"),
            upsert("url", "request.url_path"),
        ],
    });
    let count_only = Arc::new(overrides::LabelChanges {
        removed: 0,
        upserts: vec![upsert("code", "response.code")],
    });
    let config = Arc::new(MetricsConfig {
        http: [Some(count_only), Some(changes.clone()), None, Some(changes)],
    });
    let text = record_with(&config, Some("blue")).await;
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    let requests = line("istio_requests_total{");
    assert!(requests.contains(",code=\"201\""), "{requests}");
    assert!(
        requests.contains("destination_version=\"v1\""),
        "{requests}"
    );
    let duration = line("istio_request_duration_milliseconds_count{");
    for want in [
        "destination_app=\"renamed\"",
        "method=\"GET\"",
        "tenant=\"blue\"",
        "url=\"/x\"",
    ] {
        assert!(duration.contains(want), "{want} in {duration}");
    }
    assert!(!duration.contains("destination_version="), "{duration}");
    assert!(!duration.contains(",code="), "{duration}");
    assert!(
        !text.contains("istio_request_bytes_count{"),
        "request_bytes dropped: {text}"
    );
    let text = record_with(&config, None).await;
    assert!(text.contains("tenant=\"none\""), "{text}");
}

#[tokio::test]
async fn all_metrics_dropped_records_nothing() {
    let config = Arc::new(MetricsConfig {
        http: [None, None, None, None],
    });
    let text = record_with(&config, None).await;
    assert!(!text.contains("reporter="), "{text}");
}

/// Istio's standard metrics and their labels, written from Istio's documentation ("Istio
/// Standard Metrics", istio.io/latest/docs/reference/config/metrics/): names as Prometheus
/// shows them, and the labels every HTTP / TCP series carries.
mod istio_docs {
    /// HTTP/gRPC metrics (`_bucket`/`_sum`/`_count` for the distributions).
    pub const HTTP_METRICS: [&str; 4] = [
        "istio_requests_total",
        "istio_request_duration_milliseconds",
        "istio_request_bytes",
        "istio_response_bytes",
    ];
    /// TCP metrics.
    pub const TCP_METRICS: [&str; 4] = [
        "istio_tcp_sent_bytes_total",
        "istio_tcp_received_bytes_total",
        "istio_tcp_connections_opened_total",
        "istio_tcp_connections_closed_total",
    ];
    /// The labels of every metric.
    pub const COMMON_LABELS: [&str; 23] = [
        "reporter",
        "source_workload",
        "source_workload_namespace",
        "source_principal",
        "source_app",
        "source_version",
        "source_cluster",
        "source_canonical_service",
        "source_canonical_revision",
        "destination_workload",
        "destination_workload_namespace",
        "destination_principal",
        "destination_app",
        "destination_version",
        "destination_service",
        "destination_service_name",
        "destination_service_namespace",
        "destination_cluster",
        "destination_canonical_service",
        "destination_canonical_revision",
        "request_protocol",
        "response_flags",
        "connection_security_policy",
    ];
    /// The labels HTTP/gRPC metrics add.
    pub const HTTP_LABELS: [&str; 2] = ["response_code", "grpc_response_status"];
}

/// The label names of the first sample of `metric` in a Prometheus text exposition.
fn label_names(text: &str, metric: &str) -> std::collections::BTreeSet<String> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{metric}{{")))
        .unwrap_or_else(|| panic!("no {metric} sample in {text}"));
    let inner = &line[metric.len() + 1..line.rfind('}').expect("closing brace")];
    inner
        .split("\",")
        .map(|kv| kv.split('=').next().expect("name").to_string())
        .collect()
}

#[test]
fn metric_and_label_names_match_istio_documentation() {
    let t = Telemetry::new(
        Some(&node("c", "default", &[])),
        None,
        IstioMetrics::default(),
    );
    let peers = Arc::new(PeerLabels {
        reporter: Reporter::Source,
        source: t.own().clone(),
        source_principal: Arc::from("unknown"),
        destination: t.own().clone(),
        destination_principal: Arc::from("unknown"),
        destination_service: Arc::from("s.default.svc.cluster.local"),
        destination_service_name: Arc::from("s"),
        destination_service_namespace: Arc::from("default"),
        connection_security_policy: "unknown",
    });
    t.metrics.record_request(&istio::RequestRecord {
        labels: istio::RequestLabels {
            peers: peers.clone(),
            request_protocol: "http",
            response_code: 200,
            grpc_response_status: Arc::from(""),
            response_flags: Arc::from("-"),
            custom: None,
        },
        duration_ms: 1.0,
        request_bytes: 10,
        response_bytes: 10,
    });
    let tcp = TcpLabels {
        peers,
        response_flags: Arc::from("-"),
    };
    t.metrics.record_tcp_open(&tcp);
    t.metrics.record_tcp_close(&tcp, 5, 7);
    let text = encode_registry(&t.metrics);
    let common: std::collections::BTreeSet<String> = istio_docs::COMMON_LABELS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut http = common.clone();
    http.extend(istio_docs::HTTP_LABELS.iter().map(|s| s.to_string()));
    for metric in istio_docs::HTTP_METRICS {
        let sample = if metric.ends_with("_total") {
            metric.to_string()
        } else {
            format!("{metric}_bucket")
        };
        let mut names = label_names(&text, &sample);
        names.remove("le");
        assert_eq!(names, http, "{metric}");
        let family = metric.strip_suffix("_total").unwrap_or(metric);
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{metric} in {text}"
        );
    }
    for metric in istio_docs::TCP_METRICS {
        assert_eq!(label_names(&text, metric), common, "{metric}");
    }
    // Nothing under Istio's prefix that the documentation does not list.
    for line in text.lines().filter(|l| l.starts_with("# TYPE istio_")) {
        let name = line.split_whitespace().nth(2).expect("name");
        let listed = istio_docs::HTTP_METRICS
            .iter()
            .chain(&istio_docs::TCP_METRICS)
            .any(|m| m.strip_suffix("_total").unwrap_or(m) == name || *m == name);
        assert!(listed, "{name} is not one of Istio's standard metrics");
    }
}
