//! A request body a filter has already read part of (ext_authz's `with_request_body` buffers
//! it for the check): the frames read are kept in the request's extensions as [`Prefetched`]
//! and go upstream first, then the rest of the downstream body, so the app gets the whole body
//! as Envoy's buffering filters pass it on.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::upstream::{BoxError, RequestBody};

/// The frames of a request body read before forwarding (in a request's extensions).
#[derive(Debug, Clone, Default)]
pub struct Prefetched {
    /// The data frames read, in order.
    pub data: Vec<Bytes>,
    /// The trailers, when the body ended with them.
    pub trailers: Option<HeaderMap>,
    /// Whether the downstream body is over (nothing more to read from it).
    pub ended: bool,
}

impl Prefetched {
    /// How many body bytes were read.
    pub fn len(&self) -> usize {
        self.data.iter().map(Bytes::len).sum()
    }

    /// Whether no byte was read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole body for upstream: these frames, then what is left of `rest`.
    pub fn into_body(self, rest: Incoming) -> RequestBody {
        let mut frames: VecDeque<Frame<Bytes>> = self.data.into_iter().map(Frame::data).collect();
        if let Some(t) = self.trailers {
            frames.push_back(Frame::trailers(t));
        }
        PrefixedBody {
            frames,
            rest: (!self.ended).then_some(rest),
        }
        .boxed_unsync()
    }
}

/// Prefetched frames, then the rest of the downstream body.
struct PrefixedBody {
    frames: VecDeque<Frame<Bytes>>,
    rest: Option<Incoming>,
}

impl Body for PrefixedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(rest).poll_frame(cx) {
            Poll::Ready(None) => {
                self.rest = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(r)) => Poll::Ready(Some(r.map_err(Into::into))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self
            .frames
            .iter()
            .filter_map(Frame::data_ref)
            .map(|d| d.len() as u64)
            .sum();
        match &self.rest {
            None => SizeHint::with_exact(buffered),
            Some(rest) => {
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + buffered);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + buffered);
                }
                hint
            }
        }
    }
}
