//! One HTTP request's telemetry: the metadata exchange on the way in and out, and the Istio
//! metrics recorded when the response body ends (or is dropped).
//!
//! Outbound (`reporter="source"`): the proxy sends its own `x-envoy-peer-metadata` upstream; the
//! destination's labels come from the chosen endpoint's EDS `istio` metadata (the control plane
//! is trusted), else from the peer-metadata header of the response; the destination principal
//! from the upstream's verified certificate. Inbound (`reporter="destination"`): the source's
//! labels come from the request's peer-metadata header (removed before the app sees it), the
//! source principal only from the verified client certificate, and the proxy answers with its
//! own metadata. On an mTLS connection a header claiming another namespace than the
//! certificate's is ignored.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};

use super::Telemetry;
use super::istio::{PeerLabels, Reporter, RequestLabels, RequestRecord};
use super::overrides::{CustomLabels, MetricsConfig, RequestAttributes};
use super::peer::{PEER_METADATA_HEADER, PEER_METADATA_ID_HEADER, PeerWorkload, spiffe_namespace};

/// Response extension set by the forwarding path: the EDS metadata of the endpoint that
/// answered.
#[derive(Debug, Clone)]
pub struct UpstreamPeer(pub Option<Arc<PeerWorkload>>);

/// Response extension set by the connection pool: the URI SAN of the upstream's verified
/// certificate.
#[derive(Debug, Clone)]
pub struct UpstreamIdentity(pub Arc<str>);

/// What the downstream connection tells about the request.
#[derive(Debug, Clone, Copy)]
pub struct Downstream<'a> {
    /// Whether the listener is an inbound one (`destination` reporter).
    pub inbound: bool,
    /// The verified client certificate's URI SAN.
    pub peer_identity: Option<&'a str>,
}

/// The part of a request's labels known when it arrives.
#[derive(Debug)]
pub struct Exchange {
    started: Instant,
    inbound: bool,
    grpc: bool,
    request_bytes: u64,
    /// Inbound: the source, from the request header.
    source: Option<Arc<PeerWorkload>>,
    source_principal: Option<Arc<str>>,
    /// Inbound: the request's host (the destination service).
    authority_host: Option<String>,
    /// The connection manager's metric overrides (`None`: Istio's metrics unchanged).
    stats: Option<Arc<MetricsConfig>>,
    /// What the overrides read of the request.
    attrs: Option<Box<RequestAttributes>>,
}

impl Telemetry {
    /// Starts a request's telemetry: reads (inbound) or sets (outbound) the peer-metadata
    /// headers of `req`.
    pub fn begin<B: Body>(&self, down: Downstream<'_>, req: &mut Request<B>) -> Exchange {
        self.begin_with(down, req, None)
    }

