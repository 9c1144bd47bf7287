//! The echo app's gRPC side: dispatches one HTTP/2 request to the method its path names.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tonic::{Code, Status, Streaming};
use tonic_prost::ProstCodec;

use super::proto::{EchoReply, EchoRequest};
use super::{
    FAIL_INSTANCE_METADATA, FAIL_VERSION_METADATA, MAX_STREAM_REPLIES, Method, STATUS_METADATA,
};
use crate::echo::{EchoBody, EchoConfig};

type ReplyStream = std::pin::Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

/// What every reply of one call carries, and how the call ends.
#[derive(Debug, Clone)]
struct Call {
    template: EchoReply,
    /// The status the call ends with (`None`: OK).
    end: Option<Status>,
}

impl Call {
    fn new<B>(req: &Request<B>, config: &EchoConfig) -> Result<Self, Status> {
        let headers = req.headers();
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let mut metadata: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in headers {
            let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
            metadata
                .entry(name.as_str().to_string())
                .and_modify(|e| {
                    e.push(',');
                    e.push_str(&v);
                })
                .or_insert(v);
        }
        let targeted = text(FAIL_INSTANCE_METADATA).is_none_or(|i| i == config.instance)
            && text(FAIL_VERSION_METADATA).is_none_or(|v| v == config.version);
        let end = match text(STATUS_METADATA) {
            None => None,
            Some(raw) => {
                let code: i32 = raw
                    .parse()
                    .ok()
                    .filter(|c| (0..=16).contains(c))
                    .ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "{STATUS_METADATA}: {raw:?} is not a gRPC status code (0-16)"
                        ))
                    })?;
                (targeted && code != 0).then(|| {
                    Status::new(
                        Code::from_i32(code),
                        format!("echo: status {code} requested from {}", config.instance),
                    )
                })
            }
        };
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .or_else(|| text("host").map(str::to_string))
            .unwrap_or_default();
        Ok(Call {
            template: EchoReply {
                service: config.service.clone(),
                version: config.version.clone(),
                instance: config.instance.clone(),
                metadata,
                protocol: crate::echo::version_name(req.version()).to_string(),
                authority,
                ..Default::default()
            },
            end,
        })
    }

    fn reply(&self, message: &str, received: u32, index: u32) -> EchoReply {
        EchoReply {
            message: message.to_string(),
            received,
            index,
            ..self.template.clone()
        }
    }

    fn finish<T>(&self, value: T) -> Result<T, Status> {
        match &self.end {
            Some(status) => Err(status.clone()),
            None => Ok(value),
        }
    }

    fn unary(self, req: EchoRequest) -> Result<tonic::Response<EchoReply>, Status> {
        self.finish(tonic::Response::new(self.reply(&req.message, 1, 0)))
    }

    fn server_stream(self, req: EchoRequest) -> Result<tonic::Response<ReplyStream>, Status> {
        let count = req.count.clamp(1, MAX_STREAM_REPLIES);
        let replies: Vec<Result<EchoReply, Status>> = (0..count)
            .map(|i| Ok(self.reply(&req.message, 1, i)))
            .chain(self.end.clone().map(Err))
            .collect();
        Ok(tonic::Response::new(Box::pin(futures::stream::iter(
            replies,
        ))))
    }

    async fn client_stream(
        self,
        mut stream: Streaming<EchoRequest>,
    ) -> Result<tonic::Response<EchoReply>, Status> {
        let mut received = 0u32;
        let mut last = String::new();
        while let Some(message) = stream.message().await? {
            received = received.saturating_add(1);
            last = message.message;
        }
        self.finish(tonic::Response::new(self.reply(&last, received, 0)))
    }

    fn bidi(self, stream: Streaming<EchoRequest>) -> tonic::Response<ReplyStream> {
        let end = self.end.clone();
        let call = Arc::new(self);
        let replies = stream
            .enumerate()
            .map(move |(i, message)| {
                let n = u32::try_from(i).unwrap_or(u32::MAX);
                message.map(|m| call.reply(&m.message, n.saturating_add(1), n))
            })
            .chain(futures::stream::iter(end.map(Err)));
        tonic::Response::new(Box::pin(replies))
    }
}

/// Serves one gRPC request.
pub(crate) async fn handle(req: Request<Incoming>, config: &EchoConfig) -> Response<EchoBody> {
    let response = match (Method::from_path(req.uri().path()), Call::new(&req, config)) {
        (None, _) => Status::unimplemented(format!(
            "{} is not a method of {}",
            req.uri().path(),
            super::SERVICE
        ))
        .into_http(),
        (Some(_), Err(status)) => status.into_http(),
        (Some(method), Ok(call)) => {
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
            match method {
                Method::Unary => {
                    let svc = tower::service_fn(move |r: tonic::Request<EchoRequest>| {
                        let call = call.clone();
                        async move { call.unary(r.into_inner()) }
                    });
                    grpc.unary(svc, req).await
                }
                Method::ServerStream => {
                    let svc = tower::service_fn(move |r: tonic::Request<EchoRequest>| {
                        let call = call.clone();
                        async move { call.server_stream(r.into_inner()) }
                    });
                    grpc.server_streaming(svc, req).await
                }
                Method::ClientStream => {
                    let svc =
                        tower::service_fn(move |r: tonic::Request<Streaming<EchoRequest>>| {
                            let call = call.clone();
                            async move { call.client_stream(r.into_inner()).await }
                        });
                    grpc.client_streaming(svc, req).await
                }
                Method::Bidi => {
                    let svc =
                        tower::service_fn(move |r: tonic::Request<Streaming<EchoRequest>>| {
                            let call = call.clone();
                            async move { Ok::<_, Status>(call.bidi(r.into_inner())) }
                        });
                    grpc.streaming(svc, req).await
                }
            }
        }
    };
    response.map(|body| {
        body.map_err(|e| -> crate::echo::BoxError { e.into() })
            .boxed_unsync()
    })
}
