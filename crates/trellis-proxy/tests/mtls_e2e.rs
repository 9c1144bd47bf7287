//! Mutual TLS end to end, in process on loopback: a real trellis-ca CA in a tempdir serves
//! `CreateCertificate` (and the test's ADS) over TLS; proxies get their certificates from it
//! and talk to each other over mTLS with Istio's resource shapes (docs/xds-features.md,
//! "Mutual TLS"). `openssl s_client` probes the inbound side from outside.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    self as core, ApiConfigSource, ConfigSource, GrpcService, Metadata, TransportSocket,
    api_config_source, config_source, grpc_service, transport_socket,
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager,
};
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig,
    SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext, common_tls_context,
    subject_alt_name_matcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{Any, BoolValue, Struct, Value, value};
use trellis_xds::{to_any, type_url};

use common::*;

const TD: &str = "cluster.local";
const INBOUND: &str = "inbound|8080";
const INBOUND_CLUSTER: &str = "inbound|8080||";
const OUTBOUND_CLUSTER: &str = "outbound|8080||server.default.svc.cluster.local";
const SNI: &str = "outbound_.8080_._.server.default.svc.cluster.local";
const LONG_TTL: Duration = Duration::from_secs(3600);

fn spiffe(sa: &str) -> String {
    format!("spiffe://{TD}/ns/default/sa/{sa}")
}

// ---------------------------------------------------------------- the application

/// An app that answers with the identity headers it received.
async fn app() -> SocketAddr {
    serve_http(
        "app",
        |req: http::Request<hyper::body::Incoming>| async move {
            let h = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string()
            };
            let text = format!(
                "xfcc={}\nxfp={}\n",
                h("x-forwarded-client-cert"),
                h("x-forwarded-proto")
            );
            text_response(200, text)
        },
    )
    .await
}

// ---------------------------------------------------------------- Istio-shaped resources

fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.into(),
        sds_config: Some(ConfigSource {
            resource_api_version: core::ApiVersion::V3 as i32,
            initial_fetch_timeout: Some(Default::default()),
            config_source_specifier: Some(config_source::ConfigSourceSpecifier::ApiConfigSource(
                ApiConfigSource {
                    api_type: api_config_source::ApiType::Grpc as i32,
                    transport_api_version: core::ApiVersion::V3 as i32,
                    set_node_on_first_message_only: true,
                    grpc_services: vec![GrpcService {
                        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                            grpc_service::EnvoyGrpc {
                                cluster_name: "sds-grpc".into(),
                                ..Default::default()
                            },
                        )),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
    }
}

fn san_matchers(sans: &[&str]) -> Vec<SubjectAltNameMatcher> {
    sans.iter()
        .map(|s| SubjectAltNameMatcher {
            san_type: subject_alt_name_matcher::SanType::Uri as i32,
            matcher: Some(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact((*s).into())),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// Istio's common TLS context: `default` + `ROOTCA` over SDS, SANs to match.
fn istio_common(alpn: &[&str], sans: &[&str]) -> CommonTlsContext {
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds("default")],
        alpn_protocols: alpn.iter().map(|a| (*a).into()).collect(),
        validation_context_type: Some(
            common_tls_context::ValidationContextType::CombinedValidationContext(
                common_tls_context::CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_typed_subject_alt_names: san_matchers(sans),
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(sds("ROOTCA")),
                    ..Default::default()
                },
            ),
        ),
        ..Default::default()
    }
}

fn tls_socket(type_url: &str, msg: &impl prost::Message) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(to_any(
            type_url, msg,
        ))),
    }
}

