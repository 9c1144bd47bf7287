//! The ADS server speaks the xDS protocol as Envoy expects: responses to subscriptions,
//! ACK/NACK bookkeeping by nonce, and pushes of only what changed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use trellis_control_plane::model::{MeshModel, Snapshot};
use trellis_control_plane::xds::{AdsServer, SyncRegistry, SynczReport};
use trellis_xds::{NodeIdentity, ProxyType, type_url};

const SERVICE: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: echo}\nspec:\n  hosts: [echo.default.svc.cluster.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: echo}}\n";

fn workload(name: &str, ip: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: {name}}}\nspec: {{address: {ip}, labels: {{app: echo}}}}\n"
    )
}

fn snapshot(generation: u64, yaml: &str) -> Arc<Snapshot> {
    let parsed = trellis_api::parse_documents(Path::new("test.yaml"), yaml);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    Arc::new(Snapshot {
        generation,
        model: Arc::new(MeshModel::build(&parsed.resources)),
        cache: Default::default(),
    })
}

fn client_node() -> Node {
    NodeIdentity {
        proxy_type: ProxyType::Sidecar,
        ip: "127.0.0.1".parse().expect("ip"),
        workload: "client".into(),
        namespace: "default".into(),
        service_account: "default".into(),
        labels: Default::default(),
        app_ip: None,
        sds: false,
        interception: trellis_xds::InterceptionMode::None,
    }
    .to_node()
}

struct Harness {
    snapshots: watch::Sender<Arc<Snapshot>>,
    registry: SyncRegistry,
    requests: mpsc::Sender<DiscoveryRequest>,
    responses: tonic::Streaming<DiscoveryResponse>,
}