    /// [`Telemetry::begin`] under the metric overrides `stats` of the request's connection
    /// manager (the request attributes they read are captured now).
    pub fn begin_with<B: Body>(
        &self,
        down: Downstream<'_>,
        req: &mut Request<B>,
        stats: Option<&Arc<MetricsConfig>>,
    ) -> Exchange {
        let started = Instant::now();
        let attrs = stats.and_then(|s| RequestAttributes::capture(s, req));
        let stats = stats.cloned();
        let grpc = is_grpc(req.headers());
        let request_bytes = header_bytes(req.headers())
            + req.uri().path_and_query().map_or(1, |p| p.as_str().len()) as u64
            + req.body().size_hint().exact().unwrap_or(0);
        let headers = req.headers_mut();
        if !down.inbound {
            headers.insert(PEER_METADATA_HEADER, self.header.clone());
            headers.insert(PEER_METADATA_ID_HEADER, self.header_id.clone());
            return Exchange {
                started,
                inbound: false,
                grpc,
                request_bytes,
                source: None,
                source_principal: None,
                authority_host: None,
                stats,
                attrs,
            };
        }
        let claimed = headers
            .remove(PEER_METADATA_HEADER)
            .and_then(|v| self.peer_from_header(v.as_bytes()));
        headers.remove(PEER_METADATA_ID_HEADER);
        let source = match (claimed, down.peer_identity) {
            // A certificate says who the peer is: a header naming another namespace is a lie.
            (Some(p), Some(id)) if spiffe_namespace(id) != Some(&*p.namespace) => None,
            (claimed, _) => claimed,
        };
        let authority = req
            .uri()
            .authority()
            .map(|a| a.host().to_string())
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(|h| strip_port(h).to_string())
            });
        Exchange {
            started,
            inbound: true,
            grpc,
            request_bytes,
            source,
            source_principal: down.peer_identity.map(Arc::from),
            authority_host: authority,
            stats,
            attrs,
        }
    }

    /// Finishes the request's labels from the response and `outcome`, removes or adds the
    /// peer-metadata headers of `response`, and returns it with a body that records the
    /// metrics when it ends.
    pub fn finish<B>(
        self: &Arc<Self>,
        ex: Exchange,
        cluster: Option<&str>,
        flags: &[&'static str],
        mut response: Response<B>,
    ) -> Response<MeteredBody<B>>
    where
        B: Body<Data = Bytes>,
    {
        if ex
            .stats
            .as_ref()
            .is_some_and(|c| c.http.iter().all(Option::is_none))
        {
            // Every metric dropped: the exchange still answers and strips the headers, but
            // nothing is labelled or recorded.
            let headers = response.headers_mut();
            if ex.inbound {
                headers.insert(PEER_METADATA_HEADER, self.header.clone());
                headers.insert(PEER_METADATA_ID_HEADER, self.header_id.clone());
            } else {
                headers.remove(PEER_METADATA_HEADER);
                headers.remove(PEER_METADATA_ID_HEADER);
            }
            return response.map(|inner| MeteredBody {
                inner,
                pending: None,
            });
        }
        let peers = if ex.inbound {
            response
                .headers_mut()
                .insert(PEER_METADATA_HEADER, self.header.clone());
            response
                .headers_mut()
                .insert(PEER_METADATA_ID_HEADER, self.header_id.clone());
            let service = self.service(ex.authority_host.as_deref().unwrap_or(""));
            PeerLabels {
                reporter: Reporter::Destination,
                source: ex.source.unwrap_or_else(|| self.unknown.clone()),
                connection_security_policy: if ex.source_principal.is_some() {
                    "mutual_tls"
                } else {
                    "none"
                },
                source_principal: ex
                    .source_principal
                    .unwrap_or_else(|| self.unknown_str.clone()),
                destination: self.own.clone(),
                destination_principal: self.own_principal.clone(),
                destination_service: service.0,
                destination_service_name: service.1,
                destination_service_namespace: service.2,
            }
        } else {
            let from_eds = response
                .extensions_mut()
                .remove::<UpstreamPeer>()
                .and_then(|p| p.0);
            let from_header = response
                .headers_mut()
                .remove(PEER_METADATA_HEADER)
                .and_then(|v| self.peer_from_header(v.as_bytes()));
            response.headers_mut().remove(PEER_METADATA_ID_HEADER);
            let principal = response
                .extensions_mut()
                .remove::<UpstreamIdentity>()
                .map(|i| i.0);
            let host = cluster.map_or("", cluster_host);
            let service = self.service(host);
            PeerLabels {
                reporter: Reporter::Source,
                source: self.own.clone(),
                source_principal: self.own_principal.clone(),
                destination: from_eds
                    .or(from_header)
                    .unwrap_or_else(|| self.unknown.clone()),
                destination_principal: principal.unwrap_or_else(|| self.unknown_str.clone()),
                destination_service: service.0,
                destination_service_name: service.1,
                destination_service_namespace: service.2,
                connection_security_policy: "unknown",
            }
        };
        let labels = RequestLabels {
            peers: Arc::new(peers),
            request_protocol: if ex.grpc { "grpc" } else { "http" },
            response_code: response.status().as_u16(),
            grpc_response_status: if ex.grpc {
                self.grpc_status(response.headers())
            } else {
                self.empty.clone()
            },
            response_flags: self.flags(flags),
            custom: None,
        };
        let status = response.status().as_u16();
        let split = ex.stats.as_ref().map(|config| {
            Box::new(config.http.each_ref().map(|changes| {
                changes.as_ref().map(|c| {
                    let mut l = labels.clone();
                    if !c.is_empty() {
                        l.custom = Some(Arc::new(CustomLabels::of(c, ex.attrs.as_deref(), status)));
                    }
                    l
                })
            }))
        });
        let response_bytes = header_bytes(response.headers()) + 16;
        let pending = Pending {
            telemetry: self.clone(),
            record: RequestRecord {
                labels,
                duration_ms: 0.0,
                request_bytes: ex.request_bytes,
                response_bytes,
            },
            started: ex.started,
            grpc: ex.grpc,
            split,
        };
        response.map(|inner| MeteredBody {
            inner,
            pending: Some(pending),
        })
    }
}

