//! End to end: an in-test ADS server configures the proxy, requests flow through it to in-test
//! upstreams. Everything binds 127.0.0.1 port 0; waits poll with deadlines.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    self as core, AggregatedConfigSource, ConfigSource, Http2ProtocolOptions, SocketAddress,
    address, config_source, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use trellis_proxy::{ProxyConfig, ProxyHandle};
use trellis_xds::{NodeIdentity, ProxyType, to_any, type_url};

const DEADLINE: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------- in-test ADS server

type ResponseTx = mpsc::UnboundedSender<Result<DiscoveryResponse, tonic::Status>>;

struct TestAds {
    requests: mpsc::UnboundedSender<DiscoveryRequest>,
    responses: Mutex<Option<mpsc::UnboundedReceiver<Result<DiscoveryResponse, tonic::Status>>>>,
}

#[tonic::codegen::async_trait]
impl AggregatedDiscoveryService for TestAds {
    type StreamAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DiscoveryResponse, tonic::Status>>;
    type DeltaAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DeltaDiscoveryResponse, tonic::Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, tonic::Status> {
        let rx = self
            .responses
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?
            .take()
            .ok_or_else(|| tonic::Status::unavailable("the test server takes one stream"))?;
        let mut inbound = request.into_inner();
        let tx = self.requests.clone();
        tokio::spawn(async move {
            while let Ok(Some(r)) = inbound.message().await {
                if tx.send(r).is_err() {
                    break;
                }
            }
        });
        Ok(tonic::Response::new(UnboundedReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("delta"))
    }
}

struct Harness {
    push_tx: ResponseTx,
    requests: mpsc::UnboundedReceiver<DiscoveryRequest>,
    proxy: Option<ProxyHandle>,
    admin: SocketAddr,
    nonce: u32,
}

impl Harness {
    async fn start() -> Harness {
        let (req_tx, requests) = mpsc::unbounded_channel();
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let ads = TestAds {
            requests: req_tx,
            responses: Mutex::new(Some(push_rx)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind ads");
        let xds_address = listener.local_addr().expect("ads addr");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AggregatedDiscoveryServiceServer::new(ads))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let node = NodeIdentity {
            proxy_type: ProxyType::Sidecar,
            ip: "127.0.0.1".parse().expect("ip"),
            workload: "echo-v1".into(),
            namespace: "default".into(),
            service_account: "echo".into(),
            labels: Default::default(),
            app_ip: None,
        };
        let proxy = trellis_proxy::start(ProxyConfig {
            node,
            xds_address,
            admin_address: "127.0.0.1:0".parse().expect("addr"),
        })
        .await
        .expect("proxy starts");
        let admin = proxy.admin_address();
        Harness {
            push_tx,
            requests,
            proxy: Some(proxy),
            admin,
            nonce: 0,
        }
    }

    /// Pushes a response; returns its nonce.
    fn push(&mut self, type_url: &str, version: &str, resources: Vec<Any>) -> String {
        self.nonce += 1;
        let nonce = format!("n{}", self.nonce);
        self.push_tx
            .send(Ok(DiscoveryResponse {
                version_info: version.into(),
                resources,
                type_url: type_url.into(),
                nonce: nonce.clone(),
                ..Default::default()
            }))
            .expect("stream open");
        nonce
    }

    /// The next request of `type_url` that satisfies `pred` (others are skipped).
    async fn request_where(
        &mut self,
        type_url: &str,
        pred: impl Fn(&DiscoveryRequest) -> bool,
    ) -> DiscoveryRequest {
        let wait = async {
            loop {
                let r = self.requests.recv().await.expect("ads stream alive");
                if r.type_url == type_url && pred(&r) {
                    return r;
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("no matching {type_url} request within {DEADLINE:?}"))
    }

    async fn reply_to(&mut self, type_url: &str, nonce: &str) -> DiscoveryRequest {
        let nonce = nonce.to_string();
        self.request_where(type_url, move |r| r.response_nonce == nonce)
            .await
    }

    async fn wait_ready(&self) {
        let admin = self.admin;
        poll(|| async move { get(admin, "/ready").await.is_some_and(|(s, _, _)| s == 200) }).await;
    }

    async fn listener_port(&self, name: &str) -> SocketAddr {
        let (_, _, body) = get(self.admin, "/listeners")
            .await
            .expect("admin /listeners");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let found = v
            .as_array()
            .and_then(|a| a.iter().find(|l| l["name"] == name))
            .and_then(|l| l["local_address"].as_str())
            .unwrap_or_else(|| panic!("listener {name} not bound: {body}"));
        found.parse().expect("addr")
    }

    async fn stop(mut self) {
        if let Some(p) = self.proxy.take() {
            p.shutdown().await;
        }
    }
}

async fn poll<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within {DEADLINE:?}");
}

// ---------------------------------------------------------------- HTTP helpers

/// Sends raw HTTP/1.1 text (with `Connection: close`) and returns (status, headers, body).
async fn raw_http(
    addr: SocketAddr,
    request: &str,
) -> Option<(u16, HashMap<String, String>, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((status, headers, body.to_string()))
}

async fn get(addr: SocketAddr, path: &str) -> Option<(u16, HashMap<String, String>, String)> {
    raw_http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// An upstream that answers with what it saw (HTTP/1.1 and h2c on one port).
async fn echo_upstream(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        let authority = req
                            .uri()
                            .authority()
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| h("host"));
                        let text = format!(
                            "upstream={name} version={:?} method={} path={} authority={} xfp={} rid={}",
                            req.version(),
                            req.method(),
                            req.uri().path_and_query().map_or("/", |p| p.as_str()),
                            authority,
                            h("x-forwarded-proto"),
                            if h("x-request-id") == "-" {
                                "no"
                            } else {
                                "yes"
                            },
                        );
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from(text),
                        )))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------- resource builders

fn sock(addr: SocketAddr) -> core::Address {
    core::Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                addr.port(),
            ))),
            ..Default::default()
        })),
    }
}

