//! The DNS server of a DNS proxy (Istio's DNS proxying): answers A and AAAA queries for names
//! in the name table itself (TTL 30 s, authoritative), relays every other query to the
//! upstream resolvers and their answer back, SERVFAIL when none answers. Malformed queries
//! get FORMERR (or are dropped when not even the header is there) and never stop the server.
//! Serves UDP and TCP (RFC 1035 framing) on the same address (Istio's `127.0.0.1:15053`).
//!
//! Until the first name table has arrived, a query waits for it (at most
//! [`FIRST_TABLE_WAIT`]): an app that starts with its proxy does not get an upstream's
//! NXDOMAIN for a mesh name just because NDS was a moment late. After that wait (a proxy cut
//! off from its control plane) queries are relayed upstream.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use super::stats::{Outcome, stats};
use super::table::DnsTable;
use super::upstream;

/// TTL of the answers from the name table (Istio's).
pub const TTL_SECONDS: u32 = 30;
/// How long one upstream resolver may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Queries handled at once; more UDP queries are dropped (the client retries).
const MAX_IN_FLIGHT: usize = 256;
/// How long a query waits for the first name table.
pub const FIRST_TABLE_WAIT: Duration = Duration::from_secs(5);
/// How long a TCP client may stay silent.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// How a query came in (and so how it is relayed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// The DNS server: the current name table and where other names go.
#[derive(Debug)]
pub struct DnsServer {
    table: RwLock<Arc<DnsTable>>,
    upstreams: Vec<SocketAddr>,
    in_flight: Arc<Semaphore>,
    /// Whether a name table has been set.
    has_table: tokio::sync::watch::Sender<bool>,
}

impl DnsServer {
    /// A server with an empty table (everything is relayed until the first name table comes)
    /// relaying to `upstreams`.
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        DnsServer {
            table: RwLock::new(Arc::new(DnsTable::default())),
            upstreams,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            has_table: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Where names outside the table go.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Replaces the name table.
    pub fn set_table(&self, table: DnsTable) {
        let mut current = self.table.write().unwrap_or_else(|e| e.into_inner());
        *current = Arc::new(table);
        drop(current);
        self.has_table.send_replace(true);
    }

    /// Waits (at most [`FIRST_TABLE_WAIT`]) until a name table has been set.
    async fn first_table(&self) {
        let mut has_table = self.has_table.subscribe();
        let _ = tokio::time::timeout(FIRST_TABLE_WAIT, has_table.wait_for(|has| *has)).await;
    }

    fn table(&self) -> Arc<DnsTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The answer to one query, `None` to drop it.
    pub async fn answer(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let request = match Message::from_vec(query) {
            Ok(request) => request,
            Err(_) => {
                stats().count(Outcome::malformed);
                return format_error(query);
            }
        };
        if request.message_type() != MessageType::Query {
            stats().count(Outcome::malformed);
            return None;
        }
        self.first_table().await;
        if let Some(response) = self.local_answer(&request) {
            stats().count(Outcome::local);
            return Some(response);
        }
        for upstream in &self.upstreams {
            let answer = match transport {
                Transport::Udp => upstream::over_udp(query, *upstream, UPSTREAM_TIMEOUT).await,
                Transport::Tcp => upstream::over_tcp(query, *upstream, UPSTREAM_TIMEOUT).await,
            };
            match answer {
                Ok(answer) => {
                    stats().count(Outcome::forwarded);
                    return Some(answer);
                }
                Err(error) => {
                    tracing::debug!(%upstream, %error, "upstream resolver did not answer");
                }
            }
        }
        stats().count(Outcome::failed);
        let mut failure =
            Message::error_msg(request.id(), request.op_code(), ResponseCode::ServFail);
        failure.add_queries(request.queries().iter().cloned());
        failure.set_recursion_desired(request.recursion_desired());
        failure.set_recursion_available(true);
        failure.to_vec().ok()
    }

    /// The answer from the name table, when the query is one standard query for a name in it.
    fn local_answer(&self, request: &Message) -> Option<Vec<u8>> {
        let [query] = request.queries() else {
            return None;
        };
        if request.op_code() != OpCode::Query || query.query_class() != DNSClass::IN {
            return None;
        }
        let table = self.table();
        let ips = table.lookup(&query.name().to_ascii())?;
        let mut response = Message::new();
        response
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_authoritative(true)
            .set_recursion_desired(request.recursion_desired())
            .set_recursion_available(true)
            .set_response_code(ResponseCode::NoError)
            .add_query(query.clone());
        // Other types of a known name (MX, TXT, ...) get no records: NOERROR, no data.
        for ip in ips {
            let rdata = match (query.query_type(), ip) {
                (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
                (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
                _ => continue,
            };
            response.add_answer(Record::from_rdata(query.name().clone(), TTL_SECONDS, rdata));
        }
        response.to_vec().ok()
    }

    /// Serves UDP queries on `socket` forever.
    pub async fn serve_udp(self: Arc<Self>, socket: UdpSocket) {
        let socket = Arc::new(socket);
        let mut buf = vec![0u8; 65535];
        loop {
            let (n, from) = match socket.recv_from(&mut buf).await {
                Ok(received) => received,
                Err(error) => {
                    // ICMP errors of earlier sends show up here; the socket stays usable.
                    tracing::debug!(%error, "DNS UDP receive");
                    continue;
                }
            };
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                tracing::debug!(%from, "DNS proxy busy; query dropped");
                continue;
            };
            let query = buf[..n].to_vec();
            let (server, socket) = (self.clone(), socket.clone());
            tokio::spawn(async move {
                if let Some(answer) = server.answer(&query, Transport::Udp).await
                    && let Err(error) = socket.send_to(&answer, from).await
                {
                    tracing::debug!(%from, %error, "DNS UDP send");
                }
                drop(permit);
            });
        }
    }

    /// Serves TCP connections on `listener` forever.
    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::debug!(%error, "DNS TCP accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(error) = server.serve_connection(stream).await {
                    tracing::debug!(%error, "DNS TCP connection");
                }
            });
        }
    }

    /// One TCP connection: length-prefixed queries until the client goes quiet or away.
    async fn serve_connection(&self, mut stream: TcpStream) -> std::io::Result<()> {
        loop {
            let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
                Ok(Ok(len)) => len,
                Ok(Err(_)) | Err(_) => return Ok(()),
            };
            let mut query = vec![0u8; usize::from(len)];
            tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
            let Some(answer) = self.answer(&query, Transport::Tcp).await else {
                return Ok(());
            };
            let Ok(n) = u16::try_from(answer.len()) else {
                return Ok(());
            };
            let mut framed = n.to_be_bytes().to_vec();
            framed.extend_from_slice(&answer);
            stream.write_all(&framed).await?;
        }
    }
}

/// FORMERR for a query that does not parse, keeping its id; `None` (drop) when not even a
/// 12-byte header is there or it claims to be a response.
fn format_error(query: &[u8]) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    if header[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([header[0], header[1]]);
    let op_code = OpCode::from_u8((header[2] >> 3) & 0x0f);
    Message::error_msg(id, op_code, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

#[cfg(test)]
mod tests;
