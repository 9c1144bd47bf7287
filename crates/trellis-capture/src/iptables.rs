//! Where traffic capture rules are made: the iptables `nat` rules that redirect a pod's TCP to
//! its proxy, in `iptables-restore` form, and applying or removing them in the current network
//! namespace. The shape follows Istio's init container, so its documented behaviour holds:
//! outbound TCP goes to 15001 and inbound TCP to 15006, except the proxy's own traffic (by UID
//! and GID), the app's loopback traffic, the proxy's connections to its own app (from
//! `127.0.0.6`), and excluded ports and CIDRs. With [`CaptureConfig::dns_port`] the app's DNS
//! (UDP and TCP port 53, to any server) goes to the proxy's DNS proxy as well, as Istio's
//! `--redirect-dns` does; the proxy's own queries (its UID/GID) pass.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};

/// Chains Trellis owns in the `nat` table.
const CHAINS: [&str; 5] = [
    "TRELLIS_INBOUND",
    "TRELLIS_IN_REDIRECT",
    "TRELLIS_OUTPUT",
    "TRELLIS_REDIRECT",
    "TRELLIS_DNS",
];

/// Istio's DNS proxy port.
pub const DNS_PROXY_PORT: u16 = 15053;

/// What to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// The proxy's UID: its own connections are never captured (Istio: 1337).
    pub proxy_uid: u32,
    /// The proxy's GID, also excluded when set.
    pub proxy_gid: Option<u32>,
    /// Where outbound connections are redirected (Istio: 15001).
    pub outbound_port: u16,
    /// Where inbound connections are redirected (Istio: 15006).
    pub inbound_port: u16,
    /// Inbound ports to capture; empty means every port.
    pub inbound_ports: Vec<u16>,
    /// Inbound ports never captured (the proxy's health and metrics ports are always added).
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound ports never captured.
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound destinations to capture; empty means all.
    pub include_outbound_cidrs: Vec<Cidr>,
    /// Outbound destinations never captured.
    pub exclude_outbound_cidrs: Vec<Cidr>,
    /// Where the app's DNS queries (UDP and TCP port 53) are redirected (Istio: 15053, when
    /// DNS capture is on); `None` leaves DNS alone.
    pub dns_port: Option<u16>,
}

/// Ports of the proxy itself that inbound capture must not loop back into the proxy
/// (15020 merged metrics, 15021 health, 15090 Prometheus), as Istio excludes them.
pub const PROXY_PORTS: [u16; 3] = [15020, 15021, 15090];

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            proxy_uid: 1337,
            proxy_gid: Some(1337),
            outbound_port: 15001,
            inbound_port: 15006,
            inbound_ports: Vec::new(),
            exclude_inbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            include_outbound_cidrs: Vec::new(),
            exclude_outbound_cidrs: Vec::new(),
            dns_port: None,
        }
    }
}

/// An address block, e.g. `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = CaptureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| CaptureError::BadCidr(s.to_string(), why.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad("prefix is not a number"))?,
            None => max,
        };
        if prefix > max {
            return Err(bad("prefix is longer than the address"));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why capture could not be set up or removed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A CIDR that does not parse.
    #[error("{0:?} is not a CIDR ({1})")]
    BadCidr(String, String),
    /// iptables is missing or refused the rules.
    #[error(
        "`{command}` failed: {output} (is iptables installed, and are you root in this network namespace?)"
    )]
    Iptables {
        /// The command.
        command: String,
        /// What it said.
        output: String,
    },
}

/// IPv4 or IPv6 rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `iptables`.
    V4,
    /// `ip6tables`.
    V6,
}

impl Family {
    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1/32",
            Family::V6 => "::1/128",
        }
    }

    /// The source the proxy uses for connections to its own app (Istio's `127.0.0.6`): such
    /// a connection must not be redirected back to the proxy's inbound port.
    fn inbound_source(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.6/32",
            Family::V6 => "::6/128",
        }
    }

    /// The command that manages this family's rules (`-save`/`-restore` are its siblings).
    pub fn tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn matches(self, cidr: &Cidr) -> bool {
        cidr.addr.is_ipv4() == (self == Family::V4)
    }
}

