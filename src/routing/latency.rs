//! The latency table: client CIDR -> measured RTT per region, with
//! longest-prefix match and the ECS scope rule.
//!
//! # File format (`geo/latency.csv`)
//!
//! ```text
//! # comment lines and blank lines are ignored
//! cidr,region,rtt_ms,label          <- optional header line
//! 10.0.0.0/8,westeurope,12,NL       <- one row per (prefix, region) cell
//! 10.0.0.0/8,eastus,85              <- label is optional
//! ```
//!
//! Every prefix gets one row of RTTs (one slot per configured region) prepared
//! at load time; a region without a row for that prefix has an unknown RTT.
//!
//! # Longest-prefix match
//!
//! Prefixes either nest or are disjoint, so the address space of a family cuts into ranges
//! over each of which one entry (or none) is the longest match. `build` cuts it once, at load
//! time, into two sorted arrays (range starts, entry per range; at most 2n + 1 ranges for n
//! prefixes), and a lookup is one binary search over integers: about ⌈log₂ ranges⌉ compares,
//! no pointer chasing through trie nodes and no allocation. The proptest below holds it to a
//! naive scan of every prefix.
//!
//! # Scope
//!
//! [`LatencyTable::scope`] lengthens the prefix that decided an answer until
//! the client's `addr/P` contains no other, more specific, entry. Writing `c(E)`
//! for the common-prefix length of the address and entry `E`, an entry that
//! does not contain the address lies inside `addr/P` exactly when `P <= c(E)`,
//! so the scope is `max(from, 1 + max c(E))` over those entries. Among entries
//! entirely above the address the largest `c(E)` belongs to the one with the
//! smallest network address; among those entirely below, to the one with the
//! largest last address. Two sorted arrays prepared at load time make that two
//! binary searches: O(log n) <= O(prefix length), no scan and no allocation.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::{IpNet, Ipv6Net};

use super::GeoError;
use super::regions::Regions;

/// Largest RTT a table may carry (one minute); anything above is a typo.
const MAX_RTT_MS: u32 = 60_000;

//------------ LatencyTable ---------------------------------------------------

/// A loaded latency table.
#[derive(Clone, Debug)]
pub struct LatencyTable {
    /// The longest match over IPv4, as ranges.
    v4: Ranges<u32>,
    /// The longest match over IPv6, as ranges.
    v6: Ranges<u128>,
    /// Per entry: its network and label.
    entries: Vec<Entry>,
    /// Row-major RTTs: entry `i` owns `rtts[i * stride..(i + 1) * stride]`.
    rtts: Vec<Option<u32>>,
    /// Number of regions (row width).
    stride: usize,
    /// Sorted network addresses of all IPv4 entries.
    v4_starts: Sorted<u32>,
    /// Sorted last addresses of all IPv4 entries.
    v4_ends: Sorted<u32>,
    /// Sorted network addresses of all IPv6 entries.
    v6_starts: Sorted<u128>,
    /// Sorted last addresses of all IPv6 entries.
    v6_ends: Sorted<u128>,
}

#[derive(Clone, Debug)]
struct Entry {
    net: IpNet,
    label: Option<Box<str>>,
    /// Whether another entry lies inside this one (set in `build`).
    has_inner: bool,
}

/// The entry that matched an address.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TableMatch<'a> {
    /// The matched prefix.
    pub(crate) net: IpNet,
    /// Its label (a country, metro, PoP name ...), if the file gave one.
    pub(crate) label: Option<&'a str>,
    /// RTT in milliseconds per region, indexed by [`super::RegionId`].
    pub(crate) rtts: &'a [Option<u32>],
    /// Whether more specific entries lie inside `net` (only then can the
    /// ECS scope be longer than `net`'s prefix).
    pub(crate) has_inner: bool,
}