fn ads_source() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: core::ApiVersion::V3 as i32,
        ..Default::default()
    }
}

fn assignment(name: &str, endpoints: &[SocketAddr]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: endpoints
                .iter()
                .map(|a| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(sock(*a)),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn static_cluster(name: &str, endpoint: SocketAddr, http2: bool) -> Any {
    let mut options = HashMap::new();
    if http2 {
        let o = HttpProtocolOptions {
            upstream_protocol_options: Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(
                        http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                            Http2ProtocolOptions::default(),
                        ),
                    ),
                },
            )),
            ..Default::default()
        };
        options.insert(
            type_url::names::HTTP_PROTOCOL_OPTIONS.to_string(),
            to_any(type_url::HTTP_PROTOCOL_OPTIONS, &o),
        );
    }
    to_any(
        type_url::CLUSTER,
        &Cluster {
            name: name.into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Static as i32,
            )),
            load_assignment: Some(assignment(name, &[endpoint])),
            typed_extension_protocol_options: options,
            ..Default::default()
        },
    )
}

fn eds_cluster(name: &str, kind: cluster::DiscoveryType) -> Any {
    to_any(
        type_url::CLUSTER,
        &Cluster {
            name: name.into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(kind as i32)),
            eds_cluster_config: Some(cluster::EdsClusterConfig {
                eds_config: Some(ads_source()),
                service_name: name.into(),
            }),
            ..Default::default()
        },
    )
}

fn route_to(prefix: &str, cluster: &str) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix(prefix.into())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.into())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn route_table(name: &str, routes: Vec<Route>) -> RouteConfiguration {
    RouteConfiguration {
        name: name.into(),
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn listener(name: &str, routes: http_connection_manager::RouteSpecifier) -> Any {
    let hcm = HttpConnectionManager {
        stat_prefix: name.into(),
        http_filters: vec![HttpFilter {
            name: type_url::names::ROUTER.into(),
            ..Default::default()
        }],
        route_specifier: Some(routes),
        ..Default::default()
    };
    to_any(
        type_url::LISTENER,
        &Listener {
            name: name.into(),
            address: Some(sock("127.0.0.1:0".parse().expect("addr"))),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: type_url::names::HTTP_CONNECTION_MANAGER.into(),
                    config_type: Some(filter::ConfigType::TypedConfig(to_any(
                        type_url::HTTP_CONNECTION_MANAGER,
                        &hcm,
                    ))),
                }],
                ..Default::default()
            }],
            ..Default::default()
        },
    )
}

