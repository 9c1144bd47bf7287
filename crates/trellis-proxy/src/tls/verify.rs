//! Server certificate verification for `UpstreamTlsContext`: the chain against the trust
//! anchors (webpki), then the URI SANs against `match_typed_subject_alt_names`. Istio's SNI
//! (`outbound_.PORT_._.HOST`) is not a name the certificate carries, so the DNS-name check is
//! replaced by the SAN match, as Envoy does when SAN matchers are configured.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use super::{TlsError, dns_sans, provider, uri_san};
use crate::config::{SanKind, SanMatch};

#[derive(Debug)]
pub(super) struct SanVerifier {
    inner: Arc<WebPkiServerVerifier>,
    sans: Vec<SanMatch>,
}

impl SanVerifier {
    pub(super) fn new(roots: Arc<RootCertStore>, sans: Vec<SanMatch>) -> Result<Self, TlsError> {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        Ok(SanVerifier { inner, sans })
    }
}

impl ServerCertVerifier for SanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // webpki checks the chain before the name: a name error means the chain is good.
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(_) => {}
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {}
            Err(e) => return Err(e),
        }
        if self.sans.is_empty() {
            return Ok(ServerCertVerified::assertion());
        }
        let presented = uri_san(end_entity.as_ref());
        let dns = dns_sans(end_entity.as_ref());
        let matches = |m: &SanMatch| match m.kind {
            SanKind::Uri => presented.as_deref() == Some(m.value.as_str()),
            SanKind::Dns => dns.iter().any(|d| d.eq_ignore_ascii_case(&m.value)),
        };
        if self.sans.iter().any(matches) {
            return Ok(ServerCertVerified::assertion());
        }
        let expected: Vec<&str> = self.sans.iter().map(|m| m.value.as_str()).collect();
        Err(Error::General(format!(
            "upstream identity {} does not match the expected {}",
            presented
                .as_deref()
                .unwrap_or_else(|| dns.first().map_or("(no SAN)", String::as_str)),
            expected.join(" or ")
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The provider's signature algorithms: `AcceptAny` skips the chain, never the handshake signatures.
fn algorithms() -> WebPkiSupportedAlgorithms {
    provider().signature_verification_algorithms
}

/// No validation context: any server certificate is accepted (Envoy's behaviour).
#[derive(Debug)]
pub(super) struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}
