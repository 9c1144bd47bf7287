//! Test and demo support for Trellis: the echo application, process supervision, locating
//! Envoy, the mesh launcher shared by `trellis demo` and `cargo xtask conformance`, a load
//! client, and the conformance scenario format and runner.
//!
//! Everything here speaks only to loopback addresses (127.0.0.0/8) and never sleeps as a way of
//! synchronising: readiness is polled against a deadline.

pub mod client;
pub mod dns;
pub mod echo;
pub mod envoy;
pub mod ext_authz;
pub mod fixed_port;
pub mod grpc;
pub mod http;
pub mod jwt;
pub mod mesh;
pub mod pods;
pub mod process;
pub mod raw_http1;
pub mod scenario;
pub mod tcp;
pub mod websocket;
pub mod zipkin;
