//! The workload's certificate lifecycle (≈ pilot-agent's SDS side): generate a key locally,
//! have the CA sign a CSR for the workload's identity (authenticated by its token, over TLS
//! verified against the mesh root), and renew before expiry so connections never see an
//! expired certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tracing::{info, warn};
use trellis_ca::{SpiffeId, client, generate_csr};

/// The name proxies use for the control plane in TLS (the serving certificate carries it).
pub const CONTROL_PLANE_SNI: &str = "istiod.istio-system.svc";

/// Where and how to get certificates.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The control plane's secure port (15012).
    pub ca_address: SocketAddr,
    /// The mesh root (PEM), to verify the control plane.
    pub root_cert_pem: String,
    /// The workload token.
    pub token: String,
    /// Who the workload is.
    pub identity: SpiffeId,
    /// The certificate lifetime to ask for.
    pub ttl: Duration,
}

/// A key and its signed chain.
#[derive(Debug, Clone)]
pub struct WorkloadCertificate {
    /// Workload certificate then intermediates (PEM), without the root.
    pub cert_chain_pem: String,
    /// The private key (PKCS#8 PEM), generated here.
    pub key_pem: String,
    /// The mesh root (PEM).
    pub root_pem: String,
    /// When this certificate was obtained (the CA backdates `not_before` for clock skew, so
    /// renewal is measured from here).
    pub fetched_at: SystemTime,
    /// Validity end.
    pub not_after: SystemTime,
}

/// Why a certificate could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Key or CSR generation failed.
    #[error("generating the workload key: {0}")]
    Key(#[from] trellis_ca::CaError),
    /// The CA could not be reached or verified.
    #[error("connecting to the CA at {address}: {reason}")]
    Connect {
        /// Where.
        address: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The CA refused.
    #[error("the CA refused the certificate request: {0}")]
    Refused(String),
    /// The CA's answer is not a usable chain.
    #[error("the CA's answer is not a certificate chain: {0}")]
    BadChain(String),
}

/// Asks the CA for a fresh certificate.
pub async fn fetch(config: &IdentityConfig) -> Result<WorkloadCertificate, IdentityError> {
    let key = generate_csr(&config.identity)?;
    let connect_error = |reason: String| IdentityError::Connect {
        address: config.ca_address,
        reason,
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&config.root_cert_pem))
        .domain_name(CONTROL_PLANE_SNI);
    let channel = Channel::from_shared(format!("https://{}", config.ca_address))
        .map_err(|e| connect_error(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| connect_error(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| connect_error(format!("{e}: {}", source_chain(&e))))?;
    let mut chain = client::create_certificate(channel, &config.token, &key.csr_pem, config.ttl)
        .await
        .map_err(|status| {
            IdentityError::Refused(format!("{:?}: {}", status.code(), status.message()))
        })?;
    let root_pem = chain
        .pop()
        .ok_or_else(|| IdentityError::BadChain("empty chain".into()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| IdentityError::BadChain("no workload certificate before the root".into()))?;
    let not_after = not_after(leaf).map_err(IdentityError::BadChain)?;
    Ok(WorkloadCertificate {
        cert_chain_pem: chain.concat(),
        key_pem: key.key_pem,
        root_pem,
        fetched_at: SystemTime::now(),
        not_after,
    })
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut source = error.source();
    while let Some(s) = source {
        out.push(s.to_string());
        source = s.source();
    }
    out.join(": ")
}

fn not_after(pem: &str) -> Result<SystemTime, String> {
    let (_, parsed) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    let cert = parsed.parse_x509().map_err(|e| e.to_string())?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// When to renew: at 80% of the lifetime left when the certificate was obtained, minus up to 5%
/// jitter so a fleet does not renew in lockstep. (The CA backdates `not_before` for clock skew,
/// so measuring from it would renew short-lived certificates at once.)
pub fn renew_after(cert: &WorkloadCertificate, now: SystemTime) -> Duration {
    let lifetime = cert
        .not_after
        .duration_since(cert.fetched_at)
        .unwrap_or_default();
    let jitter = lifetime.mul_f64(rand::random::<f64>() * 0.05);
    let renew_at = cert.fetched_at + lifetime.mul_f64(0.8) - jitter;
    renew_at.duration_since(now).unwrap_or_default()
}

/// Keeps `current` fresh until `shutdown`: renews before expiry, retrying with backoff when the
/// CA is unreachable (the old certificate stays in use meanwhile).
pub async fn keep_fresh(
    config: IdentityConfig,
    current: watch::Sender<Arc<WorkloadCertificate>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut rotations = 0u64;
    loop {
        let wait = renew_after(&current.borrow(), SystemTime::now());
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(wait) => {}
        }
        let mut backoff = Duration::from_millis(200);
        loop {
            match fetch(&config).await {
                Ok(cert) => {
                    rotations += 1;
                    info!(identity = %config.identity, rotations, "workload certificate rotated");
                    current.send_replace(Arc::new(cert));
                    break;
                }
                Err(error) => {
                    warn!(%error, retry_in = ?backoff, "certificate renewal failed; the current certificate stays in use");
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}
