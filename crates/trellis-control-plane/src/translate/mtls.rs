//! Mutual TLS, in Istio's shape (docs/xds-features.md, "Mutual TLS"): which mode a workload's
//! inbound port is in (PeerAuthentication, composed mesh → namespace → workload → port as
//! Istio does), and the TLS contexts of both ends, whose certificate (`default`) and root
//! (`ROOTCA`) come over SDS from the `sds-grpc` cluster.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch;
use envoy_types::pb::envoy::config::core::v3::{
    ApiConfigSource, ApiVersion, ConfigSource, DataSource, GrpcService, TransportSocket,
    api_config_source::ApiType,
    config_source::ConfigSourceSpecifier,
    data_source,
    grpc_service::{EnvoyGrpc, TargetSpecifier},
    transport_socket::ConfigType,
};
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig,
    SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    subject_alt_name_matcher::SanType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use envoy_types::pb::google::protobuf::{BoolValue, Struct, Value, value::Kind};
use trellis_api::networking::{ClientTlsMode, ClientTlsSettings};
use trellis_api::security::MutualTlsMode;
use trellis_xds::to_any;

use super::clusters::OutboundCluster;
use crate::model::{MeshModel, ProxyView, ROOT_NAMESPACE};
use crate::registry::Endpoint;
use trellis_api::networking::Location;

/// The SDS secret with the workload's certificate and key.
pub const CERT_SECRET: &str = "default";
/// The SDS secret with the mesh root.
pub const ROOT_SECRET: &str = "ROOTCA";
/// The bootstrap cluster SDS is fetched from (the agent's socket; in process for our proxy).
pub const SDS_CLUSTER: &str = "sds-grpc";
/// Endpoint metadata filter the transport socket match reads.
pub const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";
/// The TLS transport socket.
pub const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
/// The plaintext transport socket.
pub const RAW_BUFFER_SOCKET: &str = "envoy.transport_sockets.raw_buffer";
const UPSTREAM_TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const DOWNSTREAM_TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const RAW_BUFFER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";
/// ALPN a sidecar offers to another sidecar (Istio's).
const MESH_ALPN: [&str; 2] = ["istio-peer-exchange", "istio"];
/// ALPN an inbound sidecar port accepts.
const INBOUND_ALPN: [&str; 2] = ["h2", "http/1.1"];

