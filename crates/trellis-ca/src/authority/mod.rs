//! Where certificates are signed: the CA's signing key and chain, and workload certificate
//! issuance from CSRs. The identity in an issued certificate is the one the caller
//! authenticated, never what the CSR asks for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;
use tracing::info;

use crate::files::{self, CaFiles};
use crate::identity::SpiffeId;

/// Why the CA could not start or sign.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing CA files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Some but not all of Istio's `cacerts` files are present.
    #[error(
        "CA directory {dir} is incomplete: missing {missing} (Istio's cacerts layout needs ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem)"
    )]
    IncompleteCaDir {
        /// The directory.
        dir: PathBuf,
        /// The missing file names.
        missing: String,
    },
    /// The CA key is not a PKCS#8 key we can sign with.
    #[error(
        "{path}: cannot use the CA key ({reason}); it must be PKCS#8 PEM (convert with `openssl pkcs8 -topk8 -nocrypt -in ca-key.pem -out ca-key.pem.new`)"
    )]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A CA certificate that cannot be parsed.
    #[error("{path}: not a usable CA certificate: {reason}")]
    BadCaCert {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A CSR that cannot be parsed or whose signature does not verify.
    #[error("invalid certificate signing request: {0}")]
    BadCsr(String),
    /// The CSR asks for an identity other than the authenticated one.
    #[error("the CSR asks for {requested} but the caller is {authenticated}")]
    IdentityMismatch {
        /// What the CSR's URI SAN says.
        requested: String,
        /// Who the caller proved to be.
        authenticated: String,
    },
    /// A requested lifetime of zero.
    #[error("a certificate lifetime must be positive")]
    ZeroTtl,
    /// Key generation or signing failed.
    #[error("certificate operation failed: {0}")]
    Crypto(#[source] rcgen::Error),
}

/// A signed workload certificate with what a workload needs to use it.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The workload certificate first, then the intermediates up to (not including) the root.
    pub cert_chain: Vec<String>,
    /// The trust root (PEM).
    pub root_cert: String,
    /// When the workload certificate expires.
    pub not_after: OffsetDateTime,
}

/// The mesh CA.
pub struct CertificateAuthority {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    issuer_not_after: OffsetDateTime,
    intermediates: Vec<String>,
    root_cert: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .field("intermediates", &self.intermediates.len())
            .finish_non_exhaustive()
    }
}

/// Lifetime of a self-signed root.
const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Certificates start a little in the past so that peers with a slow clock accept them.
const BACKDATE: Duration = Duration::from_secs(60);

impl CertificateAuthority {
    /// Loads the CA from `dir` in Istio's `cacerts` layout, or creates a self-signed root there
    /// on first start (so later starts keep the same trust root).
    pub fn load_or_create(dir: &Path, trust_domain: &str) -> Result<Self, CaError> {
        match files::read(dir)? {
            Some(files) => {
                info!(dir = %dir.display(), "using the CA in {}", dir.display());
                Self::from_files(dir, &files, trust_domain)
            }
            None => {
                let files = self_signed_root(trust_domain)?;
                files::write(dir, &files)?;
                info!(dir = %dir.display(), "created a self-signed root CA");
                Self::from_files(dir, &files, trust_domain)
            }
        }
    }

    fn from_files(dir: &Path, files: &CaFiles, trust_domain: &str) -> Result<Self, CaError> {
        let key_path = dir.join(files::CA_KEY);
        let key = KeyPair::from_pem(&files.ca_key).map_err(|e| CaError::BadKey {
            path: key_path,
            reason: e.to_string(),
        })?;
        let cert_path = dir.join(files::CA_CERT);
        let bad_cert = |reason: String| CaError::BadCaCert {
            path: cert_path.clone(),
            reason,
        };
        let issuer_not_after = not_after_of(&files.ca_cert).map_err(bad_cert)?;
        let issuer =
            Issuer::from_ca_cert_pem(&files.ca_cert, key).map_err(|e| bad_cert(e.to_string()))?;
        let root = files::split_pem_certs(&files.root_cert);
        let root_cert = root.first().cloned().ok_or_else(|| CaError::BadCaCert {
            path: dir.join(files::ROOT_CERT),
            reason: "no certificate in the file".into(),
        })?;
        let intermediates = files::split_pem_certs(&files.cert_chain)
            .into_iter()
            .filter(|c| normalize(c) != normalize(&root_cert))
            .collect();
        Ok(CertificateAuthority {
            trust_domain: trust_domain.to_string(),
            issuer,
            issuer_not_after,
            intermediates,
            root_cert,
        })
    }

