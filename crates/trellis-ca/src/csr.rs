//! The workload side: generate a key pair locally and a CSR naming the identity.

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};

use crate::authority::CaError;
use crate::identity::SpiffeId;

/// A freshly generated workload key and the CSR for it.
#[derive(Debug)]
pub struct WorkloadKey {
    /// The private key (PKCS#8 PEM): it stays with the workload.
    pub key_pem: String,
    /// The certificate signing request (PEM) sent to the CA.
    pub csr_pem: String,
}

/// Generates an ECDSA P-256 key and a CSR with the identity as URI SAN.
pub fn generate_csr(identity: &SpiffeId) -> Result<WorkloadKey, CaError> {
    let key = KeyPair::generate().map_err(CaError::Crypto)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let uri = identity.to_string().try_into().map_err(CaError::Crypto)?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    let csr = params.serialize_request(&key).map_err(CaError::Crypto)?;
    Ok(WorkloadKey {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem().map_err(CaError::Crypto)?,
    })
}
