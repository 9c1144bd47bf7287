//! The in-test control plane shared by the end-to-end tests: an ADS server the test pushes
//! responses through, a proxy started against it, HTTP helpers and resource builders. In
//! secure mode ([`TestMesh`]) the ADS server also serves the CA's `CreateCertificate` over TLS
//! with a serving certificate from a real trellis-ca CA in a tempdir (as the control plane's
//! secure port does). Everything binds 127.0.0.1 port 0; waits poll with deadlines.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    HttpConnectionManager, HttpFilter, http_connection_manager,
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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use trellis_ca::{
    CertificateAuthority, CertificateService, ServingCertificate, SpiffeId, TokenIssuer,
};
use trellis_proxy::{ProxyConfig, ProxyHandle, ProxySecurity};
use trellis_xds::{NodeIdentity, ProxyType, to_any, type_url};

pub const DEADLINE: Duration = Duration::from_secs(15);

/// A mesh CA in a tempdir: the control plane's side of security.
pub struct TestMesh {
    pub dir: tempfile::TempDir,
    pub trust_domain: String,
    pub ca: Arc<CertificateAuthority>,
    pub tokens: Arc<TokenIssuer>,
    pub service: CertificateService,
    pub serving: ServingCertificate,
}

impl TestMesh {
    pub fn new(trust_domain: &str) -> TestMesh {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca =
            Arc::new(CertificateAuthority::load_or_create(dir.path(), trust_domain).expect("ca"));
        let tokens = Arc::new(TokenIssuer::load_or_create(dir.path()).expect("tokens"));
        let service =
            CertificateService::new(ca.clone(), tokens.clone(), Duration::from_secs(3600));
        let serving = ca
            .serving_certificate(
                &SpiffeId::new(trust_domain, "istio-system", "istiod"),
                &[trellis_proxy::CONTROL_PLANE_SNI],
                &["127.0.0.1".parse().expect("ip")],
                Duration::from_secs(3600),
            )
            .expect("serving certificate");
        TestMesh {
            dir,
            trust_domain: trust_domain.to_string(),
            ca,
            tokens,
            service,
            serving,
        }
    }

    pub fn root_pem(&self) -> String {
        self.ca.root_cert().to_string()
    }

    /// A certificate and key for `ns/sa`, written as PEM files in the tempdir:
    /// (chain file, key file).
    pub fn issue_files(&self, ns: &str, sa: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let id = SpiffeId::new(&self.trust_domain, ns, sa);
        let key = trellis_ca::generate_csr(&id).expect("csr");
        let issued = self
            .ca
            .sign(&key.csr_pem, &id, Duration::from_secs(3600))
            .expect("sign");
        let cert = self.dir.path().join(format!("{sa}-cert.pem"));
        let key_file = self.dir.path().join(format!("{sa}-key.pem"));
        std::fs::write(&cert, issued.cert_chain.concat()).expect("write cert");
        std::fs::write(&key_file, key.key_pem).expect("write key");
        (cert, key_file)
    }

    /// The root, as a file.
    pub fn root_file(&self) -> std::path::PathBuf {
        let path = self.dir.path().join("test-root.pem");
        std::fs::write(&path, self.root_pem()).expect("write root");
        path
    }
}

pub fn node(workload: &str, service_account: &str) -> NodeIdentity {
    NodeIdentity {
        proxy_type: ProxyType::Sidecar,
        ip: "127.0.0.1".parse().expect("ip"),
        workload: workload.into(),
        namespace: "default".into(),
        service_account: service_account.into(),
        labels: Default::default(),
        app_ip: None,
        sds: false,
        interception: trellis_xds::InterceptionMode::None,
    }
}

// ---------------------------------------------------------------- in-test ADS server

pub type ResponseTx = mpsc::UnboundedSender<Result<DiscoveryResponse, tonic::Status>>;

pub struct TestAds {
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

pub struct Harness {
    pub push_tx: ResponseTx,
    pub requests: mpsc::UnboundedReceiver<DiscoveryRequest>,
    pub proxy: Option<ProxyHandle>,
    pub admin: SocketAddr,
    /// The health port (`/healthz/ready`), when the lifecycle config asked for one.
    pub health: Option<SocketAddr>,
    pub nonce: u32,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(node("echo-v1", "echo"), None).await
    }

    /// A proxy for `node`; with `secure`, the proxy gets its certificate (of that lifetime)
    /// from the mesh's CA and ADS runs over TLS on the same port.
    pub async fn start_with(node: NodeIdentity, secure: Option<(&TestMesh, Duration)>) -> Harness {
        Self::start_lifecycle(node, secure, Default::default()).await
    }

