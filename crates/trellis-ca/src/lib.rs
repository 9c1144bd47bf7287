//! The mesh's certificate authority (≈ istiod's CA): a trust root that survives restarts, or the
//! operator's own CA in Istio's `cacerts` layout, and short-lived workload certificates whose
//! only identity is a SPIFFE URI SAN. Workloads generate their keys and send CSRs; private keys
//! never leave the workload.

mod authority;
mod csr;
mod files;
mod identity;
mod service;
mod token;

pub use authority::{CaError, CertificateAuthority, IssuedCertificate, ServingCertificate};
pub use csr::{WorkloadKey, generate_csr};
pub use identity::{IdentityError, SpiffeId};
pub use service::{CertificateService, IssuanceCounters, client, proto};
pub use token::{TokenError, TokenIssuer};

/// Istio's default workload certificate lifetime.
pub const DEFAULT_WORKLOAD_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