fn hcm_filter(routes: http_connection_manager::RouteSpecifier, set_xfcc: bool) -> Filter {
    let mut hcm = HttpConnectionManager {
        stat_prefix: "inbound_0.0.0.0_8080".into(),
        http_filters: vec![HttpFilter {
            name: type_url::names::ROUTER.into(),
            ..Default::default()
        }],
        route_specifier: Some(routes),
        ..Default::default()
    };
    if set_xfcc {
        hcm.forward_client_cert_details =
            http_connection_manager::ForwardClientCertDetails::SanitizeSet as i32;
        hcm.set_current_client_cert_details =
            Some(http_connection_manager::SetCurrentClientCertDetails {
                uri: true,
                ..Default::default()
            });
    }
    Filter {
        name: type_url::names::HTTP_CONNECTION_MANAGER.into(),
        config_type: Some(filter::ConfigType::TypedConfig(to_any(
            type_url::HTTP_CONNECTION_MANAGER,
            &hcm,
        ))),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Strict,
    Permissive,
}

/// The inbound listener of a sidecar with PeerAuthentication `mode`.
fn inbound_listener(mode: Mode) -> Any {
    let routes = || inline(route_table(INBOUND, vec![route_to("/", INBOUND_CLUSTER)]));
    let downstream = DownstreamTlsContext {
        common_tls_context: Some(istio_common(&["h2", "http/1.1"], &[])),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    let mut chains = vec![FilterChain {
        name: "tls".into(),
        filter_chain_match: Some(FilterChainMatch {
            transport_protocol: "tls".into(),
            ..Default::default()
        }),
        transport_socket: Some(tls_socket(
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            &downstream,
        )),
        filters: vec![hcm_filter(routes(), true)],
        ..Default::default()
    }];
    if mode == Mode::Permissive {
        chains.push(FilterChain {
            name: "plaintext".into(),
            filter_chain_match: Some(FilterChainMatch {
                transport_protocol: "raw_buffer".into(),
                ..Default::default()
            }),
            filters: vec![hcm_filter(routes(), true)],
            ..Default::default()
        });
    }
    to_any(
        type_url::LISTENER,
        &Listener {
            name: INBOUND.into(),
            address: Some(sock("127.0.0.1:0".parse().expect("addr"))),
            listener_filters: vec![ListenerFilter {
                name: "envoy.filters.listener.tls_inspector".into(),
                config_type: Some(listener_filter::ConfigType::TypedConfig(to_any(
                    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
                    &TlsInspector::default(),
                ))),
                ..Default::default()
            }],
            filter_chains: chains,
            ..Default::default()
        },
    )
}

/// The auto-mTLS outbound cluster (ISTIO_MUTUAL to endpoints labelled `tlsMode: istio`).
fn istio_mutual_cluster(sans: &[&str]) -> Cluster {
    let upstream = UpstreamTlsContext {
        sni: SNI.into(),
        common_tls_context: Some(istio_common(&["istio-peer-exchange", "istio"], sans)),
        ..Default::default()
    };
    let tls_mode = |v: Option<&str>| Struct {
        fields: v
            .map(|v| {
                (
                    "tlsMode".to_string(),
                    Value {
                        kind: Some(value::Kind::StringValue(v.into())),
                    },
                )
            })
            .into_iter()
            .collect(),
    };
    Cluster {
        name: OUTBOUND_CLUSTER.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads_source()),
            service_name: OUTBOUND_CLUSTER.into(),
        }),
        transport_socket_matches: vec![
            cluster::TransportSocketMatch {
                name: "tlsMode-istio".into(),
                r#match: Some(tls_mode(Some("istio"))),
                transport_socket: Some(tls_socket(
                    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    &upstream,
                )),
            },
            cluster::TransportSocketMatch {
                name: "tlsMode-disabled".into(),
                r#match: Some(tls_mode(None)),
                transport_socket: Some(TransportSocket {
                    name: "envoy.transport_sockets.raw_buffer".into(),
                    config_type: Some(transport_socket::ConfigType::TypedConfig(to_any(
                        "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
                        &RawBuffer {},
                    ))),
                }),
            },
        ],
        ..Default::default()
    }
}

/// EDS for the outbound cluster: the server sidecar, labelled `tlsMode: istio`.
fn sidecar_endpoint(addr: SocketAddr) -> Any {
    let mut la: ClusterLoadAssignment = assignment(OUTBOUND_CLUSTER, &[addr]);
    let mut md = Metadata::default();
    md.filter_metadata.insert(
        "envoy.transport_socket_match".into(),
        Struct {
            fields: [(
                "tlsMode".to_string(),
                Value {
                    kind: Some(value::Kind::StringValue("istio".into())),
                },
            )]
            .into_iter()
            .collect(),
        },
    );
    la.endpoints[0].lb_endpoints[0].metadata = Some(md);
    to_any(type_url::ENDPOINT, &la)
}

fn max_requests_per_connection(n: u32) -> HashMap<String, Any> {
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
        HttpProtocolOptions, http_protocol_options,
    };
    let o = HttpProtocolOptions {
        common_http_protocol_options: Some(core::HttpProtocolOptions {
            max_requests_per_connection: Some(envoy_types::pb::google::protobuf::UInt32Value {
                value: n,
            }),
            ..Default::default()
        }),
        upstream_protocol_options: Some(
            http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(
                        http_protocol_options::explicit_http_config::ProtocolConfig::HttpProtocolOptions(
                            Default::default(),
                        ),
                    ),
                },
            ),
        ),
        ..Default::default()
    };
    [(
        type_url::names::HTTP_PROTOCOL_OPTIONS.to_string(),
        to_any(type_url::HTTP_PROTOCOL_OPTIONS, &o),
    )]
    .into_iter()
    .collect()
}

