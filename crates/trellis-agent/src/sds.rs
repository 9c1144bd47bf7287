//! The SDS server Envoy reads its workload certificate and the mesh root from, over a Unix
//! socket only Envoy's process can reach — the key never touches the disk. Secret names are
//! Istio's: `default` (certificate and key) and `ROOTCA` (trust root). New certificates are
//! pushed to Envoy as soon as they are issued.

use std::collections::BTreeSet;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};
use trellis_xds::{to_any, type_url};

use crate::identity::WorkloadCertificate;

/// The workload certificate's secret name.
pub const WORKLOAD_SECRET: &str = "default";
/// The trust root's secret name.
pub const ROOT_SECRET: &str = "ROOTCA";

/// Serves the current certificate to Envoy.
#[derive(Debug, Clone)]
pub struct SdsServer {
    certs: watch::Receiver<Arc<WorkloadCertificate>>,
    nonce: Arc<AtomicU64>,
}

impl SdsServer {
    /// A server following `certs`.
    pub fn new(certs: watch::Receiver<Arc<WorkloadCertificate>>) -> Self {
        SdsServer {
            certs,
            nonce: Arc::default(),
        }
    }

    /// Binds the Unix socket at `path`, replacing a stale one (a socket file left by a process
    /// that was killed). Binding before serving makes a failure an error of the caller's, not
    /// a log line while Envoy waits for certificates that never come.
    pub fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("removing the stale socket {}: {e}", path.display()),
                ));
            }
        }
        let listener = tokio::net::UnixListener::bind(path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(listener)
    }

    /// Serves on `listener` (bound at `path` by [`SdsServer::bind_unix`]) until `shutdown`,
    /// then removes the socket file.
    pub async fn serve_unix(
        self,
        listener: tokio::net::UnixListener,
        path: &Path,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let served = tonic::transport::Server::builder()
            .add_service(SecretDiscoveryServiceServer::new(self))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
            .await
            .map_err(std::io::Error::other);
        let _ = std::fs::remove_file(path);
        served
    }

    fn response(&self, names: &BTreeSet<String>, cert: &WorkloadCertificate) -> DiscoveryResponse {
        let nonce = self.nonce.fetch_add(1, Ordering::Relaxed).to_string();
        let resources = names
            .iter()
            .filter_map(|name| secret_for(name, cert))
            .map(|s| to_any(type_url::SECRET, &s))
            .collect();
        DiscoveryResponse {
            version_info: version_of(cert),
            resources,
            type_url: type_url::SECRET.to_string(),
            nonce,
            ..Default::default()
        }
    }
}

/// The version of a certificate: its expiry, which changes with every issuance.
fn version_of(cert: &WorkloadCertificate) -> String {
    let at = cert
        .not_after
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", at.as_secs(), at.subsec_nanos())
}

fn inline(pem: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(Specifier::InlineBytes(pem.as_bytes().to_vec())),
        ..Default::default()
    })
}

/// The secret of a name, if we serve it.
pub fn secret_for(name: &str, cert: &WorkloadCertificate) -> Option<Secret> {
    let kind = match name {
        WORKLOAD_SECRET => secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(&cert.cert_chain_pem),
            private_key: inline(&cert.key_pem),
            ..Default::default()
        }),
        ROOT_SECRET => secret::Type::ValidationContext(CertificateValidationContext {
            trusted_ca: inline(&cert.root_pem),
            ..Default::default()
        }),
        _ => return None,
    };
    Some(Secret {
        name: name.to_string(),
        r#type: Some(kind),
    })
}

type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl SecretDiscoveryService for SdsServer {
    type DeltaSecretsStream = Responses<DeltaDiscoveryResponse>;
    type StreamSecretsStream = Responses<DiscoveryResponse>;

    async fn delta_secrets(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Err(Status::unimplemented(
            "delta SDS is not served; use StreamSecrets",
        ))
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let server = self.clone();
        let mut requests = request.into_inner();
        tokio::spawn(async move {
            let mut certs = server.certs.clone();
            let mut names: BTreeSet<String> = BTreeSet::new();
            loop {
                tokio::select! {
                    message = requests.message() => {
                        let Ok(Some(request)) = message else { return };
                        if let Some(error) = &request.error_detail {
                            warn!(error = %error.message, "Envoy rejected a secret");
                        }
                        let wanted: BTreeSet<String> = request.resource_names.into_iter().collect();
                        // An ACK of what we sent needs no answer; a new set of names does.
                        if wanted == names && !request.response_nonce.is_empty() {
                            continue;
                        }
                        names = wanted;
                        let cert = certs.borrow_and_update().clone();
                        debug!(?names, "serving secrets");
                        if tx.send(Ok(server.response(&names, &cert))).await.is_err() {
                            return;
                        }
                    }
                    changed = certs.changed() => {
                        if changed.is_err() { return }
                        let cert = certs.borrow_and_update().clone();
                        if !names.is_empty() && tx.send(Ok(server.response(&names, &cert))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let names = request.into_inner().resource_names.into_iter().collect();
        let cert = self.certs.borrow().clone();
        Ok(Response::new(self.response(&names, &cert)))
    }
}

#[cfg(test)]
mod tests;