impl CaptureConfig {
    /// The `nat` table rules for one address family, as `iptables-restore --noflush` input.
    pub fn rules(&self, family: Family) -> String {
        let mut r = String::from("*nat\n");
        for chain in CHAINS {
            let _ = writeln!(r, ":{chain} - [0:0]");
        }
        r.push_str("-A PREROUTING -p tcp -j TRELLIS_INBOUND\n");
        r.push_str("-A OUTPUT -p tcp -j TRELLIS_OUTPUT\n");
        let mut owners = vec![format!("--uid-owner {}", self.proxy_uid)];
        if let Some(gid) = self.proxy_gid {
            owners.push(format!("--gid-owner {gid}"));
        }
        if let Some(dns) = self.dns_port {
            r.push_str("-A OUTPUT -p udp --dport 53 -j TRELLIS_DNS\n");
            for owner in &owners {
                let _ = writeln!(r, "-A TRELLIS_DNS -m owner {owner} -j RETURN");
            }
            let _ = writeln!(r, "-A TRELLIS_DNS -p udp -j REDIRECT --to-ports {dns}");
        }

        let mut excluded_inbound: Vec<u16> = PROXY_PORTS.to_vec();
        excluded_inbound.extend(&self.exclude_inbound_ports);
        excluded_inbound.sort_unstable();
        excluded_inbound.dedup();
        for port in excluded_inbound {
            let _ = writeln!(r, "-A TRELLIS_INBOUND -p tcp --dport {port} -j RETURN");
        }
        if self.inbound_ports.is_empty() {
            r.push_str("-A TRELLIS_INBOUND -p tcp -j TRELLIS_IN_REDIRECT\n");
        }
        for port in &self.inbound_ports {
            let _ = writeln!(
                r,
                "-A TRELLIS_INBOUND -p tcp --dport {port} -j TRELLIS_IN_REDIRECT"
            );
        }
        let _ = writeln!(
            r,
            "-A TRELLIS_IN_REDIRECT -p tcp -j REDIRECT --to-ports {}",
            self.inbound_port
        );

        let lo = family.loopback();
        let _ = writeln!(
            r,
            "-A TRELLIS_OUTPUT -s {} -o lo -j RETURN",
            family.inbound_source()
        );
        if let Some(dns) = self.dns_port {
            // DNS over TCP, to any server: the proxy's own queries pass, the app's go to the
            // DNS proxy (before the loopback rules: a nameserver may be a local address).
            for owner in &owners {
                let _ = writeln!(
                    r,
                    "-A TRELLIS_OUTPUT -p tcp --dport 53 -m owner {owner} -j RETURN"
                );
            }
            let _ = writeln!(
                r,
                "-A TRELLIS_OUTPUT -p tcp --dport 53 -j REDIRECT --to-ports {dns}"
            );
        }
        for owner in &owners {
            // The proxy calling its own pod's IP over loopback is inbound traffic for that pod.
            let _ = writeln!(
                r,
                "-A TRELLIS_OUTPUT ! -d {lo} -o lo -m owner {owner} -j TRELLIS_IN_REDIRECT"
            );
            // The app's own loopback traffic is left alone.
            let _ = writeln!(r, "-A TRELLIS_OUTPUT -o lo -m owner ! {owner} -j RETURN");
            // The proxy's own outbound connections are never captured.
            let _ = writeln!(r, "-A TRELLIS_OUTPUT -m owner {owner} -j RETURN");
        }
        let _ = writeln!(r, "-A TRELLIS_OUTPUT -d {lo} -j RETURN");
        for port in &self.exclude_outbound_ports {
            let _ = writeln!(r, "-A TRELLIS_OUTPUT -p tcp --dport {port} -j RETURN");
        }
        for cidr in self
            .exclude_outbound_cidrs
            .iter()
            .filter(|c| family.matches(c))
        {
            let _ = writeln!(r, "-A TRELLIS_OUTPUT -d {cidr} -j RETURN");
        }
        if self.include_outbound_cidrs.is_empty() {
            r.push_str("-A TRELLIS_OUTPUT -j TRELLIS_REDIRECT\n");
        }
        for cidr in self
            .include_outbound_cidrs
            .iter()
            .filter(|c| family.matches(c))
        {
            let _ = writeln!(r, "-A TRELLIS_OUTPUT -d {cidr} -j TRELLIS_REDIRECT");
        }
        let _ = writeln!(
            r,
            "-A TRELLIS_REDIRECT -p tcp -j REDIRECT --to-ports {}",
            self.outbound_port
        );
        r.push_str("COMMIT\n");
        r
    }

