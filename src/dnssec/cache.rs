//! The signature cache of steered answers: each distinct (owner, type, TTL, RDATA set) is
//! signed once and its RRSIG RDATA kept, in a fixed array of slots picked by a hash of that
//! key (a direct-mapped cache). A read is a hash, one `ArcSwap` load (no lock, no
//! allocation) and a comparison of the whole key, so two RRsets never share signatures; a
//! miss signs on the asking thread (tens of µs) and replaces whatever held the slot. Memory
//! is bounded by the slot count; an entry is signed again once half its validity is gone, so
//! a served signature always has days left.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;

/// One RRset's signatures.
#[derive(Debug)]
pub struct Cached {
    /// What was signed: owner (canonical wire), type, TTL, the sorted canonical RDATA.
    key: Box<[u8]>,
    /// Unix seconds after which it is signed again.
    refresh_at: u64,
    /// The RRSIG RDATA, one per signing key.
    pub(crate) rrsigs: Box<[Box<[u8]>]>,
}

impl Cached {
    /// The one RDATA of a single-record RRset, read back from the key (owner of
    /// `owner_len` octets, type, TTL, RDLENGTH, RDATA).
    pub(crate) fn sole_rdata(&self, owner_len: usize) -> &[u8] {
        self.key.get(owner_len + 8..).unwrap_or(&[])
    }

    /// The owner it was signed for (canonical wire form), read from the key.
    pub fn owner(&self) -> &[u8] {
        let mut at = 0;
        while let Some(&l) = self.key.get(at) {
            at += 1 + usize::from(l);
            if l == 0 {
                break;
            }
        }
        self.key.get(..at).unwrap_or(&[])
    }

    /// Octets of its RRSIG records when each is written with a 2-octet owner pointer.
    pub(crate) fn wire_len(&self) -> usize {
        self.rrsigs.iter().map(|r| 12 + r.len()).sum()
    }

    /// Append its RRSIG records, owned by the name at message offset `owner`, with `ttl`.
    /// Returns how many.
    pub(crate) fn write(&self, out: &mut Vec<u8>, owner: u16, ttl: u32) -> u16 {
        for r in self.rrsigs.iter() {
            out.extend_from_slice(&(0xc000 | owner).to_be_bytes());
            out.extend_from_slice(&46u16.to_be_bytes());
            out.extend_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(r.len() as u16).to_be_bytes());
            out.extend_from_slice(r);
        }
        self.rrsigs.len() as u16
    }
}

/// The cache: `slots` entries at most.
pub struct SigCache {
    slots: Box<[ArcSwapOption<Cached>]>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for SigCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigCache")
            .field("slots", &self.slots.len())
            .field("hits", &self.hits.load(Ordering::Relaxed))
            .field("misses", &self.misses.load(Ordering::Relaxed))
            .finish()
    }
}

/// FNV-1a: cheap, and spread enough over keys that differ in a few octets.
fn hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl SigCache {
    /// A cache of `slots` entries (rounded up to a power of two, at least 1 024).
    pub fn new(slots: usize) -> Self {
        let n = slots.max(1024).next_power_of_two();
        Self {
            slots: (0..n).map(|_| ArcSwapOption::const_empty()).collect(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn slot(&self, key: &[u8]) -> &ArcSwapOption<Cached> {
        let i = (hash(key) as usize) & (self.slots.len() - 1);
        &self.slots[i]
    }

    /// The signatures cached for `key`, unless missing or due for signing again at `now`.
    /// `counted`: a query's lookup (hits and misses); pre-signing looks without counting.
    pub fn get(&self, key: &[u8], now: u64, counted: bool) -> Option<Arc<Cached>> {
        let guard = self.slot(key).load();
        match &*guard {
            Some(c) if &*c.key == key && now < c.refresh_at => {
                if counted {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                }
                Some(Arc::clone(c))
            }
            _ => {
                if counted {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
        }
    }

    /// Every entry held now (a walk of the slots: O(slots), for pre-signing).
    pub fn entries(&self) -> impl Iterator<Item = Arc<Cached>> + '_ {
        self.slots.iter().filter_map(ArcSwapOption::load_full)
    }

    /// Take every entry of `other` (a previous cache of the same keys): after a reload, the
    /// answers signed before are not signed again. Returns how many. O(slots of `other`).
    pub(crate) fn adopt(&self, other: &SigCache) -> usize {
        let mut n = 0;
        for e in other.entries() {
            self.slot(&e.key).store(Some(e));
            n += 1;
        }
        n
    }

    /// How many slots.
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Keep `rrsigs` for `key` until `refresh_at`, replacing the slot's entry.
    pub fn put(&self, key: &[u8], refresh_at: u64, rrsigs: Vec<Vec<u8>>) -> Arc<Cached> {
        let c = Arc::new(Cached {
            key: key.into(),
            refresh_at,
            rrsigs: rrsigs.into_iter().map(Vec::into_boxed_slice).collect(),
        });
        self.slot(key).store(Some(Arc::clone(&c)));
        c
    }

    /// (hits, misses) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_only_its_own_signatures_until_refresh() {
        let c = SigCache::new(1);
        assert!(c.get(b"a", 0, true).is_none());
        c.put(b"a", 100, vec![vec![1, 2, 3]]);
        assert_eq!(&*c.get(b"a", 99, true).unwrap().rrsigs[0], &[1, 2, 3]);
        assert!(c.get(b"a", 100, true).is_none(), "due for signing again");
        // Another key never gets a's signatures, even in a's slot.
        let other: Vec<u8> = (0..=u16::MAX)
            .map(|b| b.to_be_bytes().to_vec())
            .find(|k| std::ptr::eq(c.slot(k), c.slot(b"a")) && k != b"a")
            .unwrap();
        assert!(c.get(&other, 0, true).is_none());
        c.put(&other, 100, vec![vec![9]]);
        assert!(c.get(b"a", 0, true).is_none(), "replaced");
        assert_eq!(c.counts().0, 1);
        let e = c.get(&other, 0, true).unwrap();
        let mut out = Vec::new();
        assert_eq!(e.write(&mut out, 12, 300), 1);
        assert_eq!(out.len(), e.wire_len());
        assert_eq!(&out[..4], &[0xc0, 12, 0, 46]);
    }
}
