//! Pods on one machine: each pod is a network namespace with an `eth0` joined by a veth pair
//! to a bridge. The bridge lives in a namespace of its own (the "switch"), so a pod network
//! never touches the host's namespace and everything it made disappears with it — also when a
//! test fails half way.
//!
//! Names resolve inside a pod through its own `/etc/resolv.conf` ([`Pod::write_resolv_conf`])
//! or `/etc/hosts` ([`Pod::write_hosts`]): files in `/etc/netns/NAME/`, which `ip netns exec`
//! bind-mounts over `/etc/` for the commands it runs (not for threads that [`Netns::run`]
//! moves into the namespace). The directory is removed with the pod.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::netns::{Netns, NetnsError, run};

/// A pod network: a switch namespace with a bridge, and the pods attached to it.
#[derive(Debug)]
pub struct PodNetwork {
    prefix: String,
    subnet: [u8; 2],
    switch: Netns,
    pods: Vec<Pod>,
}

/// One pod: a network namespace with `eth0` on the pod network.
#[derive(Debug)]
pub struct Pod {
    /// The pod's name.
    pub name: String,
    /// The pod's address on the pod network.
    pub ip: Ipv4Addr,
    /// `/etc/netns/NAME`, once [`Pod::write_hosts`] created it.
    etc: Option<PathBuf>,
    netns: Netns,
}

impl Pod {
    /// The pod's network namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// Sets the pod's `/etc/hosts` (for commands run with `ip netns exec`): `localhost` plus
    /// `entries` as `(address, names)`.
    pub fn write_hosts(
        &mut self,
        entries: &[(std::net::IpAddr, Vec<String>)],
    ) -> Result<(), NetnsError> {
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (ip, names) in entries {
            text.push_str(&format!("{ip} {}\n", names.join(" ")));
        }
        self.write_etc("hosts", &text)
    }

    /// Sets the pod's `/etc/resolv.conf` (for commands run with `ip netns exec`): its
    /// nameservers and search domains, as a cluster's DNS config does.
    pub fn write_resolv_conf(
        &mut self,
        nameservers: &[std::net::IpAddr],
        search: &[String],
    ) -> Result<(), NetnsError> {
        let mut text = String::new();
        for ns in nameservers {
            text.push_str(&format!("nameserver {ns}\n"));
        }
        if !search.is_empty() {
            text.push_str(&format!("search {}\n", search.join(" ")));
        }
        self.write_etc("resolv.conf", &text)
    }

    /// Writes `/etc/netns/NAME/FILE`.
    fn write_etc(&mut self, file: &str, text: &str) -> Result<(), NetnsError> {
        let dir = PathBuf::from("/etc/netns").join(self.netns.name());
        let io = |path: &std::path::Path| {
            let path = path.display().to_string();
            move |source| NetnsError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        self.etc = Some(dir.clone());
        let file = dir.join(file);
        std::fs::write(&file, text).map_err(io(&file))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let Some(dir) = self.etc.take() else {
            return;
        };
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(%error, dir = %dir.display(), "could not remove the pod's /etc/netns directory");
        }
        // `/etc/netns` itself once empty (fails harmlessly while another namespace uses it).
        let _ = std::fs::remove_dir("/etc/netns");
    }
}

/// Interface names are limited to 15 bytes.
fn ifname(parts: &[&str]) -> String {
    let name = parts.concat();
    name.chars().take(15).collect()
}

impl PodNetwork {
    /// A pod network `10.<a>.<b>.0/24` whose namespaces are named `<prefix>-...`. Names and
    /// subnets must be unique among networks that exist at the same time.
    pub fn create(prefix: &str, subnet: [u8; 2]) -> Result<Self, NetnsError> {
        let switch = Netns::create(&format!("{prefix}-switch"))?;
        switch.exec("ip", &["link", "add", "br0", "type", "bridge"])?;
        switch.exec("ip", &["link", "set", "br0", "up"])?;
        Ok(PodNetwork {
            prefix: prefix.to_string(),
            subnet,
            switch,
            pods: Vec::new(),
        })
    }

    /// Adds a pod with host number `host` (its IP is `10.a.b.host`).
    pub fn add_pod(&mut self, name: &str, host: u8) -> Result<&Pod, NetnsError> {
        let ip = Ipv4Addr::new(10, self.subnet[0], self.subnet[1], host);
        let netns = Netns::create(&format!("{}-{name}", self.prefix))?;
        let outside = ifname(&["v", &self.prefix, &host.to_string(), "s"]);
        let inside = ifname(&["v", &self.prefix, &host.to_string(), "p"]);
        run(
            "ip",
            &[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ],
        )?;
        run(
            "ip",
            &["link", "set", &outside, "netns", self.switch.name()],
        )?;
        run("ip", &["link", "set", &inside, "netns", netns.name()])?;
        self.switch
            .exec("ip", &["link", "set", &outside, "master", "br0"])?;
        self.switch.exec("ip", &["link", "set", &outside, "up"])?;
        netns.exec("ip", &["link", "set", &inside, "name", "eth0"])?;
        netns.exec("ip", &["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        netns.exec("ip", &["link", "set", "eth0", "up"])?;
        // A default route, as a cluster's pods have: a connect() to an address off the pod
        // network (a ServiceEntry's or an auto-allocated virtual IP) must get as far as the
        // capture rules instead of failing with "network unreachable".
        netns.exec("ip", &["route", "add", "default", "dev", "eth0"])?;
        self.pods.push(Pod {
            name: name.to_string(),
            ip,
            etc: None,
            netns,
        });
        self.pods
            .last()
            .ok_or_else(|| NetnsError::Panicked(name.to_string()))
    }

    /// A pod by name.
    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.name == name)
    }

    /// Every pod.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// A pod by name, to change (e.g. [`Pod::write_hosts`]).
    pub fn pod_mut(&mut self, name: &str) -> Option<&mut Pod> {
        self.pods.iter_mut().find(|p| p.name == name)
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        // Pods first (their veth ends go with them), then the switch and its bridge.
        self.pods.clear();
    }
}
