//! An external HTTPS server that requires a client certificate, for DestinationRule
//! `tls.mode: MUTUAL` origination scenarios: a fresh server CA and a certificate for
//! [`MTLS_HOST`] and `127.0.0.1`, a client CA it trusts with a client certificate
//! (`CN=client.trellis.test`), and a rogue CA (which it does not trust) with its own client
//! certificate, all written as PEM files a DestinationRule names. Every request over a verified
//! connection is answered `200` with [`MTLS_BODY`]; a handshake without a client certificate of
//! the client CA is refused by the TLS stack (rustls' client verifier).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::oneshot;

/// The host name of the server's certificate (a ServiceEntry declares it).
pub const MTLS_HOST: &str = "mtls.trellis.test";
/// The body of every answer.
pub const MTLS_BODY: &str = "mtls ok: client certificate verified";

/// The PEM files a scenario's DestinationRule names.
#[derive(Debug, Clone)]
pub struct MtlsFiles {
    /// The CA that signed the server's certificate (`caCertificates`).
    pub server_ca: PathBuf,
    /// A client certificate the server accepts (`clientCertificate`).
    pub client_cert: PathBuf,
    /// Its key (`privateKey`).
    pub client_key: PathBuf,
    /// A client certificate of a CA the server does not trust.
    pub rogue_cert: PathBuf,
    /// Its key.
    pub rogue_key: PathBuf,
    /// That rogue CA (as a wrong `caCertificates`: it did not sign the server).
    pub rogue_ca: PathBuf,
}

impl MtlsFiles {
    /// The scenario templates and their values.
    pub fn templates(&self) -> Vec<(&'static str, String)> {
        [
            ("MTLS_SERVER_CA", &self.server_ca),
            ("MTLS_CLIENT_CERT", &self.client_cert),
            ("MTLS_CLIENT_KEY", &self.client_key),
            ("MTLS_ROGUE_CERT", &self.rogue_cert),
            ("MTLS_ROGUE_KEY", &self.rogue_key),
            ("MTLS_ROGUE_CA", &self.rogue_ca),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.display().to_string()))
        .collect()
    }
}

/// The running server; stops when dropped.
#[derive(Debug)]
pub struct MtlsServer {
    address: SocketAddr,
    files: MtlsFiles,
    _stop: oneshot::Sender<()>,
}

fn ca(name: &str) -> anyhow::Result<(Certificate, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key)?;
    Ok((cert, Issuer::new(params, key)))
}

fn leaf(
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'static, KeyPair>,
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl MtlsServer {
    /// Creates the CAs and certificates in `dir`, binds `address` and serves.
    pub async fn start(address: SocketAddr, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let write = |name: &str, content: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, content)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        let (server_ca, server_issuer) = ca("Trellis test mTLS server CA")?;
        let (client_ca, client_issuer) = ca("Trellis test mTLS client CA")?;
        let (rogue_ca, rogue_issuer) = ca("Trellis test rogue CA")?;
        let (server_cert, server_key) = leaf(
            &[MTLS_HOST, "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &server_issuer,
        )?;
        let (client_cert, client_key) = leaf(
            &["client.trellis.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &client_issuer,
        )?;
        let (rogue_cert, rogue_key) = leaf(
            &["client.trellis.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &rogue_issuer,
        )?;
        let files = MtlsFiles {
            server_ca: write("server-ca.pem", &server_ca.pem())?,
            client_cert: write("client.pem", &client_cert)?,
            client_key: write("client-key.pem", &client_key)?,
            rogue_cert: write("rogue-client.pem", &rogue_cert)?,
            rogue_key: write("rogue-client-key.pem", &rogue_key)?,
            rogue_ca: write("rogue-ca.pem", &rogue_ca.pem())?,
        };
        let tls = tls_config(&server_cert, &server_key, &client_ca.pem())?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = crate::fixed_port::bind(address, "mTLS server").await?;
        let address = listener.local_addr()?;
        let (stop, mut stopped) = oneshot::channel::<()>();
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
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(|_: Request<Incoming>| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(MTLS_BODY.as_bytes()),
                        )))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(MtlsServer {
            address,
            files,
            _stop: stop,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The PEM files.
    pub fn files(&self) -> &MtlsFiles {
        &self.files
    }
}

/// A server config that requires a client certificate of `client_ca_pem`.
fn tls_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("server certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("server key")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots.add(ca.context("client CA")?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .context("client certificate verifier")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A client config trusting the server CA, with or without a client certificate.
    fn client(files: &MtlsFiles, cert: Option<(&Path, &Path)>) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(&files.server_ca).unwrap() {
            roots.add(ca.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        match cert {
            None => builder.with_no_client_auth(),
            Some((c, k)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(c)
                        .unwrap()
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_file(k).unwrap(),
                )
                .unwrap(),
        }
    }

    /// Whether a request over TLS with `config` gets the server's answer.
    async fn answered(address: SocketAddr, config: rustls::ClientConfig) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(MTLS_HOST).unwrap();
        let Ok(mut tls) = connector.connect(name, tcp).await else {
            return false;
        };
        let request = format!("GET / HTTP/1.1\r\nhost: {MTLS_HOST}\r\nconnection: close\r\n\r\n");
        if tls.write_all(request.as_bytes()).await.is_err() {
            return false;
        }
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).contains(MTLS_BODY)
    }

    #[tokio::test]
    async fn only_the_client_ca_certificate_is_served() {
        let dir = std::env::temp_dir().join(format!("trellis-mtls-test-{}", std::process::id()));
        let server = MtlsServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), &dir)
            .await
            .unwrap();
        let f = server.files().clone();
        let ok = client(&f, Some((&f.client_cert, &f.client_key)));
        assert!(answered(server.address(), ok).await);
        assert!(!answered(server.address(), client(&f, None)).await);
        let rogue = client(&f, Some((&f.rogue_cert, &f.rogue_key)));
        assert!(!answered(server.address(), rogue).await);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
