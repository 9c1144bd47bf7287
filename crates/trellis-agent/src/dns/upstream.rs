//! Where names the table does not have go: the nameservers of the pod's `/etc/resolv.conf`
//! (read when the DNS proxy starts; the proxy's own queries escape capture by its UID), asked
//! in order, over the transport the query came in on.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The nameservers of a `resolv.conf` text, on port 53, in order.
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        // `fe80::1%eth0`: the zone is dropped (link-local upstreams are not supported).
        .filter_map(|addr| addr.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Asks `upstream` over UDP; the answer must carry the query's id.
pub async fn over_udp(
    query: &[u8],
    upstream: SocketAddr,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    tokio::time::timeout(timeout, async {
        loop {
            let n = socket.recv(&mut buf).await?;
            if n >= 2 && query.len() >= 2 && buf[..2] == query[..2] {
                return Ok(buf[..n].to_vec());
            }
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

/// Asks `upstream` over TCP (two-byte length prefix, RFC 1035 4.2.2).
pub async fn over_tcp(
    query: &[u8],
    upstream: SocketAddr,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(upstream).await?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        let n = stream.read_u16().await?;
        let mut answer = vec![0u8; usize::from(n)];
        stream.read_exact(&mut answer).await?;
        Ok(answer)
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_in_order() {
        let text = "# generated\nsearch default.svc.cluster.local\nnameserver 10.0.0.1\n\
                    nameserver fe80::1%eth0\noptions ndots:5\nnameserver bogus\n";
        assert_eq!(
            nameservers(text),
            vec![
                "10.0.0.1:53".parse().expect("addr"),
                "[fe80::1]:53".parse().expect("addr"),
            ]
        );
    }
}
