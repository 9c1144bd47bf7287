//! The proxy's workload identity (≈ pilot-agent's SDS side, in process): a key generated
//! here, a certificate from the mesh CA (over TLS, the control plane verified against the
//! root), renewed at ~80% of its lifetime with jitter. Each certificate is installed in
//! [`Secrets`] as SDS `default` / `ROOTCA`; established connections keep theirs, new handshakes
//! use the new one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use trellis_agent::identity::{IdentityConfig, WorkloadCertificate, fetch};
use trellis_ca::SpiffeId;

use crate::ProxySecurity;
use crate::tls::{Secrets, WorkloadIdentity};

/// The SPIFFE identity the proxy asks for: its namespace and service account in the trust
/// domain.
pub fn identity_of(node: &trellis_xds::NodeIdentity, trust_domain: &str) -> SpiffeId {
    SpiffeId::new(trust_domain, &node.namespace, &node.service_account)
}

/// How long to wait before renewing a certificate fetched at `fetched`: 80% of the lifetime
/// left at that moment (the CA backdates `not_before`, so that is the usable lifetime), minus
/// up to 5% of it as jitter (`jitter` in 0..1) so a fleet does not renew in lockstep.
pub fn renew_delay(
    not_after: SystemTime,
    fetched: SystemTime,
    now: SystemTime,
    jitter: f64,
) -> Duration {
    let lifetime = not_after.duration_since(fetched).unwrap_or_default();
    let at = fetched + lifetime.mul_f64(0.8) - lifetime.mul_f64(0.05 * jitter.clamp(0.0, 1.0));
    at.duration_since(now).unwrap_or_default()
}

fn install(secrets: &Secrets, id: &SpiffeId, cert: &WorkloadCertificate) -> Result<(), String> {
    let identity = WorkloadIdentity::from_pem(
        &id.to_string(),
        &cert.cert_chain_pem,
        &cert.key_pem,
        &cert.root_pem,
        cert.not_after,
    )
    .map_err(|e| e.to_string())?;
    secrets.set_workload(identity);
    Ok(())
}

/// Obtains the certificate and keeps it fresh forever (until the task is aborted). Failures
/// are retried with backoff; the current certificate stays in use meanwhile.
pub async fn maintain(security: ProxySecurity, id: SpiffeId, secrets: Arc<Secrets>) {
    let config = IdentityConfig {
        ca_address: security.ca_address,
        root_cert_pem: security.root_cert_pem.clone(),
        token: security.token.clone(),
        identity: id.clone(),
        ttl: security.cert_ttl,
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let fetched = SystemTime::now();
        match fetch(&config)
            .await
            .map_err(|e| e.to_string())
            .and_then(|cert| {
                install(&secrets, &id, &cert)?;
                Ok(cert)
            }) {
            Ok(cert) => {
                backoff = Duration::from_millis(200);
                tracing::info!(identity = %id, rotations = secrets.rotations(), "workload certificate installed");
                let wait = renew_delay(cert.not_after, fetched, SystemTime::now(), rand::random());
                tokio::time::sleep(wait).await;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "obtaining the workload certificate failed; the current one (if any) stays in use");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_80_percent_of_the_remaining_lifetime_minus_jitter() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let after = t0 + Duration::from_secs(100);
        assert_eq!(renew_delay(after, t0, t0, 0.0), Duration::from_secs(80));
        assert_eq!(renew_delay(after, t0, t0, 1.0), Duration::from_secs(75));
        // Later calls wait less; past the point, renew now.
        assert_eq!(
            renew_delay(after, t0, t0 + Duration::from_secs(30), 0.0),
            Duration::from_secs(50)
        );
        assert_eq!(
            renew_delay(after, t0, t0 + Duration::from_secs(99), 0.0),
            Duration::ZERO
        );
        // A few-second certificate still waits most of its life.
        let short = t0 + Duration::from_secs(3);
        assert!(renew_delay(short, t0, t0, 0.5) >= Duration::from_millis(2300));
    }
}
