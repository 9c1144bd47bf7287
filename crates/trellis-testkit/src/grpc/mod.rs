//! gRPC in the echo app and the load client: a tiny `trellis.echo.Echo` service (unary, server
//! streaming, client streaming, bidirectional) served on the echo app's HTTP port (requests with
//! `content-type: application/grpc` go here), and a client that calls it through a sidecar the
//! way a gRPC application with prior knowledge does: h2c to the outbound listener with
//! `:authority` = the service.
//!
//! The messages are hand-written prost structs (no build script, no protoc):
//!
//! ```proto
//! message EchoRequest { string message = 1; uint32 count = 2; }
//! message EchoReply { string service = 1; string version = 2; string instance = 3;
//!   string message = 4; uint32 received = 5; map<string, string> metadata = 6;
//!   string protocol = 7; string authority = 8; uint32 index = 9; }
//! service Echo {
//!   rpc Unary(EchoRequest) returns (EchoReply);
//!   rpc ServerStream(EchoRequest) returns (stream EchoReply);   // `count` replies
//!   rpc ClientStream(stream EchoRequest) returns (EchoReply);   // `received` = messages read
//!   rpc Bidi(stream EchoRequest) returns (stream EchoReply);    // one reply per message
//! }
//! ```
//!
//! Request metadata shapes the answer: [`STATUS_METADATA`] (`x-echo-grpc-status: 14`) makes the
//! call end with that status — a trailers-only response for unary calls, the status in the
//! trailers after the replies for streams — limited to one instance or version by
//! [`FAIL_INSTANCE_METADATA`] / [`FAIL_VERSION_METADATA`] (as the HTTP echo's `fail_instance`).

pub mod client;
pub mod proto;
pub(crate) mod server;

/// The fully qualified service name.
pub const SERVICE: &str = "trellis.echo.Echo";
/// The most replies one `ServerStream` call may ask for.
pub const MAX_STREAM_REPLIES: u32 = 1000;
/// Metadata: the status code (0–16) the call ends with.
pub const STATUS_METADATA: &str = "x-echo-grpc-status";
/// Metadata: only this instance applies [`STATUS_METADATA`].
pub const FAIL_INSTANCE_METADATA: &str = "x-echo-fail-instance";
/// Metadata: only this version applies [`STATUS_METADATA`].
pub const FAIL_VERSION_METADATA: &str = "x-echo-fail-version";

/// The four methods of the echo service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// One request, one reply.
    #[default]
    Unary,
    /// One request, `count` replies.
    ServerStream,
    /// Several requests, one reply.
    ClientStream,
    /// Several requests, one reply each.
    Bidi,
}

impl Method {
    /// The HTTP/2 path of the method.
    pub fn path(self) -> &'static str {
        match self {
            Method::Unary => "/trellis.echo.Echo/Unary",
            Method::ServerStream => "/trellis.echo.Echo/ServerStream",
            Method::ClientStream => "/trellis.echo.Echo/ClientStream",
            Method::Bidi => "/trellis.echo.Echo/Bidi",
        }
    }

    /// The method a path names.
    pub fn from_path(path: &str) -> Option<Self> {
        [
            Method::Unary,
            Method::ServerStream,
            Method::ClientStream,
            Method::Bidi,
        ]
        .into_iter()
        .find(|m| m.path() == path)
    }
}

/// Whether a request is gRPC (by its content type, as gRPC servers decide).
pub fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

#[cfg(test)]
mod tests;
