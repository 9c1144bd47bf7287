//! Istio's certificate service (`istio.v1.auth.IstioCertificateService/CreateCertificate`),
//! served by the control plane: authenticate the caller by its workload token, check the CSR
//! asks for that identity, sign, and count. The two messages and the one unary method are
//! written out here rather than generated, as they are the whole API.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::authority::{CaError, CertificateAuthority};
use crate::token::TokenIssuer;

/// The wire messages, as in Istio's `security/proto/ca.proto`.
pub mod proto {
    /// A certificate request: a PEM CSR and the wanted lifetime in seconds.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IstioCertificateRequest {
        /// PEM-encoded CSR.
        #[prost(string, tag = "1")]
        pub csr: String,
        /// Requested lifetime in seconds (0: the CA's default).
        #[prost(int64, tag = "3")]
        pub validity_duration: i64,
        /// Free-form metadata (unused by Trellis).
        #[prost(message, optional, tag = "4")]
        pub metadata: Option<prost_types::Struct>,
    }

    /// The signed chain: workload certificate first, trust root last.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IstioCertificateResponse {
        /// PEM certificates.
        #[prost(string, repeated, tag = "1")]
        pub cert_chain: Vec<String>,
    }
}

/// The gRPC method path.
pub const CREATE_CERTIFICATE: &str = "/istio.v1.auth.IstioCertificateService/CreateCertificate";

/// Issuance counts, for the control plane's metrics.
#[derive(Debug, Default)]
pub struct IssuanceCounters {
    /// Certificates signed.
    pub issued: AtomicU64,
    /// Requests refused (unauthenticated, mismatched identity, bad CSR).
    pub refused: AtomicU64,
    /// Every request (Istio's `citadel_server_csr_count`).
    pub requests: AtomicU64,
    /// Refused because the token was missing, invalid or for another identity (Istio's
    /// `citadel_server_authentication_failure_count`).
    pub authentication_failures: AtomicU64,
    /// Refused for any other reason: a bad CSR, a signing failure (Istio's
    /// `citadel_server_csr_sign_error_count`).
    pub sign_errors: AtomicU64,
}

/// The certificate service.
#[derive(Debug, Clone)]
pub struct CertificateService {
    ca: Arc<CertificateAuthority>,
    tokens: Arc<TokenIssuer>,
    default_ttl: Duration,
    max_ttl: Duration,
    counters: Arc<IssuanceCounters>,
}

impl CertificateService {
    /// Signs with `ca` for callers that present a token from `tokens`.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        tokens: Arc<TokenIssuer>,
        default_ttl: Duration,
    ) -> Self {
        CertificateService {
            ca,
            tokens,
            default_ttl,
            max_ttl: default_ttl.max(Duration::from_secs(90 * 24 * 3600)),
            counters: Arc::default(),
        }
    }

    /// Issued and refused counts.
    pub fn counters(&self) -> Arc<IssuanceCounters> {
        self.counters.clone()
    }

    /// Handles one request.
    pub fn create_certificate(
        &self,
        request: &Request<proto::IstioCertificateRequest>,
    ) -> Result<proto::IstioCertificateResponse, Status> {
        let result = self.authenticate_and_sign(request);
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        match &result {
            Ok(_) => self.counters.issued.fetch_add(1, Ordering::Relaxed),
            Err(status) => {
                warn!(code = ?status.code(), reason = status.message(), "certificate request refused");
                let kind = match status.code() {
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                        &self.counters.authentication_failures
                    }
                    _ => &self.counters.sign_errors,
                };
                kind.fetch_add(1, Ordering::Relaxed);
                self.counters.refused.fetch_add(1, Ordering::Relaxed)
            }
        };
        result
    }

    fn authenticate_and_sign(
        &self,
        request: &Request<proto::IstioCertificateRequest>,
    ) -> Result<proto::IstioCertificateResponse, Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated(
                    "no workload token: send `authorization: Bearer TOKEN` (mint one with `trellis token create --namespace NS --service-account SA`)",
                )
            })?;
        let identity = self
            .tokens
            .verify(token)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        if identity.trust_domain != self.ca.trust_domain() {
            return Err(Status::permission_denied(format!(
                "token is for trust domain {}, this CA issues for {}",
                identity.trust_domain,
                self.ca.trust_domain()
            )));
        }
        let message = request.get_ref();
        let ttl = match u64::try_from(message.validity_duration) {
            Ok(0) | Err(_) => self.default_ttl,
            Ok(secs) => Duration::from_secs(secs).min(self.max_ttl),
        };
        let issued = self
            .ca
            .sign(&message.csr, &identity, ttl)
            .map_err(|e| match e {
                CaError::IdentityMismatch { .. } => Status::permission_denied(e.to_string()),
                CaError::BadCsr(_) | CaError::ZeroTtl => Status::invalid_argument(e.to_string()),
                other => Status::internal(other.to_string()),
            })?;
        info!(%identity, not_after = %issued.not_after, "issued workload certificate");
        let mut cert_chain = issued.cert_chain;
        cert_chain.push(issued.root_cert);
        Ok(proto::IstioCertificateResponse { cert_chain })
    }
}

impl tonic::server::NamedService for CertificateService {
    const NAME: &'static str = "istio.v1.auth.IstioCertificateService";
}

#[derive(Clone)]
struct Unary(CertificateService);

impl tonic::server::UnaryService<proto::IstioCertificateRequest> for Unary {
    type Response = proto::IstioCertificateResponse;
    type Future = BoxFuture<Response<Self::Response>, Status>;

    fn call(&mut self, request: Request<proto::IstioCertificateRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.create_certificate(&request).map(Response::new) })
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for CertificateService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            if request.uri().path() != CREATE_CERTIFICATE {
                return Ok(
                    Status::unimplemented(format!("no method {}", request.uri().path()))
                        .into_http(),
                );
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(Unary(service), request).await)
        })
    }
}

/// The workload side: asks the CA at `channel` to sign `csr_pem`, presenting `token`.
pub mod client {
    use std::time::Duration;

    use tonic::transport::Channel;
    use tonic::{Request, Status};

    use super::{CREATE_CERTIFICATE, proto};

    /// Sends one CreateCertificate call; returns the chain (workload certificate first, root
    /// last).
    pub async fn create_certificate(
        channel: Channel,
        token: &str,
        csr_pem: &str,
        ttl: Duration,
    ) -> Result<Vec<String>, Status> {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("CA not reachable: {e}")))?;
        let mut request = Request::new(proto::IstioCertificateRequest {
            csr: csr_pem.to_string(),
            validity_duration: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            metadata: None,
        });
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::invalid_argument("the token is not a valid header value"))?;
        request.metadata_mut().insert("authorization", bearer);
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(CREATE_CERTIFICATE);
        let response: tonic::Response<proto::IstioCertificateResponse> = grpc
            .unary(request, path, tonic_prost::ProstCodec::default())
            .await?;
        Ok(response.into_inner().cert_chain)
    }
}

#[cfg(test)]
mod tests;
