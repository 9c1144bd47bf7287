//! Ending a request's spans when its response body ends, as Envoy ends them with the stream:
//! a streamed or slow body (gRPC streams, large downloads) counts in the span's duration.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};

use super::{ActiveTrace, Tracer};
use crate::listener::ProxyBody;
use crate::upstream::ClusterManager;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the spans record of the response, known at its headers.
#[derive(Debug)]
pub struct SpanEnd {
    /// The response status.
    pub status: u16,
    /// Envoy response flags.
    pub flags: Vec<&'static str>,
    /// The upstream cluster, if one was picked.
    pub cluster: Option<String>,
    /// The upstream host that answered, if any.
    pub upstream: Option<std::net::SocketAddr>,
}

/// Wraps `response`'s body so `trace`'s spans end (and are queued for export) when the body
/// ends or is dropped.
pub fn attach(
    tracer: &Arc<Tracer>,
    clusters: &Arc<ClusterManager>,
    trace: ActiveTrace,
    end: SpanEnd,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let (parts, body) = response.into_parts();
    let body = TracedBody {
        inner: body,
        pending: Some(Box::new((trace, end))),
        tracer: tracer.clone(),
        clusters: clusters.clone(),
    };
    Response::from_parts(parts, body.boxed())
}

struct TracedBody {
    inner: ProxyBody,
    pending: Option<Box<(ActiveTrace, SpanEnd)>>,
    tracer: Arc<Tracer>,
    clusters: Arc<ClusterManager>,
}

impl TracedBody {
    fn finish(&mut self) {
        if let Some(pending) = self.pending.take() {
            let (trace, end) = *pending;
            self.tracer.finish(
                trace,
                end.status,
                &end.flags,
                end.cluster.as_deref(),
                end.upstream,
                &self.clusters,
            );
        }
    }
}

impl Drop for TracedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for TracedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