impl Harness {
    async fn start(node: Node) -> Self {
        let (snapshots, rx) = watch::channel(snapshot(
            1,
            &format!("{SERVICE}{}", workload("a", "127.0.0.5")),
        ));
        let registry = SyncRegistry::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = AggregatedDiscoveryServiceServer::new(AdsServer::new(rx, registry.clone()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(server)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let (requests, rx) = mpsc::channel(8);
        let first = DiscoveryRequest {
            node: Some(node),
            type_url: type_url::CLUSTER.into(),
            ..Default::default()
        };
        requests.send(first).await.expect("send");
        let responses = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("stream")
            .into_inner();
        Harness {
            snapshots,
            registry,
            requests,
            responses,
        }
    }

    async fn next(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(5), self.responses.message())
            .await
            .expect("a response within 5 s")
            .expect("no stream error")
            .expect("stream open")
    }

    async fn ack(&self, response: &DiscoveryResponse, names: &[&str]) {
        self.reply(response, names, None).await;
    }

    async fn reply(&self, response: &DiscoveryResponse, names: &[&str], error: Option<&str>) {
        let request = DiscoveryRequest {
            version_info: if error.is_some() {
                String::new()
            } else {
                response.version_info.clone()
            },
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            error_detail: error.map(|e| RpcStatus {
                code: 3,
                message: e.into(),
                details: vec![],
            }),
            ..Default::default()
        };
        self.requests.send(request).await.expect("send");
    }

    async fn subscribe(&self, type_url: &str, names: &[&str]) {
        let request = DiscoveryRequest {
            type_url: type_url.into(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        self.requests.send(request).await.expect("send");
    }

    async fn wait_report(&self, what: &str, ok: impl Fn(&SynczReport) -> bool) -> SynczReport {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let report = self.registry.report(self.snapshots.borrow().generation);
            if ok(&report) {
                return report;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {report:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

const EDS_NAME: &str = "outbound|80||echo.default.svc.cluster.local";

#[tokio::test]
async fn subscribe_ack_nack_and_push_only_what_changed() {
    let mut h = Harness::start(client_node()).await;
    let cds = h.next().await;
    assert_eq!(cds.type_url, type_url::CLUSTER);
    assert_eq!(cds.version_info, "1");
    assert_eq!(cds.resources.len(), 1);
    h.ack(&cds, &[]).await;

    h.subscribe(type_url::ENDPOINT, &[EDS_NAME]).await;
    let eds = h.next().await;
    assert_eq!(
        (eds.type_url.as_str(), eds.resources.len()),
        (type_url::ENDPOINT, 1)
    );
    h.ack(&eds, &[EDS_NAME]).await;

    h.subscribe(type_url::LISTENER, &[]).await;
    let lds = h.next().await;
    assert_eq!(lds.type_url, type_url::LISTENER);
    h.reply(
        &lds,
        &[],
        Some("Listener virtualOutbound: something unsupported"),
    )
    .await;
    let report = h.wait_report("a NACK", |r| r.nacks_total == 1).await;
    let proxy = &report.proxies[0];
    assert!(!proxy.synced, "a NACKed proxy is not in sync");
    let nack = proxy.types[type_url::LISTENER]
        .nack
        .as_ref()
        .expect("nack recorded");
    assert_eq!(nack.version, "1");
    assert_eq!(
        nack.error,
        "Listener virtualOutbound: something unsupported"
    );

    h.ack(&lds, &[]).await; // a later ACK of the same nonce clears it
    h.subscribe(type_url::ROUTE, &["outbound"]).await;
    let rds = h.next().await;
    h.ack(&rds, &["outbound"]).await;
    h.wait_report("sync", |r| {
        r.proxies
            .first()
            .is_some_and(|p| p.synced && p.generation == 1)
    })
    .await;

    // A new endpoint changes EDS only: exactly one push, of EDS, at the new generation.
    let changed = format!(
        "{SERVICE}{}{}",
        workload("a", "127.0.0.5"),
        workload("b", "127.0.0.6")
    );
    h.snapshots
        .send(snapshot(2, &changed))
        .expect("send snapshot");
    let push = h.next().await;
    assert_eq!(
        (push.type_url.as_str(), push.version_info.as_str()),
        (type_url::ENDPOINT, "2")
    );
    h.ack(&push, &[EDS_NAME]).await;
    let report = h
        .wait_report("generation 2 in sync", |r| {
            r.proxies[0].synced && r.proxies[0].generation == 2
        })
        .await;
    assert_eq!(
        report.proxies[0].types[type_url::CLUSTER].sent.as_deref(),
        Some("1"),
        "CDS was not re-sent"
    );
    let nothing_else =
        tokio::time::timeout(Duration::from_millis(300), h.responses.message()).await;
    assert!(nothing_else.is_err(), "no other push: {nothing_else:?}");
}

#[tokio::test]
async fn stale_nonces_are_ignored() {
    let mut h = Harness::start(client_node()).await;
    let cds = h.next().await;
    let stale = DiscoveryResponse {
        nonce: "999".into(),
        ..cds.clone()
    };
    h.reply(&stale, &[], Some("old news")).await;
    h.ack(&cds, &[]).await;
    let report = h
        .wait_report("ACK", |r| {
            r.proxies
                .first()
                .is_some_and(|p| p.types[type_url::CLUSTER].acked.is_some())
        })
        .await;
    assert_eq!(
        report.nacks_total, 0,
        "a NACK with a stale nonce is not counted"
    );
}

#[tokio::test]
async fn a_node_we_cannot_read_ends_the_stream_with_a_reason() {
    let node = Node {
        id: "not-istio-format".into(),
        ..Default::default()
    };
    let mut h = Harness::start(node).await;
    let status = tokio::time::timeout(Duration::from_secs(5), h.responses.message())
        .await
        .expect("answer within 5 s")
        .expect_err("the stream fails");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("TYPE~IP~WORKLOAD.NAMESPACE"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_repush_for_new_names_is_only_in_sync_once_acked() {
    let mut h = Harness::start(client_node()).await;
    let cds = h.next().await;
    h.ack(&cds, &[]).await;
    h.subscribe(type_url::ENDPOINT, &[EDS_NAME]).await;
    let eds = h.next().await;
    h.ack(&eds, &[EDS_NAME]).await;
    h.subscribe(type_url::LISTENER, &[]).await;
    let lds = h.next().await;
    h.ack(&lds, &[]).await;
    h.subscribe(type_url::ROUTE, &["outbound"]).await;
    let rds = h.next().await;
    h.ack(&rds, &["outbound"]).await;
    h.wait_report("sync", |r| r.proxies.first().is_some_and(|p| p.synced))
        .await;

    // A DestinationRule adds a subset cluster: CDS, then EDS re-sent for the old names.
    let with_subset = format!(
        "{SERVICE}{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: echo}}\nspec:\n  host: echo\n  subsets: [{{name: v1, labels: {{app: echo}}}}]\n",
        workload("a", "127.0.0.5")
    );
    h.snapshots
        .send(snapshot(2, &with_subset))
        .expect("send snapshot");
    let cds = h.next().await;
    assert_eq!(
        (cds.type_url.as_str(), cds.resources.len()),
        (type_url::CLUSTER, 2)
    );
    h.ack(&cds, &[]).await;
    let forced = h.next().await;
    assert_eq!(forced.type_url, type_url::ENDPOINT);
    // The proxy ACKs and asks for the new cluster's endpoints too: same version, new names.
    let subset = "outbound|80|v1|echo.default.svc.cluster.local";
    h.ack(&forced, &[EDS_NAME, subset]).await;
    let repush = h.next().await;
    assert_eq!(
        (repush.type_url.as_str(), repush.version_info.as_str()),
        (type_url::ENDPOINT, "2")
    );
    assert_eq!(repush.resources.len(), 2);
    let report = h.registry.report(2);
    assert!(
        !report.proxies[0].synced,
        "not in sync before the re-push is ACKed: {report:?}"
    );
    h.ack(&repush, &[EDS_NAME, subset]).await;
    h.wait_report("sync after the re-push", |r| r.proxies[0].synced)
        .await;
}