// ---------------------------------------------------------------- proxies

/// The server sidecar: inbound `mode` listener in front of the app.
async fn server_proxy(mesh: &TestMesh, ttl: Duration, mode: Mode) -> (Harness, SocketAddr) {
    let app = app().await;
    let mut h = Harness::start_with(node("server-v1", "server"), Some((mesh, ttl))).await;
    h.request_where(type_url::CLUSTER, |_| true).await;
    let nonce = h.push(
        type_url::CLUSTER,
        "1",
        vec![static_cluster(INBOUND_CLUSTER, app)],
    );
    let ack = h.reply_to(type_url::CLUSTER, &nonce).await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    set_mode(&mut h, mode, "1").await;
    h.wait_ready().await;
    let port = h.listener_port(INBOUND).await;
    (h, port)
}

async fn set_mode(h: &mut Harness, mode: Mode, version: &str) {
    let nonce = h.push(type_url::LISTENER, version, vec![inbound_listener(mode)]);
    let ack = h.reply_to(type_url::LISTENER, &nonce).await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
}

/// The client sidecar: an outbound listener routing to `cluster`, whose endpoint is `server`.
async fn client_proxy(
    secure: Option<(&TestMesh, Duration)>,
    cluster: Cluster,
    server: SocketAddr,
) -> (Harness, SocketAddr) {
    let mut h = Harness::start_with(node("client-v1", "client"), secure).await;
    h.request_where(type_url::CLUSTER, |_| true).await;
    let eds = matches!(
        cluster.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(t)) if t == cluster::DiscoveryType::Eds as i32
    );
    let nonce = h.push(
        type_url::CLUSTER,
        "1",
        vec![to_any(type_url::CLUSTER, &cluster)],
    );
    let ack = h.reply_to(type_url::CLUSTER, &nonce).await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    if eds {
        h.request_where(type_url::ENDPOINT, |r| !r.resource_names.is_empty())
            .await;
        let nonce = h.push(type_url::ENDPOINT, "1", vec![sidecar_endpoint(server)]);
        let ack = h.reply_to(type_url::ENDPOINT, &nonce).await;
        assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    }
    let table = route_table("outbound", vec![route_to("/", &cluster.name)]);
    let nonce = h.push(
        type_url::LISTENER,
        "1",
        vec![listener("outbound", inline(table))],
    );
    let ack = h.reply_to(type_url::LISTENER, &nonce).await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    h.wait_ready().await;
    let port = h.listener_port("outbound").await;
    (h, port)
}

fn header_line<'a>(body: &'a str, key: &str) -> &'a str {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or("")
}

