//! `with_request_body`: the request body is buffered before the check, as Envoy's ext_authz
//! filter does. Without `allow_partial_message` the buffer limit is `max_request_bytes` and a
//! bigger body is answered `413` without a check; with it, buffering stops once that many bytes
//! are in and the check carries the first `max_request_bytes`. The check says which in
//! `x-envoy-auth-partial-body` (`true` when bytes were left out). What was read goes upstream
//! unchanged, before the rest ([`Prefetched`]).

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};

use crate::config::BodySettings;
use crate::listener::prefetched::Prefetched;

/// The header telling the authorizer whether the body it got is partial.
pub const PARTIAL_BODY_HEADER: &str = "x-envoy-auth-partial-body";

/// The body a check carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckBody {
    /// The first `max_request_bytes` of it.
    pub bytes: Bytes,
    /// Whether more was buffered than sent.
    pub partial: bool,
    /// `pack_as_bytes`.
    pub pack_as_bytes: bool,
}

/// Why buffering stopped the request.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// The body is bigger than `max_request_bytes` and partial messages are not allowed.
    #[error("the request body is bigger than the ext_authz buffer of {0} bytes")]
    TooLarge(u32),
    /// Reading the downstream body failed.
    #[error("reading the request body: {0}")]
    Read(String),
}

/// Reads the body as `settings` say: what the check carries, and what was read (for upstream).
pub async fn buffer(
    body: &mut Incoming,
    settings: &BodySettings,
) -> Result<(CheckBody, Prefetched), BufferError> {
    let max = settings.max_request_bytes as usize;
    let mut read = Prefetched::default();
    let mut len = 0usize;
    loop {
        if body.is_end_stream() {
            read.ended = true;
            break;
        }
        if settings.allow_partial_message && len >= max {
            break;
        }
        match body.frame().await {
            None => {
                read.ended = true;
                break;
            }
            Some(Err(e)) => return Err(BufferError::Read(e.to_string())),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    len += data.len();
                    if !settings.allow_partial_message && len > max {
                        return Err(BufferError::TooLarge(settings.max_request_bytes));
                    }
                    read.data.push(data);
                }
                Err(frame) => {
                    read.trailers = frame.into_trailers().ok();
                    read.ended = true;
                    break;
                }
            },
        }
    }
    let mut bytes = BytesMut::with_capacity(len.min(max));
    for chunk in &read.data {
        let room = max - bytes.len();
        if room == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    let check = CheckBody {
        bytes: bytes.freeze(),
        partial: len > max,
        pack_as_bytes: settings.pack_as_bytes,
    };
    Ok((check, read))
}

/// The body as `AttributeContext.HttpRequest.body` text: UTF-8, each invalid byte replaced by
/// `!` (Envoy's `sanitizeUtf8String`).
pub fn as_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        out.extend(std::iter::repeat_n('!', chunk.invalid().len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_bytes_become_bangs() {
        assert_eq!(as_text(b"ok \xff\xfe end"), "ok !! end");
        assert_eq!(as_text("héllo".as_bytes()), "héllo");
    }
}
