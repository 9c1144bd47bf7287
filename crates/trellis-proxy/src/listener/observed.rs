//! A response body that tells an observer about its data and its end: what access logs (bytes
//! sent, the line written at the end) and traces (spans ended with the stream) hook into.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};

use super::http::{BoxError, ProxyBody};

/// Told about a response body as it is sent.
pub trait BodyObserver: Send + Sync + Unpin + 'static {
    /// A data frame of `len` bytes went out.
    fn on_data(&mut self, _len: usize) {}
    /// The body ended, or was dropped before its end (the downstream went away); called once.
    fn on_end(&mut self);
}

/// Wraps `response`'s body so `observer` sees it.
pub fn observe<O: BodyObserver>(response: Response<ProxyBody>, observer: O) -> Response<ProxyBody> {
    let (parts, inner) = response.into_parts();
    let body = ObservedBody {
        inner,
        observer: Some(observer),
    };
    Response::from_parts(parts, body.boxed())
}

struct ObservedBody<O: BodyObserver> {
    inner: ProxyBody,
    /// `None` once ended.
    observer: Option<O>,
}

impl<O: BodyObserver> ObservedBody<O> {
    fn end(&mut self) {
        if let Some(mut o) = self.observer.take() {
            o.on_end();
        }
    }
}

impl<O: BodyObserver> Drop for ObservedBody<O> {
    fn drop(&mut self) {
        self.end();
    }
}

impl<O: BodyObserver> Body for ObservedBody<O> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(o)) = (frame.data_ref(), self.observer.as_mut()) {
                    o.on_data(data.len());
                }
            }
            Poll::Ready(None) => self.end(),
            _ => {}
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
