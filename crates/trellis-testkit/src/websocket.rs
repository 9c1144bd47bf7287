//! WebSocket in the echo app and the load client. Any HTTP/1.1 request to the echo app that asks
//! for `Upgrade: websocket` is accepted (RFC 6455 handshake); the app first sends one text
//! message with JSON saying who it is and what it saw (as the HTTP answer), then echoes every
//! message back until the client closes. The client connects to the sidecar's outbound listener
//! with `Host` = the service, sends `messages` messages and checks every echo.

use std::net::SocketAddr;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Message, Role};

use crate::echo::{EchoBody, EchoConfig};

/// The largest message the echo app accepts (64 KiB).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Whether a request asks for a WebSocket upgrade.
pub fn is_websocket<B>(req: &Request<B>) -> bool {
    let connection_upgrade = req
        .headers()
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade
        && req
            .headers()
            .get(http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Answers the handshake (`101`) and serves the connection once hyper hands it over.
pub(crate) fn accept(
    mut req: Request<Incoming>,
    config: &EchoConfig,
    hello: Value,
) -> Response<EchoBody> {
    let empty = || Empty::new().map_err(|e| match e {}).boxed_unsync();
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    let instance = config.instance.clone();
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("echo {instance}: websocket upgrade failed: {e}");
                return;
            }
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        if ws.send(Message::text(hello.to_string())).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = ws.next().await {
            let echo = match message {
                Message::Text(_) | Message::Binary(_) if message.len() > MAX_MESSAGE => break,
                Message::Text(_) | Message::Binary(_) => message,
                Message::Close(_) => break,
                _ => continue,
            };
            if ws.send(echo).await.is_err() {
                return;
            }
        }
        let _ = ws.close(None).await;
    });
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    r
}

/// What one WebSocket session through the mesh saw.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// The handshake's response status (`101` when upgraded).
    pub status: u16,
    /// Its response headers (lower case).
    pub headers: Vec<(String, String)>,
    /// The body of a refused handshake (its first 4 KiB).
    pub body: String,
    /// The app's first message (who it is), parsed.
    pub hello: Option<Value>,
    /// How many messages came back identical.
    pub echoed: usize,
}

/// Opens a WebSocket to `authority` + `path` through `target` (a sidecar's outbound listener),
/// exchanges `messages` messages, and closes. An error is a transport failure or a wrong echo.
pub async fn session(
    target: SocketAddr,
    authority: &str,
    path: &str,
    headers: &[(String, String)],
    messages: usize,
) -> Result<Session, String> {
    let stream = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| format!("connecting to {target}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut b = Request::get(format!("ws://{authority}{path}"))
        .header(http::header::HOST, authority)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header("sec-websocket-version", "13")
        .header(
            "sec-websocket-key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        );
    for (k, v) in headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let request = b.body(()).map_err(|e| format!("invalid request: {e}"))?;
    use tokio_tungstenite::tungstenite::Error as WsError;
    let (mut ws, response) = match tokio_tungstenite::client_async(request, stream).await {
        Ok(ok) => ok,
        Err(WsError::Http(response)) => {
            let (parts, body) = response.into_parts();
            return Ok(Session {
                status: parts.status.as_u16(),
                headers: header_list(&parts.headers),
                body: body
                    .map(|b| String::from_utf8_lossy(&b[..b.len().min(4096)]).into_owned())
                    .unwrap_or_default(),
                ..Default::default()
            });
        }
        Err(e) => return Err(format!("websocket handshake: {e}")),
    };
    let mut session = Session {
        status: response.status().as_u16(),
        headers: header_list(response.headers()),
        ..Default::default()
    };
    let next_text =
        async |ws: &mut WebSocketStream<tokio::net::TcpStream>| -> Result<Message, String> {
            loop {
                match ws.next().await {
                    Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return Ok(m),
                    Some(Ok(Message::Close(c))) => {
                        return Err(format!("closed by the server: {c:?}"));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(format!("websocket read: {e}")),
                    None => return Err("connection ended".to_string()),
                }
            }
        };
    let hello = next_text(&mut ws).await?;
    session.hello = serde_json::from_slice(&hello.into_data()).ok();
    for i in 0..messages {
        // Alternate text and binary, and vary sizes, so framing is exercised both ways.
        let sent = if i % 2 == 0 {
            Message::text(format!("message {i} {}", "x".repeat(i * 37 % 3000)))
        } else {
            Message::binary(Bytes::from(vec![(i % 251) as u8; 1 + i * 101 % 5000]))
        };
        ws.send(sent.clone())
            .await
            .map_err(|e| format!("websocket write: {e}"))?;
        let got = next_text(&mut ws).await?;
        if got != sent {
            return Err(format!(
                "message {i} came back different ({} bytes, sent {})",
                got.len(),
                sent.len()
            ));
        }
        session.echoed += 1;
    }
    let _ = ws.close(None).await;
    Ok(session)
}

fn header_list(h: &http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The app's hello: who answered and what the handshake request looked like.
pub(crate) fn hello(req: &Request<Incoming>, config: &EchoConfig) -> Value {
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    json!({
        "service": config.service,
        "version": config.version,
        "instance": config.instance,
        "protocol": "websocket",
        "path": req.uri().path(),
        "headers": headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::testing::{config, start};

    #[tokio::test]
    async fn echo_app_greets_and_echoes() -> anyhow::Result<()> {
        let echo = start(config("v3")).await?;
        let s = session(
            echo.addr,
            "echo:9080",
            "/chat",
            &[("end-user".into(), "jason".into())],
            12,
        )
        .await
        .map_err(anyhow::Error::msg)?;
        assert_eq!(s.status, 101);
        assert_eq!(s.echoed, 12);
        let hello = s.hello.unwrap_or_default();
        assert_eq!(hello["version"], "v3");
        assert_eq!(hello["path"], "/chat");
        assert_eq!(hello["headers"]["end-user"], "jason");
        echo.stop().await
    }
}
