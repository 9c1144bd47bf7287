//! Protocol selection for a service port, as Istio does it: the explicit `protocol` field,
//! else the port name's prefix (`http-web`, `grpc`, ...).

/// How the mesh treats traffic on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (and HTTP/2 if the client speaks it).
    Http,
    /// HTTP/2 to the upstream.
    Http2,
    /// gRPC (HTTP/2 to the upstream).
    Grpc,
    /// Opaque TCP.
    Tcp,
    /// TLS (opaque, routed by SNI).
    Tls,
    /// Not declared: Istio sniffs it; explicit mode treats it as HTTP.
    Unknown,
}

impl Protocol {
    /// Istio's rule: the `protocol` field wins, else the name up to the first `-`.
    pub fn of_port(protocol: Option<&str>, name: &str) -> Self {
        let declared = protocol.unwrap_or_else(|| name.split('-').next().unwrap_or(""));
        match declared.to_ascii_uppercase().as_str() {
            "HTTP" => Protocol::Http,
            "HTTP2" => Protocol::Http2,
            "GRPC" | "GRPC-WEB" => Protocol::Grpc,
            "TCP" | "MONGO" | "MYSQL" | "REDIS" => Protocol::Tcp,
            "TLS" | "HTTPS" => Protocol::Tls,
            _ => Protocol::Unknown,
        }
    }

    /// Whether the proxy speaks HTTP on this port (HTTP routes apply).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::Unknown
        )
    }

    /// Whether the proxy passes the bytes through as they are (a TCP proxy, no HTTP routes).
    pub fn is_opaque(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Tls)
    }

    /// Whether upstream connections use HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_field_wins_over_name() {
        assert_eq!(
            Protocol::of_port(Some("HTTP2"), "http-web"),
            Protocol::Http2
        );
        assert_eq!(Protocol::of_port(None, "grpc-api"), Protocol::Grpc);
        assert_eq!(Protocol::of_port(None, "http"), Protocol::Http);
        assert_eq!(Protocol::of_port(None, "mysql"), Protocol::Tcp);
        assert_eq!(Protocol::of_port(None, "web"), Protocol::Unknown);
    }
}