    /// The trust domain identities are issued in.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The trust root (PEM) workloads verify peers against.
    pub fn root_cert(&self) -> &str {
        &self.root_cert
    }

    /// Signs a workload certificate for `identity` with the CSR's public key. The certificate
    /// carries exactly the authenticated identity; a CSR that asks for another one is refused.
    /// The lifetime is capped at the signing certificate's.
    pub fn sign(
        &self,
        csr_pem: &str,
        identity: &SpiffeId,
        ttl: Duration,
    ) -> Result<IssuedCertificate, CaError> {
        if ttl.is_zero() {
            return Err(CaError::ZeroTtl);
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::BadCsr(e.to_string()))?;
        for san in &csr.params.subject_alt_names {
            let requested = match san {
                SanType::URI(uri) => uri.as_str().to_string(),
                other => format!("{other:?}"),
            };
            if requested != identity.to_string() {
                return Err(CaError::IdentityMismatch {
                    requested,
                    authenticated: identity.to_string(),
                });
            }
        }
        let params = self.leaf_params(identity, ttl)?;
        let request = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        };
        let leaf = request.signed_by(&self.issuer).map_err(CaError::Crypto)?;
        let not_after = request.params.not_after;
        let mut cert_chain = vec![leaf.pem()];
        cert_chain.extend(self.intermediates.iter().cloned());
        Ok(IssuedCertificate {
            cert_chain,
            root_cert: self.root_cert.clone(),
            not_after,
        })
    }
}

/// A serving certificate and its key, for the control plane's own TLS port.
#[derive(Debug, Clone)]
pub struct ServingCertificate {
    /// Certificate first, then intermediates (PEM).
    pub cert_chain_pem: String,
    /// The private key (PKCS#8 PEM); it never leaves the control plane.
    pub key_pem: String,
}

impl CertificateAuthority {
    /// A certificate for the control plane itself, with DNS and IP SANs (how proxies address
    /// it) and its SPIFFE identity, so proxies can verify it against the mesh root.
    pub fn serving_certificate(
        &self,
        identity: &SpiffeId,
        dns_names: &[&str],
        ips: &[std::net::IpAddr],
        ttl: Duration,
    ) -> Result<ServingCertificate, CaError> {
        let key = KeyPair::generate().map_err(CaError::Crypto)?;
        let mut params = self.leaf_params(identity, ttl)?;
        for name in dns_names {
            let dns = (*name).to_string().try_into().map_err(CaError::Crypto)?;
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CaError::Crypto)?;
        let mut cert_chain_pem = cert.pem();
        for intermediate in &self.intermediates {
            cert_chain_pem.push_str(intermediate);
        }
        Ok(ServingCertificate {
            cert_chain_pem,
            key_pem: key.serialize_pem(),
        })
    }
}

impl CertificateAuthority {
    /// A leaf certificate naming `identity`: not a CA, usable by client and server, backdated
    /// a little, and no longer lived than the signing certificate.
    fn leaf_params(
        &self,
        identity: &SpiffeId,
        ttl: Duration,
    ) -> Result<CertificateParams, CaError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let uri = identity.to_string().try_into().map_err(CaError::Crypto)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.not_before = now - BACKDATE;
        params.not_after = (now + ttl).min(self.issuer_not_after);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }
}

fn self_signed_root(trust_domain: &str) -> Result<CaFiles, CaError> {
    let key = KeyPair::generate().map_err(CaError::Crypto)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, trust_domain);
    name.push(DnType::CommonName, "Trellis root CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + ROOT_TTL;
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(&key).map_err(CaError::Crypto)?;
    let pem = cert.pem();
    Ok(CaFiles {
        ca_cert: pem.clone(),
        ca_key: key.serialize_pem(),
        root_cert: pem.clone(),
        cert_chain: pem,
    })
}

/// A random positive 128-bit serial, as RFC 5280 recommends.
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

fn not_after_of(pem: &str) -> Result<OffsetDateTime, String> {
    let (_, parsed) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    let cert = parsed.parse_x509().map_err(|e| e.to_string())?;
    Ok(cert.validity().not_after.to_datetime())
}

fn normalize(pem: &str) -> String {
    pem.split_whitespace().collect()
}

#[cfg(test)]
mod tests;
