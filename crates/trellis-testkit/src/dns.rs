//! DNS for tests: a tiny authoritative resolver that stands in for a cluster's DNS (the
//! upstream a DNS proxy relays to), and a client to ask a DNS server one question. Wire format
//! by hickory-proto.
//!
//! [`UpstreamDns`] answers A/AAAA for its records (TTL 60 s, so its answers are told apart from
//! a DNS proxy's 30 s ones), NXDOMAIN for every other name, over UDP and TCP, counting the
//! queries it got. It serves sockets bound by the caller (e.g. inside a pod's network
//! namespace) on a thread of its own, until dropped.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
pub use hickory_proto::op::ResponseCode;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
pub use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The TTL of the upstream's answers.
pub const UPSTREAM_TTL: u32 = 60;

/// A running test resolver; stops when dropped.
#[derive(Debug)]
pub struct UpstreamDns {
    address: SocketAddr,
    queries: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UpstreamDns {
    /// Serves `records` (lower-case names without the trailing dot) on already bound sockets.
    pub fn serve(
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
        records: BTreeMap<String, Vec<IpAddr>>,
    ) -> anyhow::Result<Self> {
        let address = udp.local_addr()?;
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let queries = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let counter = queries.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("a runtime for the test resolver")?;
        let thread = std::thread::Builder::new()
            .name("upstream-dns".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let (Ok(udp), Ok(tcp)) = (
                        tokio::net::UdpSocket::from_std(udp),
                        tokio::net::TcpListener::from_std(tcp),
                    ) else {
                        return;
                    };
                    let records = Arc::new(records);
                    tokio::select! {
                        _ = stopped => {}
                        () = serve_udp(udp, records.clone(), counter.clone()) => {}
                        () = serve_tcp(tcp, records, counter) => {}
                    }
                });
            })?;
        Ok(UpstreamDns {
            address,
            queries,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Binds UDP and TCP on `address` and serves `records` there.
    pub fn start(
        address: SocketAddr,
        records: BTreeMap<String, Vec<IpAddr>>,
    ) -> anyhow::Result<Self> {
        let udp = std::net::UdpSocket::bind(address).with_context(|| format!("UDP {address}"))?;
        let tcp = std::net::TcpListener::bind(udp.local_addr()?)
            .with_context(|| format!("TCP {address}"))?;
        Self::serve(udp, tcp, records)
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// How many queries it has received.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for UpstreamDns {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve_udp(
    socket: tokio::net::UdpSocket,
    records: Arc<BTreeMap<String, Vec<IpAddr>>>,
    queries: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        queries.fetch_add(1, Ordering::Relaxed);
        if let Some(answer) = answer(&buf[..n], &records) {
            let _ = socket.send_to(&answer, from).await;
        }
    }
}

async fn serve_tcp(
    listener: tokio::net::TcpListener,
    records: Arc<BTreeMap<String, Vec<IpAddr>>>,
    queries: Arc<AtomicU64>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let (records, queries) = (records.clone(), queries.clone());
        tokio::spawn(async move {
            while let Ok(len) = stream.read_u16().await {
                let mut query = vec![0u8; usize::from(len)];
                if stream.read_exact(&mut query).await.is_err() {
                    return;
                }
                queries.fetch_add(1, Ordering::Relaxed);
                let Some(answer) = answer(&query, &records) else {
                    return;
                };
                let Ok(n) = u16::try_from(answer.len()) else {
                    return;
                };
                let mut framed = n.to_be_bytes().to_vec();
                framed.extend_from_slice(&answer);
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The authoritative answer to one query: its records, or NXDOMAIN.
fn answer(query: &[u8], records: &BTreeMap<String, Vec<IpAddr>>) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(true)
        .set_recursion_desired(request.recursion_desired())
        .add_queries(request.queries().iter().cloned());
    let q = request.queries().first()?;
    let name = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match records.get(&name) {
        None => {
            response.set_response_code(ResponseCode::NXDomain);
        }
        Some(ips) => {
            for ip in ips {
                let rdata = match (q.query_type(), ip) {
                    (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
                    (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
                    _ => continue,
                };
                response.add_answer(Record::from_rdata(q.name().clone(), UPSTREAM_TTL, rdata));
            }
        }
    }
    response.to_vec().ok()
}

/// What a DNS server answered to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response code (`NoError`, `NXDomain`, `ServFail`, `FormErr`, ...).
    pub code: ResponseCode,
    /// The addresses in the answer section.
    pub ips: Vec<IpAddr>,
    /// Their TTLs.
    pub ttls: Vec<u32>,
}

/// Asks `server` over UDP for `name`'s A (or AAAA) records, from the calling thread's network
/// namespace (blocking, at most `timeout`).
pub fn query_udp(
    server: SocketAddr,
    name: &str,
    record_type: RecordType,
    timeout: Duration,
) -> anyhow::Result<Answer> {
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let mut message = Message::new();
    message
        .set_id(id)
        .set_recursion_desired(true)
        .add_query(Query::query(
            Name::from_ascii(name).with_context(|| format!("{name:?} is not a DNS name"))?,
            record_type,
        ));
    let bytes = message.to_vec()?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = std::net::UdpSocket::bind(bind)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.connect(server)?;
    socket.send(&bytes)?;
    let mut buf = vec![0u8; 65535];
    let n = socket
        .recv(&mut buf)
        .with_context(|| format!("no answer from {server} for {name}"))?;
    let response = Message::from_vec(&buf[..n]).context("the answer is not a DNS message")?;
    let mut answer = Answer {
        code: response.response_code(),
        ips: Vec::new(),
        ttls: Vec::new(),
    };
    for record in response.answers() {
        match record.data() {
            RData::A(a) => answer.ips.push(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => answer.ips.push(IpAddr::V6(aaaa.0)),
            _ => continue,
        }
        answer.ttls.push(record.ttl());
    }
    Ok(answer)
}

/// Sends raw bytes to a DNS server over UDP and returns what came back within `timeout`
/// (`None`: nothing), e.g. to show a malformed packet gets FORMERR or is dropped.
pub fn send_raw_udp(
    server: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> anyhow::Result<Option<Vec<u8>>> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(timeout))?;
    socket.connect(server)?;
    socket.send(bytes)?;
    let mut buf = vec![0u8; 65535];
    match socket.recv(&mut buf) {
        Ok(n) => Ok(Some(buf[..n].to_vec())),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_answers_its_records_and_nxdomain() -> anyhow::Result<()> {
        let records = BTreeMap::from([(
            "db.example.test".to_string(),
            vec!["192.0.2.7".parse::<IpAddr>()?],
        )]);
        let upstream = UpstreamDns::start("127.0.0.1:0".parse()?, records)?;
        let timeout = Duration::from_secs(2);
        let known = query_udp(
            upstream.address(),
            "DB.example.test.",
            RecordType::A,
            timeout,
        )?;
        assert_eq!(known.code, ResponseCode::NoError);
        assert_eq!(known.ips, vec!["192.0.2.7".parse::<IpAddr>()?]);
        assert_eq!(known.ttls, vec![UPSTREAM_TTL]);
        let unknown = query_udp(
            upstream.address(),
            "nope.example.test.",
            RecordType::A,
            timeout,
        )?;
        assert_eq!(unknown.code, ResponseCode::NXDomain);
        assert_eq!(upstream.queries(), 2);
        Ok(())
    }
}
