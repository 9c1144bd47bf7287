//! HTTP/1.1 as bytes on the wire, for what hyper normalizes away: the case of header names.
//!
//! hyper lowercases header names (its case map is private), so checking that the mesh keeps
//! `X-Legacy-Header` as the client wrote it needs both ends raw: [`exchange`] writes a request
//! byte for byte and reads the response's names as they arrived; [`Recorder`] keeps the bytes an
//! echo app's connection received so [`request_header_names`] can find a request's names.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The most received bytes a [`Recorder`] keeps (older ones are dropped).
const RECORD_LIMIT: usize = 256 * 1024;
/// The most header lines parsed in one head.
const MAX_HEADERS: usize = 128;
/// The largest response [`exchange`] reads.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// The bytes a connection received, shared with the service that answers it.
pub type Recording = Arc<Mutex<Vec<u8>>>;

/// Wraps a connection and copies every byte read from it into a [`Recording`].
#[derive(Debug)]
pub struct Recorder<S> {
    inner: S,
    recording: Recording,
}

impl<S> Recorder<S> {
    /// Records what `inner` receives; the recording is returned for the service.
    pub fn new(inner: S) -> (Self, Recording) {
        let recording = Recording::default();
        (
            Recorder {
                inner,
                recording: recording.clone(),
            },
            recording,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorder<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let new = &buf.filled()[before..];
            if !new.is_empty()
                && let Ok(mut r) = self.recording.lock()
            {
                r.extend_from_slice(new);
                if r.len() > RECORD_LIMIT {
                    let excess = r.len() - RECORD_LIMIT;
                    r.drain(..excess);
                }
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorder<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The header names, as received, of the last request in `recording` whose request line is
/// `METHOD TARGET HTTP/1.x`; `None` when there is none (e.g. an HTTP/2 connection). Everything
/// up to that request is dropped from the recording.
pub fn request_header_names(
    recording: &Recording,
    method: &str,
    target: &str,
) -> Option<Vec<String>> {
    let mut bytes = recording.lock().ok()?;
    let line = format!("{method} {target} HTTP/1.");
    let start = find_last(&bytes, line.as_bytes())?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let parsed = request.parse(&bytes[start..]).ok()?;
    let names = request.headers.iter().map(|h| h.name.to_string()).collect();
    if let httparse::Status::Complete(len) = parsed {
        bytes.drain(..start + len);
    }
    Some(names)
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    (0..=haystack.len() - needle.len())
        .rev()
        .find(|&i| haystack[i..].starts_with(needle))
}

/// A response read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The parsed response (header names lowercased, as everywhere else).
    pub response: crate::http::Response,
    /// The response's header names exactly as received, in order.
    pub header_names: Vec<String>,
}

/// Sends one HTTP/1.1 request written exactly as given (`target` in absolute or origin form,
/// header names in their case) on a new connection with `connection: close`, and reads the
/// response until the connection closes or its `content-length` is complete.
pub async fn exchange(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<RawResponse, String> {
    tokio::time::timeout(timeout, exchange_inner(addr, method, target, headers, body))
        .await
        .map_err(|_| format!("no response within {timeout:?}"))?
}

async fn exchange_inner(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<RawResponse, String> {
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    for (name, value) in headers {
        if name.contains(['\r', '\n', ':']) || value.contains(['\r', '\n']) {
            return Err(format!("header {name:?} cannot be written raw"));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream
        .write_all(body)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut received = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(parsed) = parse_response(&received)? {
            return Ok(parsed);
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return finish_at_eof(&received);
        }
        received.extend_from_slice(&chunk[..n]);
        if received.len() > MAX_RESPONSE {
            return Err(format!("response larger than {MAX_RESPONSE} bytes"));
        }
    }
}

/// The head and body, once a `content-length` response is complete; `None` while more is needed.
fn parse_response(received: &[u8]) -> Result<Option<RawResponse>, String> {
    let Some((raw, head_len)) = parse_head(received)? else {
        return Ok(None);
    };
    let length = raw
        .response
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match length {
        Some(n) if received.len() >= head_len + n => {
            Ok(Some(with_body(raw, &received[head_len..head_len + n])))
        }
        _ => Ok(None),
    }
}

/// At end of stream: the body is whatever followed the head (no `content-length`), de-chunked
/// when it was sent chunked.
fn finish_at_eof(received: &[u8]) -> Result<RawResponse, String> {
    match parse_head(received)? {
        Some((raw, head_len)) => {
            let chunked = raw
                .response
                .headers
                .get(http::header::TRANSFER_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
            let rest = &received[head_len..];
            let body = if chunked {
                dechunk(rest)?
            } else {
                rest.to_vec()
            };
            Ok(with_body(raw, &body))
        }
        None => Err(format!(
            "connection closed after {} bytes, before a complete response head",
            received.len()
        )),
    }
}

/// A chunked body's data (chunk extensions and trailers ignored).
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|e| e.to_string())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|e| format!("chunk size {size_text:?}: {e}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err("truncated chunk".to_string());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn with_body(mut raw: RawResponse, body: &[u8]) -> RawResponse {
    raw.response.body = Bytes::copy_from_slice(body);
    raw
}

fn parse_head(received: &[u8]) -> Result<Option<(RawResponse, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(received) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed response head: {e}")),
    };
    let status = response
        .code
        .and_then(|c| http::StatusCode::from_u16(c).ok())
        .ok_or("response without a valid status")?;
    let mut map = http::HeaderMap::new();
    let mut names = Vec::new();
    for h in response.headers.iter() {
        names.push(h.name.to_string());
        let name = http::HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|e| format!("header name {:?}: {e}", h.name))?;
        let value = http::HeaderValue::from_bytes(h.value)
            .map_err(|e| format!("header {:?}: {e}", h.name))?;
        map.append(name, value);
    }
    Ok(Some((
        RawResponse {
            response: crate::http::Response {
                status,
                headers: map,
                body: Bytes::new(),
            },
            header_names: names,
        },
        len,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_matching_request_head() {
        let recording = Recording::default();
        if let Ok(mut r) = recording.lock() {
            r.extend_from_slice(
                b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nbodyGET /b HTTP/1.1\r\nX-LEGACY-header: 1\r\nhost: y\r\n\r\n",
            );
        }
        assert_eq!(
            request_header_names(&recording, "GET", "/b"),
            Some(vec!["X-LEGACY-header".to_string(), "host".to_string()])
        );
        assert_eq!(request_header_names(&recording, "GET", "/a"), None);
    }

    #[test]
    fn response_keeps_names_and_reads_the_body() -> Result<(), String> {
        let wire = b"HTTP/1.1 200 OK\r\nX-Legacy-Header: v\r\nContent-Length: 2\r\n\r\nok";
        let raw = parse_response(wire)?.ok_or("incomplete")?;
        assert_eq!(raw.header_names, vec!["X-Legacy-Header", "Content-Length"]);
        assert_eq!(
            raw.response
                .headers
                .get("x-legacy-header")
                .map(|v| v.as_bytes()),
            Some(&b"v"[..])
        );
        assert_eq!(&raw.response.body[..], b"ok");
        assert!(parse_response(&wire[..wire.len() - 1])?.is_none());
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n1\r\n!\r\n0\r\n\r\n";
        assert_eq!(&finish_at_eof(chunked)?.response.body[..], b"ok!");
        Ok(())
    }
}
