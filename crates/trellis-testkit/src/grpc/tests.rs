//! The echo app's gRPC side, called directly (no proxy) with the load client's gRPC code.

use std::time::Duration;

use super::client::{GrpcCall, call, channel};
use super::{FAIL_VERSION_METADATA, Method, STATUS_METADATA};
use crate::echo::testing::{config, start};

fn meta(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn every_method_answers_with_who_and_what() -> anyhow::Result<()> {
    let echo = start(config("v1")).await?;
    let addr = echo.addr;
    let ch = channel(addr, "echo:9090", Duration::from_secs(5))?;
    let md = meta(&[("end-user", "jason")]);
    for (method, messages, replies) in [
        (Method::Unary, 1, 1),
        (Method::ServerStream, 5, 5),
        (Method::ClientStream, 4, 1),
        (Method::Bidi, 3, 3),
    ] {
        let r = call(ch.clone(), GrpcCall { method, messages }, &md).await;
        assert_eq!(r.code, 0, "{method:?}: {}", r.message);
        assert_eq!(r.replies.len(), replies, "{method:?}");
        let first = &r.replies[0];
        assert_eq!(first.version, "v1");
        assert_eq!(first.instance, "echo-v1-0");
        assert_eq!(first.protocol, "HTTP/2.0");
        assert_eq!(first.authority, "echo:9090");
        assert_eq!(
            first.metadata.get("end-user").map(String::as_str),
            Some("jason")
        );
        if method == Method::ClientStream {
            assert_eq!(first.received, 4);
        }
        if method == Method::Bidi {
            assert_eq!(r.replies[2].message, "m2");
        }
    }
    echo.stop().await
}

#[tokio::test]
async fn requested_status_ends_the_call_after_the_replies() -> anyhow::Result<()> {
    let echo = start(config("v1")).await?;
    let addr = echo.addr;
    let ch = channel(addr, "echo:9090", Duration::from_secs(5))?;
    let unavailable = meta(&[(STATUS_METADATA, "14")]);
    let r = call(
        ch.clone(),
        GrpcCall {
            method: Method::Unary,
            messages: 1,
        },
        &unavailable,
    )
    .await;
    assert_eq!(r.code, 14);
    assert!(r.replies.is_empty());
    assert!(r.message.contains("echo-v1-0"), "{}", r.message);

    // A stream carries its replies, then the status in the trailers.
    let r = call(
        ch.clone(),
        GrpcCall {
            method: Method::ServerStream,
            messages: 3,
        },
        &meta(&[(STATUS_METADATA, "8")]),
    )
    .await;
    assert_eq!(r.code, 8);
    assert_eq!(r.replies.len(), 3);

    // Targeted at another version: no effect.
    let r = call(
        ch.clone(),
        GrpcCall {
            method: Method::Unary,
            messages: 1,
        },
        &meta(&[(STATUS_METADATA, "14"), (FAIL_VERSION_METADATA, "v2")]),
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.message);

    // Hostile values: not a code.
    let r = call(
        ch,
        GrpcCall {
            method: Method::Unary,
            messages: 1,
        },
        &meta(&[(STATUS_METADATA, "99")]),
    )
    .await;
    assert_eq!(r.code, 3, "{}", r.message);
    echo.stop().await
}

#[tokio::test]
async fn unknown_method_is_unimplemented() -> anyhow::Result<()> {
    let echo = start(config("v1")).await?;
    let addr = echo.addr;
    let mut conn = crate::http::Connection::connect(addr, crate::http::Protocol::Http2).await?;
    let req = http::Request::post("http://echo/trellis.echo.Echo/Nope")
        .header("content-type", "application/grpc")
        .body(http_body_util::Full::new(bytes::Bytes::new()))?;
    let r = conn.send(req).await?;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"12"[..])
    );
    echo.stop().await
}