impl LatencyTable {
    /// Parse a latency table; `file` names it in errors.
    pub fn parse(text: &str, file: &str, regions: &Regions) -> Result<Self, GeoError> {
        let stride = regions.len();
        let mut index: HashMap<IpNet, u32> = HashMap::new();
        let mut entries: Vec<Entry> = Vec::new();
        let mut rtts: Vec<Option<u32>> = Vec::new();
        let mut seen_data = false;
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let err = |reason: String| GeoError::new(file, Some(line_no), reason);
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if !seen_data && fields.first() == Some(&"cidr") {
                seen_data = true;
                continue;
            }
            seen_data = true;
            if !(3..=4).contains(&fields.len()) {
                return Err(err(format!(
                    "expected 3 or 4 fields (cidr,region,rtt_ms[,label]), found {}",
                    fields.len()
                )));
            }
            let net = parse_cidr(fields[0]).map_err(err)?;
            let region = regions
                .id(fields[1])
                .ok_or_else(|| err(format!("unknown region \"{}\"", fields[1])))?;
            let rtt: u32 = fields[2].parse().map_err(|_| {
                err(format!(
                    "rtt_ms \"{}\" is not a whole number of milliseconds",
                    fields[2]
                ))
            })?;
            if rtt > MAX_RTT_MS {
                return Err(err(format!("rtt_ms {rtt} is above {MAX_RTT_MS}")));
            }
            let label = fields.get(3).filter(|l| !l.is_empty()).copied();

            let i = match index.entry(net) {
                MapEntry::Occupied(o) => *o.get(),
                MapEntry::Vacant(v) => {
                    let i = u32::try_from(entries.len())
                        .ok()
                        .filter(|&i| i != NO_ENTRY)
                        .ok_or_else(|| err("too many prefixes".to_owned()))?;
                    v.insert(i);
                    entries.push(Entry {
                        net,
                        label: None,
                        has_inner: false,
                    });
                    rtts.resize(rtts.len() + stride, None);
                    i
                }
            };
            let i = i as usize;
            let entry = &mut entries[i];
            match (&entry.label, label) {
                (_, None) => {}
                (None, Some(l)) => entry.label = Some(l.into()),
                (Some(old), Some(l)) if **old == *l => {}
                (Some(old), Some(l)) => {
                    return Err(err(format!(
                        "label \"{l}\" for {net} conflicts with \"{old}\" given earlier"
                    )));
                }
            }
            let slot = &mut rtts[i * stride + region.index()];
            if slot.is_some() {
                return Err(err(format!(
                    "duplicate row for {net} region \"{}\"",
                    fields[1]
                )));
            }
            *slot = Some(rtt);
        }
        Ok(Self::build(entries, rtts, stride))
    }

    /// Read and parse a latency table file.
    pub(crate) fn load(path: &Path, regions: &Regions) -> Result<Self, GeoError> {
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| GeoError::new(&file, None, e.to_string()))?;
        Self::parse(&text, &file, regions)
    }

    fn build(entries: Vec<Entry>, rtts: Vec<Option<u32>>, stride: usize) -> Self {
        Self::build_indexed(entries, rtts, stride, INDEXED)
    }

    /// [`Self::build`], indexing every sorted array longer than `indexed` (tests index
    /// small tables to check the index).
    fn build_indexed(
        entries: Vec<Entry>,
        rtts: Vec<Option<u32>>,
        stride: usize,
        indexed: usize,
    ) -> Self {
        let mut t = Self {
            v4: Ranges::default(),
            v6: Ranges::default(),
            entries,
            rtts,
            stride,
            v4_starts: Sorted::default(),
            v4_ends: Sorted::default(),
            v6_starts: Sorted::default(),
            v6_ends: Sorted::default(),
        };
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        let (mut v4_starts, mut v4_ends, mut v6_starts, mut v6_ends) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, e) in t.entries.iter().enumerate() {
            // `parse` refuses more entries than fit below NO_ENTRY.
            let i = u32::try_from(i).unwrap_or(NO_ENTRY);
            match e.net {
                IpNet::V4(n) => {
                    let (first, last) = (n.network().to_bits(), n.broadcast().to_bits());
                    v4.push((first, last, i));
                    v4_starts.push(first);
                    v4_ends.push(last);
                }
                IpNet::V6(n) => {
                    let (first, last) = (n.network().to_bits(), n.broadcast().to_bits());
                    v6.push((first, last, i));
                    v6_starts.push(first);
                    v6_ends.push(last);
                }
            }
        }
        t.v4 = Ranges::cut_indexed(v4, indexed);
        t.v6 = Ranges::cut_indexed(v6, indexed);
        // In (network address, prefix length) order, an entry contains
        // another one exactly when the entry right after it lies inside it.
        let mut order: Vec<usize> = (0..t.entries.len()).collect();
        order.sort_unstable_by_key(|&i| {
            let n = t.entries[i].net;
            (n.network().is_ipv6(), bits(n.network()), n.prefix_len())
        });
        for w in order.windows(2) {
            let inner = t.entries[w[1]].net;
            if t.entries[w[0]].net.contains(&inner) {
                t.entries[w[0]].has_inner = true;
            }
        }
        t.v4_starts = Sorted::new(v4_starts, indexed);
        t.v4_ends = Sorted::new(v4_ends, indexed);
        t.v6_starts = Sorted::new(v6_starts, indexed);
        t.v6_ends = Sorted::new(v6_ends, indexed);
        t
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no prefixes.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Longest-prefix match for `addr` (use the canonical, masked address).
    pub fn lookup(&self, addr: IpAddr) -> Option<TableMatch<'_>> {
        let i = match addr {
            IpAddr::V4(a) => self.v4.get(a.to_bits()),
            IpAddr::V6(a) => self.v6.get(a.to_bits()),
        }? as usize;
        let e = self.entries.get(i)?;
        let row = self.rtts.get(i * self.stride..(i + 1) * self.stride)?;
        Some(TableMatch {
            net: e.net,
            label: e.label.as_deref(),
            rtts: row,
            has_inner: e.has_inner,
        })
    }

    /// The ECS scope for an answer decided by `m`, the match for `addr`:
    /// `m`'s prefix length unless entries lie inside it (the common case
    /// costs nothing), else [`Self::scope`].
    pub(crate) fn match_scope(&self, addr: IpAddr, m: &TableMatch<'_>) -> u8 {
        if m.has_inner {
            self.scope(addr, m.net.prefix_len())
        } else {
            m.net.prefix_len()
        }
    }

    /// The ECS scope for an answer about `addr` decided by a prefix of length
    /// `from`: the shortest `P >= from` such that `addr/P` contains no table
    /// entry other than (when `from` is a table match) the matched one.
    /// Capped at the family length. See the module doc for the method.
    pub fn scope(&self, addr: IpAddr, from: u8) -> u8 {
        match addr {
            IpAddr::V4(a) => {
                let c = max_cpl(
                    a.to_bits(),
                    &self.v4_starts,
                    &self.v4_ends,
                    u32::leading_zeros,
                );
                finish_scope(from, c, 32)
            }
            IpAddr::V6(a) => {
                let c = max_cpl(
                    a.to_bits(),
                    &self.v6_starts,
                    &self.v6_ends,
                    u128::leading_zeros,
                );
                finish_scope(from, c, 128)
            }
        }
    }

    /// All entries with their RTT rows (for the admin API and tests).
    pub(crate) fn iter(&self) -> impl Iterator<Item = TableMatch<'_>> {
        self.entries.iter().enumerate().map(|(i, e)| TableMatch {
            net: e.net,
            label: e.label.as_deref(),
            rtts: &self.rtts[i * self.stride..(i + 1) * self.stride],
            has_inner: e.has_inner,
        })
    }
}

