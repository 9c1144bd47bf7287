//! Interned sets of resource names. Every proxy that sees the same services asks for the same
//! EDS cluster names (a thousand of them with a thousand services); interning the set makes
//! that one allocation shared by all their streams instead of one copy per stream.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

/// A set of resource names, shared between the streams that asked for the same names.
pub type NameSet = Arc<BTreeSet<String>>;

/// Live sets by content hash. Dead entries are swept when the table has doubled since the
/// last sweep, so it stays proportional to the distinct sets in use.
#[derive(Default)]
struct Table {
    sets: HashMap<u64, Vec<Weak<BTreeSet<String>>>>,
    entries: usize,
    sweep_at: usize,
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);

/// A hash of a set of names (of their sorted order).
pub fn hash_names<'a>(names: impl IntoIterator<Item = &'a String>) -> u64 {
    let mut h = DefaultHasher::new();
    for name in names {
        name.hash(&mut h);
    }
    h.finish()
}

/// The shared set equal to `names`.
pub fn intern(names: BTreeSet<String>) -> NameSet {
    if names.is_empty() {
        return Arc::new(names);
    }
    let hash = hash_names(&names);
    let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = table.sets.get(&hash).and_then(|candidates| {
        candidates
            .iter()
            .filter_map(Weak::upgrade)
            .find(|set| **set == names)
    }) {
        return found;
    }
    let set = Arc::new(names);
    table
        .sets
        .entry(hash)
        .or_default()
        .push(Arc::downgrade(&set));
    table.entries += 1;
    if table.entries > table.sweep_at {
        table.sets.retain(|_, candidates| {
            candidates.retain(|w| w.strong_count() > 0);
            !candidates.is_empty()
        });
        table.entries = table.sets.values().map(Vec::len).sum();
        table.sweep_at = (table.entries * 2).max(64);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn equal_sets_are_one_allocation_and_different_ones_are_not() {
        let a = intern(set(&["x", "y"]));
        let b = intern(set(&["y", "x"]));
        let c = intern(set(&["x"]));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(*c, set(&["x"]));
    }
}