async fn metric(admin: SocketAddr, name: &str) -> f64 {
    let (_, _, body) = get(admin, "/stats/prometheus").await.expect("stats");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_between_sidecars_sets_xfcc_and_strict_refuses_plaintext() {
    let mesh = TestMesh::new(TD);
    let (mut server, inbound) = server_proxy(&mesh, LONG_TTL, Mode::Strict).await;
    let (client, outbound) = client_proxy(
        Some((&mesh, LONG_TTL)),
        istio_mutual_cluster(&[&spiffe("server")]),
        inbound,
    )
    .await;

    // (a) client → server over mTLS: the app sees the client's identity.
    let (status, headers, body) = get(outbound, "/").await.expect("response");
    assert_eq!(status, 200, "{headers:?} {body}");
    let xfcc = header_line(&body, "xfcc");
    assert!(
        xfcc.starts_with(&format!("By={};Hash=", spiffe("server"))),
        "{xfcc}"
    );
    assert!(
        xfcc.ends_with(&format!(";URI={}", spiffe("client"))),
        "{xfcc}"
    );
    // The client sidecar received plain HTTP and said so; the server sidecar keeps what a
    // (sidecar) client stated, as Envoy does without `use_remote_address`.
    assert_eq!(header_line(&body, "xfp"), "http");

    // (b) STRICT: a plaintext client gets no answer (no filter chain matches).
    assert!(
        get(inbound, "/").await.is_none(),
        "STRICT must refuse plaintext"
    );

    // PERMISSIVE: plaintext and mTLS on the same port; a forged header never passes.
    set_mode(&mut server, Mode::Permissive, "2").await;
    let (status, _, body) = raw_http(
        inbound,
        "GET / HTTP/1.1\r\nHost: test\r\nx-forwarded-client-cert: URI=spiffe://evil/ns/x/sa/y\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("plaintext answered under PERMISSIVE");
    assert_eq!(status, 200);
    assert_eq!(header_line(&body, "xfcc"), "-", "{body}");
    assert_eq!(header_line(&body, "xfp"), "http");
    let (status, _, body) = get(outbound, "/").await.expect("mTLS answered");
    assert_eq!(status, 200);
    assert!(
        header_line(&body, "xfcc").ends_with(&format!(";URI={}", spiffe("client"))),
        "{body}"
    );

    client.stop().await;
    server.stop().await;
}

/// Runs `openssl s_client` against `addr`, sending one HTTP request; returns stdout+stderr.
async fn s_client(addr: SocketAddr, extra: &[&str]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args([
            "-servername",
            "server.default.svc.cluster.local",
            "-showcerts",
            "-ign_eof",
        ])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    drop(stdin);
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("openssl finishes")
        .expect("openssl output");
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `s_client` trusting `root` and presenting the client certificate `cert` with `key`.
async fn s_client_with_cert(
    addr: SocketAddr,
    root: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> String {
    s_client(
        addr,
        &[
            "-CAfile",
            root.to_str().expect("path"),
            "-cert",
            cert.to_str().expect("path"),
            "-key",
            key.to_str().expect("path"),
        ],
    )
    .await
}

/// No response: the server aborted the handshake.
fn assert_handshake_refused(out: &str) {
    assert!(!out.contains("HTTP/1.1 200"), "{out}");
    assert!(out.to_lowercase().contains("alert"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_sees_the_spiffe_identity_and_strict_needs_a_mesh_client_certificate() {
    let mesh = TestMesh::new(TD);
    let (server, inbound) = server_proxy(&mesh, LONG_TTL, Mode::Strict).await;
    let root = mesh.root_file();

    // Without a client certificate: no response, the server aborts the handshake.
    let out = s_client(inbound, &["-CAfile", root.to_str().expect("path")]).await;
    assert_handshake_refused(&out);

    // With a mesh certificate: the request goes through, and the server presents its SPIFFE id.
    let (cert, key) = mesh.issue_files("default", "probe");
    let out = s_client_with_cert(inbound, &root, &cert, &key).await;
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    let begin = out
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&out.as_bytes()[begin..]).expect("pem");
    let cert = pem.parse_x509().expect("x509");
    let san = cert
        .subject_alternative_name()
        .expect("san ok")
        .expect("san");
    let uris: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some((*u).to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(uris, [spiffe("server")]);
    assert!(
        header_line(&out.replace('\r', ""), "xfcc")
            .ends_with(&format!(";URI=spiffe://{TD}/ns/default/sa/probe")),
        "{out}"
    );

    // A certificate from another CA (another trust domain) is refused.
    let foreign = TestMesh::new("example.org");
    let (cert, key) = foreign.issue_files("default", "probe");
    let out = s_client_with_cert(inbound, &root, &cert, &key).await;
    assert_handshake_refused(&out);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_identity_mismatch_is_a_connect_failure_naming_the_expected_identity() {
    let mesh = TestMesh::new(TD);
    let (server, inbound) = server_proxy(&mesh, LONG_TTL, Mode::Strict).await;
    let (client, outbound) = client_proxy(
        Some((&mesh, LONG_TTL)),
        istio_mutual_cluster(&[&spiffe("imposter")]),
        inbound,
    )
    .await;
    let (status, headers, body) = get(outbound, "/").await.expect("response");
    assert_eq!(status, 503, "{body}");
    let reason = trellis_reason(&headers).unwrap_or_default();
    assert!(reason.starts_with("UF "), "{reason}");
    assert!(reason.contains(&spiffe("imposter")), "{reason}");
    assert!(reason.contains(&spiffe("server")), "{reason}");
    client.stop().await;
    server.stop().await;
}

/// DestinationRule `tls.mode: MUTUAL`: files for the client certificate and the trusted CA, on
/// a proxy that has no identity of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_origination_with_files() {
    let mesh = TestMesh::new(TD);
    let (server, inbound) = server_proxy(&mesh, LONG_TTL, Mode::Strict).await;
    let (cert, key) = mesh.issue_files("default", "client");
    let root = mesh.root_file();
    let file = |p: &std::path::Path| core::DataSource {
        specifier: Some(core::data_source::Specifier::Filename(
            p.to_str().expect("path").into(),
        )),
        ..Default::default()
    };
    let upstream = UpstreamTlsContext {
        sni: "server.default.svc.cluster.local".into(),
        common_tls_context: Some(CommonTlsContext {
            tls_certificates: vec![TlsCertificate {
                certificate_chain: Some(file(&cert)),
                private_key: Some(file(&key)),
                ..Default::default()
            }],
            validation_context_type: Some(
                common_tls_context::ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: Some(file(&root)),
                        match_typed_subject_alt_names: san_matchers(&[&spiffe("server")]),
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cluster = Cluster {
        name: "outbound|8080||files".into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(assignment("outbound|8080||files", &[inbound])),
        transport_socket: Some(tls_socket(
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            &upstream,
        )),
        ..Default::default()
    };
    let (client, outbound) = client_proxy(None, cluster, inbound).await;
    let (status, _, body) = get(outbound, "/").await.expect("response");
    assert_eq!(status, 200, "{body}");
    assert!(
        header_line(&body, "xfcc").ends_with(&format!(";URI={}", spiffe("client"))),
        "{body}"
    );
    client.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_steady_traffic_without_failures() {
    let mesh = TestMesh::new(TD);
    let ttl = Duration::from_secs(3);
    let (server, inbound) = server_proxy(&mesh, ttl, Mode::Strict).await;
    let mut cluster = istio_mutual_cluster(&[&spiffe("server")]);
    cluster.typed_extension_protocol_options = max_requests_per_connection(3);
    let (client, outbound) = client_proxy(Some((&mesh, ttl)), cluster, inbound).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (mut ok, mut failures) = (0u32, Vec::new());
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotations did not happen within 30s ({ok} ok, failures {failures:?})"
        );
        // A new downstream connection each time, a new upstream one every 3 requests: new
        // handshakes keep happening across rotations.
        match get(outbound, "/").await {
            Some((200, _, body)) if header_line(&body, "xfcc").contains(&spiffe("client")) => {
                ok += 1
            }
            other => failures.push(format!("{other:?}")),
        }
        if ok % 10 == 0 {
            let c = metric(client.admin, "trellis_cert_rotations_total").await;
            let s = metric(server.admin, "trellis_cert_rotations_total").await;
            if c >= 2.0 && s >= 2.0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failures.is_empty(), "{failures:?}");
    assert!(ok >= 20, "{ok}");
    eprintln!("{ok} requests over the rotations, none failed");
    let expiry = metric(client.admin, "trellis_cert_expiry_seconds").await;
    assert!((0.0..=3.0).contains(&expiry), "{expiry}");
    client.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_dst_cluster_takes_the_header_destination() {
    let app = app().await;
    let mut h = Harness::start().await;
    h.request_where(type_url::CLUSTER, |_| true).await;
    let passthrough = Cluster {
        name: "PassthroughCluster".into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        lb_config: Some(cluster::LbConfig::OriginalDstLbConfig(
            cluster::OriginalDstLbConfig {
                use_http_header: true,
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let nonce = h.push(
        type_url::CLUSTER,
        "1",
        vec![to_any(type_url::CLUSTER, &passthrough)],
    );
    let ack = h.reply_to(type_url::CLUSTER, &nonce).await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    let table = route_table("outbound", vec![route_to("/", "PassthroughCluster")]);
    let nonce = h.push(
        type_url::LISTENER,
        "1",
        vec![listener("outbound", inline(table))],
    );
    let ack = h.reply_to(type_url::LISTENER, &nonce).await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    h.wait_ready().await;
    let port = h.listener_port("outbound").await;

    assert_ok_containing(
        port,
        &format!(
            "GET / HTTP/1.1\r\nHost: test\r\nx-envoy-original-dst-host: {app}\r\nConnection: close\r\n\r\n"
        ),
        "xfcc=-",
    )
    .await;

    // No header: the connection's own destination is this listener; the proxy does not loop.
    let (status, headers, _) = get(port, "/").await.expect("response");
    assert_eq!(status, 503);
    let reason: &str = trellis_reason(&headers).unwrap_or("");
    assert!(
        reason.starts_with("UH ") && reason.contains("not looping"),
        "{reason}"
    );
    h.stop().await;
}