//------------ Ranges ---------------------------------------------------------

/// No entry matches (in [`Ranges::hits`]).
const NO_ENTRY: u32 = u32::MAX;

/// The longest-prefix match of one family, cut into disjoint ranges (see the module doc):
/// range `k` runs from `starts[k]` up to the next start, and `hits[k]` is the entry that is the
/// longest match everywhere in it, or [`NO_ENTRY`]. `starts[0]` is address 0, so every address
/// falls in a range; neighbouring ranges have different hits.
#[derive(Clone, Debug)]
struct Ranges<A> {
    starts: Sorted<A>,
    hits: Vec<u32>,
}

/// Values of the top 16 bits of an address.
const TOP: usize = 1 << 16;
/// Tables with at most this many ranges are searched whole: the index (256 KiB) would cost
/// more cache than it saves.
const INDEXED: usize = 256;

impl<A: Copy + Ord + From<u8>> Default for Ranges<A> {
    fn default() -> Self {
        Self {
            starts: Sorted {
                values: vec![A::from(0)],
                index: Vec::new(),
            },
            hits: vec![NO_ENTRY],
        }
    }
}

impl<A: AddrBits> Ranges<A> {
    /// [`Self::cut_indexed`] with the table's index threshold.
    #[cfg(test)]
    fn cut(nets: Vec<(A, A, u32)>) -> Self {
        Self::cut_indexed(nets, INDEXED)
    }

    /// Cut the family from its prefixes as (first address, last address, entry), indexing
    /// the range starts when there are more than `indexed` of them. Prefixes nest or are
    /// disjoint and none repeats (`parse` merges rows of one prefix).
    fn cut_indexed(mut nets: Vec<(A, A, u32)>, indexed: usize) -> Self {
        // By first address, the outer of two prefixes with the same first address first.
        nets.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut r = Self::default();
        // The prefixes containing the current address, innermost last: (last address, entry).
        let mut open: Vec<(A, u32)> = Vec::new();
        for (first, last, entry) in nets {
            // Close the prefixes that end before this one starts; past each, the one around it
            // (if any) is the match again. `end < first` so `end + 1` does not overflow.
            while let Some(&(end, _)) = open.last().filter(|(end, _)| *end < first) {
                open.pop();
                r.push(end + A::from(1), open.last().map_or(NO_ENTRY, |o| o.1));
            }
            r.push(first, entry);
            open.push((last, entry));
        }
        while let Some((end, _)) = open.pop() {
            if end == A::MAX {
                break; // nothing lies past the end of the family
            }
            r.push(end + A::from(1), open.last().map_or(NO_ENTRY, |o| o.1));
        }
        r.hits.shrink_to_fit();
        r.starts = Sorted::new(std::mem::take(&mut r.starts.values), indexed);
        r
    }

