//! Connection pools: HTTP/1.1 with keep-alive (hyper-util's pooling client), or HTTP/2 with
//! prior knowledge (one multiplexed connection per endpoint, re-established when it closes).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracing::Instrument;

use super::UpstreamError;
use crate::config::UpstreamProtocol;

/// A cluster's connection pool; cheap to clone (shared).
#[derive(Clone, Debug)]
pub enum Pool {
    /// HTTP/1.1, pooled per endpoint by hyper-util.
    Http1(Box<Client<HttpConnector, Incoming>>),
    /// HTTP/2 prior knowledge.
    Http2(Arc<H2Pool>),
}

/// One HTTP/2 connection per endpoint.
#[derive(Debug)]
pub struct H2Pool {
    connect_timeout: Duration,
    conns: Mutex<HashMap<SocketAddr, http2::SendRequest<Incoming>>>,
}

impl Pool {
    /// A new, empty pool.
    pub fn new(protocol: UpstreamProtocol, connect_timeout: Duration) -> Self {
        match protocol {
            UpstreamProtocol::Http1 => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(connect_timeout));
                connector.set_nodelay(true);
                let client = Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build(connector);
                Pool::Http1(Box::new(client))
            }
            UpstreamProtocol::Http2 => Pool::Http2(Arc::new(H2Pool {
                connect_timeout,
                conns: Mutex::new(HashMap::new()),
            })),
        }
    }

    /// Sends `req` (whose URI carries at least the path and query) to `addr`. `authority` is the
    /// request's authority: the `Host` header for HTTP/1.1, `:authority` for HTTP/2.
    pub async fn send(
        &self,
        addr: SocketAddr,
        authority: &str,
        mut req: Request<Incoming>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        match self {
            Pool::Http1(client) => {
                *req.uri_mut() = uri(&addr.to_string(), &path)?;
                *req.version_mut() = Version::HTTP_11;
                if let Ok(host) = HeaderValue::from_str(authority) {
                    req.headers_mut().insert(http::header::HOST, host);
                }
                client.request(req).await.map_err(|e| {
                    if e.is_connect() {
                        UpstreamError::Connect {
                            addr,
                            source: Box::new(e),
                        }
                    } else {
                        UpstreamError::Reset {
                            addr,
                            source: Box::new(e),
                        }
                    }
                })
            }
            Pool::Http2(pool) => {
                let authority = if authority.is_empty() {
                    addr.to_string()
                } else {
                    authority.to_string()
                };
                *req.uri_mut() = uri(&authority, &path)?;
                *req.version_mut() = Version::HTTP_2;
                req.headers_mut().remove(http::header::HOST);
                pool.send(addr, req).await
            }
        }
    }
}

fn uri(authority: &str, path: &str) -> Result<Uri, UpstreamError> {
    format!("http://{authority}{path}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| UpstreamError::Connect {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source: Box::new(e),
        })
}

impl H2Pool {
    async fn send(
        &self,
        addr: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let existing = {
            let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.get(&addr).filter(|s| !s.is_closed()).cloned()
        };
        let mut sender = match existing {
            Some(s) => s,
            None => self.connect(addr).await?,
        };
        sender.ready().await.map_err(|e| UpstreamError::Reset {
            addr,
            source: Box::new(e),
        })?;
        sender
            .send_request(req)
            .await
            .map_err(|e| UpstreamError::Reset {
                addr,
                source: Box::new(e),
            })
    }

    async fn connect(
        &self,
        addr: SocketAddr,
    ) -> Result<http2::SendRequest<Incoming>, UpstreamError> {
        let connect_err = |source: Box<dyn std::error::Error + Send + Sync>| {
            UpstreamError::Connect { addr, source }
        };
        let stream =
            tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| {
                    connect_err(format!("timed out after {:?}", self.connect_timeout).into())
                })?
                .map_err(|e| connect_err(Box::new(e)))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| connect_err(Box::new(e)))?;
        tokio::spawn(
            async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream h2 connection closed with error");
                }
            }
            .instrument(tracing::debug_span!("h2 upstream", %addr)),
        );
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.insert(addr, sender.clone());
        Ok(sender)
    }
}
