//! Where a DNS proxy looks names up: the control plane's name table (NDS) as a map from a
//! lower-case name (no trailing dot) to its addresses, with the short forms of Kubernetes-style
//! services added for the proxy's namespace, as Istio's agent does.

use std::collections::HashMap;
use std::net::IpAddr;

use trellis_xds::nds::{NameTable, REGISTRY_KUBERNETES};

/// The names a DNS proxy answers itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DnsTable {
    names: HashMap<String, Vec<IpAddr>>,
}

impl DnsTable {
    /// The table for a workload in `namespace`: every host of `table`, and for a Kubernetes
    /// service `NAME` in `NS` also `NAME.NS` and `NAME.NS.svc` (and `NAME` when `NS` is the
    /// workload's namespace). Addresses that do not parse are skipped.
    pub fn from_name_table(table: &NameTable, namespace: &str) -> Self {
        let mut names: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (host, info) in &table.table {
            let ips: Vec<IpAddr> = info.ips.iter().filter_map(|ip| ip.parse().ok()).collect();
            if ips.is_empty() {
                continue;
            }
            let mut aliases = vec![normalize(host)];
            if info.registry == REGISTRY_KUBERNETES
                && !info.shortname.is_empty()
                && !info.namespace.is_empty()
            {
                let (name, ns) = (&info.shortname, &info.namespace);
                aliases.push(normalize(&format!("{name}.{ns}")));
                aliases.push(normalize(&format!("{name}.{ns}.svc")));
                if ns == namespace {
                    aliases.push(normalize(name));
                }
            }
            for alias in aliases {
                // A host of its own wins over another service's short form.
                names.entry(alias).or_insert_with(|| ips.clone());
            }
        }
        DnsTable { names }
    }

    /// The addresses of `name` (any case, with or without the trailing dot), if the table has
    /// it.
    pub fn lookup(&self, name: &str) -> Option<&[IpAddr]> {
        self.names.get(&normalize(name)).map(Vec::as_slice)
    }

    /// How many names the table answers.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the table answers no name.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Lower case, without the trailing dot.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_xds::nds::NameInfo;

    fn table() -> NameTable {
        let mut t = NameTable::default();
        t.table.insert(
            "reviews.default.svc.cluster.local".into(),
            NameInfo {
                ips: vec!["10.0.0.200".into()],
                registry: REGISTRY_KUBERNETES.into(),
                shortname: "reviews".into(),
                namespace: "default".into(),
            },
        );
        t.table.insert(
            "ratings.other.svc.cluster.local".into(),
            NameInfo {
                ips: vec!["10.0.0.201".into(), "fd00::201".into()],
                registry: REGISTRY_KUBERNETES.into(),
                shortname: "ratings".into(),
                namespace: "other".into(),
            },
        );
        t.table.insert(
            "api.example.com".into(),
            NameInfo {
                ips: vec!["240.240.0.1".into()],
                ..NameInfo::default()
            },
        );
        t
    }

    #[test]
    fn short_names_follow_the_namespace() {
        let t = DnsTable::from_name_table(&table(), "default");
        let ip = |s: &str| -> Vec<IpAddr> { vec![s.parse().expect("ip")] };
        assert_eq!(
            t.lookup("reviews").map(<[_]>::to_vec),
            Some(ip("10.0.0.200"))
        );
        assert_eq!(
            t.lookup("Reviews.Default.svc.cluster.local.")
                .map(<[_]>::to_vec),
            Some(ip("10.0.0.200"))
        );
        assert!(t.lookup("reviews.default").is_some());
        assert!(t.lookup("reviews.default.svc").is_some());
        assert!(
            t.lookup("ratings").is_none(),
            "another namespace's short name"
        );
        assert_eq!(t.lookup("ratings.other").map(<[_]>::len), Some(2));
        assert!(t.lookup("api.example.com").is_some());
        assert!(t.lookup("api").is_none());
        assert!(t.lookup("example.com").is_none());
    }
}