    /// From `at` on, `hit` is the match (until a later push).
    fn push(&mut self, at: A, hit: u32) {
        let starts = &mut self.starts.values;
        let (Some(start), Some(last)) = (starts.last(), self.hits.last_mut()) else {
            return; // never empty: `default` holds the range at 0
        };
        if *start == at {
            // The range before would be empty: this one replaces it.
            *last = hit;
        } else if *last != hit {
            starts.push(at);
            self.hits.push(hit);
        }
    }

    /// The entry that is the longest match for `a`, if any: one binary search.
    fn get(&self, a: A) -> Option<u32> {
        // The range holding `a` is the last one starting at or below it; `starts[0]` is
        // 0 <= a, so there is one.
        let k = self.starts.count_at_or_below(a);
        let hit = *self.hits.get(k.checked_sub(1)?)?;
        (hit != NO_ENTRY).then_some(hit)
    }
}

//------------ Sorted ---------------------------------------------------------

/// Sorted addresses of one family, searched by binary search.
///
/// More than [`INDEXED`] of them also get `index`: for each value of the top 16 bits, the
/// position of the first address at or above it. A search then runs over only the
/// addresses of one /16 (IPv4) or /16 of IPv6 space, a handful in a full table, instead of
/// through the cache misses of 17 halvings of 100 000 addresses.
#[derive(Clone, Debug)]
struct Sorted<A> {
    values: Vec<A>,
    /// Empty, or `TOP + 1` positions into `values` (see above).
    index: Vec<u32>,
}

impl<A> Default for Sorted<A> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            index: Vec::new(),
        }
    }
}

impl<A: AddrBits> Sorted<A> {
    /// Sort `values`, and index them when there are more than `indexed`.
    fn new(mut values: Vec<A>, indexed: usize) -> Self {
        values.sort_unstable();
        values.shrink_to_fit();
        let mut index = Vec::new();
        // Positions fit in u32: `parse` refuses more than u32::MAX - 1 prefixes, and a cut
        // has at most 2n + 1 ranges (checked rather than assumed).
        if values.len() > indexed
            && let Ok(len) = u32::try_from(values.len())
        {
            index.reserve_exact(TOP + 1);
            let mut k = 0usize;
            for top in 0..TOP {
                while k < values.len() && values[k].top16() < top {
                    k += 1;
                }
                index.push(k as u32); // k <= len, which fits
            }
            index.push(len);
        }
        Self { values, index }
    }

    /// How many values are <= `a`.
    fn count_at_or_below(&self, a: A) -> usize {
        let (lo, hi) = self.span(a);
        lo + self.values[lo..hi].partition_point(|&v| v <= a)
    }

    /// How many values are < `a`.
    fn count_below(&self, a: A) -> usize {
        let (lo, hi) = self.span(a);
        lo + self.values[lo..hi].partition_point(|&v| v < a)
    }

    /// The positions of the values with `a`'s top 16 bits: all before are below `a`, all
    /// after above. Everything, unindexed.
    fn span(&self, a: A) -> (usize, usize) {
        let top = a.top16();
        match self.index.get(top..=top + 1) {
            Some(&[lo, hi]) if lo <= hi && hi as usize <= self.values.len() => {
                (lo as usize, hi as usize)
            }
            _ => (0, self.values.len()),
        }
    }

    fn get(&self, k: usize) -> Option<A> {
        self.values.get(k).copied()
    }
}

/// An address of one family as an integer: `u32` (IPv4) or `u128` (IPv6).
trait AddrBits: Copy + Ord + From<u8> + std::ops::Add<Output = Self> {
    /// The family's last address.
    const MAX: Self;
    /// The top 16 bits, below [`TOP`].
    fn top16(self) -> usize;
}

impl AddrBits for u32 {
    const MAX: Self = u32::MAX;
    fn top16(self) -> usize {
        (self >> 16) as usize
    }
}

impl AddrBits for u128 {
    const MAX: Self = u128::MAX;
    fn top16(self) -> usize {
        (self >> 112) as usize
    }
}