/// The host of an `outbound|PORT|SUBSET|HOST` cluster (empty for others).
pub(crate) fn cluster_host(cluster: &str) -> &str {
    let mut parts = cluster.split('|');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("outbound"), Some(_), Some(_), Some(host), None) => host,
        _ => "",
    }
}

pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().unwrap_or(host);
    }
    host.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The size of headers as they travel (name, value and 4 bytes of framing each).
fn header_bytes(headers: &HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().len() + v.len() + 4) as u64)
        .sum()
}

struct Pending {
    telemetry: Arc<Telemetry>,
    record: RequestRecord,
    started: Instant,
    grpc: bool,
    /// Per-metric labels under Telemetry overrides (see [`IstioMetrics::record_request_split`]).
    ///
    /// [`IstioMetrics::record_request_split`]: super::IstioMetrics::record_request_split
    split: Option<Box<[Option<RequestLabels>; 4]>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl Pending {
    fn record(mut self) {
        self.record.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        match &self.split {
            Some(split) => self
                .telemetry
                .metrics
                .record_request_split(&self.record, split),
            None => self.telemetry.metrics.record_request(&self.record),
        }
    }
}

/// A response body that counts its bytes, reads `grpc-status` from trailers, and records the
/// request's metrics once it ends or is dropped (a client that goes away is still counted).
#[derive(Debug)]
pub struct MeteredBody<B> {
    inner: B,
    pending: Option<Pending>,
}

impl<B> MeteredBody<B> {
    fn done(&mut self) {
        if let Some(p) = self.pending.take() {
            p.record();
        }
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        self.done();
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let this = &mut *self;
                if let Some(p) = this.pending.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        p.record.response_bytes += data.len() as u64;
                    } else if let Some(trailers) = frame.trailers_ref() {
                        p.record.response_bytes += header_bytes(trailers);
                        if p.grpc && trailers.contains_key("grpc-status") {
                            let status = p.telemetry.grpc_status(trailers);
                            for l in p.split.iter_mut().flat_map(|s| s.iter_mut().flatten()) {
                                l.grpc_response_status = status.clone();
                            }
                            p.record.labels.grpc_response_status = status;
                        }
                    }
                }
                if this.inner.is_end_stream() {
                    this.done();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.done(),
            Poll::Pending => {}
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

/// Boxes a metered body back into the listener's body type.
pub fn boxed<B>(
    response: Response<MeteredBody<B>>,
) -> Response<http_body_util::combinators::BoxBody<Bytes, B::Error>>
where
    B: Body<Data = Bytes> + Unpin + Send + Sync + 'static,
{
    response.map(BodyExt::boxed)
}

impl Telemetry {
    fn grpc_status(&self, headers: &HeaderMap) -> Arc<str> {
        match headers.get("grpc-status").map(HeaderValue::as_bytes) {
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .and_then(|code| self.grpc_codes.get(code).cloned())
                .unwrap_or_else(|| self.unknown_str.clone()),
            None => self.empty.clone(),
        }
    }

    fn flags(&self, flags: &[&'static str]) -> Arc<str> {
        match flags {
            [] => self.no_flags.clone(),
            [one] => Arc::from(*one),
            many => Arc::from(many.join(",")),
        }
    }
}
