//! TLS with rustls (one ring `CryptoProvider`): the proxy's secrets (its workload certificate
//! as SDS `default`, the mesh root as `ROOTCA`, and PEM files), server configs for
//! `DownstreamTlsContext` and client configs for `UpstreamTlsContext`, rebuilt when a secret
//! rotates so new handshakes use the new certificate while established connections continue.

pub mod client_hello;
mod verify;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::{CertSource, DownstreamTls, TrustSource, UpstreamTls};

/// The one crypto provider of the proxy (ring, as the workspace's tonic uses).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Why a TLS config could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    /// The workload certificate has not been issued (yet), or the proxy has no identity.
    #[error(
        "SDS secret {0:?} is not available: the proxy has no workload certificate (security not configured, or the CA has not answered yet)"
    )]
    NoSecret(&'static str),
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the material.
    #[error("TLS config: {0}")]
    Rustls(String),
}

/// The proxy's workload certificate, key and trust root.
#[derive(Debug)]
pub struct WorkloadIdentity {
    /// The SPIFFE URI of the certificate.
    pub spiffe_id: String,
    /// Workload certificate first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The mesh root(s).
    pub roots: Arc<RootCertStore>,
    /// The certificate's expiry.
    pub not_after: SystemTime,
}

impl WorkloadIdentity {
    /// Parses PEM material: the chain (leaf first, without the root), the PKCS#8 key and the
    /// root bundle.
    pub fn from_pem(
        spiffe_id: &str,
        chain_pem: &str,
        key_pem: &str,
        root_pem: &str,
        not_after: SystemTime,
    ) -> Result<Self, TlsError> {
        let err = |what: &str, e: &dyn std::fmt::Display| TlsError::Rustls(format!("{what}: {e}"));
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("certificate chain", &e))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| err("private key", &e))?;
        let roots = root_store(root_pem.as_bytes()).map_err(|e| err("root", &e))?;
        Ok(WorkloadIdentity {
            spiffe_id: spiffe_id.to_string(),
            chain,
            key,
            roots: Arc::new(roots),
            not_after,
        })
    }
}

fn root_store(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| e.to_string())?;
        roots.add(cert).map_err(|e| e.to_string())?;
        n += 1;
    }
    if n == 0 {
        return Err("no certificate in the bundle".into());
    }
    Ok(roots)
}

type Cache<K, V> = Mutex<HashMap<K, (u64, Arc<V>)>>;

/// The proxy's secrets and the TLS configs built from them (cached per secret generation).
#[derive(Debug, Default)]
pub struct Secrets {
    workload: ArcSwapOption<WorkloadIdentity>,
    generation: AtomicU64,
    rotations: AtomicU64,
    servers: Cache<(DownstreamTls, bool), ServerConfig>,
    clients: Cache<UpstreamTls, ClientConfig>,
}

impl Secrets {
    /// No workload certificate yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs a (new) workload certificate: handshakes from now on use it.
    pub fn set_workload(&self, identity: WorkloadIdentity) {
        let previous = self.workload.swap(Some(Arc::new(identity)));
        if previous.is_some() {
            self.rotations.fetch_add(1, Ordering::Relaxed);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The current workload identity.
    pub fn workload(&self) -> Option<Arc<WorkloadIdentity>> {
        self.workload.load_full()
    }

    /// How many times the certificate was replaced after the first one.
    pub fn rotations(&self) -> u64 {
        self.rotations.load(Ordering::Relaxed)
    }

    fn cached<K: std::hash::Hash + Eq + Clone, V>(
        &self,
        cache: &Cache<K, V>,
        key: &K,
        build: impl FnOnce() -> Result<V, TlsError>,
    ) -> Result<Arc<V>, TlsError> {
        let generation = self.generation.load(Ordering::Acquire);
        let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, v)) = map.get(key)
            && *g == generation
        {
            return Ok(v.clone());
        }
        let v = Arc::new(build()?);
        map.insert(key.clone(), (generation, v.clone()));
        Ok(v)
    }