/// Longest common prefix between `a` and any entry not containing it, or
/// `None` when every entry contains `a` (or there are none).
fn max_cpl<T: AddrBits + std::ops::BitXor<Output = T>>(
    a: T,
    starts: &Sorted<T>,
    ends: &Sorted<T>,
    lz: impl Fn(T) -> u32,
) -> Option<u32> {
    // Smallest network address above `a`.
    let above = starts.get(starts.count_at_or_below(a));
    // Largest last address below `a`.
    let below = ends.count_below(a).checked_sub(1).and_then(|i| ends.get(i));
    let c1 = above.map(|s| lz(a ^ s));
    let c2 = below.map(|e| lz(a ^ e));
    c1.max(c2)
}

/// An address as a number, IPv4 in the low bits.
fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(a.to_bits()),
        IpAddr::V6(a) => a.to_bits(),
    }
}

fn finish_scope(from: u8, max_cpl: Option<u32>, family_len: u8) -> u8 {
    let need = max_cpl.map_or(0, |c| c + 1);
    let need = u8::try_from(need).unwrap_or(family_len);
    from.max(need).min(family_len)
}

/// Parse `a.b.c.d/len` or `x::/len`, refusing host bits past the prefix.
fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let net: IpNet = if s.contains('/') {
        s.parse()
            .map_err(|_| format!("\"{s}\" is not a CIDR prefix (e.g. 192.0.2.0/24)"))?
    } else {
        let ip: IpAddr = s
            .parse()
            .map_err(|_| format!("\"{s}\" is not a CIDR prefix (e.g. 192.0.2.0/24)"))?;
        IpNet::from(ip)
    };
    if net.trunc() != net {
        return Err(format!(
            "{s} has host bits set past /{}; did you mean {}?",
            net.prefix_len(),
            net.trunc()
        ));
    }
    if let IpNet::V6(n) = net
        && n.addr().to_ipv4_mapped().is_some()
        && n.prefix_len() >= 96
    {
        return Err(format!(
            "{s} is an IPv4-mapped prefix; write it as IPv4 ({})",
            mapped_to_v4(n)
        ));
    }
    Ok(net)
}

fn mapped_to_v4(n: Ipv6Net) -> String {
    let v4 = n.addr().to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED);
    format!("{v4}/{}", n.prefix_len() - 96)
}

