//! The destination a captured connection was headed to before iptables redirected it.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsFd;

use nix::sys::socket::{SockaddrIn, SockaddrIn6, getsockopt, sockopt};

/// Reads `SO_ORIGINAL_DST` (IPv4) or `IP6T_SO_ORIGINAL_DST` (IPv6) from an accepted socket.
/// `is_ipv6` is the family of the accepted connection.
pub fn original_dst(socket: &impl AsFd, is_ipv6: bool) -> std::io::Result<SocketAddr> {
    if is_ipv6 {
        let raw = getsockopt(socket, sockopt::Ip6tOriginalDst)?;
        Ok(SocketAddr::V6(SocketAddrV6::from(SockaddrIn6::from(raw))))
    } else {
        let raw = getsockopt(socket, sockopt::OriginalDst)?;
        Ok(SocketAddr::V4(SocketAddrV4::from(SockaddrIn::from(raw))))
    }
}
