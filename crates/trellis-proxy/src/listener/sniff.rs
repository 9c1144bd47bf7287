//! Protocol sniffing on accepted connections: Envoy's TLS inspector
//! (`envoy.filters.listener.tls_inspector`: a ClientHello makes the transport `tls`) and HTTP
//! inspector (`envoy.filters.listener.http_inspector`: an HTTP/1.x request line makes the
//! application protocol `http/1.0` or `http/1.1`, the HTTP/2 prior-knowledge preface `h2c`),
//! read from the socket without consuming it, so the filter chain picked by
//! `transport_protocol` / `application_protocols` sees every byte.
//!
//! **Server-first protocols are never held up.** Envoy (and so Istio) waits for the client's
//! first bytes before it picks a chain, so a client that waits for the server's greeting
//! (SMTP, MySQL, SSH) stalls until `listener_filters_timeout`. Here, when the chain a silent
//! plaintext connection would take is a plain TCP proxy, a client that has sent nothing within
//! [`SERVER_FIRST_WINDOW`] has that chain's upstream connected at once, and the two sides race:
//!
//! - the server speaks first: the protocol is server-first, the chain is the TCP proxy, and the
//!   greeting goes to the client as soon as it arrives;
//! - the client speaks first: its bytes are classified as usual. When they pick the same TCP
//!   chain the connected upstream is used; otherwise (say, a slow HTTP client) it is closed
//!   unused (the server saw a connect and a close, no byte) and the detected chain serves.
//!
//! So a slow client is never misclassified (as a plain timeout would do), and a greeting waits
//! at most the window plus the upstream connect. Outcomes are counted in
//! `trellis_protocol_detection_total{protocol, reason}`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::TransportProtocol;

/// How long a connection may stay silent before its TCP chain's upstream is connected, so a
/// server-first protocol's greeting can flow (see the module doc). A client that speaks first
/// has normally sent its bytes before the connection is accepted.
pub(super) const SERVER_FIRST_WINDOW: Duration = Duration::from_millis(10);
/// The most bytes looked at to decide (an HTTP/1 request line longer than this is opaque).
const MAX_PEEK: usize = 8 * 1024;
/// How long to wait between looks while the first bytes arrive in pieces.
const RETRY: Duration = Duration::from_millis(2);
/// The HTTP/2 connection preface a prior-knowledge (h2c) client starts with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's first bytes turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// A TLS ClientHello (transport `tls`).
    Tls,
    /// An HTTP/1.0 request line (`http/1.0`).
    Http10,
    /// An HTTP/1.1 request line (`http/1.1`).
    Http11,
    /// The HTTP/2 prior-knowledge preface (`h2c`).
    H2c,
    /// Anything else: opaque bytes.
    Tcp,
}

impl Detected {
    /// The transport protocol chains match on.
    pub fn transport(self) -> TransportProtocol {
        match self {
            Detected::Tls => TransportProtocol::Tls,
            _ => TransportProtocol::RawBuffer,
        }
    }

    /// The application protocol chains match on (Envoy's HTTP inspector's names).
    pub fn application_protocol(self) -> Option<&'static str> {
        match self {
            Detected::Http10 => Some("http/1.0"),
            Detected::Http11 => Some("http/1.1"),
            Detected::H2c => Some("h2c"),
            Detected::Tls | Detected::Tcp => None,
        }
    }

    /// The `protocol` label of `trellis_protocol_detection_total`.
    pub fn label(self) -> &'static str {
        match self {
            Detected::Tls => "tls",
            Detected::Http10 | Detected::Http11 => "http1",
            Detected::H2c => "h2c",
            Detected::Tcp => "tcp",
        }
    }
}

/// The verdict on a prefix of a connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// Decided.
    Done(Detected),
    /// The bytes so far could still be either: wait for more.
    NeedMore,
}

/// Classifies the first bytes of a connection with the inspectors a listener has: `tls` (the
/// TLS inspector) and `http` (the HTTP inspector). Without an inspector that could claim them
/// the bytes are [`Detected::Tcp`].
pub fn classify(bytes: &[u8], tls: bool, http: bool) -> Classified {
    if bytes.is_empty() {
        return Classified::NeedMore;
    }
    if tls && bytes[0] == 0x16 {
        match bytes.get(1) {
            None => return Classified::NeedMore,
            Some(0x03) => return Classified::Done(Detected::Tls),
            Some(_) => {}
        }
    }
    if !http {
        return Classified::Done(Detected::Tcp);
    }
    let n = bytes.len().min(H2_PREFACE.len());
    if bytes[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Classified::Done(Detected::H2c)
        } else {
            Classified::NeedMore
        };
    }
    match request_line(bytes) {
        Line::Http(d) => Classified::Done(d),
        Line::Partial if bytes.len() < MAX_PEEK => Classified::NeedMore,
        Line::Partial | Line::Not => Classified::Done(Detected::Tcp),
    }
}

enum Line {
    Http(Detected),
    Partial,
    Not,
}

