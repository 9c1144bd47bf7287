//! The DNS proxy's own ADS stream: it asks the control plane for the name table (NDS, as
//! Istio's agent does; Envoy never asks for it) and hands every table it accepts to the DNS
//! server. ACKs what decodes, NACKs what does not (the server keeps its table), and reconnects
//! forever with backoff.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use trellis_xds::nds::NameTable;
use trellis_xds::type_url;

use super::server::DnsServer;
use super::table::DnsTable;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where and as whom the DNS proxy asks for its name table.
#[derive(Debug, Clone)]
pub struct NdsSource {
    /// The node, as the proxy's main ADS stream presents it.
    pub node: Node,
    /// The workload's namespace (its short names).
    pub namespace: String,
    /// The control plane's ADS address.
    pub address: SocketAddr,
    /// The mesh root (PEM) when ADS runs over TLS (the secure port).
    pub tls_root: Option<String>,
}

/// Follows the name table forever, updating `server`.
pub async fn follow(source: NdsSource, server: Arc<DnsServer>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut progressed = false;
        let reason = match stream(&source, &server, &mut progressed).await {
            Ok(()) => "the control plane closed the stream".to_string(),
            Err(error) => error.to_string(),
        };
        if progressed {
            backoff = BACKOFF_MIN;
        }
        tracing::warn!(%reason, address = %source.address, "NDS stream down; reconnecting");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Why an NDS stream ended.
#[derive(Debug, thiserror::Error)]
enum NdsError {
    #[error("NDS transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("NDS stream: {0}")]
    Status(#[from] tonic::Status),
}

async fn stream(
    source: &NdsSource,
    server: &DnsServer,
    progressed: &mut bool,
) -> Result<(), NdsError> {
    let scheme = if source.tls_root.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint =
        tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", source.address))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
    if let Some(root) = &source.tls_root {
        endpoint = endpoint.tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(root))
                .domain_name(crate::identity::CONTROL_PLANE_SNI),
        )?;
    }
    let channel = endpoint.connect().await?;
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::unbounded_channel();
    let request = |version: String, nonce: String, error: Option<String>| DiscoveryRequest {
        version_info: version,
        type_url: type_url::NAME_TABLE.to_string(),
        response_nonce: nonce,
        error_detail: error.map(|message| RpcStatus {
            code: tonic::Code::InvalidArgument as i32,
            message,
            details: Vec::new(),
        }),
        ..Default::default()
    };
    let _ = tx.send(DiscoveryRequest {
        node: Some(source.node.clone()),
        ..request(String::new(), String::new(), None)
    });
    let mut inbound = client
        .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut accepted = String::new();
    while let Some(response) = inbound.message().await? {
        *progressed = true;
        match decode(&response) {
            Ok(table) => {
                let table = DnsTable::from_name_table(&table, &source.namespace);
                tracing::info!(version = %response.version_info, names = table.len(), "name table applied");
                server.set_table(table);
                accepted = response.version_info.clone();
                let _ = tx.send(request(accepted.clone(), response.nonce, None));
            }
            Err(error) => {
                tracing::warn!(version = %response.version_info, %error, "name table rejected");
                let _ = tx.send(request(accepted.clone(), response.nonce, Some(error)));
            }
        }
    }
    Ok(())
}

/// The name table of a response: its resources merged (Istio sends one).
fn decode(response: &DiscoveryResponse) -> Result<NameTable, String> {
    if response.type_url != type_url::NAME_TABLE {
        return Err(format!("type {} is not NDS", response.type_url));
    }
    let mut merged = NameTable::default();
    for any in &response.resources {
        if any.type_url != type_url::NAME_TABLE {
            return Err(format!(
                "resource of type {} in an NDS response",
                any.type_url
            ));
        }
        let table = NameTable::decode(any.value.as_slice())
            .map_err(|e| format!("NameTable does not decode: {e}"))?;
        merged.table.extend(table.table);
    }
    Ok(merged)
}
