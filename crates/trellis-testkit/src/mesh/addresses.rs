//! The addresses of a mesh's loopback `/24` and the well-known ports on them.

use std::net::Ipv4Addr;

use anyhow::bail;

/// Port of the xDS server on `BASE.1`.
pub const XDS_PORT: u16 = 15010;
/// The control plane's xDS + certificate port over TLS (Istio's 15012).
pub const SECURE_XDS_PORT: u16 = 15012;
/// Port of the control plane's monitoring API on `BASE.1`.
pub const MONITORING_PORT: u16 = 15014;
/// Port of a proxy's admin API on its workload IP.
pub const ADMIN_PORT: u16 = 15000;
/// Port of a proxy's outbound HTTP-proxy listener on its workload IP.
pub const OUTBOUND_PORT: u16 = 15001;
/// The control plane's log file in the run directory (restarts append to it).
/// The most workloads one `/24` holds (`.10`–`.99` for proxies, `.110`–`.199` for apps).
pub const MAX_WORKLOADS: usize = 90;

/// The addresses of one `/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPlan {
    base: [u8; 4],
}

impl AddressPlan {
    /// Checks that `base` is `127.x.y.0`.
    pub fn new(base: Ipv4Addr) -> anyhow::Result<Self> {
        let o = base.octets();
        if o[0] != 127 || o[3] != 0 {
            bail!("mesh base address {base} must be of the form 127.x.y.0 (a loopback /24)");
        }
        Ok(AddressPlan { base: o })
    }

    fn host(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.base[0], self.base[1], self.base[2], n)
    }

    /// `BASE.1`.
    pub fn control_plane(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// `BASE.2`.
    pub fn client(&self) -> Ipv4Addr {
        self.host(2)
    }

    /// `BASE.(10+i)`: workload `i`'s sidecar.
    pub fn workload(&self, i: usize) -> Ipv4Addr {
        self.host(10 + (i.min(MAX_WORKLOADS - 1)) as u8)
    }

    /// `BASE.(200+i)`: gateway `i` (a router proxy).
    pub fn gateway(&self, i: usize) -> Ipv4Addr {
        self.host(200 + (i.min(super::gateway::MAX_GATEWAYS - 1)) as u8)
    }

    /// `BASE.(110+i)`: workload `i`'s app.
    pub fn app(&self, i: usize) -> Ipv4Addr {
        self.host(110 + (i.min(MAX_WORKLOADS - 1)) as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() -> anyhow::Result<()> {
        let p = AddressPlan::new(Ipv4Addr::new(127, 101, 3, 0))?;
        assert_eq!(p.control_plane(), Ipv4Addr::new(127, 101, 3, 1));
        assert_eq!(p.client(), Ipv4Addr::new(127, 101, 3, 2));
        assert_eq!(p.workload(0), Ipv4Addr::new(127, 101, 3, 10));
        assert_eq!(p.app(5), Ipv4Addr::new(127, 101, 3, 115));
        Ok(())
    }
}