/// An HTTP/1.x request line: `METHOD SP target SP HTTP/1.x CRLF`, the method upper-case
/// letters (as the methods Envoy's parser knows), the target without spaces or controls.
fn request_line(bytes: &[u8]) -> Line {
    let method_len = bytes
        .iter()
        .take_while(|b| b.is_ascii_uppercase() || **b == b'-' || **b == b'_')
        .count();
    if method_len > 20 || method_len == 0 && !bytes.is_empty() {
        return Line::Not;
    }
    let Some(rest) = bytes.get(method_len..).filter(|r| !r.is_empty()) else {
        return Line::Partial;
    };
    if rest[0] != b' ' || method_len == 0 {
        return Line::Not;
    }
    let rest = &rest[1..];
    let target_len = rest
        .iter()
        .take_while(|b| **b > b' ' && **b != 0x7f)
        .count();
    let Some(rest) = rest.get(target_len..).filter(|r| !r.is_empty()) else {
        return Line::Partial;
    };
    if rest[0] != b' ' || target_len == 0 {
        return Line::Not;
    }
    let version = &rest[1..];
    const PREFIX: &[u8] = b"HTTP/1.";
    let n = version.len().min(PREFIX.len());
    if version[..n] != PREFIX[..n] {
        return Line::Not;
    }
    let detected = match version.get(PREFIX.len()) {
        None => return Line::Partial,
        Some(b'0') => Detected::Http10,
        Some(b'1') => Detected::Http11,
        Some(_) => return Line::Not,
    };
    match &version[PREFIX.len() + 1..] {
        [] | [b'\r'] => Line::Partial,
        [b'\r', b'\n', ..] | [b'\n', ..] => Line::Http(detected),
        _ => Line::Not,
    }
}

/// What waiting for a connection's first bytes gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inspection {
    /// The bytes decided the protocol.
    Detected(Detected),
    /// Nothing arrived within the server-first window.
    Silent,
    /// The client closed first, or the bytes did not decide in time: the connection is
    /// closed (Envoy's listener filter timeout). The reason label.
    Gone(&'static str),
}

/// Peeks at `stream` until its first bytes decide (see [`classify`]), the peer closes, or
/// `deadline`; with `window`, no byte at all within it is [`Inspection::Silent`].
pub(super) async fn inspect(
    stream: &TcpStream,
    tls: bool,
    http: bool,
    window: Option<Duration>,
    deadline: Instant,
) -> Inspection {
    let mut buf = vec![0u8; MAX_PEEK];
    let first_deadline = match window {
        Some(w) => (Instant::now() + w).min(deadline),
        None => deadline,
    };
    let mut last = 0;
    loop {
        let until = if last == 0 { first_deadline } else { deadline };
        let n = match tokio::time::timeout_at(until, stream.peek(&mut buf)).await {
            Err(_) if last == 0 && window.is_some() && Instant::now() < deadline => {
                return Inspection::Silent;
            }
            Err(_) => return Inspection::Gone("timeout"),
            Ok(Err(_)) | Ok(Ok(0)) => return Inspection::Gone("closed"),
            Ok(Ok(n)) => n,
        };
        if n > last {
            last = n;
            if let Classified::Done(d) = classify(&buf[..n], tls, http) {
                return Inspection::Detected(d);
            }
        }
        // A peek returns at once while bytes wait, so the deadline is checked here.
        if Instant::now() >= deadline {
            return Inspection::Gone("timeout");
        }
        // More is on its way: peek returns at once while any byte is buffered, so look again
        // shortly rather than spin.
        tokio::time::sleep(RETRY).await;
    }
}

/// Who spoke first on a silent connection whose upstream was connected early.
#[derive(Debug)]
pub(super) enum Race {
    /// The server: its greeting (empty when it closed without one).
    ServerFirst(Vec<u8>),
    /// The client, and what its bytes are.
    ClientFirst(Detected),
    /// The client closed or stalled mid-detection; the connection ends.
    Gone(&'static str),
}

/// Waits for the first bytes from either side of a silent connection: the server's greeting
/// is read (it goes to the client next), the client's only peeked and classified.
pub(super) async fn race<U>(
    stream: &TcpStream,
    upstream: &mut U,
    tls: bool,
    http: bool,
    detection_timeout: Duration,
) -> Race
where
    U: AsyncRead + Unpin,
{
    let mut greeting = vec![0u8; 16 * 1024];
    let mut first = [0u8; 1];
    tokio::select! {
        biased;
        peeked = stream.peek(&mut first) => {
            if !matches!(peeked, Ok(n) if n > 0) {
                return Race::Gone("closed");
            }
        }
        read = upstream.read(&mut greeting) => {
            let n = read.unwrap_or(0);
            greeting.truncate(n);
            return Race::ServerFirst(greeting);
        }
    }
    match inspect(stream, tls, http, None, Instant::now() + detection_timeout).await {
        Inspection::Detected(d) => Race::ClientFirst(d),
        Inspection::Gone(reason) => Race::Gone(reason),
        Inspection::Silent => Race::Gone("timeout"),
    }
}

/// Labels of `trellis_protocol_detection_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DetectionLabels {
    /// `http1`, `h2c`, `tls`, `tcp`, or `unknown` when the connection ended undecided.
    pub protocol: String,
    /// `client_first` (the client's first bytes decided), `server_first` (the server greeted
    /// a silent client: opaque TCP), `closed` or `timeout` (ended before deciding).
    pub reason: String,
}

/// Protocol detection outcomes on listeners with an inspector.
#[derive(Debug, Clone, Default)]
pub struct DetectionStats {
    counts: Family<DetectionLabels, Counter>,
}

impl DetectionStats {
    /// Adds `trellis_protocol_detection_total` to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "trellis_protocol_detection",
            "Connections by the protocol their listener's inspectors detected, and how",
            self.counts.clone(),
        );
    }

    /// Counts one outcome.
    pub fn record(&self, protocol: &str, reason: &str) {
        self.counts
            .get_or_create(&DetectionLabels {
                protocol: protocol.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }
}

pub(super) mod server_first;

#[cfg(test)]
mod tests;
