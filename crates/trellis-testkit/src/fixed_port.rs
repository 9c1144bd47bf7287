//! Binding the fixed loopback ports that scenarios name for their helper servers (ext_authz,
//! JWKS, mTLS origination target, Zipkin collector). Each scenario runs once per data plane,
//! back to back: the previous run's server releases the port from another task a moment after it
//! is stopped, so "address in use" is retried until a deadline instead of failing the run.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

/// How long a port still held by a stopping server is waited for.
pub const BIND_WITHIN: Duration = Duration::from_secs(10);

/// Binds `address` (port 0 picks a free one), retrying "address in use" for [`BIND_WITHIN`];
/// `what` names the server in the error.
pub async fn bind(address: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let deadline = tokio::time::Instant::now() + BIND_WITHIN;
    loop {
        match TcpListener::bind(address).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            bound => return bound.with_context(|| format!("binding the {what} on {address}")),
        }
    }
}