    /// Installs the rules in the current network namespace, replacing any earlier Trellis
    /// rules there.
    pub fn apply(&self, family: Family) -> Result<(), CaptureError> {
        remove(family);
        let tool = format!("{}-restore", family.tool());
        let command = format!("{tool} --noflush");
        let iptables_error = |output: String| CaptureError::Iptables {
            command: command.clone(),
            output,
        };
        let mut child = Command::new(&tool)
            .arg("--noflush")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| iptables_error(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(self.rules(family).as_bytes())
                .map_err(|e| iptables_error(e.to_string()))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| iptables_error(e.to_string()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(iptables_error(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }
}

/// Removes every Trellis rule and chain from the current network namespace. Safe to call when
/// none are installed.
pub fn remove(family: Family) {
    let tool = family.tool();
    let quiet = |args: &[&str]| {
        let _ = Command::new(tool)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    quiet(&[
        "-t",
        "nat",
        "-D",
        "PREROUTING",
        "-p",
        "tcp",
        "-j",
        "TRELLIS_INBOUND",
    ]);
    quiet(&[
        "-t",
        "nat",
        "-D",
        "OUTPUT",
        "-p",
        "tcp",
        "-j",
        "TRELLIS_OUTPUT",
    ]);
    quiet(&[
        "-t",
        "nat",
        "-D",
        "OUTPUT",
        "-p",
        "udp",
        "--dport",
        "53",
        "-j",
        "TRELLIS_DNS",
    ]);
    for chain in CHAINS {
        quiet(&["-t", "nat", "-F", chain]);
    }
    for chain in CHAINS {
        quiet(&["-t", "nat", "-X", chain]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_capture_everything_but_the_proxy_and_loopback() {
        let rules = CaptureConfig::default().rules(Family::V4);
        for line in [
            "-A PREROUTING -p tcp -j TRELLIS_INBOUND",
            "-A TRELLIS_INBOUND -p tcp --dport 15021 -j RETURN",
            "-A TRELLIS_INBOUND -p tcp -j TRELLIS_IN_REDIRECT",
            "-A TRELLIS_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
            "-A TRELLIS_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
            "-A TRELLIS_OUTPUT -m owner --uid-owner 1337 -j RETURN",
            "-A TRELLIS_OUTPUT -m owner --gid-owner 1337 -j RETURN",
            "-A TRELLIS_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
            "-A TRELLIS_OUTPUT -d 127.0.0.1/32 -j RETURN",
            "-A TRELLIS_OUTPUT -j TRELLIS_REDIRECT",
            "-A TRELLIS_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        ] {
            assert!(
                rules.lines().any(|l| l == line),
                "missing {line:?} in\n{rules}"
            );
        }
        // The proxy's exclusion must come before the catch-all redirect.
        let own = rules
            .find("--uid-owner 1337 -j RETURN")
            .expect("owner rule");
        let all = rules
            .find("-A TRELLIS_OUTPUT -j TRELLIS_REDIRECT")
            .expect("redirect");
        assert!(own < all);
    }

    #[test]
    fn include_and_exclude_lists_select_by_family() {
        let config = CaptureConfig {
            inbound_ports: vec![9080],
            exclude_outbound_ports: vec![5432],
            include_outbound_cidrs: vec![
                "10.0.0.0/8".parse().expect("cidr"),
                "fd00::/8".parse().expect("cidr"),
            ],
            exclude_outbound_cidrs: vec!["10.1.0.0/16".parse().expect("cidr")],
            ..CaptureConfig::default()
        };
        let v4 = config.rules(Family::V4);
        assert!(v4.contains("-A TRELLIS_INBOUND -p tcp --dport 9080 -j TRELLIS_IN_REDIRECT"));
        assert!(!v4.contains("-A TRELLIS_INBOUND -p tcp -j TRELLIS_IN_REDIRECT"));
        assert!(v4.contains("-A TRELLIS_OUTPUT -p tcp --dport 5432 -j RETURN"));
        assert!(v4.contains("-A TRELLIS_OUTPUT -d 10.1.0.0/16 -j RETURN"));
        assert!(v4.contains("-A TRELLIS_OUTPUT -d 10.0.0.0/8 -j TRELLIS_REDIRECT"));
        assert!(!v4.contains("fd00"));
        let v6 = config.rules(Family::V6);
        assert!(v6.contains("-A TRELLIS_OUTPUT -d fd00::/8 -j TRELLIS_REDIRECT"));
        assert!(v6.contains("! -d ::1/128 -o lo"));
    }

    #[test]
    fn dns_capture_is_optional_and_spares_the_proxy() {
        assert!(!CaptureConfig::default().rules(Family::V4).contains("53"));
        let config = CaptureConfig {
            dns_port: Some(DNS_PROXY_PORT),
            ..CaptureConfig::default()
        };
        for family in [Family::V4, Family::V6] {
            let rules = config.rules(family);
            for line in [
                "-A OUTPUT -p udp --dport 53 -j TRELLIS_DNS",
                "-A TRELLIS_DNS -m owner --uid-owner 1337 -j RETURN",
                "-A TRELLIS_DNS -m owner --gid-owner 1337 -j RETURN",
                "-A TRELLIS_DNS -p udp -j REDIRECT --to-ports 15053",
                "-A TRELLIS_OUTPUT -p tcp --dport 53 -m owner --uid-owner 1337 -j RETURN",
                "-A TRELLIS_OUTPUT -p tcp --dport 53 -j REDIRECT --to-ports 15053",
            ] {
                assert!(
                    rules.lines().any(|l| l == line),
                    "missing {line:?} in\n{rules}"
                );
            }
            // TCP DNS is redirected before the app's loopback traffic is let go.
            let dns = rules.find("--dport 53 -j REDIRECT").expect("dns");
            let lo = rules.find("-o lo -m owner !").expect("loopback");
            assert!(dns < lo);
        }
    }

    #[test]
    fn bad_cidrs_say_why() {
        let err = "10.0.0.0/40".parse::<Cidr>().expect_err("too long");
        assert_eq!(
            err.to_string(),
            "\"10.0.0.0/40\" is not a CIDR (prefix is longer than the address)"
        );
        let err = "ten/8".parse::<Cidr>().expect_err("not an ip");
        assert_eq!(
            err.to_string(),
            "\"ten/8\" is not a CIDR (not an IP address)"
        );
    }
}
