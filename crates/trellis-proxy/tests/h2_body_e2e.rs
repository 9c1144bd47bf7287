//! HTTP/2 requests with a body, forwarded over a pooled HTTP/2 upstream connection on a route
//! that can retry (so the body is replayable), as gRPC unary calls are in the mesh.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use envoy_types::pb::envoy::config::route::v3::{RetryPolicy, route};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use trellis_xds::type_url;

mod common;

use common::*;

/// A body of one DATA frame that does not say it ends with it, as a gRPC client's: hyper sends
/// the frame, then an empty DATA frame with END_STREAM.
struct OneFrame(Option<Bytes>);

impl Body for OneFrame {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }
}

/// Envoy sends a downstream's closing empty DATA frame upstream as the end of the stream. The
/// replayable body used to send it without END_STREAM (then another, empty, with it): an h2
/// peer closes the connection with ENHANCE_YOUR_CALM after 100 such frames, failing every
/// request in flight on it (the mesh's sporadic `UR ... connection error` on gRPC calls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_request_bodies_on_a_retrying_route_keep_the_upstream_connection() {
    let upstream = serve_http(
        "h2 upstream",
        |req: http::Request<hyper::body::Incoming>| async move {
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            match body {
                Ok(b) => text_response(200, String::from_utf8_lossy(&b).into_owned()),
                Err(e) => text_response(500, format!("body: {e}")),
            }
        },
    )
    .await;
    let mut h = Harness::start().await;
    let nonce = h.push(
        type_url::CLUSTER,
        "1",
        vec![static_cluster_with_options("grpc", upstream, h2_options())],
    );
    h.reply_to(type_url::CLUSTER, &nonce).await;
    let mut retrying = route_to("/", "grpc");
    if let Some(route::Action::Route(a)) = &mut retrying.action {
        a.retry_policy = Some(RetryPolicy {
            retry_on: "connect-failure,refused-stream,unavailable,cancelled".into(),
            num_retries: Some(envoy_types::pb::google::protobuf::UInt32Value { value: 2 }),
            ..Default::default()
        });
    }
    let nonce = h.push(
        type_url::LISTENER,
        "1",
        vec![listener(
            "grpc",
            inline(route_table("grpc", vec![retrying])),
        )],
    );
    h.reply_to(type_url::LISTENER, &nonce).await;
    h.wait_ready().await;
    let proxy = h.listener_port("grpc").await;

    let mut sender = h2c(proxy).await;
    // Well past h2's limit of 100 empty DATA frames without END_STREAM per connection.
    for i in 0..150 {
        let req = http::Request::post("http://grpc.test/echo.Echo/Unary")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(OneFrame(Some(Bytes::from(format!("call {i}")))))
            .expect("request");
        let resp = sender.send_request(req).await.expect("h2 response");
        let status = resp.status();
        let reason = resp
            .headers()
            .get("x-trellis-reason")
            .map(|v| v.to_str().unwrap_or("?").to_string());
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(status, 200, "call {i}: {reason:?}");
        assert_eq!(body, format!("call {i}").as_bytes(), "call {i}");
    }
    h.stop().await;
}
