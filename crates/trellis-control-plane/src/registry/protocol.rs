//! Protocol selection for a service port, as Istio does it: the explicit `protocol` field,
//! else the `appProtocol`, else the port name's prefix (`http-web`, `grpc`, ...).

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
    /// Istio's protocol selection for a service port: the `protocol` field, else the
    /// `appProtocol` (Kubernetes' `kubernetes.io/h2c`, `ws` and `wss` mapped as Istio maps them),
    /// else the port name; an `appProtocol` or a name is read up to its first `-`. As in
    /// Istio, an `appProtocol` that names no protocol is not a fallback to the name: the port
    /// is undeclared (sniffed).
    pub fn select(protocol: Option<&str>, app_protocol: Option<&str>, name: &str) -> Self {
        if let Some(p) = protocol {
            return Self::parse(p);
        }
        let declared = match app_protocol {
            Some("kubernetes.io/h2c") => return Protocol::Http2,
            Some("kubernetes.io/ws") => return Protocol::Http,
            Some("kubernetes.io/wss") => return Protocol::Tls,
            Some(app) => app,
            None => name,
        };
        Self::parse(declared.split('-').next().unwrap_or(""))
    }

    fn parse(declared: &str) -> Self {
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
            Protocol::select(Some("HTTP2"), None, "http-web"),
            Protocol::Http2
        );
        assert_eq!(Protocol::select(None, None, "grpc-api"), Protocol::Grpc);
        assert_eq!(Protocol::select(None, None, "http"), Protocol::Http);
        assert_eq!(Protocol::select(None, None, "mysql"), Protocol::Tcp);
        assert_eq!(Protocol::select(None, None, "web"), Protocol::Unknown);
    }

    #[test]
    fn app_protocol_wins_over_name_and_protocol_over_both() {
        assert_eq!(
            Protocol::select(None, Some("http2"), "web"),
            Protocol::Http2
        );
        assert_eq!(
            Protocol::select(None, Some("tcp"), "http-web"),
            Protocol::Tcp
        );
        assert_eq!(
            Protocol::select(None, Some("grpc-web"), "tcp"),
            Protocol::Grpc
        );
        assert_eq!(
            Protocol::select(Some("HTTP"), Some("tcp"), "tcp"),
            Protocol::Http
        );
        // An unknown appProtocol leaves the port undeclared rather than falling back.
        assert_eq!(
            Protocol::select(None, Some("custom.io/thing"), "http"),
            Protocol::Unknown
        );
    }

    #[test]
    fn kubernetes_standard_app_protocols() {
        assert_eq!(
            Protocol::select(None, Some("kubernetes.io/h2c"), "web"),
            Protocol::Http2
        );
        assert_eq!(
            Protocol::select(None, Some("kubernetes.io/ws"), "tcp"),
            Protocol::Http
        );
        assert_eq!(
            Protocol::select(None, Some("kubernetes.io/wss"), "http"),
            Protocol::Tls
        );
    }
}
