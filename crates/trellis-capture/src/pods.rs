//! Pods on one machine: each pod is a network namespace with an `eth0` joined by a veth pair
//! to a bridge. The bridge lives in a namespace of its own (the "switch"), so a pod network
//! never touches the host's namespace and everything it made disappears with it — also when a
//! test fails half way.

use std::net::Ipv4Addr;

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
    netns: Netns,
}

impl Pod {
    /// The pod's network namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
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
        self.pods.push(Pod {
            name: name.to_string(),
            ip,
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
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        // Pods first (their veth ends go with them), then the switch and its bridge.
        self.pods.clear();
    }
}
