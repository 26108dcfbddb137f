//! The empty non-terminals above global names. A global name `fab.eu.registry.example.` in
//! the zone `registry.example.` makes `eu.registry.example.` exist: a query for it must get
//! NODATA, not NXDOMAIN, or a resolver may take the whole subtree, the global name
//! included, as nonexistent (RFC 8020 §2).
//!
//! Kept in step with the name table by [`Globals::insert`](super::Globals::insert) and
//! [`Globals::remove`](super::Globals::remove): each ancestor strictly between a global name
//! and its zone apex is counted once per global name below it, and goes when the count
//! reaches zero. A lookup is one hash probe; nothing ever scans the global names.
//!
//! Cost: nothing for a global name directly below its apex (the usual case); otherwise one
//! entry per distinct ancestor (the lower-cased wire name in a box and a count: about 60 B
//! with the table's overhead), shared by every global name below it. The table is split into
//! [`SHARDS`] shards like the name table, so a change copies at most one shard per ancestor.

use std::sync::Arc;

use hashbrown::HashTable;

use super::{SHARDS, hash, shard_of};

/// One empty non-terminal.
#[derive(Clone, Debug)]
struct Ent {
    /// Lower-cased wire name.
    name: Box<[u8]>,
    /// How many global names lie below it.
    below: u32,
}

/// The set of empty non-terminals above global names, with reference counts.
#[derive(Clone, Debug)]
pub(crate) struct Ents {
    shards: Box<[Arc<HashTable<Ent>>]>,
    len: usize,
}

impl Default for Ents {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::new(HashTable::new())).collect(),
            len: 0,
        }
    }
}

impl Ents {
    /// Whether this lower-cased wire name is an empty non-terminal above a global name.
    #[inline]
    pub(crate) fn contains(&self, lower_wire: &[u8]) -> bool {
        if self.len == 0 {
            return false;
        }
        let h = hash(lower_wire);
        self.shards[shard_of(h)]
            .find(h, |e| &*e.name == lower_wire)
            .is_some()
    }

    /// How many distinct empty non-terminals there are.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Count a new global name (lower-cased wire form) whose zone apex has `apex_labels`
    /// labels.
    pub(crate) fn add(&mut self, name_wire: &[u8], apex_labels: u8) {
        for ancestor in between(name_wire, apex_labels) {
            let h = hash(ancestor);
            let shard = Arc::make_mut(&mut self.shards[shard_of(h)]);
            match shard.find_mut(h, |e| &*e.name == ancestor) {
                Some(e) => e.below += 1,
                None => {
                    shard.insert_unique(
                        h,
                        Ent {
                            name: ancestor.into(),
                            below: 1,
                        },
                        |e| hash(&e.name),
                    );
                    self.len += 1;
                }
            }
        }
    }

    /// Uncount a global name that goes (the reverse of [`add`](Self::add)).
    pub(crate) fn remove(&mut self, name_wire: &[u8], apex_labels: u8) {
        for ancestor in between(name_wire, apex_labels) {
            let h = hash(ancestor);
            let shard = Arc::make_mut(&mut self.shards[shard_of(h)]);
            if let Ok(entry) = shard.find_entry(h, |e| &*e.name == ancestor) {
                if entry.get().below > 1 {
                    entry.into_mut().below -= 1;
                } else {
                    entry.remove();
                    self.len -= 1;
                }
            }
        }
    }
}

/// The ancestors of a wire name strictly between it and an ancestor of `apex_labels` labels:
/// suffixes of the wire form, longest first.
fn between(name_wire: &[u8], apex_labels: u8) -> impl Iterator<Item = &[u8]> {
    let labels = label_count(name_wire);
    let mut at = 0usize;
    (1..labels.saturating_sub(usize::from(apex_labels))).filter_map(move |_| {
        at += 1 + usize::from(*name_wire.get(at)?);
        name_wire.get(at..)
    })
}

/// Labels of a wire name (the root not counted).
fn label_count(name_wire: &[u8]) -> usize {
    let (mut at, mut n) = (0usize, 0usize);
    while let Some(&len) = name_wire.get(at) {
        if len == 0 {
            break;
        }
        at += 1 + usize::from(len);
        n += 1;
    }
    n
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use hickory_proto::rr::Name;

    use super::super::wire_lower;
    use super::*;

    fn w(s: &str) -> Vec<u8> {
        wire_lower(&Name::from_ascii(s).unwrap())
    }

    #[test]
    fn ancestors_between_a_name_and_its_apex() {
        let name = w("a.b.c.registry.example.");
        let got: Vec<Vec<u8>> = between(&name, 2).map(<[u8]>::to_vec).collect();
        assert_eq!(
            got,
            [w("b.c.registry.example."), w("c.registry.example.")],
            "neither the name nor the apex"
        );
        assert_eq!(between(&w("contoso.registry.example."), 2).count(), 0);
        // An apex name has no ancestor below its apex; the root apex counts every ancestor.
        assert_eq!(between(&w("registry.example."), 2).count(), 0);
        assert_eq!(between(&w("a.b."), 0).count(), 1);
    }

    #[test]
    fn counts_follow_adds_and_removes() {
        let mut e = Ents::default();
        e.add(&w("fab.eu.registry.example."), 2);
        e.add(&w("con.eu.registry.example."), 2);
        e.add(&w("x.y.us.registry.example."), 2);
        e.add(&w("top.registry.example."), 2);
        assert_eq!(e.len(), 3, "eu, us, y.us");
        assert!(e.contains(&w("eu.registry.example.")));
        assert!(e.contains(&w("y.us.registry.example.")));
        assert!(
            !e.contains(&w("registry.example.")),
            "the apex is zone data"
        );
        assert!(
            !e.contains(&w("fab.eu.registry.example.")),
            "the name itself"
        );
        let before = e.clone();
        e.remove(&w("fab.eu.registry.example."), 2);
        assert!(e.contains(&w("eu.registry.example.")), "con is still below");
        // One shard copied, the rest still shared with the old set.
        let shared = e
            .shards
            .iter()
            .zip(before.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, SHARDS - 1);
        e.remove(&w("con.eu.registry.example."), 2);
        assert!(!e.contains(&w("eu.registry.example.")));
        e.remove(&w("x.y.us.registry.example."), 2);
        assert_eq!(e.len(), 0);
        assert!(
            before.contains(&w("eu.registry.example.")),
            "snapshots keep theirs"
        );
    }
}
