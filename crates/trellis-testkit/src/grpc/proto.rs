//! The echo service's messages, written by hand with prost's derive (see the module doc of
//! [`super`] for the `.proto` they correspond to).

use std::collections::BTreeMap;

/// What the client sends.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    /// Any text; echoed back in the reply.
    #[prost(string, tag = "1")]
    pub message: String,
    /// `ServerStream`: how many replies (at least 1, at most
    /// [`super::MAX_STREAM_REPLIES`]).
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

/// What the echo app answers: who it is and what it saw.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    /// The service name.
    #[prost(string, tag = "1")]
    pub service: String,
    /// The version label.
    #[prost(string, tag = "2")]
    pub version: String,
    /// The instance id.
    #[prost(string, tag = "3")]
    pub instance: String,
    /// The request's `message`.
    #[prost(string, tag = "4")]
    pub message: String,
    /// How many request messages the app had read when it sent this reply.
    #[prost(uint32, tag = "5")]
    pub received: u32,
    /// The request metadata (ASCII values; repeated keys joined with `,`).
    #[prost(btree_map = "string, string", tag = "6")]
    pub metadata: BTreeMap<String, String>,
    /// The HTTP version the app was reached with (`HTTP/2.0`).
    #[prost(string, tag = "7")]
    pub protocol: String,
    /// The `:authority` the app saw.
    #[prost(string, tag = "8")]
    pub authority: String,
    /// The position of this reply in its stream (0-based).
    #[prost(uint32, tag = "9")]
    pub index: u32,
}
