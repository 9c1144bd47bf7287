//! A small HTTP client over one TCP connection (HTTP/1.1 or HTTP/2 with prior knowledge), and
//! helpers to fetch a URL and to poll one until a predicate holds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

/// The protocol a client speaks on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 (requests in absolute form when sent to a proxy).
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge (h2c).
    Http2,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Http1 => "http1",
            Protocol::Http2 => "http2",
        })
    }
}

/// A complete response: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, read to the end.
    pub body: Bytes,
}

impl Response {
    /// The body as (lossy) UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "response body is not the expected JSON: {}",
                snippet(&self.body)
            )
        })
    }
}

/// The first 300 characters of a body, for error messages.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        s.push('…');
    }
    s
}

/// One client connection, HTTP/1.1 or HTTP/2.
pub enum Connection {
    /// An HTTP/1.1 connection (one request at a time).
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    /// An HTTP/2 connection (multiplexed).
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connection::Http1(_) => f.write_str("Connection::Http1"),
            Connection::Http2(_) => f.write_str("Connection::Http2"),
        }
    }
}

impl Connection {
    /// Opens a TCP connection to `addr` and performs the handshake for `protocol`.
    pub async fn connect(addr: SocketAddr, protocol: Protocol) -> anyhow::Result<Self> {
        Self::connect_with(addr, protocol, None).await
    }

    /// [`Connection::connect`], over TLS when `tls` is given (its server name is the SNI sent
    /// and the name the server's certificate must have; an IP address sends no SNI).
    pub async fn connect_with(
        addr: SocketAddr,
        protocol: Protocol,
        tls: Option<&ClientTls>,
    ) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let _ = stream.set_nodelay(true);
        match tls {
            None => Self::handshake(TokioIo::new(stream), addr, protocol).await,
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(tls.server_name.clone())
                    .with_context(|| format!("server name {:?}", tls.server_name))?;
                let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                    .connect(name, stream)
                    .await
                    .with_context(|| format!("TLS handshake with {addr} ({})", tls.server_name))?;
                Self::handshake(TokioIo::new(stream), addr, protocol).await
            }
        }
    }

    async fn handshake<I>(
        io: TokioIo<I>,
        addr: SocketAddr,
        protocol: Protocol,
    ) -> anyhow::Result<Self>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        match protocol {
            Protocol::Http1 => {
                let (send, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .with_context(|| format!("HTTP/1.1 handshake with {addr}"))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Connection::Http1(send))
            }
            Protocol::Http2 => {
                let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .with_context(|| format!("HTTP/2 handshake with {addr}"))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Connection::Http2(send))
            }
        }
    }

    /// Whether the connection can still carry requests.
    pub fn is_open(&self) -> bool {
        match self {
            Connection::Http1(s) => !s.is_closed(),
            Connection::Http2(s) => !s.is_closed(),
        }
    }

    /// Sends one request and reads the whole response.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<Response> {
        let response = match self {
            Connection::Http1(s) => {
                s.ready().await.context("connection closed")?;
                s.send_request(request).await?
            }
            Connection::Http2(s) => {
                s.ready().await.context("connection closed")?;
                s.send_request(request).await?
            }
        };
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .context("reading the response body")?
            .to_bytes();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// TLS towards a server: the name to send as SNI and verify, and the client config.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// SNI and the name the server certificate must carry (an IP address: no SNI).
    pub server_name: String,
    /// Trust anchors, client certificate and ALPN.
    pub config: std::sync::Arc<rustls::ClientConfig>,
}

/// Where a URL points: the socket address to connect to, the authority and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The authority (`host[:port]`) as written in the URL.
    pub authority: String,
    /// The host part of the authority.
    pub host: String,
    /// The port (80 when the URL has none).
    pub port: u16,
    /// Path and query (`/` when the URL has none).
    pub path_and_query: String,
}

/// Parses an `http://` URL.
pub fn parse_http_url(url: &str) -> anyhow::Result<Target> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => bail!("{url:?}: only http:// URLs are supported, not {other}://"),
        None => bail!("{url:?}: the URL needs a scheme, e.g. http://{url}"),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow!("{url:?}: the URL has no host"))?;
    Ok(Target {
        authority: authority.as_str().to_string(),
        host: authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: authority.port_u16().unwrap_or(80),
        path_and_query: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string()),
    })
}

/// Resolves a host and port to one socket address.
pub async fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving {host}"))?
        .next()
        .ok_or_else(|| anyhow!("{host} resolves to no address"))
}

/// Fetches `url` with a GET over HTTP/1.1 (origin form, connecting to the URL's host), within
/// `timeout`.
pub async fn get(url: &str, timeout: Duration) -> anyhow::Result<Response> {
    let target = parse_http_url(url)?;
    let fut = async {
        let addr = resolve(&target.host, target.port).await?;
        let mut conn = Connection::connect(addr, Protocol::Http1).await?;
        let request = Request::get(target.path_and_query.as_str())
            .header(http::header::HOST, target.authority.as_str())
            .body(Full::new(Bytes::new()))
            .with_context(|| format!("building a request for {url}"))?;
        conn.send(request).await
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| anyhow!("GET {url}: no answer within {timeout:?}"))?
        .with_context(|| format!("GET {url}"))
}

/// Polls `url` every `interval` until `accept` returns true for a response or `deadline`
/// passes. Returns the accepted response; on timeout the error describes the last response (or
/// connection error) seen.
pub async fn poll_until(
    url: &str,
    deadline: Instant,
    interval: Duration,
    mut accept: impl FnMut(&Response) -> bool,
) -> anyhow::Result<Response> {
    let mut last = String::from("no attempt made");
    loop {
        let now = Instant::now();
        if now >= deadline {
            bail!("timed out waiting for {url}: last seen: {last}");
        }
        let per_try = (deadline - now).min(Duration::from_secs(5));
        match get(url, per_try).await {
            Ok(response) => {
                if accept(&response) {
                    return Ok(response);
                }
                last = format!("{} {}", response.status, snippet(&response.body));
            }
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() + interval >= deadline {
            bail!("timed out waiting for {url}: last seen: {last}");
        }
        tokio::time::sleep(interval).await;
    }
}
