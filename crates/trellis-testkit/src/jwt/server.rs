//! The test issuer's JWKS over HTTPS, for `jwksUri`: a fresh test CA (its certificate written
//! to a file that a DestinationRule's `caCertificates` names), a server certificate for
//! [`JWKS_HOST`] and `127.0.0.1`, and `GET /jwks.json` answering the test JWKS. It counts the
//! fetches, so tests can see the proxies' caching, and its key set can be changed while it runs
//! ([`JwksServer::set_keys`]), as an issuer rotates its signing keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::sync::oneshot;

/// The host name the JWKS server's certificate is for (a ServiceEntry declares it).
pub const JWKS_HOST: &str = "jwks.trellis.test";
/// The path of the key set.
pub const JWKS_PATH: &str = "/jwks.json";

/// A running JWKS server; stops when dropped.
#[derive(Debug)]
pub struct JwksServer {
    address: SocketAddr,
    ca_file: PathBuf,
    fetches: Arc<AtomicUsize>,
    jwks: Arc<RwLock<String>>,
    _stop: oneshot::Sender<()>,
}

impl JwksServer {
    /// Creates a test CA and server certificate in `dir`, binds `address` and serves the keys
    /// `kinds`.
    pub async fn start(
        address: SocketAddr,
        dir: &Path,
        kinds: &[super::KeyKind],
    ) -> anyhow::Result<Self> {
        let jwks = Arc::new(RwLock::new(super::jwks_json_of(kinds)?));
        let served = jwks.clone();
        let (ca_pem, cert_pem, key_pem) = certificates()?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_file = dir.join("jwks-ca.pem");
        std::fs::write(&ca_file, &ca_pem)
            .with_context(|| format!("writing {}", ca_file.display()))?;
        let tls = tls_config(&cert_pem, &key_pem)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = crate::fixed_port::bind(address, "JWKS server").await?;
        let address = listener.local_addr()?;
        let fetches = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let counter = fetches.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                };
                let acceptor = acceptor.clone();
                let jwks = served.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |req: Request<Incoming>| {
                        let body = jwks.read().unwrap_or_else(PoisonError::into_inner).clone();
                        let counter = counter.clone();
                        async move {
                            if req.uri().path() == JWKS_PATH {
                                counter.fetch_add(1, Ordering::Relaxed);
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                            } else {
                                Response::builder()
                                    .status(StatusCode::NOT_FOUND)
                                    .body(Full::new(Bytes::new()))
                            }
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(JwksServer {
            address,
            ca_file,
            fetches,
            jwks,
            _stop: stop,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The test CA's certificate (PEM), for `caCertificates`.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Serves the keys `kinds` from now on (a key rotation at the issuer).
    pub fn set_keys(&self, kinds: &[super::KeyKind]) -> anyhow::Result<()> {
        let text = super::jwks_json_of(kinds)?;
        *self.jwks.write().unwrap_or_else(PoisonError::into_inner) = text;
        Ok(())
    }

    /// How many times the key set was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::Relaxed)
    }
}

/// A test CA and a server certificate it signed: (CA PEM, server chain PEM, server key PEM).
fn certificates() -> anyhow::Result<(String, String, String)> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Trellis test JWKS CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![JWKS_HOST.to_string(), "127.0.0.1".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, JWKS_HOST);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}

fn tls_config(cert_pem: &str, key_pem: &str) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("server certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("server key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
