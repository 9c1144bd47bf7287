//! Reading a connection's TLS ClientHello without consuming it (the TLS inspector's SNI), so
//! a filter chain can be picked by `server_names` before TLS is terminated there or the bytes
//! are passed through untouched.

use std::time::Duration;

use tokio::net::TcpStream;

/// The most ClientHello bytes looked at (Envoy's `max_client_hello_size` default, 64 KiB,
/// would be the ceiling; real ClientHellos fit in a few KiB).
const MAX_HELLO: usize = 16 * 1024;
/// How long to wait between looks while a ClientHello arrives in pieces.
const RETRY: Duration = Duration::from_millis(2);

/// The SNI of the ClientHello at the start of `stream`, peeked (the bytes stay in the socket
/// for whoever reads next). `None`: no SNI, not a ClientHello, too large, or the peer closed.
/// The caller bounds how long this may take.
pub async fn peek_sni(stream: &TcpStream) -> Option<String> {
    let mut buf = vec![0u8; MAX_HELLO];
    let mut last = 0;
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if n > last {
            last = n;
            let mut acceptor = rustls::server::Acceptor::default();
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                match acceptor.read_tls(&mut rest) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    return accepted.client_hello().server_name().map(str::to_string);
                }
                Ok(None) if n < buf.len() => {}
                Ok(None) | Err(_) => return None,
            }
        }
        // More of the ClientHello is on its way: peek returns at once while any data is
        // buffered, so look again shortly rather than spin.
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::AsyncReadExt;

    use super::peek_sni;
    use crate::config::{HttpFilters, Listener, RouteSource, RouteTable, TransportProtocol};

    /// A real rustls ClientHello for `name` arrives on the accepted side of a loopback pair.
    async fn hello(name: &str) -> tokio::net::TcpStream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let name = name.to_string();
        tokio::spawn(async move {
            let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let server = rustls::pki_types::ServerName::try_from(name).expect("name");
            // The handshake never completes (nobody answers); the hello is what matters.
            let _ = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(server, stream)
                .await;
        });
        listener.accept().await.expect("accept").0
    }

    #[tokio::test]
    async fn the_sni_is_read_without_consuming_the_hello() {
        let mut stream = hello("shop.example.com").await;
        assert_eq!(peek_sni(&stream).await.as_deref(), Some("shop.example.com"));
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).await.expect("read");
        assert_eq!(first[0], 0x16, "the ClientHello is still there to be read");
    }

    #[tokio::test]
    async fn an_ip_address_sends_no_sni() {
        let stream = hello("127.0.0.1").await;
        assert_eq!(peek_sni(&stream).await, None);
    }

    #[test]
    fn chains_are_picked_by_exact_then_longest_wildcard_then_unnamed() {
        let mut listener = Listener::plain(
            "0.0.0.0_8443",
            "127.0.0.1:8443".parse().expect("addr"),
            "gw",
            RouteSource::Inline(Arc::new(RouteTable {
                name: String::new(),
                virtual_hosts: Vec::new(),
            })),
            HttpFilters::default(),
        );
        let template = listener.filter_chains[0].clone();
        listener.filter_chains.clear();
        for (name, names) in [
            ("exact", vec!["a.example.com"]),
            ("wide", vec!["*.example.com"]),
            ("narrow", vec!["*.b.example.com"]),
            ("default", vec![]),
        ] {
            let mut chain = template.clone();
            chain.name = name.to_string();
            chain.server_names = names.into_iter().map(str::to_string).collect();
            listener.filter_chains.push(chain);
        }
        let pick = |listener: &Listener, sni: Option<&str>| {
            listener
                .chain_for_sni(TransportProtocol::Tls, sni)
                .map(|(_, c)| c.name.clone())
        };
        assert_eq!(
            pick(&listener, Some("A.example.com")).as_deref(),
            Some("exact")
        );
        assert_eq!(
            pick(&listener, Some("c.example.com")).as_deref(),
            Some("wide")
        );
        assert_eq!(
            pick(&listener, Some("x.b.example.com")).as_deref(),
            Some("narrow")
        );
        assert_eq!(
            pick(&listener, Some("example.com")).as_deref(),
            Some("default")
        );
        assert_eq!(pick(&listener, None).as_deref(), Some("default"));
        listener.filter_chains.pop();
        assert_eq!(
            pick(&listener, Some("other.org")),
            None,
            "no chain for an unknown name"
        );
    }
}