    /// As [`Harness::start_with`], with a health port and drain period.
    pub async fn start_lifecycle(
        node: NodeIdentity,
        secure: Option<(&TestMesh, Duration)>,
        lifecycle: trellis_proxy::lifecycle::LifecycleConfig,
    ) -> Harness {
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
        let mut security = None;
        match secure {
            None => {
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(AggregatedDiscoveryServiceServer::new(ads))
                        .serve_with_incoming(TcpListenerStream::new(listener)),
                );
            }
            Some((mesh, cert_ttl)) => {
                let tls = tonic::transport::ServerTlsConfig::new().identity(
                    tonic::transport::Identity::from_pem(
                        &mesh.serving.cert_chain_pem,
                        &mesh.serving.key_pem,
                    ),
                );
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .tls_config(tls)
                        .expect("tls config")
                        .add_service(AggregatedDiscoveryServiceServer::new(ads))
                        .add_service(mesh.service.clone())
                        .serve_with_incoming(TcpListenerStream::new(listener)),
                );
                let id = SpiffeId::new(&mesh.trust_domain, &node.namespace, &node.service_account);
                security = Some(ProxySecurity {
                    ca_address: xds_address,
                    root_cert_pem: mesh.root_pem(),
                    token: mesh
                        .tokens
                        .mint(&id, Duration::from_secs(600))
                        .expect("token"),
                    trust_domain: mesh.trust_domain.clone(),
                    cert_ttl,
                });
            }
        }
        let proxy = trellis_proxy::start(ProxyConfig {
            node,
            xds_address,
            admin_address: "127.0.0.1:0".parse().expect("addr"),
            security,
            metrics: Default::default(),
            lifecycle,
        })
        .await
        .expect("proxy starts");
        let admin = proxy.admin_address();
        Harness {
            push_tx,
            requests,
            health: proxy.health_address(),
            proxy: Some(proxy),
            admin,
            nonce: 0,
        }
    }

    /// Pushes a response; returns its nonce.
    pub fn push(&mut self, type_url: &str, version: &str, resources: Vec<Any>) -> String {
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
    pub async fn request_where(
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

    pub async fn reply_to(&mut self, type_url: &str, nonce: &str) -> DiscoveryRequest {
        let nonce = nonce.to_string();
        self.request_where(type_url, move |r| r.response_nonce == nonce)
            .await
    }

    pub async fn wait_ready(&self) {
        let admin = self.admin;
        poll(|| async move { get(admin, "/ready").await.is_some_and(|(s, _, _)| s == 200) }).await;
    }

    pub async fn listener_port(&self, name: &str) -> SocketAddr {
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

    pub async fn stop(mut self) {
        if let Some(p) = self.proxy.take() {
            p.shutdown().await;
        }
    }
}

pub async fn poll<F, Fut>(mut check: F)
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

/// An h2c (prior knowledge) connection to `addr`; the connection task runs in the background.
pub async fn h2c<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

/// Binds a loopback port and answers every connection (HTTP/1.1 and h2c) with `handler`;
/// returns the bound address. `what` names the server in the bind panic.
pub async fn serve_http<F, Fut>(what: &str, handler: F) -> SocketAddr
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<http_body_util::Full<bytes::Bytes>>>
        + Send
        + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind {what}: {e:?}"));
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let response = handler(req);
                    async move { Ok::<_, std::convert::Infallible>(response.await) }
                });
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

/// A response with `status` and a text body.
pub fn text_response(
    status: u16,
    text: String,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(text)));
    *resp.status_mut() = http::StatusCode::from_u16(status).expect("status");
    resp
}

/// Sends raw HTTP/1.1 text (with `Connection: close`) and returns (status, headers, body).
pub async fn raw_http(
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

pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, HashMap<String, String>, String)> {
    raw_http(addr, &get_request(path)).await
}

/// The raw `GET path` request `get` sends.
pub fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
}

/// The `x-trellis-reason` header of a mesh-generated response.
pub fn trellis_reason(headers: &HashMap<String, String>) -> Option<&str> {
    headers.get("x-trellis-reason").map(String::as_str)
}

/// Sends raw `request` and asserts a 200 whose body contains `expected`.
pub async fn assert_ok_containing(addr: SocketAddr, request: &str, expected: &str) {
    let (status, _, body) = raw_http(addr, request).await.expect("response");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(expected), "{body}");
}

pub fn sock(addr: SocketAddr) -> core::Address {
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

pub fn ads_source() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: core::ApiVersion::V3 as i32,
        ..Default::default()
    }
}

pub fn assignment(name: &str, endpoints: &[SocketAddr]) -> ClusterLoadAssignment {
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

pub fn route_to(prefix: &str, cluster: &str) -> Route {
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

pub fn route_table(name: &str, routes: Vec<Route>) -> RouteConfiguration {
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

pub fn listener(name: &str, routes: http_connection_manager::RouteSpecifier) -> Any {
    let hcm = HttpConnectionManager {
        stat_prefix: name.into(),
        http_filters: vec![HttpFilter {
            name: type_url::names::ROUTER.into(),
            ..Default::default()
        }],
        route_specifier: Some(routes),
        ..Default::default()
    };
    hcm_listener(name, &hcm)
}

/// A listener on 127.0.0.1 port 0 with one filter chain holding `hcm`.
pub fn hcm_listener(name: &str, hcm: &HttpConnectionManager) -> Any {
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
                        hcm,
                    ))),
                }],
                ..Default::default()
            }],
            ..Default::default()
        },
    )
}

pub fn inline(table: RouteConfiguration) -> http_connection_manager::RouteSpecifier {
    http_connection_manager::RouteSpecifier::RouteConfig(table)
}

/// A STATIC cluster with the one `endpoint`.
pub fn static_cluster(name: &str, endpoint: SocketAddr) -> Any {
    static_cluster_with_options(name, endpoint, HashMap::new())
}

/// A STATIC cluster with the one `endpoint` and `typed_extension_protocol_options`.
pub fn static_cluster_with_options(
    name: &str,
    endpoint: SocketAddr,
    options: HashMap<String, Any>,
) -> Any {
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

/// Protocol options that make a cluster speak HTTP/2 (h2c) upstream.
pub fn h2_options() -> HashMap<String, Any> {
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
    [(
        type_url::names::HTTP_PROTOCOL_OPTIONS.to_string(),
        to_any(type_url::HTTP_PROTOCOL_OPTIONS, &o),
    )]
    .into()
}
