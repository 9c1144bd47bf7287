//! Encoded resources as the push path holds them: each one packed and hashed once, grouped in
//! immutable [`Part`]s that many proxies share through `Arc`, so a proxy's config costs a few
//! pointers however many services it sees, and "did this type change for this proxy" is a
//! comparison of precomputed hashes rather than a re-hash of its bytes.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;

use super::ProxyResources;

/// One packed resource with the hash of its name and bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The resource name.
    pub name: String,
    /// The packed resource, as pushed.
    pub any: Any,
    /// Hash of `name` and `any.value`.
    pub hash: u64,
}

/// Resources of one type, sorted by name, with a hash over all of them. Immutable once built:
/// shared between proxies and compared by hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    entries: Vec<Entry>,
    hash: u64,
}

impl Part {
    /// Packs `resources` (already sorted by name, as a `BTreeMap` iterates).
    pub fn new(resources: BTreeMap<String, Any>) -> Self {
        let entries: Vec<Entry> = resources
            .into_iter()
            .map(|(name, any)| {
                let mut h = DefaultHasher::new();
                name.hash(&mut h);
                any.value.hash(&mut h);
                Entry {
                    name,
                    any,
                    hash: h.finish(),
                }
            })
            .collect();
        let hash = combine(entries.iter().map(|e| e.hash));
        Part { entries, hash }
    }

    /// The resources, sorted by name.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// A hash of every resource's name and bytes.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Whether a resource of this name is here.
    pub fn contains(&self, name: &str) -> bool {
        self.entries
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .is_ok()
    }
}

/// A hash of a sequence of hashes (order matters).
pub fn combine(hashes: impl IntoIterator<Item = u64>) -> u64 {
    let mut h = DefaultHasher::new();
    for x in hashes {
        x.hash(&mut h);
    }
    h.finish()
}

/// Everything one proxy should have: per type URL, the parts it is made of (shared parts first,
/// then the proxy's own). A name in a later part replaces the same name in an earlier one, as
/// inserting into one map would.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    by_type: BTreeMap<&'static str, Vec<Arc<Part>>>,
}

impl ProxyConfig {
    /// Adds a part of a type (after the type's existing parts).
    pub fn push(&mut self, type_url: &'static str, part: Arc<Part>) {
        self.by_type.entry(type_url).or_default().push(part);
    }

    /// Adds every type of `resources` as one part each (types without resources included, so
    /// that an empty type can still be sent and ACKed).
    pub fn push_all(&mut self, resources: ProxyResources) {
        for (type_url, of_type) in resources.by_type {
            self.push(type_url, Arc::new(Part::new(of_type)));
        }
    }

    /// The type URLs this proxy has resources (possibly none) of.
    pub fn types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_type.keys().copied()
    }

    /// The parts of one type (empty if none).
    pub fn parts(&self, type_url: &str) -> &[Arc<Part>] {
        self.by_type.get(type_url).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The resources of one type, sorted by name, a later part's replacing an earlier one's of
    /// the same name, keeping those `keep` accepts.
    pub fn select(&self, type_url: &str, keep: impl Fn(&str) -> bool) -> Vec<&Entry> {
        let mut chosen: Vec<(usize, &Entry)> = self
            .parts(type_url)
            .iter()
            .enumerate()
            .flat_map(|(i, part)| part.entries().iter().map(move |e| (i, e)))
            .filter(|(_, e)| keep(&e.name))
            .collect();
        // Stable: equal names stay in part order, so the last one is the later part's.
        chosen.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        let mut out: Vec<&Entry> = Vec::with_capacity(chosen.len());
        for (_, entry) in chosen {
            match out.last_mut() {
                Some(last) if last.name == entry.name => *last = entry,
                _ => out.push(entry),
            }
        }
        out
    }

    /// The same resources as one map per type (what `translate::generate` returns).
    pub fn to_resources(&self) -> ProxyResources {
        let mut out = ProxyResources::default();
        for type_url in self.types() {
            out.by_type.entry(type_url).or_default();
            for entry in self.select(type_url, |_| true) {
                out.insert(type_url, entry.name.clone(), entry.any.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(value: &[u8]) -> Any {
        Any {
            type_url: "t".into(),
            value: value.to_vec(),
        }
    }

    fn part(items: &[(&str, &[u8])]) -> Arc<Part> {
        Arc::new(Part::new(
            items.iter().map(|(n, v)| (n.to_string(), any(v))).collect(),
        ))
    }

    #[test]
    fn a_part_hash_follows_its_content() {
        let a = part(&[("x", b"1"), ("y", b"2")]);
        let same = part(&[("y", b"2"), ("x", b"1")]);
        let changed = part(&[("x", b"1"), ("y", b"3")]);
        assert_eq!(a.hash(), same.hash());
        assert_ne!(a.hash(), changed.hash());
        assert!(a.contains("y"));
        assert!(!a.contains("z"));
    }

    #[test]
    fn a_later_part_replaces_a_name_and_order_is_by_name() {
        let mut config = ProxyConfig::default();
        config.push("t", part(&[("b", b"shared"), ("d", b"4")]));
        config.push("t", part(&[("a", b"1"), ("b", b"own")]));
        let names: Vec<(&str, &[u8])> = config
            .select("t", |_| true)
            .iter()
            .map(|e| (e.name.as_str(), e.any.value.as_slice()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("a", b"1".as_slice()),
                ("b", b"own".as_slice()),
                ("d", b"4".as_slice())
            ]
        );
        let only_d = config.select("t", |n| n == "d");
        assert_eq!(only_d.len(), 1);
    }
}
