//! SDS over a real Unix socket with a real gRPC client, as Envoy connects.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Endpoint, Uri};

use super::*;

fn cert(tag: &str, expires_in: u64) -> WorkloadCertificate {
    let now = SystemTime::now();
    WorkloadCertificate {
        cert_chain_pem: format!("CHAIN {tag}"),
        key_pem: format!("KEY {tag}"),
        root_pem: "ROOT".into(),
        fetched_at: now,
        not_after: now + Duration::from_secs(expires_in),
    }
}

fn decode(response: &DiscoveryResponse) -> Vec<Secret> {
    response
        .resources
        .iter()
        .map(|any| Secret::decode(any.value.as_slice()).expect("a Secret"))
        .collect()
}

async fn next(stream: &mut tonic::Streaming<DiscoveryResponse>) -> DiscoveryResponse {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an answer within 5 s")
        .expect("no error")
        .expect("open")
}

#[tokio::test]
async fn serves_istio_secret_names_and_pushes_rotations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("sds.sock");
    let (tx, rx) = watch::channel(Arc::new(cert("one", 3600)));
    let (stop_tx, mut stop_rx) = watch::channel(false);
    // A stale socket file (left by a killed agent) is replaced.
    std::fs::write(&socket, b"stale").expect("stale file");
    let listener = SdsServer::bind_unix(&socket).expect("bind over a stale socket");
    let server_socket = socket.clone();
    let server = tokio::spawn(async move {
        SdsServer::new(rx)
            .serve_unix(listener, &server_socket, async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await
    });
    let path = socket.clone();
    let channel = Endpoint::try_from("http://sds.local")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect over the Unix socket");
    let (requests, request_rx) = mpsc::channel(4);
    requests
        .send(DiscoveryRequest {
            type_url: trellis_xds::type_url::SECRET.into(),
            resource_names: vec![WORKLOAD_SECRET.into(), ROOT_SECRET.into()],
            ..Default::default()
        })
        .await
        .expect("send");
    let mut stream = SecretDiscoveryServiceClient::new(channel)
        .stream_secrets(ReceiverStream::new(request_rx))
        .await
        .expect("stream")
        .into_inner();

    let first = next(&mut stream).await;
    let secrets = decode(&first);
    assert_eq!(secrets.len(), 2);
    let workload = secrets
        .iter()
        .find(|s| s.name == "default")
        .expect("default");
    let Some(secret::Type::TlsCertificate(tls)) = &workload.r#type else {
        panic!("default is a TLS certificate: {workload:?}");
    };
    assert!(tls.private_key.is_some());
    let root = secrets.iter().find(|s| s.name == "ROOTCA").expect("ROOTCA");
    assert!(matches!(
        root.r#type,
        Some(secret::Type::ValidationContext(_))
    ));

    // The ACK gets no answer; a rotation is pushed with a new version.
    requests
        .send(DiscoveryRequest {
            version_info: first.version_info.clone(),
            response_nonce: first.nonce.clone(),
            type_url: trellis_xds::type_url::SECRET.into(),
            resource_names: vec![WORKLOAD_SECRET.into(), ROOT_SECRET.into()],
            ..Default::default()
        })
        .await
        .expect("ack");
    tx.send_replace(Arc::new(cert("two", 7200)));
    let pushed = next(&mut stream).await;
    assert_ne!(pushed.version_info, first.version_info);
    let secrets = decode(&pushed);
    let workload = secrets
        .iter()
        .find(|s| s.name == "default")
        .expect("default");
    let Some(secret::Type::TlsCertificate(tls)) = &workload.r#type else {
        panic!("default is a TLS certificate");
    };
    let chain = match tls
        .certificate_chain
        .as_ref()
        .and_then(|d| d.specifier.as_ref())
    {
        Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineBytes(b)) => {
            String::from_utf8_lossy(b).into_owned()
        }
        other => panic!("inline bytes expected: {other:?}"),
    };
    assert_eq!(chain, "CHAIN two");

    let _ = stop_tx.send(true);
    drop(stream);
    drop(requests);
    let served = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops")
        .expect("the server task");
    assert!(served.is_ok(), "{served:?}");
    assert!(
        !socket.exists(),
        "the socket file is removed when the server stops"
    );
}

#[test]
fn unknown_secret_names_are_not_served() {
    assert!(secret_for("something-else", &cert("x", 60)).is_none());
}

#[test]
fn renewal_is_due_at_about_80_percent_of_lifetime() {
    let c = cert("x", 1000);
    let wait = crate::identity::renew_after(&c, c.fetched_at);
    assert!(
        wait <= Duration::from_secs(800) && wait >= Duration::from_secs(750),
        "{wait:?}"
    );
    let late = crate::identity::renew_after(&c, c.fetched_at + Duration::from_secs(900));
    assert_eq!(late, Duration::ZERO, "overdue renewals happen at once");
}