fn inline(table: RouteConfiguration) -> http_connection_manager::RouteSpecifier {
    http_connection_manager::RouteSpecifier::RouteConfig(table)
}

/// CDS with one static cluster and LDS with an inline-routed listener; waits for both ACKs and
/// readiness; returns the listener's bound address.
async fn configure_static(h: &mut Harness, upstream: SocketAddr, http2: bool) -> SocketAddr {
    let first = h.request_where(type_url::CLUSTER, |_| true).await;
    assert!(first.node.is_some(), "the first request carries the node");
    assert!(
        first.resource_names.is_empty(),
        "CDS is a wildcard subscription"
    );
    let nonce = h.push(
        type_url::CLUSTER,
        "1",
        vec![static_cluster("inbound|8080||", upstream, http2)],
    );
    let ack = h.reply_to(type_url::CLUSTER, &nonce).await;
    assert_eq!(ack.version_info, "1");
    assert!(ack.error_detail.is_none());
    let table = route_table(
        "inbound|8080",
        vec![
            route_to("/missing", "no-such-cluster"),
            route_to("/", "inbound|8080||"),
        ],
    );
    let nonce = h.push(
        type_url::LISTENER,
        "1",
        vec![listener("inbound|8080", inline(table))],
    );
    let ack = h.reply_to(type_url::LISTENER, &nonce).await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    h.wait_ready().await;
    h.listener_port("inbound|8080").await
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_flows_through_proxy_to_static_cluster() {
    let upstream = echo_upstream("app").await;
    let mut h = Harness::start().await;
    let proxy = configure_static(&mut h, upstream, false).await;

    let (status, _, body) = raw_http(
        proxy,
        "GET /hello?x=1 HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("response");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("upstream=app version=HTTP/1.1 method=GET path=/hello?x=1 authority=echo xfp=http rid=yes"), "{body}");

    // Absolute-form, as an app using HTTP_PROXY sends it: routed and forwarded in origin-form.
    let (status, _, body) = raw_http(
        proxy,
        "GET http://reviews:9080/abs HTTP/1.1\r\nHost: reviews:9080\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("response");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("path=/abs authority=reviews:9080"), "{body}");

    // A mesh-generated 503 says so.
    let (status, headers, body) = get(proxy, "/missing").await.expect("response");
    assert_eq!(status, 503);
    assert_eq!(
        headers.get("x-trellis-reason").map(String::as_str),
        Some("NC cluster no-such-cluster is not configured")
    );
    assert_eq!(body.trim(), "NC cluster no-such-cluster is not configured");

    let (_, _, metrics) = get(h.admin, "/stats/prometheus").await.expect("metrics");
    assert!(
        metrics.contains(
            r#"trellis_requests_total{listener="inbound|8080",cluster="inbound|8080||",response_code="200",response_flags="-"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"trellis_xds_updates_total{type="CDS",result="ack"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("trellis_xds_connected 1"), "{metrics}");
    assert!(
        metrics.contains(r#"istio_requests_total{reporter="destination""#),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upstream_and_downstream() {
    let upstream = echo_upstream("h2app").await;
    let mut h = Harness::start().await;
    let proxy = configure_static(&mut h, upstream, true).await;

    // HTTP/1.1 downstream → HTTP/2 upstream.
    let (status, _, body) = raw_http(
        proxy,
        "GET /h1 HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("response");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("version=HTTP/2.0 method=GET path=/h1 authority=echo"),
        "{body}"
    );

    // h2c (prior knowledge) downstream on the same port.
    let stream = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("http://echo.h2/h2?y=2")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("h2 response");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("version=HTTP/2.0 method=GET path=/h2?y=2 authority=echo.h2"),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_keeps_previous_config() {
    let upstream = echo_upstream("app").await;
    let mut h = Harness::start().await;
    let proxy = configure_static(&mut h, upstream, false).await;

    let bad = "outbound|80||echo.default.svc.cluster.local";
    let nonce = h.push(
        type_url::CLUSTER,
        "2",
        vec![
            static_cluster("inbound|8080||", upstream, false),
            eds_cluster(bad, cluster::DiscoveryType::LogicalDns),
        ],
    );
    let nack = h.reply_to(type_url::CLUSTER, &nonce).await;
    assert_eq!(
        nack.version_info, "1",
        "a NACK carries the previous version"
    );
    assert_eq!(
        nack.error_detail.map(|s| s.message).as_deref(),
        Some(
            "Cluster outbound|80||echo.default.svc.cluster.local: type: LOGICAL_DNS is not supported"
        )
    );

    let (status, _, body) = get(proxy, "/still-works").await.expect("response");
    assert_eq!(status, 200, "{body}");

    let (_, _, dump) = get(h.admin, "/config_dump").await.expect("dump");
    let dump: serde_json::Value = serde_json::from_str(&dump).expect("json");
    assert_eq!(dump["xds"]["CDS"]["version"], "1");
    assert_eq!(dump["xds"]["CDS"]["last_nack"]["version"], "2");
    assert_eq!(dump["clusters"].as_array().map(Vec::len), Some(1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eds_and_rds_follow_cds_and_lds() {
    let upstream = echo_upstream("eds-app").await;
    let mut h = Harness::start().await;
    let name = "outbound|80||echo.default.svc.cluster.local";

    let nonce = h.push(
        type_url::CLUSTER,
        "c1",
        vec![eds_cluster(name, cluster::DiscoveryType::Eds)],
    );
    h.reply_to(type_url::CLUSTER, &nonce).await;
    let eds = h.request_where(type_url::ENDPOINT, |_| true).await;
    assert_eq!(eds.resource_names, [name]);

    let rds = http_connection_manager::RouteSpecifier::Rds(Rds {
        config_source: Some(ads_source()),
        route_config_name: "outbound".into(),
    });
    let nonce = h.push(
        type_url::LISTENER,
        "l1",
        vec![listener("virtualOutbound", rds)],
    );
    h.reply_to(type_url::LISTENER, &nonce).await;
    let rds_req = h.request_where(type_url::ROUTE, |_| true).await;
    assert_eq!(rds_req.resource_names, ["outbound"]);
    h.wait_ready().await;
    let proxy = h.listener_port("virtualOutbound").await;

    // Before RDS arrives the listener answers with a reason.
    let (status, headers, _) = get(proxy, "/").await.expect("response");
    assert_eq!(status, 503);
    assert!(
        headers
            .get("x-trellis-reason")
            .is_some_and(|r| r.starts_with("NR route table outbound"))
    );

    let nonce = h.push(
        type_url::ROUTE,
        "r1",
        vec![to_any(
            type_url::ROUTE,
            &route_table("outbound", vec![route_to("/", name)]),
        )],
    );
    let ack = h.reply_to(type_url::ROUTE, &nonce).await;
    assert_eq!(ack.version_info, "r1");
    assert_eq!(ack.resource_names, ["outbound"]);

    // No endpoints yet: UH naming the cluster.
    let (status, headers, _) = get(proxy, "/").await.expect("response");
    assert_eq!(status, 503);
    assert_eq!(
        headers.get("x-trellis-reason").map(String::as_str),
        Some("UH no healthy endpoints in cluster outbound|80||echo.default.svc.cluster.local")
    );

    let nonce = h.push(
        type_url::ENDPOINT,
        "e1",
        vec![to_any(type_url::ENDPOINT, &assignment(name, &[upstream]))],
    );
    h.reply_to(type_url::ENDPOINT, &nonce).await;
    let (status, _, body) = get(proxy, "/via-eds").await.expect("response");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("upstream=eds-app"), "{body}");

    // A dead endpoint: connect failure is UF.
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        l.local_addr().expect("addr")
    };
    let nonce = h.push(
        type_url::ENDPOINT,
        "e2",
        vec![to_any(type_url::ENDPOINT, &assignment(name, &[dead]))],
    );
    h.reply_to(type_url::ENDPOINT, &nonce).await;
    let (status, headers, _) = get(proxy, "/").await.expect("response");
    assert_eq!(status, 503);
    assert!(
        headers
            .get("x-trellis-reason")
            .is_some_and(|r| r.starts_with("UF cannot connect to")),
        "{headers:?}"
    );
    h.stop().await;
}
