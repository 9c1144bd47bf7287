//! TLS config types: Envoy's `DownstreamTlsContext` / `UpstreamTlsContext` as the proxy runs them.
//! Secrets are named (SDS over `sds-grpc`, resolved internally against the proxy's own
//! certificate) or files (DestinationRule SIMPLE/MUTUAL origination); keys never appear in
//! `/config_dump`, only their names.

use std::collections::BTreeMap;

use serde::Serialize;

/// The SDS secret holding the workload certificate and key.
pub const WORKLOAD_SECRET: &str = "default";
/// The SDS secret holding the mesh trust root.
pub const ROOT_SECRET: &str = "ROOTCA";

/// Where a certificate (and its key) comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertSource {
    /// The proxy's workload certificate (SDS secret `default`).
    Workload,
    /// PEM files: certificate chain and private key.
    Files {
        /// `certificate_chain.filename`.
        cert_chain: String,
        /// `private_key.filename`.
        private_key: String,
    },
}

/// Where the trust anchors that verify the peer come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustSource {
    /// The mesh root (SDS secret `ROOTCA`).
    MeshRoot,
    /// A PEM bundle file (`trusted_ca.filename`).
    File(String),
}

/// A `DownstreamTlsContext`: TLS terminated on a listener's filter chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct DownstreamTls {
    /// The certificate presented to clients.
    pub certificate: CertSource,
    /// Verifies client certificates; `None` does not ask for one.
    pub validation: Option<TrustSource>,
    /// `require_client_certificate`: a client without a (valid) certificate is refused.
    pub require_client_certificate: bool,
    /// ALPN protocols offered, in preference order (no overlap with the client: none chosen).
    pub alpn_protocols: Vec<String>,
}

/// An `UpstreamTlsContext`: TLS originated to a cluster's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct UpstreamTls {
    /// SNI sent (none when empty).
    pub sni: String,
    /// The client certificate presented, if any.
    pub certificate: Option<CertSource>,
    /// Verifies the server; `None` accepts any server certificate (Envoy without a
    /// validation context).
    pub validation: Option<TrustSource>,
    /// `match_typed_subject_alt_names`: SANs the server must present one of (empty: any).
    pub match_sans: Vec<SanMatch>,
    /// ALPN protocols offered.
    pub alpn_protocols: Vec<String>,
}

/// One `match_typed_subject_alt_names` entry: a SAN of this kind equal to `value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SanMatch {
    /// URI (SPIFFE identities) or DNS (names of external servers).
    pub kind: SanKind,
    /// The exact value.
    pub value: String,
}

/// The SAN types the proxy matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SanKind {
    /// A URI SAN.
    Uri,
    /// A DNS name SAN.
    Dns,
}

/// A cluster's transport socket for an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TransportSocket {
    /// Plain TCP (`envoy.transport_sockets.raw_buffer`, or none).
    #[default]
    RawBuffer,
    /// TLS (`envoy.transport_sockets.tls`).
    Tls(UpstreamTls),
}

/// An entry of `transport_socket_matches`: endpoints whose
/// `metadata.filter_metadata["envoy.transport_socket_match"]` holds every key of `matcher` with
/// the same value use `socket` (the first entry that matches wins).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TransportSocketMatch {
    /// The entry's name (`tlsMode-istio`, ...).
    pub name: String,
    /// The metadata it requires (empty: every endpoint).
    pub matcher: BTreeMap<String, String>,
    /// The socket.
    pub socket: TransportSocket,
}

/// The transport protocol a filter chain matches (`filter_chain_match.transport_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportProtocol {
    /// A TLS ClientHello was detected (needs the TLS inspector).
    Tls,
    /// Anything else.
    RawBuffer,
}