    fn certified(
        &self,
        source: &CertSource,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        match source {
            CertSource::Workload => {
                let w = self
                    .workload()
                    .ok_or(TlsError::NoSecret(crate::config::WORKLOAD_SECRET))?;
                Ok((w.chain.clone(), w.key.clone_key()))
            }
            CertSource::Files {
                cert_chain,
                private_key,
            } => {
                let file = |path: &str, reason: String| TlsError::File {
                    path: path.to_string(),
                    reason,
                };
                let chain = CertificateDer::pem_file_iter(cert_chain)
                    .map_err(|e| file(cert_chain, e.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| file(cert_chain, e.to_string()))?;
                let key = PrivateKeyDer::from_pem_file(private_key)
                    .map_err(|e| file(private_key, e.to_string()))?;
                Ok((chain, key))
            }
        }
    }

    fn roots(&self, source: &TrustSource) -> Result<Arc<RootCertStore>, TlsError> {
        match source {
            TrustSource::MeshRoot => Ok(self
                .workload()
                .ok_or(TlsError::NoSecret(crate::config::ROOT_SECRET))?
                .roots
                .clone()),
            TrustSource::File(path) => {
                let pem = std::fs::read(path).map_err(|e| TlsError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                root_store(&pem)
                    .map(Arc::new)
                    .map_err(|reason| TlsError::File {
                        path: path.clone(),
                        reason,
                    })
            }
        }
    }

    /// The server config for `tls`; `alpn` false leaves ALPN out (the client offered none of
    /// ours: Envoy then selects none rather than failing).
    pub fn server_config(
        &self,
        tls: &DownstreamTls,
        alpn: bool,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        self.cached(&self.servers, &(tls.clone(), alpn), || {
            let builder = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            let builder = match &tls.validation {
                Some(trust) => {
                    let roots = self.roots(trust)?;
                    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                        roots,
                        provider(),
                    );
                    let verifier = if tls.require_client_certificate {
                        verifier
                    } else {
                        verifier.allow_unauthenticated()
                    };
                    builder.with_client_cert_verifier(
                        verifier
                            .build()
                            .map_err(|e| TlsError::Rustls(e.to_string()))?,
                    )
                }
                None => builder.with_no_client_auth(),
            };
            let (chain, key) = self.certified(&tls.certificate)?;
            let mut config = builder
                .with_single_cert(chain, key)
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            if alpn {
                config.alpn_protocols = tls
                    .alpn_protocols
                    .iter()
                    .map(|p| p.as_bytes().to_vec())
                    .collect();
            }
            Ok(config)
        })
    }

    /// The client config for `tls`.
    pub fn client_config(&self, tls: &UpstreamTls) -> Result<Arc<ClientConfig>, TlsError> {
        self.cached(&self.clients, tls, || {
            let builder = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
                match &tls.validation {
                    Some(trust) => Arc::new(verify::SanVerifier::new(
                        self.roots(trust)?,
                        tls.match_sans.clone(),
                    )?),
                    None => Arc::new(verify::AcceptAny),
                };
            let builder = builder
                .dangerous()
                .with_custom_certificate_verifier(verifier);
            let mut config = match &tls.certificate {
                Some(source) => {
                    let (chain, key) = self.certified(source)?;
                    builder
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| TlsError::Rustls(e.to_string()))?
                }
                None => builder.with_no_client_auth(),
            };
            config.alpn_protocols = tls
                .alpn_protocols
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect();
            Ok(config)
        })
    }
}

/// The first URI SAN of a DER certificate.
pub fn uri_san(cert: &[u8]) -> Option<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::URI(u) => Some((*u).to_string()),
        _ => None,
    })
}

/// The DNS name SANs of a DER certificate.
pub fn dns_sans(cert: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(cert) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_string()),
            _ => None,
        })
        .collect()
}

/// The hex SHA-256 of a DER certificate (`Hash=` of `x-forwarded-client-cert`).
pub fn cert_hash(cert: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the first bytes of a connection are a TLS handshake record (a ClientHello).
pub fn looks_like_tls(first: &[u8]) -> bool {
    first.first() == Some(&0x16) && first.get(1).is_none_or(|b| *b == 0x03)
}
