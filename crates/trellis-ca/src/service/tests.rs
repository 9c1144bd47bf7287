//! The certificate service over real gRPC on loopback.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::{Channel, Server};

use crate::{
    CertificateAuthority, CertificateService, SpiffeId, TokenIssuer, client, generate_csr,
};

struct Fixture {
    _dir: tempfile::TempDir,
    tokens: Arc<TokenIssuer>,
    service: CertificateService,
    channel: Channel,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca =
        Arc::new(CertificateAuthority::load_or_create(dir.path(), "cluster.local").expect("ca"));
    let tokens = Arc::new(TokenIssuer::load_or_create(dir.path()).expect("tokens"));
    let service = CertificateService::new(ca, tokens.clone(), Duration::from_secs(3600));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        Server::builder()
            .add_service(service.clone())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    Fixture {
        _dir: dir,
        tokens,
        service,
        channel,
    }
}

fn reviews() -> SpiffeId {
    SpiffeId::new("cluster.local", "default", "reviews")
}

#[tokio::test]
async fn a_token_holder_gets_a_certificate_for_its_identity() {
    let f = start().await;
    let token = f
        .tokens
        .mint(&reviews(), Duration::from_secs(60))
        .expect("mint");
    let key = generate_csr(&reviews()).expect("csr");
    let chain = client::create_certificate(
        f.channel.clone(),
        &token,
        &key.csr_pem,
        Duration::from_secs(600),
    )
    .await
    .expect("signed");
    assert_eq!(chain.len(), 2, "workload certificate, then the root");
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain[0].as_bytes()).expect("pem");
    let cert = pem.parse_x509().expect("x509");
    let san = cert.subject_alternative_name().expect("ok").expect("san");
    assert_eq!(
        format!("{:?}", san.value.general_names),
        "[URI(\"spiffe://cluster.local/ns/default/sa/reviews\")]"
    );
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!((600..=660).contains(&lifetime), "{lifetime}");
    assert_eq!(f.service.counters().issued.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn unauthenticated_forged_and_mismatched_requests_are_refused_and_counted() {
    let f = start().await;
    let key = generate_csr(&reviews()).expect("csr");
    let call = |token: String, csr: String| {
        let channel = f.channel.clone();
        async move { client::create_certificate(channel, &token, &csr, Duration::from_secs(60)).await }
    };

    let err = call(String::new(), key.csr_pem.clone())
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("invalid workload token"),
        "{}",
        err.message()
    );

    let other_dir = tempfile::tempdir().expect("tempdir");
    let forger = TokenIssuer::load_or_create(other_dir.path()).expect("forger");
    let forged = forger
        .mint(&reviews(), Duration::from_secs(60))
        .expect("mint");
    let err = call(forged, key.csr_pem.clone()).await.expect_err("forged");
    assert_eq!(err.code(), Code::Unauthenticated);

    let admin_token = f
        .tokens
        .mint(
            &SpiffeId::new("cluster.local", "default", "admin"),
            Duration::from_secs(60),
        )
        .expect("mint");
    let err = call(admin_token, key.csr_pem.clone())
        .await
        .expect_err("mismatch");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message()
            .contains("the CSR asks for spiffe://cluster.local/ns/default/sa/reviews"),
        "{}",
        err.message()
    );

    let foreign = f
        .tokens
        .mint(
            &SpiffeId::new("example.org", "default", "reviews"),
            Duration::from_secs(60),
        )
        .expect("mint");
    let err = call(foreign, key.csr_pem.clone())
        .await
        .expect_err("other trust domain");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("trust domain example.org"),
        "{}",
        err.message()
    );

    let counters = f.service.counters();
    assert_eq!(counters.refused.load(Ordering::Relaxed), 4);
    assert_eq!(counters.issued.load(Ordering::Relaxed), 0);
}
