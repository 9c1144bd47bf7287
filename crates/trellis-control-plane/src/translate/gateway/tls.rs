//! Downstream TLS of gateway servers: `SIMPLE`/`MUTUAL` with credentials from files (a
//! `credentialName` resolved by the control plane, or `serverCertificate` / `privateKey` /
//! `caCertificates` paths), `ISTIO_MUTUAL` with the workload certificate as a sidecar's inbound.
//!
//! Credential layout: `CREDENTIALS_DIR/NAME/` holds Istio's secret keys as files, `tls.crt`,
//! `tls.key` and (for `MUTUAL`) `ca.crt`, or the generic secret's `cert`, `key`, `cacert`; the
//! CA may also come from `CREDENTIALS_DIR/NAME-cacert/` (Istio's separate CA secret). The
//! control plane sends the files' absolute paths (`DataSource.filename`): gateway and control
//! plane share the machine in universal mode, and key material never travels over xDS.

use std::path::{Path, PathBuf};

use envoy_types::pb::envoy::config::core::v3::{
    DataSource, TransportSocket, data_source::Specifier, transport_socket::ConfigType,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, TlsCertificate,
    common_tls_context::ValidationContextType,
};
use envoy_types::pb::google::protobuf::BoolValue;
use trellis_api::networking::{ServerTlsMode, ServerTlsSettings};
use trellis_xds::to_any;

use crate::model::{MeshModel, ProxyView};

const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
const DOWNSTREAM_TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
/// ALPN a gateway offers on HTTPS servers (Istio's).
const ALPN: [&str; 2] = ["h2", "http/1.1"];

/// A server's certificate, key and (for client verification) CA bundle, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// The private key (PEM).
    pub key: PathBuf,
    /// CA certificates that verify client certificates.
    pub ca: Option<PathBuf>,
}

/// The first of `names` that exists in `dir`, as an absolute path.
fn first_file(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .map(|p| std::path::absolute(&p).unwrap_or(p))
}

/// Resolves `credentialName` in `dir` (see the module doc).
pub fn resolve_credential(dir: &Path, name: &str) -> Result<Credential, String> {
    let folder = dir.join(name);
    let cert = first_file(&folder, &["tls.crt", "cert"]).ok_or_else(|| {
        format!(
            "credential {name:?}: no tls.crt (or cert) in {}",
            folder.display()
        )
    })?;
    let key = first_file(&folder, &["tls.key", "key"]).ok_or_else(|| {
        format!(
            "credential {name:?}: no tls.key (or key) in {}",
            folder.display()
        )
    })?;
    let ca = first_file(&folder, &["ca.crt", "cacert"])
        .or_else(|| first_file(&dir.join(format!("{name}-cacert")), &["ca.crt", "cacert"]));
    Ok(Credential { cert, key, ca })
}

/// The credential a server's `tls` names: `credentialName` (resolved in the model's
/// credentials directory) or the file paths.
fn credential(model: &MeshModel, tls: &ServerTlsSettings) -> Result<Credential, String> {
    if let Some(name) = &tls.credential_name {
        let dir = model.credentials_dir.as_deref().ok_or_else(|| {
            format!("credentialName {name:?}: the control plane has no credentials directory")
        })?;
        return resolve_credential(dir, name);
    }
    match (&tls.server_certificate, &tls.private_key) {
        (Some(cert), Some(key)) => Ok(Credential {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
            ca: tls.ca_certificates.as_ref().map(PathBuf::from),
        }),
        _ => Err("needs credentialName, or serverCertificate and privateKey".to_string()),
    }
}

fn file(path: &Path) -> DataSource {
    DataSource {
        specifier: Some(Specifier::Filename(path.display().to_string())),
        ..Default::default()
    }
}

/// The transport socket that terminates TLS for a server in `mode`, or why it cannot.
pub fn downstream_socket(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    mode: ServerTlsMode,
    tls: Option<&ServerTlsSettings>,
) -> Result<TransportSocket, String> {
    if mode == ServerTlsMode::IstioMutual {
        if !proxy.node.sds {
            return Err("ISTIO_MUTUAL needs a gateway with a workload certificate".to_string());
        }
        return Ok(crate::translate::mtls::inbound_tls_socket());
    }
    let tls = tls.ok_or_else(|| "an HTTPS server needs tls settings".to_string())?;
    let credential = credential(model, tls)?;
    let verify = matches!(mode, ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual);
    let validation = match (&credential.ca, verify) {
        (Some(ca), true) => Some(ValidationContextType::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(file(ca)),
                ..Default::default()
            },
        )),
        (None, true) => {
            return Err(format!(
                "tls.mode {} needs CA certificates (caCertificates, or ca.crt with the credential)",
                mode.as_str()
            ));
        }
        (_, false) => None,
    };
    let context = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificates: vec![TlsCertificate {
                certificate_chain: Some(file(&credential.cert)),
                private_key: Some(file(&credential.key)),
                ..Default::default()
            }],
            alpn_protocols: ALPN.iter().map(|a| (*a).to_string()).collect(),
            validation_context_type: validation,
            ..Default::default()
        }),
        require_client_certificate: (mode == ServerTlsMode::Mutual)
            .then_some(BoolValue { value: true }),
        ..Default::default()
    };
    Ok(TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(to_any(
            DOWNSTREAM_TLS_TYPE,
            &context,
        ))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_resolve_istio_and_generic_key_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let a = dir.join("a");
        std::fs::create_dir_all(&a).expect("mkdir");
        for f in ["tls.crt", "tls.key"] {
            std::fs::write(a.join(f), "x").expect("write");
        }
        let b = dir.join("b");
        std::fs::create_dir_all(&b).expect("mkdir");
        for f in ["cert", "key", "cacert"] {
            std::fs::write(b.join(f), "x").expect("write");
        }
        let ca = dir.join("a-cacert");
        std::fs::create_dir_all(&ca).expect("mkdir");
        std::fs::write(ca.join("ca.crt"), "x").expect("write");
        let got = resolve_credential(&dir, "a").expect("a");
        assert!(got.cert.ends_with("a/tls.crt"));
        assert!(
            got.ca
                .as_ref()
                .is_some_and(|c| c.ends_with("a-cacert/ca.crt"))
        );
        let got = resolve_credential(&dir, "b").expect("b");
        assert!(got.key.ends_with("b/key"));
        assert!(got.ca.as_ref().is_some_and(|c| c.ends_with("b/cacert")));
        let missing = resolve_credential(&dir, "c").expect_err("c");
        assert!(
            missing.contains("credential \"c\": no tls.crt"),
            "{missing}"
        );
    }
}
