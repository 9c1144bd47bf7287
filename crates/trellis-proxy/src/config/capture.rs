//! How a listener takes part in transparent capture (iptables `REDIRECT`): Envoy's
//! `use_original_dst`, `bind_to_port` and the `original_dst` listener filter.

use serde::Serialize;

/// A listener's capture settings; the default is an ordinary bound listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ListenerCapture {
    /// `use_original_dst`: a redirected connection is handed to the listener for its original
    /// destination (exact address, else `0.0.0.0:PORT`), else served by this one's chains.
    pub use_original_dst: bool,
    /// `envoy.filters.listener.original_dst`: the connection's local address becomes its
    /// original destination (chains match on it, ORIGINAL_DST clusters connect to it).
    pub original_dst_filter: bool,
    /// `bind_to_port`: `false` for listeners that only receive handed-over connections.
    pub bind_to_port: bool,
}

impl Default for ListenerCapture {
    fn default() -> Self {
        ListenerCapture {
            use_original_dst: false,
            original_dst_filter: false,
            bind_to_port: true,
        }
    }
}

impl ListenerCapture {
    /// Whether accepted connections need their original destination read (`SO_ORIGINAL_DST`).
    pub fn reads_original_dst(&self) -> bool {
        self.use_original_dst || self.original_dst_filter
    }
}
