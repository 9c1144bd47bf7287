//! Ending a request's spans when its response body ends, as Envoy ends them with the stream:
//! a streamed or slow body (gRPC streams, large downloads) counts in the span's duration.

use std::sync::Arc;

use http::Response;

use super::{ActiveTrace, Tracer};
use crate::listener::{BodyObserver, ProxyBody, observe};
use crate::upstream::ClusterManager;

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
    observe(
        response,
        SpanCloser {
            pending: Some((trace, end)),
            tracer: tracer.clone(),
            clusters: clusters.clone(),
        },
    )
}

struct SpanCloser {
    pending: Option<(ActiveTrace, SpanEnd)>,
    tracer: Arc<Tracer>,
    clusters: Arc<ClusterManager>,
}

impl BodyObserver for SpanCloser {
    fn on_end(&mut self) {
        if let Some((trace, end)) = self.pending.take() {
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