//------------ Tests ----------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::regions::{BuiltinRegions, RegionId, RegionSpec, resolve_regions};
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    fn regions() -> Regions {
        let specs: Vec<RegionSpec<'_>> = ["westeurope", "eastus", "southeastasia"]
            .into_iter()
            .map(|name| RegionSpec {
                name,
                ..Default::default()
            })
            .collect();
        resolve_regions(&specs, &BuiltinRegions::bundled()).unwrap()
    }

    fn table(text: &str) -> LatencyTable {
        LatencyTable::parse(text, "t.csv", &regions()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const NESTED: &str = "\
# nested prefixes
cidr,region,rtt_ms,label
10.0.0.0/8,westeurope,10,NL
10.0.0.0/8,eastus,90
10.1.2.0/24,eastus,5,US
2001:db8::/32,southeastasia,7,SG
2001:db8:1::/48,westeurope,20,NL
";

    #[test]
    fn lpm_v4_and_v6() {
        let t = table(NESTED);
        assert_eq!(t.len(), 4);
        let m = t.lookup(ip("10.9.9.9")).unwrap();
        assert_eq!(m.net.to_string(), "10.0.0.0/8");
        assert_eq!(m.label, Some("NL"));
        assert_eq!(m.rtts, &[Some(10), Some(90), None]);
        let m = t.lookup(ip("10.1.2.7")).unwrap();
        assert_eq!(m.net.to_string(), "10.1.2.0/24");
        assert_eq!(m.rtts, &[None, Some(5), None]);
        assert_eq!(m.label, Some("US"));
        assert!(t.lookup(ip("11.0.0.1")).is_none());

        let m = t.lookup(ip("2001:db8:1::5")).unwrap();
        assert_eq!(m.net.to_string(), "2001:db8:1::/48");
        assert_eq!(m.rtts[RegionId(0).index()], Some(20));
        let m = t.lookup(ip("2001:db8:2::5")).unwrap();
        assert_eq!(m.net.to_string(), "2001:db8::/32");
        assert!(t.lookup(ip("2001:db9::1")).is_none());
        // Families do not mix.
        assert!(t.lookup(ip("::a01:203")).is_none());
        assert_eq!(t.iter().count(), 4);
    }

    #[test]
    fn scope_rule_nested_v4() {
        let t = table(NESTED);
        // 10.0.0.0/8 with 10.1.2.0/24 inside.
        assert_eq!(t.scope(ip("10.9.9.9"), 8), 13);
        assert_eq!(t.scope(ip("10.1.9.9"), 8), 21);
        assert_eq!(t.scope(ip("10.1.2.7"), 24), 24);
        assert_eq!(t.scope(ip("10.200.0.1"), 8), 9);
        // Default basis from /0: any entry anywhere makes the scope > 0.
        assert_eq!(t.scope(ip("192.0.2.1"), 0), 1);
        // 11.0.0.1 and 10.255.255.255 share 7 bits.
        assert_eq!(t.scope(ip("11.0.0.1"), 0), 8);
        // A table without entries leaves the scope alone.
        let empty = table("# nothing\n");
        assert!(empty.is_empty());
        assert_eq!(empty.scope(ip("10.9.9.9"), 0), 0);
        assert_eq!(empty.scope(ip("10.9.9.9"), 17), 17);
    }

    #[test]
    fn scope_rule_v6() {
        let t = table(NESTED);
        assert_eq!(t.scope(ip("2001:db8:1::5"), 48), 48);
        // 2001:db8:2:: vs 2001:db8:1:: differ at bit 46 -> scope 47.
        assert_eq!(t.scope(ip("2001:db8:2::5"), 32), 47);
        assert_eq!(t.scope(ip("2001:db8:8000::1"), 32), 33);
        // Never above the family length.
        assert_eq!(finish_scope(0, Some(200), 128), 128);
    }

    #[test]
    fn single_address_rows_and_host_routes() {
        let t = table("192.0.2.7,eastus,3\n192.0.2.0/24,westeurope,4\n");
        assert_eq!(t.lookup(ip("192.0.2.7")).unwrap().net.prefix_len(), 32);
        assert_eq!(t.scope(ip("192.0.2.7"), 32), 32);
        assert_eq!(t.scope(ip("192.0.2.6"), 24), 32);
        assert_eq!(t.scope(ip("192.0.2.8"), 24), 29);
    }

    #[test]
    fn parse_errors_carry_file_line_and_reason() {
        let r = regions();
        let cases = [
            (
                "10.0.0.0/8,westeurop,5\n",
                "t.csv:1: unknown region \"westeurop\"",
            ),
            (
                "# c\n\n10.0.0.0/8,eastus\n",
                "t.csv:3: expected 3 or 4 fields (cidr,region,rtt_ms[,label]), found 2",
            ),
            (
                "10.0.0.1/8,eastus,5\n",
                "t.csv:1: 10.0.0.1/8 has host bits set past /8; did you mean 10.0.0.0/8?",
            ),
            (
                "10.0.0.0/33,eastus,5\n",
                "t.csv:1: \"10.0.0.0/33\" is not a CIDR prefix (e.g. 192.0.2.0/24)",
            ),
            (
                "10.0.0.0/8,eastus,fast\n",
                "t.csv:1: rtt_ms \"fast\" is not a whole number of milliseconds",
            ),
            (
                "10.0.0.0/8,eastus,-1\n",
                "t.csv:1: rtt_ms \"-1\" is not a whole number of milliseconds",
            ),
            (
                "10.0.0.0/8,eastus,70000\n",
                "t.csv:1: rtt_ms 70000 is above 60000",
            ),
            (
                "10.0.0.0/8,eastus,5\n10.0.0.0/8,eastus,6\n",
                "t.csv:2: duplicate row for 10.0.0.0/8 region \"eastus\"",
            ),
            (
                "10.0.0.0/8,eastus,5,NL\n10.0.0.0/8,westeurope,6,DE\n",
                "t.csv:2: label \"DE\" for 10.0.0.0/8 conflicts with \"NL\" given earlier",
            ),
            (
                "::ffff:10.0.0.0/104,eastus,5\n",
                "t.csv:1: ::ffff:10.0.0.0/104 is an IPv4-mapped prefix; write it as IPv4 (10.0.0.0/8)",
            ),
            (
                "10.0.0.0/8,eastus,5\ncidr,region,rtt_ms\n",
                "t.csv:2: \"cidr\" is not a CIDR prefix (e.g. 192.0.2.0/24)",
            ),
        ];
        for (text, want) in cases {
            let err = LatencyTable::parse(text, "t.csv", &r).unwrap_err();
            assert_eq!(err.to_string(), want, "{text:?}");
        }
        let err = LatencyTable::load(Path::new("/nonexistent.csv"), &r).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent.csv: "), "{err}");
    }

    #[test]
    fn bundled_example_table_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("geo/latency.csv");
        let t = LatencyTable::load(&path, &regions()).unwrap();
        assert!(t.len() >= 10);
        // The loopback prefixes used by the demo route to different regions.
        let best = |a: &str| {
            let m = t.lookup(ip(a)).unwrap();
            let (i, _) = m
                .rtts
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.map(|r| (i, r)))
                .min_by_key(|&(_, r)| r)
                .unwrap();
            i
        };
        assert_eq!(best("127.0.1.1"), 0);
        assert_eq!(best("127.0.2.1"), 1);
        assert_eq!(best("127.0.3.1"), 2);
    }

    //--- Property tests against naive scans

    /// A naive model: the list of prefixes.
    #[test]
    fn ranges_cut_nested_adjacent_and_edge_prefixes() {
        // (first, last, entry) over a u32 family: 0/0 around 10/8 around 10.1/16, an adjacent
        // 11/8, and a host route at the very last address.
        let v = |s: &str| s.parse::<Ipv4Addr>().unwrap().to_bits();
        let r = Ranges::cut(vec![
            (v("10.1.0.0"), v("10.1.255.255"), 2),
            (0, u32::MAX, 0),
            (v("10.0.0.0"), v("10.255.255.255"), 1),
            (v("11.0.0.0"), v("11.255.255.255"), 3),
            (u32::MAX, u32::MAX, 4),
        ]);
        let cases = [
            ("0.0.0.0", Some(0)),
            ("9.255.255.255", Some(0)),
            ("10.0.0.0", Some(1)),
            ("10.0.255.255", Some(1)),
            ("10.1.0.0", Some(2)),
            ("10.1.255.255", Some(2)),
            ("10.2.0.0", Some(1)),
            ("10.255.255.255", Some(1)),
            ("11.0.0.0", Some(3)),
            ("12.0.0.0", Some(0)),
            ("255.255.255.254", Some(0)),
            ("255.255.255.255", Some(4)),
        ];
        let nets = vec![
            (v("10.1.0.0"), v("10.1.255.255"), 2),
            (0, u32::MAX, 0),
            (v("10.0.0.0"), v("10.255.255.255"), 1),
            (v("11.0.0.0"), v("11.255.255.255"), 3),
            (u32::MAX, u32::MAX, 4),
        ];
        let indexed = Ranges::cut_indexed(nets, 0);
        assert_eq!(indexed.starts.index.len(), TOP + 1);
        for (addr, want) in cases {
            assert_eq!(r.get(v(addr)), want, "{addr}");
            assert_eq!(indexed.get(v(addr)), want, "{addr}, indexed");
        }
        // Range starts, one per change of match: 0, 10/8, 10.1/16, 10.2, 11/8, 12, the host.
        assert_eq!(r.starts.values.len(), 7);
        assert!(r.starts.values.windows(2).all(|w| w[0] < w[1]));
        assert!(r.hits.windows(2).all(|w| w[0] != w[1]));

        // No prefixes: nothing matches anywhere; one /0 matches everywhere.
        let empty = Ranges::<u128>::cut(Vec::new());
        assert_eq!((empty.get(0), empty.get(u128::MAX)), (None, None));
        let all = Ranges::<u128>::cut(vec![(0, u128::MAX, 7)]);
        assert_eq!(
            (all.get(0), all.get(u128::MAX), all.starts.values.len()),
            (Some(7), Some(7), 1)
        );
        // A prefix ending right before another starts leaves no gap and no overlap.
        let two = Ranges::<u32>::cut(vec![(8, 15, 1), (0, 7, 0)]);
        assert_eq!(
            (two.get(7), two.get(8), two.get(15), two.get(16)),
            (Some(0), Some(1), Some(1), None)
        );
    }

    fn naive_lpm(entries: &[IpNet], addr: IpAddr) -> Option<IpNet> {
        entries
            .iter()
            .filter(|n| n.contains(&addr))
            .max_by_key(|n| n.prefix_len())
            .copied()
    }

    fn naive_scope(entries: &[IpNet], addr: IpAddr, matched: Option<IpNet>, from: u8) -> u8 {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (from..=max)
            .find(|&p| {
                let outer = IpNet::new(addr, p).unwrap().trunc();
                !entries
                    .iter()
                    .any(|e| Some(*e) != matched && outer.contains(e))
            })
            .unwrap_or(max)
    }

    fn arb_v4_net() -> impl Strategy<Value = IpNet> {
        // A small address space so that prefixes nest and collide often.
        (0u32..16, any::<u32>(), 0u8..=32).prop_map(|(hi, lo, len)| {
            let a = (10u32 << 24) | (hi << 20) | (lo & 0xf_ffff);
            let a = if len < 4 { lo } else { a };
            IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), len)
                .unwrap()
                .trunc()
        })
    }

    fn arb_v6_net() -> impl Strategy<Value = IpNet> {
        (0u128..16, any::<u128>(), 0u8..=128).prop_map(|(hi, lo, len)| {
            let a = (0x2001_0db8u128 << 96) | (hi << 92) | (lo & ((1u128 << 92) - 1));
            let a = if len < 32 { lo } else { a };
            IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), len)
                .unwrap()
                .trunc()
        })
    }

    fn arb_addr_near(nets: Vec<IpNet>) -> impl Strategy<Value = (Vec<IpNet>, IpAddr)> {
        let n = nets.len();
        (Just(nets), 0..n.max(1), any::<u128>(), any::<bool>()).prop_map(|(nets, i, r, near)| {
            let base = nets[i % nets.len()];
            // One family's arithmetic on u128: IPv4 addresses are the low 32 bits.
            let family = if base.addr().is_ipv4() {
                u128::from(u32::MAX)
            } else {
                u128::MAX
            };
            let (first, last) = (bits(base.network()), bits(base.broadcast()));
            let host = last - first;
            // Random inside, anywhere, or on a range boundary (first, last, one before, one
            // after), where a cut table would go wrong.
            let a = match (near, r % 6) {
                (true, 0) => first,
                (true, 1) => last,
                (true, 2) => first.wrapping_sub(1) & family,
                (true, 3) => last.wrapping_add(1) & family,
                (true, _) => first | (r & host),
                (false, _) => r & family,
            };
            let addr = if base.addr().is_ipv4() {
                IpAddr::V4(Ipv4Addr::from(a as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(a))
            };
            (nets, addr)
        })
    }

    fn arb_case() -> impl Strategy<Value = (Vec<IpNet>, IpAddr)> {
        prop_oneof![
            proptest::collection::vec(arb_v4_net(), 1..40),
            proptest::collection::vec(arb_v6_net(), 1..40),
            proptest::collection::vec(prop_oneof![arb_v4_net(), arb_v6_net()], 1..40),
        ]
        .prop_flat_map(arb_addr_near)
    }

    fn table_of(nets: &[IpNet]) -> LatencyTable {
        let mut text = String::new();
        for n in nets {
            text.push_str(&format!("{n},eastus,1\n"));
        }
        // Duplicates are a parse error; dedup first.
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        lines.dedup();
        table(&lines.join("\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn lpm_and_scope_match_naive((nets, addr) in arb_case(), indexed in any::<bool>()) {
            // Half the cases with every array indexed, as a full-size table has them.
            let t = table_of(&nets);
            let t = if indexed {
                LatencyTable::build_indexed(t.entries, t.rtts, t.stride, 0)
            } else {
                t
            };
            let got = t.lookup(addr).map(|m| m.net);
            let want = naive_lpm(&nets, addr);
            prop_assert_eq!(got, want);

            let from = want.map_or(0, |n| n.prefix_len());
            let scope = t.scope(addr, from);
            prop_assert_eq!(scope, naive_scope(&nets, addr, want, from));
            if let Some(m) = t.lookup(addr) {
                prop_assert_eq!(t.match_scope(addr, &m), scope);
                let naive_inner = nets.iter().any(|e| *e != m.net && m.net.contains(e));
                prop_assert_eq!(m.has_inner, naive_inner);
            }

            // Safety: every address in addr/scope gets the same match. Check
            // the first and last address and a few in between.
            let outer = IpNet::new(addr, scope).unwrap().trunc();
            let probes = [
                outer.network(),
                outer.broadcast(),
                addr,
            ];
            for p in probes {
                prop_assert_eq!(t.lookup(p).map(|m| m.net), want, "probe {}", p);
            }
            for e in &nets {
                if Some(*e) != want {
                    prop_assert!(!outer.contains(e), "{} inside {}", e, outer);
                }
            }
        }

        #[test]
        fn default_scope_from_zero_is_safe((nets, addr) in arb_case()) {
            let t = table_of(&nets);
            if t.lookup(addr).is_none() {
                let scope = t.scope(addr, 0);
                prop_assert_eq!(scope, naive_scope(&nets, addr, None, 0));
                if nets.iter().any(|n| n.addr().is_ipv4() == addr.is_ipv4()) {
                    prop_assert!(scope > 0);
                }
                let outer = IpNet::new(addr, scope).unwrap().trunc();
                prop_assert!(t.lookup(outer.network()).is_none());
                prop_assert!(t.lookup(outer.broadcast()).is_none());
            }
        }

        /// The geo basis starts from an arbitrary mmdb network length.
        #[test]
        fn miss_scope_from_any_length((nets, addr) in arb_case(), from in 0u8..=128) {
            let t = table_of(&nets);
            if t.lookup(addr).is_none() {
                let from = from.min(if addr.is_ipv4() { 32 } else { 128 });
                let scope = t.scope(addr, from);
                prop_assert_eq!(scope, naive_scope(&nets, addr, None, from));
                prop_assert!(scope >= from);
            }
        }
    }
}
