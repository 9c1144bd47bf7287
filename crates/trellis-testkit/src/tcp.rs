//! Raw TCP in the echo app and the load client. The echo app tells a raw TCP connection from
//! HTTP by its first bytes (HTTP starts with a method or the HTTP/2 preface); on a raw one it
//! answers, after the client's first bytes, with a one-line JSON banner saying who it is
//! (`{"service":..,"version":..,"instance":..}\n`), then echoes every byte back; when the client
//! half-closes (FIN), it sends `bytes=N\n` (how many it received) and closes its side. The client
//! can thus check the banner (who answered, for splits), the echo, and that a half-close crossed
//! the proxies while the other direction still delivered data.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::echo::EchoConfig;

/// The most bytes one TCP session of the echo app echoes (1 MiB).
pub const MAX_ECHO: u64 = 1024 * 1024;

const HTTP_STARTS: &[&[u8]] = &[
    b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC", b"PRI ",
];

/// Whether a connection's first bytes are HTTP/1.x or the HTTP/2 preface (so far as they go).
pub fn looks_like_http(first: &[u8]) -> bool {
    let n = first.len().min(4);
    n > 0 && HTTP_STARTS.iter().any(|m| m[..n] == first[..n])
}

/// Serves one raw TCP connection (see the module doc).
pub(crate) async fn serve(mut stream: TcpStream, config: &EchoConfig) -> std::io::Result<()> {
    let banner = json!({
        "service": config.service,
        "version": config.version,
        "instance": config.instance,
        "protocol": "tcp",
    });
    let mut buf = vec![0u8; 16 * 1024];
    let mut total: u64 = 0;
    let mut greeted = false;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if !greeted {
            stream.write_all(format!("{banner}\n").as_bytes()).await?;
            greeted = true;
        }
        total += n as u64;
        if total > MAX_ECHO {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
    stream
        .write_all(format!("bytes={total}\n").as_bytes())
        .await?;
    stream.shutdown().await
}

/// What one TCP session through the mesh saw.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// The echo app's banner, parsed.
    pub banner: Option<serde_json::Value>,
    /// Whether the echo came back identical and the byte count after the half-close matched.
    pub echoed: bool,
    /// Everything received (lossy UTF-8, first 4 KiB).
    pub received: String,
}

/// Connects to `target`, sends `payload`, half-closes, and reads until the other side closes.
pub async fn session(
    target: SocketAddr,
    payload: &str,
    timeout: Duration,
) -> Result<Session, String> {
    let run = async {
        let mut stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("connecting to {target}: {e}"))?;
        let _ = stream.set_nodelay(true);
        stream
            .write_all(payload.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        stream
            .shutdown()
            .await
            .map_err(|e| format!("half-close: {e}"))?;
        let mut got = Vec::new();
        stream
            .read_to_end(&mut got)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(got)
    };
    let got = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| format!("no end of session within {timeout:?}"))??;
    let text = String::from_utf8_lossy(&got).into_owned();
    let mut session = Session {
        received: text.chars().take(4096).collect(),
        ..Default::default()
    };
    if got.is_empty() {
        return Err("the connection was closed without an answer".to_string());
    }
    let Some((banner, rest)) = text.split_once('\n') else {
        return Err(format!("no banner line in {:?}", session.received));
    };
    session.banner = serde_json::from_str(banner).ok();
    let expected = format!("{payload}bytes={}\n", payload.len());
    session.echoed = rest == expected;
    if !session.echoed {
        return Err(format!(
            "echo mismatch: expected {expected:?} after the banner, got {:?}",
            rest.chars().take(300).collect::<String>()
        ));
    }
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_told_from_raw_bytes() {
        assert!(looks_like_http(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http(b"PRI * HTTP/2.0"));
        assert!(looks_like_http(b"PO"));
        assert!(!looks_like_http(b"ping"));
        assert!(!looks_like_http(b"\x16\x03\x01"));
        assert!(!looks_like_http(b""));
    }

    #[tokio::test]
    async fn banner_echo_and_half_close() -> anyhow::Result<()> {
        let echo = crate::echo::testing::start(EchoConfig {
            service: "db".into(),
            version: "v2".into(),
            instance: "db-v2-0".into(),
            ..Default::default()
        })
        .await?;
        let addr = echo.addr;
        let s = session(addr, "ping pong", Duration::from_secs(5))
            .await
            .map_err(anyhow::Error::msg)?;
        assert!(s.echoed);
        assert_eq!(s.banner.unwrap_or_default()["instance"], "db-v2-0");
        // HTTP still works on the same port.
        let r = crate::http::get(&format!("http://{addr}/"), Duration::from_secs(5)).await?;
        assert_eq!(r.status, 200);
        echo.stop().await
    }
}
