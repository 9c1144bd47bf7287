//! The control plane's security services: the mesh CA (persisted root or the operator's
//! `cacerts`), workload tokens, and the TLS identity of the secure xDS port (Istio's 15012),
//! where proxies get both their config and their certificates, verifying the control plane
//! against the mesh root.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use trellis_ca::{
    CertificateAuthority, CertificateService, ServingCertificate, SpiffeId, TokenIssuer,
};

/// How the CA runs.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// Where the CA keeps its root and keys (Istio's `cacerts` layout).
    pub ca_dir: PathBuf,
    /// The trust domain of every identity.
    pub trust_domain: String,
    /// Default lifetime of workload certificates.
    pub workload_ttl: Duration,
    /// How often proxies fetch a `jwksUri` again (the `cache_duration` of every remote JWKS;
    /// istiod's `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`).
    pub jwks_refresh_interval: Duration,
}

/// istiod's default `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`: how stale a rotated JWKS may be.
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(20 * 60);

impl SecurityConfig {
    /// The default CA directory: the user's state directory, so restarts keep the same root.
    pub fn default_ca_dir() -> PathBuf {
        let state = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(std::env::temp_dir);
        state.join("trellis/ca")
    }
}

/// The running security services.
#[derive(Debug, Clone)]
pub struct Security {
    /// The CA.
    pub ca: Arc<CertificateAuthority>,
    /// The CSR service (served on the secure port).
    pub certificates: CertificateService,
    /// The control plane's own serving certificate.
    pub serving: ServingCertificate,
}

/// The control plane's identity, as istiod's.
fn control_plane_identity(trust_domain: &str) -> SpiffeId {
    SpiffeId::new(trust_domain, "istio-system", "istiod")
}

/// DNS names proxies may use for the control plane.
pub const CONTROL_PLANE_NAMES: [&str; 4] = [
    "istiod.istio-system.svc",
    "istiod",
    "trellis-control-plane",
    "localhost",
];

impl Security {
    /// Loads (or creates) the CA and issues the control plane's serving certificate for `ips`.
    pub fn start(config: &SecurityConfig, ips: &[IpAddr]) -> anyhow::Result<Self> {
        let ca = CertificateAuthority::load_or_create(&config.ca_dir, &config.trust_domain)
            .with_context(|| format!("starting the CA in {}", config.ca_dir.display()))?;
        let tokens = TokenIssuer::load_or_create(&config.ca_dir)
            .context("loading the workload token key")?;
        let serving = ca
            .serving_certificate(
                &control_plane_identity(&config.trust_domain),
                &CONTROL_PLANE_NAMES,
                ips,
                Duration::from_secs(365 * 24 * 3600),
            )
            .context("issuing the control plane's serving certificate")?;
        let ca = Arc::new(ca);
        let certificates =
            CertificateService::new(ca.clone(), Arc::new(tokens), config.workload_ttl);
        Ok(Security {
            ca,
            certificates,
            serving,
        })
    }
}
