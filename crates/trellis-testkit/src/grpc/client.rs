//! Calls the echo service through a sidecar: h2c to the sidecar's outbound listener with
//! `:authority` set to the service (what a gRPC client with prior knowledge and a proxy does).

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use http::uri::PathAndQuery;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

use super::Method;
use super::proto::{EchoReply, EchoRequest};

/// One kind of call: which method, and how many messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcCall {
    /// The method (`unary` by default).
    #[serde(default)]
    pub method: Method,
    /// Messages: the replies a `server_stream` asks for, the requests of `client_stream` and
    /// `bidi` (1 by default; ignored by `unary`).
    #[serde(default = "one")]
    pub messages: u32,
}

fn one() -> u32 {
    1
}

/// How a call ended.
#[derive(Debug, Clone, Default)]
pub struct CallResult {
    /// The final `grpc-status` (0 = OK).
    pub code: i32,
    /// `grpc-message` of a failed call.
    pub message: String,
    /// Every reply received, in order (replies before a failure included).
    pub replies: Vec<EchoReply>,
    /// Response headers (and trailers) that came with a failure, e.g. `x-trellis-reason`.
    pub metadata: Vec<(String, String)>,
}

/// A lazily connected channel to `target` (the sidecar) whose requests carry `authority`.
pub fn channel(target: SocketAddr, authority: &str, timeout: Duration) -> anyhow::Result<Channel> {
    let origin: http::Uri = format!("http://{authority}").parse()?;
    Ok(Endpoint::from_shared(format!("http://{target}"))?
        .origin(origin)
        .connect_timeout(timeout)
        .connect_lazy())
}

/// Makes one call with `metadata` as request headers.
pub async fn call(channel: Channel, call: GrpcCall, metadata: &[(String, String)]) -> CallResult {
    match call_inner(channel, call, metadata).await {
        Ok(result) => result,
        Err((status, replies)) => CallResult {
            code: status.code() as i32,
            message: status.message().to_string(),
            replies,
            metadata: status
                .metadata()
                .clone()
                .into_headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        },
    }
}

fn request<T>(message: T, metadata: &[(String, String)]) -> Result<tonic::Request<T>, Status> {
    let mut req = tonic::Request::new(message);
    for (k, v) in metadata {
        let key = MetadataKey::from_bytes(k.as_bytes())
            .map_err(|_| Status::internal(format!("bad metadata key {k:?}")))?;
        let value = MetadataValue::try_from(v.as_str())
            .map_err(|_| Status::internal(format!("bad metadata value {v:?}")))?;
        req.metadata_mut().append(key, value);
    }
    Ok(req)
}

type Failure = (Status, Vec<EchoReply>);

async fn call_inner(
    channel: Channel,
    call: GrpcCall,
    metadata: &[(String, String)],
) -> Result<CallResult, Failure> {
    let fail = |s: Status| (s, Vec::new());
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| fail(Status::unavailable(format!("channel not ready: {e}"))))?;
    let codec = ProstCodec::<EchoRequest, EchoReply>::default();
    let path = PathAndQuery::from_static(call.method.path());
    let n = call.messages.max(1);
    let messages = move || {
        futures::stream::iter((0..n).map(|i| EchoRequest {
            message: format!("m{i}"),
            count: 0,
        }))
    };
    let replies = match call.method {
        Method::Unary => {
            let req = request(
                EchoRequest {
                    message: "m0".into(),
                    count: 0,
                },
                metadata,
            )
            .map_err(fail)?;
            vec![
                grpc.unary(req, path, codec)
                    .await
                    .map_err(fail)?
                    .into_inner(),
            ]
        }
        Method::ClientStream => {
            let req = request(messages(), metadata).map_err(fail)?;
            vec![
                grpc.client_streaming(req, path, codec)
                    .await
                    .map_err(fail)?
                    .into_inner(),
            ]
        }
        Method::ServerStream => {
            let req = request(
                EchoRequest {
                    message: "m0".into(),
                    count: n,
                },
                metadata,
            )
            .map_err(fail)?;
            let stream = grpc
                .server_streaming(req, path, codec)
                .await
                .map_err(fail)?
                .into_inner();
            collect(stream).await?
        }
        Method::Bidi => {
            let req = request(messages(), metadata).map_err(fail)?;
            let stream = grpc
                .streaming(req, path, codec)
                .await
                .map_err(fail)?
                .into_inner();
            collect(stream).await?
        }
    };
    Ok(CallResult {
        code: Code::Ok as i32,
        replies,
        ..Default::default()
    })
}

async fn collect(mut stream: tonic::Streaming<EchoReply>) -> Result<Vec<EchoReply>, Failure> {
    let mut replies = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(reply) => replies.push(reply),
            Err(status) => return Err((status, replies)),
        }
    }
    Ok(replies)
}
