//! Gateways of a test mesh: router proxies (`trellis proxy --type router`, or `trellis agent
//! --type router` for Envoy) on their own addresses of the mesh's `/24` (`BASE.(200+i)`), and
//! the TLS material they serve: a test CA, one server certificate per credential written in
//! Istio's secret layout (`RUN_DIR/credentials/NAME/{tls.crt,tls.key,ca.crt}`, where the
//! control plane resolves `credentialName`s by default), and a client certificate from the same
//! CA for `MUTUAL` servers (`RUN_DIR/credentials/client/`).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use super::Mesh;

/// The most gateways one mesh runs (`BASE.200`–`BASE.249`).
pub const MAX_GATEWAYS: usize = 50;
/// The directory (in the run directory) credentials are written to.
pub const CREDENTIALS_DIR: &str = "credentials";
/// The folder of the client certificate in the credentials directory.
pub const CLIENT_CREDENTIAL: &str = "client";

/// A gateway of the mesh: a router proxy with these labels (Gateway `selector`s match them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    /// Its workload name (and service account).
    pub name: String,
    /// Its namespace (`istio-system`).
    #[serde(default = "default_gateway_namespace")]
    pub namespace: String,
    /// Its labels (e.g. `istio: ingressgateway`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_gateway_namespace() -> String {
    "istio-system".to_string()
}

/// A server credential to create: a certificate for `hosts` signed by the mesh's test CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    /// The `credentialName` (its folder).
    pub name: String,
    /// DNS names (wildcards allowed) the certificate is for; the first is its common name.
    pub hosts: Vec<String>,
}

/// The test CA and the files made from it.
#[derive(Debug, Clone)]
pub struct TestCredentials {
    /// The credentials directory (`RUN_DIR/credentials`).
    pub dir: PathBuf,
    /// The test CA's certificate (PEM file): what clients trust and `MUTUAL` servers verify.
    pub ca_cert: PathBuf,
    /// A client certificate (`CN=client.trellis.test`) and its key, signed by the test CA.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
}

impl TestCredentials {
    /// Creates a fresh test CA in `dir`, a server credential per `specs` and the client
    /// certificate.
    pub fn create(dir: &Path, specs: &[CredentialSpec]) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Trellis test gateway CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key)?;
        let ca_pem = ca.pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let write = |folder: &str, files: &[(&str, &str)]| -> anyhow::Result<PathBuf> {
            let path = dir.join(folder);
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            for (name, content) in files {
                let file = path.join(name);
                std::fs::write(&file, content)
                    .with_context(|| format!("writing {}", file.display()))?;
            }
            Ok(path)
        };
        for spec in specs {
            let common_name = spec
                .hosts
                .first()
                .ok_or_else(|| anyhow!("credential {}: no hosts", spec.name))?;
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(spec.hosts.clone())?;
            params
                .distinguished_name
                .push(DnType::CommonName, common_name.as_str());
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let cert = params.signed_by(&key, &issuer)?;
            write(
                &spec.name,
                &[
                    ("tls.crt", &cert.pem()),
                    ("tls.key", &key.serialize_pem()),
                    ("ca.crt", &ca_pem),
                ],
            )?;
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["client.trellis.test".to_string()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "client.trellis.test");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer)?;
        let client = write(
            CLIENT_CREDENTIAL,
            &[
                ("tls.crt", &cert.pem()),
                ("tls.key", &key.serialize_pem()),
                ("ca.crt", &ca_pem),
            ],
        )?;
        Ok(TestCredentials {
            dir: dir.to_path_buf(),
            ca_cert: client.join("ca.crt"),
            client_cert: client.join("tls.crt"),
            client_key: client.join("tls.key"),
        })
    }

    /// A TLS client config that trusts the test CA, offers `alpn`, and presents the client
    /// certificate when `client_cert`.
    pub fn client_config(
        &self,
        client_cert: bool,
        alpn: &[&str],
    ) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca_cert)
            .with_context(|| format!("reading {}", self.ca_cert.display()))?
        {
            roots.add(cert.context("test CA certificate")?)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
        let mut config = if client_cert {
            let chain = CertificateDer::pem_file_iter(&self.client_cert)
                .with_context(|| format!("reading {}", self.client_cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .context("client certificate")?;
            let key = PrivateKeyDer::from_pem_file(&self.client_key).context("client key")?;
            builder.with_client_auth_cert(chain, key)?
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
        Ok(Arc::new(config))
    }
}

impl Mesh {
    /// The IP of the gateway `name` (the first gateway when `None`).
    pub fn gateway_ip(&self, name: Option<&str>) -> anyhow::Result<Ipv4Addr> {
        let gateways = &self.gateways;
        let i = match name {
            None if !gateways.is_empty() => 0,
            None => anyhow::bail!("the mesh has no gateway (add `gateways:` to the scenario)"),
            Some(n) => gateways
                .iter()
                .position(|g| g.name == n)
                .ok_or_else(|| anyhow!("the mesh has no gateway named {n:?}"))?,
        };
        Ok(self.plan.gateway(i))
    }

    /// `gateway_ip(name)` with `port`.
    pub fn gateway_address(&self, name: Option<&str>, port: u16) -> anyhow::Result<SocketAddr> {
        Ok(SocketAddr::new(self.gateway_ip(name)?.into(), port))
    }

    /// The test CA, server credentials and client certificate of the mesh's gateways.
    pub fn credentials(&self) -> anyhow::Result<&TestCredentials> {
        self.credentials
            .as_ref()
            .ok_or_else(|| anyhow!("the mesh has no gateway credentials"))
    }
}