/// The effective inbound mode of a workload (`namespace`, `labels`) on `port`: Istio's
/// composition of the mesh-wide (root namespace, no selector), namespace-wide (no selector)
/// and workload (selector) PeerAuthentications, the oldest of each level winning (here: the
/// first by name), `UNSET` inheriting from the level above, port-level settings only from a
/// workload policy. Never `UNSET`: the mesh default is `PERMISSIVE`.
pub fn inbound_mode(
    model: &MeshModel,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    port: u32,
) -> MutualTlsMode {
    let unselective = |ns: &str| {
        model.peer_authentications.iter().find(|pa| {
            pa.namespace == ns
                && pa
                    .spec
                    .selector
                    .as_ref()
                    .is_none_or(|s| s.match_labels.is_empty())
        })
    };
    let workload = model.peer_authentications.iter().find(|pa| {
        pa.namespace == namespace
            && pa.spec.selector.as_ref().is_some_and(|s| {
                !s.match_labels.is_empty()
                    && s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
    });
    let set = |m: Option<MutualTlsMode>| m.filter(|m| *m != MutualTlsMode::Unset);
    let mode_of = |pa: Option<&crate::model::Named<trellis_api::security::PeerAuthentication>>| {
        set(pa.and_then(|pa| pa.spec.mtls.as_ref()).and_then(|m| m.mode))
    };
    let mut mode = MutualTlsMode::Permissive;
    for level in [
        unselective(ROOT_NAMESPACE),
        unselective(namespace),
        workload,
    ] {
        if let Some(m) = mode_of(level) {
            mode = m;
        }
    }
    if let Some(m) = workload
        .and_then(|pa| pa.spec.port_level_mtls.get(&port.to_string()))
        .and_then(|m| set(m.mode))
    {
        mode = m;
    }
    mode
}

/// Whether a client should send Istio mutual TLS to `endpoint` on `port` under auto mTLS:
/// the workload has a sidecar (`security.istio.io/tlsMode: istio`) and does not disable
/// mutual TLS on that port.
pub fn endpoint_accepts_mtls(model: &MeshModel, endpoint: &Endpoint, port: u32) -> bool {
    endpoint.has_sidecar()
        && inbound_mode(model, &endpoint.namespace, &endpoint.labels, port)
            != MutualTlsMode::Disable
}

/// The endpoint metadata that makes auto mTLS pick the Istio TLS socket.
pub fn tls_mode_metadata() -> (String, Struct) {
    (
        TRANSPORT_SOCKET_MATCH.to_string(),
        Struct {
            fields: [("tlsMode".to_string(), string_value("istio"))].into(),
        },
    )
}

/// The SPIFFE identity of a namespace and service account.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

/// The transport sockets of an outbound cluster, as `(transport_socket,
/// transport_socket_matches)`: the DestinationRule's `tls` when set (DISABLE, SIMPLE, MUTUAL,
/// ISTIO_MUTUAL), else auto mTLS (Istio TLS to endpoints with a sidecar, plaintext to the
/// others) for services inside the mesh. Proxies without a certificate get no Istio TLS.
pub fn outbound_sockets(
    c: &OutboundCluster<'_>,
    proxy: &ProxyView<'_>,
    model: &MeshModel,
) -> (Option<TransportSocket>, Vec<TransportSocketMatch>) {
    let settings = c.policy.as_ref().and_then(|p| p.tls.as_ref());
    let istio = || {
        let sni = format!(
            "outbound_.{}_.{}_.{}",
            c.port.number,
            c.subset_name.unwrap_or(""),
            c.service.host
        );
        tls_socket(
            UPSTREAM_TLS_TYPE,
            &UpstreamTlsContext {
                sni,
                common_tls_context: Some(istio_common(
                    &MESH_ALPN,
                    uri_matchers(&service_identities(c, model)),
                )),
                ..Default::default()
            },
        )
    };
    match settings.and_then(|s| s.mode) {
        Some(ClientTlsMode::Disable) => (None, Vec::new()),
        Some(ClientTlsMode::IstioMutual) if proxy.node.sds => (Some(istio()), Vec::new()),
        Some(ClientTlsMode::IstioMutual) => (None, Vec::new()),
        Some(mode @ (ClientTlsMode::Simple | ClientTlsMode::Mutual)) => {
            let Some(settings) = settings else {
                return (None, Vec::new());
            };
            (
                Some(origination(c, settings, mode == ClientTlsMode::Mutual)),
                Vec::new(),
            )
        }
        None if proxy.node.sds && c.service.location == Location::MeshInternal => (
            None,
            vec![
                TransportSocketMatch {
                    name: "tlsMode-istio".to_string(),
                    r#match: Some(tls_mode_metadata().1),
                    transport_socket: Some(istio()),
                },
                TransportSocketMatch {
                    name: "tlsMode-disabled".to_string(),
                    r#match: Some(Struct::default()),
                    transport_socket: Some(raw_buffer()),
                },
            ],
        ),
        None => (None, Vec::new()),
    }
}

/// The identities a service's endpoints may present: the service accounts of its workloads,
/// plus the ServiceEntry's `subjectAltNames`, as Istio collects them.
fn service_identities(c: &OutboundCluster<'_>, model: &MeshModel) -> Vec<String> {
    let mut ids: Vec<String> = c
        .service
        .endpoints
        .iter()
        .filter_map(|e| {
            let sa = e.service_account.as_deref()?;
            Some(spiffe_id(&model.trust_domain, &e.namespace, sa))
        })
        .chain(c.service.subject_alt_names.iter().cloned())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// TLS origination with the user's files (DestinationRule `tls` SIMPLE or MUTUAL).
fn origination(c: &OutboundCluster<'_>, s: &ClientTlsSettings, mutual: bool) -> TransportSocket {
    let file = |path: &str| DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    };
    let validation = (s.insecure_skip_verify != Some(true))
        .then(|| {
            let sans = uri_or_dns_matchers(&s.subject_alt_names);
            (s.ca_certificates.is_some() || !sans.is_empty()).then(|| {
                ValidationContextType::ValidationContext(CertificateValidationContext {
                    trusted_ca: s.ca_certificates.as_deref().map(file),
                    match_typed_subject_alt_names: sans,
                    ..Default::default()
                })
            })
        })
        .flatten();
    let tls_certificates = match (mutual, &s.client_certificate, &s.private_key) {
        (true, Some(cert), Some(key)) => vec![TlsCertificate {
            certificate_chain: Some(file(cert)),
            private_key: Some(file(key)),
            ..Default::default()
        }],
        _ => Vec::new(),
    };
    let sni = s.sni.clone().unwrap_or_else(|| {
        if c.service.host.starts_with('*') {
            String::new()
        } else {
            c.service.host.clone()
        }
    });
    tls_socket(
        UPSTREAM_TLS_TYPE,
        &UpstreamTlsContext {
            sni,
            common_tls_context: Some(CommonTlsContext {
                tls_certificates,
                validation_context_type: validation,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// The TLS socket of an inbound port that accepts mesh mutual TLS: the workload's certificate,
/// and a client certificate required and verified against the mesh root (only the mesh CA,
/// which signs identities of this trust domain alone, can have issued it), as Istio's inbound.
pub fn inbound_tls_socket() -> TransportSocket {
    tls_socket(
        DOWNSTREAM_TLS_TYPE,
        &DownstreamTlsContext {
            common_tls_context: Some(istio_common(&INBOUND_ALPN, Vec::new())),
            require_client_certificate: Some(BoolValue { value: true }),
            ..Default::default()
        },
    )
}

/// `default` + `ROOTCA` over SDS, with the SAN matchers the peer must satisfy.
fn istio_common(alpn: &[&str], sans: Vec<SubjectAltNameMatcher>) -> CommonTlsContext {
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds(CERT_SECRET)],
        alpn_protocols: alpn.iter().map(|a| (*a).to_string()).collect(),
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: sans,
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(sds(ROOT_SECRET)),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// An SDS secret reference to `sds-grpc`, as Istio's bootstrap names it.
fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(ConfigSource {
            resource_api_version: ApiVersion::V3 as i32,
            config_source_specifier: Some(ConfigSourceSpecifier::ApiConfigSource(
                ApiConfigSource {
                    api_type: ApiType::Grpc as i32,
                    transport_api_version: ApiVersion::V3 as i32,
                    set_node_on_first_message_only: true,
                    grpc_services: vec![GrpcService {
                        target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                            cluster_name: SDS_CLUSTER.to_string(),
                            ..Default::default()
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
    }
}

/// URI SAN matchers for exact identities.
fn uri_matchers(values: &[String]) -> Vec<SubjectAltNameMatcher> {
    values
        .iter()
        .map(|v| SubjectAltNameMatcher {
            san_type: SanType::Uri as i32,
            matcher: Some(StringMatcher {
                match_pattern: Some(MatchPattern::Exact(v.clone())),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// DestinationRule `subjectAltNames`: SPIFFE identities are URI SANs, anything else a DNS name.
fn uri_or_dns_matchers(values: &[String]) -> Vec<SubjectAltNameMatcher> {
    values
        .iter()
        .map(|v| SubjectAltNameMatcher {
            san_type: if v.starts_with("spiffe://") {
                SanType::Uri
            } else {
                SanType::Dns
            } as i32,
            matcher: Some(StringMatcher {
                match_pattern: Some(MatchPattern::Exact(v.clone())),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

fn tls_socket(type_url: &str, message: &impl prost::Message) -> TransportSocket {
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(to_any(type_url, message))),
    }
}

fn raw_buffer() -> TransportSocket {
    TransportSocket {
        name: RAW_BUFFER_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(to_any(
            RAW_BUFFER_TYPE,
            &RawBuffer {},
        ))),
    }
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use trellis_xds::{NodeIdentity, type_url};

    use super::*;
    use crate::translate::generate;
    use crate::translate::test_support::{self, decode, decode_any};

    const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: default}
spec:
  address: 127.0.9.10
  serviceAccount: echo
  labels: {app: echo, version: v1, security.istio.io/tlsMode: istio}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v2, namespace: default}
spec:
  address: 127.0.9.11
  serviceAccount: echo
  labels: {app: echo, version: v2, security.istio.io/tlsMode: istio}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-legacy, namespace: default}
spec: {address: 127.0.9.12, labels: {app: echo, version: legacy}}
"#;

    fn model(extra: &str) -> MeshModel {
        test_support::model(&format!("{MESH}---\n{extra}")).with_trust_domain("example.org")
    }

    fn node(ip: &str, version: &str, sds: bool) -> NodeIdentity {
        NodeIdentity {
            workload: format!("echo-{version}"),
            service_account: "echo".into(),
            labels: [("app", "echo"), ("version", version)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            sds,
            ..test_support::sidecar(ip, "default")
        }
    }

    /// The transport protocols the inbound listener's chains match, and whether it inspects.
    fn inbound_chains(extra: &str, version: &str) -> (Vec<String>, bool) {
        let out = generate(&model(extra), &node("127.0.9.10", version, true));
        let l: Listener = decode(&out, type_url::LISTENER, "inbound|9080");
        let chains = l
            .filter_chains
            .iter()
            .map(|c| {
                let tp = c
                    .filter_chain_match
                    .as_ref()
                    .map_or("*", |m| m.transport_protocol.as_str());
                let tls = if c.transport_socket.is_some() {
                    "+socket"
                } else {
                    ""
                };
                format!("{tp}{tls}")
            })
            .collect();
        (chains, !l.listener_filters.is_empty())
    }

    const NAMESPACE_STRICT: &str = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
"#;

    #[test]
    fn peer_authentication_modes_shape_inbound_filter_chains() {
        assert_eq!(
            inbound_chains("", "v1"),
            (vec!["tls+socket".into(), "raw_buffer".into()], true),
            "PERMISSIVE by default: TLS and plaintext"
        );
        assert_eq!(
            inbound_chains(NAMESPACE_STRICT, "v1"),
            (vec!["tls+socket".into()], true),
            "STRICT: TLS only"
        );
        let workload_disable = format!(
            "{NAMESPACE_STRICT}---\n{}",
            r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: v1, namespace: default}
spec:
  selector: {matchLabels: {version: v1}}
  mtls: {mode: DISABLE}
  portLevelMtls: {"9090": {mode: STRICT}}
"#
        );
        assert_eq!(
            inbound_chains(&workload_disable, "v1"),
            (vec!["*".into()], false),
            "a workload DISABLE overrides the namespace; another port's setting does not apply"
        );
        assert_eq!(
            inbound_chains(&workload_disable, "v2"),
            (vec!["tls+socket".into()], true),
            "the selector does not match v2"
        );
        // A proxy without a certificate only serves plaintext, whatever the policy says.
        let out = generate(&model(NAMESPACE_STRICT), &node("127.0.9.10", "v1", false));
        let l: Listener = decode(&out, type_url::LISTENER, "inbound|9080");
        assert_eq!(l.filter_chains.len(), 1);
        assert!(l.filter_chains[0].transport_socket.is_none());
    }

    #[test]
    fn mesh_wide_policy_applies_unless_the_namespace_or_port_overrides_it() {
        let m = model(
            r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: other, namespace: other}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: v1, namespace: default}
spec:
  selector: {matchLabels: {version: v1}}
  mtls: {mode: UNSET}
  portLevelMtls: {"8080": {mode: PERMISSIVE}}
"#,
        );
        let labels = |v: &str| {
            [("version".to_string(), v.to_string())]
                .into_iter()
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            inbound_mode(&m, "default", &labels("v1"), 9080),
            MutualTlsMode::Strict
        );
        assert_eq!(
            inbound_mode(&m, "default", &labels("v1"), 8080),
            MutualTlsMode::Permissive
        );
        assert_eq!(
            inbound_mode(&m, "other", &labels("v1"), 9080),
            MutualTlsMode::Disable
        );
    }

    #[test]
    fn auto_mtls_sends_istio_tls_only_to_endpoints_with_a_sidecar_that_accept_it() {
        let m = model(
            r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: v2, namespace: default}
spec:
  selector: {matchLabels: {version: v2}}
  mtls: {mode: DISABLE}
"#,
        );
        let out = generate(&m, &node("127.0.9.2", "client", true));
        let name = "outbound|9080||echo.default.svc.cluster.local";
        let cluster: Cluster = decode(&out, type_url::CLUSTER, name);
        assert!(cluster.transport_socket.is_none());
        let names: Vec<&str> = cluster
            .transport_socket_matches
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["tlsMode-istio", "tlsMode-disabled"]);
        let Some(ConfigType::TypedConfig(any)) = cluster.transport_socket_matches[0]
            .transport_socket
            .as_ref()
            .and_then(|s| s.config_type.clone())
        else {
            panic!("no TLS socket");
        };
        let tls: UpstreamTlsContext = decode_any(&any);
        assert_eq!(tls.sni, "outbound_.9080_._.echo.default.svc.cluster.local");
        let Some(ValidationContextType::CombinedValidationContext(v)) = tls
            .common_tls_context
            .as_ref()
            .and_then(|c| c.validation_context_type.clone())
        else {
            panic!("no combined validation context");
        };
        let sans: Vec<String> = v
            .default_validation_context
            .iter()
            .flat_map(|d| &d.match_typed_subject_alt_names)
            .filter_map(|m| match m.matcher.as_ref()?.match_pattern.as_ref()? {
                MatchPattern::Exact(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(sans, ["spiffe://example.org/ns/default/sa/echo"]);

        let cla: ClusterLoadAssignment = decode(&out, type_url::ENDPOINT, name);
        let marked: BTreeMap<String, bool> = cla
            .endpoints
            .iter()
            .flat_map(|l| &l.lb_endpoints)
            .map(|e| {
                let addr = format!("{:?}", e.host_identifier);
                let ip = ["127.0.9.10", "127.0.9.11", "127.0.9.12"]
                    .into_iter()
                    .find(|ip| addr.contains(ip))
                    .unwrap_or("?")
                    .to_string();
                let tls = e
                    .metadata
                    .as_ref()
                    .is_some_and(|m| m.filter_metadata.contains_key(TRANSPORT_SOCKET_MATCH));
                (ip, tls)
            })
            .collect();
        assert_eq!(
            marked,
            [
                ("127.0.9.10".to_string(), true),
                ("127.0.9.11".to_string(), false),
                ("127.0.9.12".to_string(), false),
            ]
            .into(),
            "v1 has a sidecar; v2 disables mTLS; legacy has no sidecar"
        );

        // No certificate, no Istio TLS.
        let plain = generate(&m, &node("127.0.9.2", "client", false));
        let cluster: Cluster = decode(&plain, type_url::CLUSTER, name);
        assert!(cluster.transport_socket_matches.is_empty());
    }

    #[test]
    fn destination_rule_tls_overrides_auto_mtls() {
        let rule = |tls: &str| {
            model(&format!(
                "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: echo, namespace: default}}\nspec:\n  host: echo\n  trafficPolicy: {{tls: {tls}}}\n"
            ))
        };
        let name = "outbound|9080||echo.default.svc.cluster.local";
        let cluster_for = |m: &MeshModel| -> Cluster {
            decode(
                &generate(m, &node("127.0.9.2", "client", true)),
                type_url::CLUSTER,
                name,
            )
        };
        let disabled = cluster_for(&rule("{mode: DISABLE}"));
        assert!(
            disabled.transport_socket.is_none() && disabled.transport_socket_matches.is_empty()
        );
        let istio = cluster_for(&rule("{mode: ISTIO_MUTUAL}"));
        assert!(istio.transport_socket.is_some() && istio.transport_socket_matches.is_empty());
        let simple = cluster_for(&rule(
            "{mode: SIMPLE, caCertificates: /etc/ca.pem, subjectAltNames: [echo.example.com]}",
        ));
        let Some(ConfigType::TypedConfig(any)) = simple
            .transport_socket
            .as_ref()
            .and_then(|s| s.config_type.clone())
        else {
            panic!("no TLS socket");
        };
        let tls: UpstreamTlsContext = decode_any(&any);
        assert_eq!(tls.sni, "echo.default.svc.cluster.local");
        let Some(ValidationContextType::ValidationContext(v)) = tls
            .common_tls_context
            .and_then(|c| c.validation_context_type)
        else {
            panic!("no validation context");
        };
        assert_eq!(
            v.match_typed_subject_alt_names[0].san_type,
            SanType::Dns as i32
        );
        assert!(v.trusted_ca.is_some());
    }
}
