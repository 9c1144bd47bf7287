//! `Gateway`: a load balancer at the edge of the mesh (networking.istio.io).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::istio_enum;

/// The spec of a Gateway: servers exposed by the selected gateway workloads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// Servers (listeners).
    #[serde(default)]
    pub servers: Vec<Server>,
    /// Labels of the gateway workloads.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
}

/// One listener of a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// Port to listen on (required).
    pub port: Option<Port>,
    /// Address to bind.
    pub bind: Option<String>,
    /// Hosts served (required).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// TLS settings.
    pub tls: Option<ServerTlsSettings>,
    /// Default endpoint.
    pub default_endpoint: Option<String>,
    /// Server name.
    pub name: Option<String>,
}

/// A listener port.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// Port number.
    #[serde(default)]
    pub number: u32,
    /// Protocol.
    #[serde(default)]
    pub protocol: String,
    /// Port name.
    #[serde(default)]
    pub name: String,
    /// Deprecated target port.
    pub target_port: Option<u32>,
}

istio_enum! {
    /// Downstream TLS modes.
    ServerTlsMode {
        Passthrough = "PASSTHROUGH",
        Simple = "SIMPLE",
        Mutual = "MUTUAL",
        AutoPassthrough = "AUTO_PASSTHROUGH",
        IstioMutual = "ISTIO_MUTUAL",
        OptionalMutual = "OPTIONAL_MUTUAL",
    }
}

istio_enum! {
    /// TLS protocol versions.
    TlsProtocol {
        TlsAuto = "TLS_AUTO",
        Tlsv1_0 = "TLSV1_0",
        Tlsv1_1 = "TLSV1_1",
        Tlsv1_2 = "TLSV1_2",
        Tlsv1_3 = "TLSV1_3",
    }
}

/// Downstream TLS settings of a gateway server or sidecar ingress.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// Redirect HTTP to HTTPS.
    pub https_redirect: Option<bool>,
    /// TLS mode.
    pub mode: Option<ServerTlsMode>,
    /// Server certificate file.
    pub server_certificate: Option<String>,
    /// Private key file.
    pub private_key: Option<String>,
    /// CA certificates file.
    pub ca_certificates: Option<String>,
    /// CRL file.
    pub ca_crl: Option<String>,
    /// Secret holding the credentials.
    pub credential_name: Option<String>,
    /// Secrets holding several credentials.
    #[serde(default)]
    pub credential_names: Vec<String>,
    /// Secret holding the CA certificate.
    pub ca_cert_credential_name: Option<String>,
    /// Inline certificates.
    #[serde(default)]
    pub tls_certificates: Vec<TlsCertificate>,
    /// Accepted client SANs.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
    /// Accepted client SPKI hashes.
    #[serde(default)]
    pub verify_certificate_spki: Vec<String>,
    /// Accepted client certificate hashes.
    #[serde(default)]
    pub verify_certificate_hash: Vec<String>,
    /// Minimum TLS version.
    pub min_protocol_version: Option<TlsProtocol>,
    /// Maximum TLS version.
    pub max_protocol_version: Option<TlsProtocol>,
    /// Cipher suites.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// ECDH curves.
    #[serde(default)]
    pub ecdh_curves: Vec<String>,
    /// Skip client verification.
    pub insecure_skip_verify: Option<bool>,
}

/// An inline certificate of a gateway server.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsCertificate {
    /// Server certificate file.
    pub server_certificate: Option<String>,
    /// Private key file.
    pub private_key: Option<String>,
    /// CA certificates file.
    pub ca_certificates: Option<String>,
}
