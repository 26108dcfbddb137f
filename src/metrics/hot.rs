//! The counters the DNS answer path bumps: fixed arrays of relaxed atomics laid out at load
//! time (see the module doc of `metrics` for the rule), and the hub that keeps their totals
//! across reloads. Nothing here knows about prometheus-client.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

//------------ DnsCounters ------------------------------------------------------------------

/// Response codes counted, in index order; anything else counts as `other`.
pub const RCODES: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other",
];
/// Query type buckets, in index order.
pub const QTYPES: [&str; 10] = [
    "A", "AAAA", "CNAME", "SOA", "NS", "MX", "TXT", "SRV", "ANY", "other",
];
/// Decision basis label values, in [`basis_index`] order.
pub const BASES: [&str; 3] = ["latency_table", "geo", "default_order"];

/// The routing layer that decided, as counted: the one `routing::Basis`.
pub use crate::routing::Basis as DecisionBasis;

/// The counter cell of a basis (its position in [`BASES`]).
fn basis_index(b: DecisionBasis) -> usize {
    match b {
        DecisionBasis::LatencyTable => 0,
        DecisionBasis::Geo => 1,
        DecisionBasis::DefaultOrder => 2,
    }
}

/// Counters the DNS answer path bumps: plain atomics, `Relaxed`, no locks, no allocation.
///
/// One set per UDP worker thread (a *shard*, see [`Metrics::udp_shard`](super::Metrics)) and
/// one for TCP and everything else, so that no two threads bump the same cache line; the
/// alignment keeps two shards off one line. Scrapes sum the shards.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct DnsCounters {
    pub(super) queries: [[AtomicU64; QTYPES.len()]; RCODES.len()],
    pub(super) ecs: [AtomicU64; 2],
    pub(super) basis: [AtomicU64; BASES.len()],
    pub(super) fail_open: AtomicU64,
    pub(super) stale_view: AtomicU64,
    /// Answers to global names so far, for sampling one in [`HITTER_EVERY`].
    sample: AtomicU64,
    /// This set's shard number: the per-thread cells of [`ReplicaCounters`] it bumps.
    shard: usize,
}

impl DnsCounters {
    /// Counters for shard `shard` (0: TCP and everything that is not a UDP worker).
    pub(crate) fn for_shard(shard: usize) -> Self {
        Self {
            shard,
            ..Self::default()
        }
    }

    /// The shard these counters belong to, for [`ReplicaCounters::answer`].
    #[inline]
    pub(crate) fn shard(&self) -> usize {
        self.shard
    }

    /// Responses counted in this shard, all rcodes and types.
    pub(super) fn total(&self) -> u64 {
        self.queries
            .iter()
            .flatten()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Count one response with `rcode` (the full 12-bit extended code, BADVERS = 16) to a
    /// query of type `qtype`.
    #[inline]
    pub fn response(&self, rcode: u16, qtype: u16) {
        let r = rcode_index(rcode);
        let q = qtype_index(qtype);
        // Both indices come from total functions whose ranges are the array lengths.
        if let Some(c) = self.queries.get(r).and_then(|row| row.get(q)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count a query for a global name with (`true`) or without an ECS option.
    #[inline]
    pub(crate) fn ecs(&self, present: bool) {
        self.ecs[usize::from(present)].fetch_add(1, Ordering::Relaxed);
    }

    /// Count a routing decision.
    #[inline]
    pub(crate) fn decision(&self, basis: DecisionBasis) {
        self.basis[basis_index(basis)].fetch_add(1, Ordering::Relaxed);
    }

    /// Whether this answer to a global name is one of the one in [`HITTER_EVERY`] whose
    /// registry goes into the heavy-hitter sketch. Which ones is a hash of the answer's
    /// number, not every 16th, so that a periodic query pattern (a client alternating two
    /// names) cannot hide a registry. A load, a store, a multiply: no locked instruction (one
    /// thread bumps a UDP shard; TCP tasks share shard 0, where a lost bump only shifts the
    /// sample).
    #[inline]
    pub(crate) fn sample_due(&self) -> bool {
        let n = self.sample.load(Ordering::Relaxed);
        self.sample.store(n.wrapping_add(1), Ordering::Relaxed);
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - HITTER_EVERY.trailing_zeros()) == 0
    }

    /// Count an answer given while failing open.
    #[inline]
    pub(crate) fn fail_open(&self) {
        self.fail_open.fetch_add(1, Ordering::Relaxed);
    }

    /// Count an answer routed on an expired health view (the writer stopped stamping it).
    #[inline]
    pub(crate) fn stale_view(&self) {
        self.stale_view.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(test)]
    /// Answers routed on an expired health view so far.
    pub(crate) fn stale_views(&self) -> u64 {
        self.stale_view.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    /// Responses so far with `rcode` × `qtype` (label values from [`RCODES`] / [`QTYPES`]).
    pub(crate) fn responses(&self, rcode: &str, qtype: &str) -> u64 {
        let r = RCODES.iter().position(|x| *x == rcode);
        let q = QTYPES.iter().position(|x| *x == qtype);
        match (r, q) {
            (Some(r), Some(q)) => self.queries[r][q].load(Ordering::Relaxed),
            _ => 0,
        }
    }
}

//------------ TransportCounters ------------------------------------------------------------

/// Counters the transports bump: relaxed atomics, like [`DnsCounters`].
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// TCP connections closed to admit a new one at the global cap.
    pub tcp_evicted: AtomicU64,
    /// UDP responses dropped by rate limiting.
    pub rrl_dropped: AtomicU64,
    /// UDP responses sent truncated by rate limiting.
    pub rrl_slipped: AtomicU64,
}

fn rcode_index(rcode: u16) -> usize {
    match rcode {
        0..=5 => usize::from(rcode),
        16 => 6,
        _ => 7,
    }
}

fn qtype_index(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        28 => 1,
        5 => 2,
        6 => 3,
        2 => 4,
        15 => 5,
        16 => 6,
        33 => 7,
        255 => 8,
        _ => 9,
    }
}

//------------ ClientLabels ----------------------------------------------------------------

/// Index of a client label inside a [`ClientLabels`] set; 0 is `unknown`.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct LabelIndex(pub(super) u16);

/// The bounded set of client labels known at load time: latency-table labels, ISO country
/// and continent codes, plus `unknown` (index 0).
#[derive(Debug)]
pub struct ClientLabels {
    /// Names by index; `names[0]` is `unknown`.
    names: Box<[Box<str>]>,
    /// Two-letter upper-case codes `XY` at `(X-'A')*26 + (Y-'A')`; 0 when not in the set.
    two_letter: Box<[u16; 676]>,
    /// Every other label, sorted, with its index.
    others: Box<[(Box<str>, u16)]>,
}

impl ClientLabels {
    /// A set of the given labels (duplicates and `unknown` are ignored).
    pub(crate) fn new<S: AsRef<str>>(labels: impl IntoIterator<Item = S>) -> Self {
        let mut names: Vec<Box<str>> = vec![UNKNOWN_LABEL.into()];
        let mut two_letter = Box::new([0u16; 676]);
        let mut others: Vec<(Box<str>, u16)> = Vec::new();
        for l in labels {
            let l = l.as_ref();
            if l == UNKNOWN_LABEL || names.len() >= usize::from(u16::MAX) {
                continue;
            }
            let idx = names.len() as u16;
            if let Some(slot) = two_letter_slot(l) {
                if two_letter[slot] == 0 {
                    two_letter[slot] = idx;
                    names.push(l.into());
                }
            } else if !others.iter().any(|(o, _)| &**o == l) {
                others.push((l.into(), idx));
                names.push(l.into());
            }
        }
        others.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            names: names.into(),
            two_letter,
            others: others.into(),
        }
    }

    /// Every two-letter code `AA` .. `ZZ`: a superset of ISO 3166-1 alpha-2 and continent
    /// codes, for when the mmdb's codes are not enumerated at load time.
    pub(crate) fn all_two_letter_codes() -> impl Iterator<Item = String> {
        (b'A'..=b'Z')
            .flat_map(|a| (b'A'..=b'Z').map(move |b| String::from_utf8_lossy(&[a, b]).into()))
    }

    /// The index of `label` (`routing::Location::label`); `unknown` for None or a label not in
    /// the set. No allocation, no hashing.
    #[inline]
    pub(crate) fn index(&self, label: Option<&str>) -> LabelIndex {
        let Some(l) = label else {
            return LabelIndex(0);
        };
        if let Some(slot) = two_letter_slot(l) {
            return LabelIndex(self.two_letter[slot]);
        }
        match self.others.binary_search_by(|(o, _)| (**o).cmp(l)) {
            Ok(i) => LabelIndex(self.others[i].1),
            Err(_) => LabelIndex(0),
        }
    }

    /// Number of labels, `unknown` included.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// The label's name.
    pub(crate) fn name(&self, i: LabelIndex) -> &str {
        self.names
            .get(usize::from(i.0))
            .map_or(UNKNOWN_LABEL, |n| n)
    }
}

fn two_letter_slot(l: &str) -> Option<usize> {
    match l.as_bytes() {
        [a @ b'A'..=b'Z', b @ b'A'..=b'Z'] => {
            Some(usize::from(a - b'A') * 26 + usize::from(b - b'A'))
        }
        _ => None,
    }
}

//------------ heavy hitters ---------------------------------------------------------------

/// One answer to a global name in this many is sampled into the heavy-hitter sketch.
pub(crate) const HITTER_EVERY: u64 = 16;
/// Buckets of the sketch per shard (a power of two).
const HITTER_SLOTS: usize = 1024;
/// Cells between two shards' sketches: two per bucket (key, count) plus one spare cache line.
const HITTER_STRIDE: usize = 2 * HITTER_SLOTS + 16;
/// Set in every key a bucket holds, so a key cell emptied by a drain (0) never passes for
/// registry 0.
const HITTER_HELD: u64 = 1 << 31;

/// A bucket's key: (registry id, client label, replica column) in one word.
fn hitter_key(id: u32, label: LabelIndex, column: u32) -> u64 {
    (u64::from(id) << 32)
        | HITTER_HELD
        | ((u64::from(label.0) & 0x7fff) << 16)
        | (u64::from(column) & 0xffff)
}

/// One registry drained from the sketch: its estimated answers in total and by (client
/// label, answered replica key).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Hitter {
    pub(crate) id: u32,
    pub(crate) answers: u64,
    /// (client group, replica key, estimated answers), largest first.
    pub(crate) cells: Vec<(Arc<str>, Arc<str>, u64)>,
}

//------------ ReplicaCounters -------------------------------------------------------------

/// One registry's keys, for laying out [`ReplicaCounters`].
#[derive(Clone, Debug)]
pub struct RegistryKeys {
    /// `[registries.KEY]`.
    pub(crate) key: String,
    /// Replica keys in replica-index order.
    pub(crate) replicas: Vec<String>,
}

/// Answer counters by (registry, replica) and by (client label × replica key), preallocated
/// for one config generation. Put an `Arc` of it in the snapshot; the answer path calls
/// [`ReplicaCounters::answer`].
///
/// The cells exist once per *shard* (one per UDP worker thread, plus one for the rest, see
/// [`DnsCounters::shard`]), each shard's cells at least 128 bytes away from the next shard's,
/// so worker threads never bump a shared cache line. Scrapes sum the shards.
#[derive(Debug)]
pub struct ReplicaCounters {
    /// Per registry index: its first slot in `by_replica`.
    offsets: Box<[u32]>,
    /// Per slot: (registry key, replica key).
    pub(super) slot_keys: Box<[(Arc<str>, Arc<str>)]>,
    /// Per slot: index of its replica key in `replica_keys`.
    slot_column: Box<[u32]>,
    /// `shards` runs of one cell per slot, `replica_stride` cells apart.
    by_replica: Box<[AtomicU64]>,
    replica_stride: usize,
    /// Distinct replica keys: the columns of `by_client`.
    replica_keys: Box<[Arc<str>]>,
    labels: ClientLabels,
    /// `shards` runs of `labels.len()` rows × `replica_keys.len()` columns, `client_stride`
    /// cells apart.
    by_client: Box<[AtomicU64]>,
    client_stride: usize,
    /// Cells per shard in `by_client`.
    client_cells: usize,
    /// Number of shards (at least 1).
    shards: usize,
    /// Registry id → its group in `offsets`, for the registries that get series of their own
    /// (the allow-list); empty for everybody else, so the answer path skips the lookup.
    own: HashMap<u32, u32>,
    /// The first group of `own` (the groups before it are replica sets).
    first_own: u32,
    /// Per shard, `own_stride` cells apart: for each allow-listed registry, `labels.len()`
    /// rows × `replica_keys.len()` columns: its answers by client label and replica.
    own_client: Box<[AtomicU64]>,
    own_stride: usize,
    /// The heavy-hitter sketch, [`HITTER_STRIDE`] cells per shard: each bucket holds the
    /// registry that dominates the samples hashed to it (Misra-Gries with one counter per
    /// bucket: a match counts up, a stranger counts down and takes the bucket at zero), so a
    /// registry with a large share of the queries keeps its bucket, in fixed memory at any
    /// registry count. Drained once a minute.
    hitters: Box<[AtomicU64]>,
}

/// Cells between the starts of two shards holding `len` cells each: rounded up to whole
/// 128-byte lines, plus one spare line, so no line holds cells of two shards.
fn stride(len: usize) -> usize {
    const LINE: usize = 128 / std::mem::size_of::<AtomicU64>();
    len.div_ceil(LINE) * LINE + LINE
}

impl ReplicaCounters {
    /// Lay out counters for `registries` (in registry-index order) and `labels`, one shard.
    #[cfg(test)]
    pub(crate) fn new(registries: &[RegistryKeys], labels: ClientLabels) -> Self {
        Self::sharded(registries, labels, 1)
    }

    /// [`new`](Self::new) with `shards` copies of the cells (one per answering thread).
    pub(crate) fn sharded(
        registries: &[RegistryKeys],
        labels: ClientLabels,
        shards: usize,
    ) -> Self {
        let shards = shards.max(1);
        let mut offsets = Vec::with_capacity(registries.len());
        let mut slot_keys = Vec::new();
        let mut slot_column = Vec::new();
        let mut replica_keys: Vec<Arc<str>> = Vec::new();
        let mut column_of: HashMap<&str, u32> = HashMap::new();
        for reg in registries {
            offsets.push(slot_keys.len() as u32);
            let rk: Arc<str> = reg.key.as_str().into();
            for rep in &reg.replicas {
                let col = *column_of.entry(rep.as_str()).or_insert_with(|| {
                    replica_keys.push(rep.as_str().into());
                    (replica_keys.len() - 1) as u32
                });
                slot_keys.push((rk.clone(), replica_keys[col as usize].clone()));
                slot_column.push(col);
            }
        }
        let replica_stride = stride(slot_keys.len());
        let client_cells = labels.len() * replica_keys.len();
        let client_stride = stride(client_cells);
        let cells = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        Self {
            offsets: offsets.into(),
            slot_keys: slot_keys.into(),
            slot_column: slot_column.into(),
            by_replica: cells(replica_stride * shards),
            replica_stride,
            replica_keys: replica_keys.into(),
            labels,
            by_client: cells(client_stride * shards),
            client_stride,
            client_cells,
            shards,
            own: HashMap::new(),
            first_own: 0,
            own_client: Box::new([]),
            own_stride: 0,
            hitters: cells(HITTER_STRIDE * shards),
        }
    }

    /// Sample an answer of registry `id` (replica set `set`, answered with its replica
    /// `replica`, for a client labelled `label`) into `shard`'s sketch (see `hitters`).
    /// Loads and stores only; out-of-range indices are ignored.
    #[inline]
    pub(crate) fn sample_registry(
        &self,
        shard: usize,
        id: u32,
        set: usize,
        replica: usize,
        label: LabelIndex,
    ) {
        let s = if shard < self.shards {
            shard
        } else {
            shard % self.shards
        };
        let Some(&off) = self.offsets.get(set) else {
            return;
        };
        let Some(&column) = self.slot_column.get(off as usize + replica) else {
            return;
        };
        let key = hitter_key(id, label, column);
        // Fibonacci hashing: the top bits of key × 2^64/φ pick the bucket.
        let slot = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - HITTER_SLOTS.trailing_zeros()))
            as usize;
        let base = s * HITTER_STRIDE + 2 * slot;
        let (Some(kc), Some(nc)) = (self.hitters.get(base), self.hitters.get(base + 1)) else {
            return;
        };
        let (held, n) = (kc.load(Ordering::Relaxed), nc.load(Ordering::Relaxed));
        if n == 0 || held == key {
            if held != key {
                kc.store(key, Ordering::Relaxed);
            }
            nc.store(n.saturating_add(1), Ordering::Relaxed);
        } else {
            nc.store(n - 1, Ordering::Relaxed);
        }
    }

    /// Empty every shard's sketch: the registries it held with their sampled counts summed
    /// over shards and cells (estimated answers: count × [`HITTER_EVERY`]), largest first.
    pub(crate) fn take_hitters(&self) -> Vec<Hitter> {
        let mut sums: HashMap<u32, HashMap<(u16, u32), u64>> = HashMap::new();
        for shard in 0..self.shards {
            let cells = self
                .hitters
                .get(shard * HITTER_STRIDE..shard * HITTER_STRIDE + 2 * HITTER_SLOTS)
                .unwrap_or(&[]);
            for b in cells.chunks_exact(2) {
                let n = b[1].swap(0, Ordering::Relaxed);
                let k = b[0].swap(0, Ordering::Relaxed);
                if n == 0 || k & HITTER_HELD == 0 {
                    continue;
                }
                let (id, label, column) = ((k >> 32) as u32, ((k >> 16) & 0x7fff) as u16, k as u16);
                *sums
                    .entry(id)
                    .or_default()
                    .entry((label, u32::from(column)))
                    .or_default() += n * HITTER_EVERY;
            }
        }
        let mut out: Vec<Hitter> = sums
            .into_iter()
            .map(|(id, cells)| {
                let mut cells: Vec<(Arc<str>, Arc<str>, u64)> = cells
                    .into_iter()
                    .filter_map(|((label, column), n)| {
                        let replica = self.replica_keys.get(column as usize)?.clone();
                        Some((Arc::from(self.labels.name(LabelIndex(label))), replica, n))
                    })
                    .collect();
                cells.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
                Hitter {
                    id,
                    answers: cells.iter().map(|c| c.2).sum(),
                    cells,
                }
            })
            .collect();
        out.sort_by(|a, b| b.answers.cmp(&a.answers).then(a.id.cmp(&b.id)));
        out
    }

    /// The cells of `shard` (taken modulo the shard count, so any index is safe).
    #[inline]
    pub(super) fn shard_cells(&self, shard: usize) -> (&[AtomicU64], &[AtomicU64]) {
        // A shard past the count (a reload that changed the worker count) shares cells.
        let s = if shard < self.shards {
            shard
        } else {
            shard % self.shards
        };
        let r = s * self.replica_stride;
        let c = s * self.client_stride;
        (
            self.by_replica
                .get(r..r + self.slot_keys.len())
                .unwrap_or(&[]),
            self.by_client.get(c..c + self.client_cells).unwrap_or(&[]),
        )
    }

    /// Lay out `groups` (replica sets) and, after them, one group for each registry of
    /// `own` (registry id, keys): registries that get their own series (the allow-list).
    pub(crate) fn with_registries(
        groups: &[RegistryKeys],
        own: &[(u32, RegistryKeys)],
        labels: ClientLabels,
        shards: usize,
    ) -> Self {
        let all: Vec<RegistryKeys> = groups
            .iter()
            .cloned()
            .chain(own.iter().map(|(_, k)| k.clone()))
            .collect();
        let mut c = Self::sharded(&all, labels, shards);
        c.own = own
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, (groups.len() + i) as u32))
            .collect();
        c.first_own = groups.len() as u32;
        c.own_stride = stride(own.len() * c.labels.len() * c.replica_keys.len());
        c.own_client = (0..c.own_stride * c.shards)
            .map(|_| AtomicU64::new(0))
            .collect();
        c
    }

    /// Count an answer of an allow-listed registry in its own series, by replica and by
    /// client label and replica (the all-registry cells: [`answer`](Self::answer)). Costs a
    /// branch without an allow-list, a hash lookup with one.
    #[inline]
    pub(crate) fn answer_registry(&self, shard: usize, id: u32, replica: usize, label: LabelIndex) {
        if self.own.is_empty() {
            return;
        }
        let Some(&group) = self.own.get(&id) else {
            return;
        };
        let Some(&off) = self.offsets.get(group as usize) else {
            return;
        };
        let slot = off as usize + replica;
        let (by_replica, _) = self.shard_cells(shard);
        let end = self
            .offsets
            .get(group as usize + 1)
            .map_or(by_replica.len(), |&e| e as usize);
        if slot < end
            && let Some(c) = by_replica.get(slot)
        {
            c.fetch_add(1, Ordering::Relaxed);
        } else {
            return;
        }
        let (Some(&col), Some(o)) = (
            self.slot_column.get(slot),
            group.checked_sub(self.first_own),
        ) else {
            return;
        };
        let s = if shard < self.shards {
            shard
        } else {
            shard % self.shards
        };
        let cols = self.replica_keys.len();
        let i = (o as usize * self.labels.len() + usize::from(label.0)) * cols + col as usize;
        if i < self.own_stride
            && let Some(c) = self.own_client.get(s * self.own_stride + i)
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The label set, to turn `routing::Location::label` into a [`LabelIndex`].
    pub(crate) fn labels(&self) -> &ClientLabels {
        &self.labels
    }

    /// Count, in the cells of `shard` (the answering thread's, [`DnsCounters::shard`]), one
    /// answer with replica `replica` of registry `registry` (config indices) for a client
    /// labelled `label`. Out-of-range indices are ignored (never panics).
    #[inline]
    pub(crate) fn answer(&self, shard: usize, registry: usize, replica: usize, label: LabelIndex) {
        let Some(&off) = self.offsets.get(registry) else {
            return;
        };
        let (by_replica, by_client) = self.shard_cells(shard);
        let slot = off as usize + replica;
        let end = self
            .offsets
            .get(registry + 1)
            .map_or(by_replica.len(), |&e| e as usize);
        if slot >= end {
            return;
        }
        let (Some(cell), Some(&col)) = (by_replica.get(slot), self.slot_column.get(slot)) else {
            return;
        };
        cell.fetch_add(1, Ordering::Relaxed);
        let i = usize::from(label.0) * self.replica_keys.len() + col as usize;
        if let Some(c) = by_client.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn add_into(&self, t: &mut Totals) {
        let cols = self.replica_keys.len();
        let rows = self.labels.len();
        // The allow-listed registries' keys, by ordinal.
        let mut own_keys: Vec<Option<Arc<str>>> = vec![None; self.own.len()];
        for &group in self.own.values() {
            if let (Some(o), Some(&off)) = (
                group.checked_sub(self.first_own),
                self.offsets.get(group as usize),
            ) && let (Some(slot), Some((k, _))) = (
                own_keys.get_mut(o as usize),
                self.slot_keys.get(off as usize),
            ) {
                *slot = Some(k.clone());
            }
        }
        for shard in 0..self.shards {
            let (by_replica, by_client) = self.shard_cells(shard);
            for (k, v) in self.slot_keys.iter().zip(by_replica.iter()) {
                *t.replica.entry(k.clone()).or_default() += v.load(Ordering::Relaxed);
            }
            if cols == 0 {
                continue;
            }
            for (i, v) in by_client.iter().enumerate() {
                let v = v.load(Ordering::Relaxed);
                if v > 0 {
                    let label = self.labels.name(LabelIndex((i / cols) as u16));
                    let key = (Arc::<str>::from(label), self.replica_keys[i % cols].clone());
                    *t.client.entry(key).or_default() += v;
                }
            }
            let own = self
                .own_client
                .get(
                    shard * self.own_stride..shard * self.own_stride + own_keys.len() * rows * cols,
                )
                .unwrap_or(&[]);
            for (i, v) in own.iter().enumerate() {
                let v = v.load(Ordering::Relaxed);
                if v == 0 {
                    continue;
                }
                let Some(Some(reg)) = own_keys.get(i / (rows * cols)) else {
                    continue;
                };
                let label = self.labels.name(LabelIndex(((i / cols) % rows) as u16));
                let key = (
                    reg.clone(),
                    Arc::<str>::from(label),
                    self.replica_keys[i % cols].clone(),
                );
                *t.registry_client.entry(key).or_default() += v;
            }
        }
    }
}

/// Totals by (registry key, replica key) or (client label, replica key).
pub(super) type KeyTotals = HashMap<(Arc<str>, Arc<str>), u64>;
pub(super) type ClientTotals = KeyTotals;
/// Totals by (registry key, client label, replica key).
pub(super) type RegistryClientTotals = HashMap<(Arc<str>, Arc<str>, Arc<str>), u64>;

/// Answer totals: by (registry or set, replica), by (client label, replica), and by
/// (registry, client label, replica) for the allow-listed registries.
#[derive(Clone, Debug, Default)]
pub(super) struct Totals {
    pub(super) replica: KeyTotals,
    pub(super) client: ClientTotals,
    pub(super) registry_client: RegistryClientTotals,
}

/// The current and retired replica counters plus the folded baseline.
#[derive(Debug, Default)]
pub(super) struct ReplicaHub {
    pub(super) current: Option<Arc<ReplicaCounters>>,
    pub(super) retired: Vec<Arc<ReplicaCounters>>,
    baseline: Totals,
}

impl ReplicaHub {
    /// Fold the retired counters nobody else holds into the baseline: done at every install
    /// too, so a server reloaded often and never scraped does not keep one set per reload.
    pub(super) fn fold(&mut self) {
        let mut i = 0;
        while i < self.retired.len() {
            if Arc::strong_count(&self.retired[i]) == 1 {
                let old = self.retired.swap_remove(i);
                old.add_into(&mut self.baseline);
            } else {
                i += 1;
            }
        }
    }

    /// Totals by key: baseline + retired + current.
    pub(super) fn totals(&mut self) -> Totals {
        self.fold();
        let mut t = self.baseline.clone();
        for r in &self.retired {
            r.add_into(&mut t);
        }
        if let Some(c) = &self.current {
            c.add_into(&mut t);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry with a tenth of the answers keeps its bucket against 5 000 others with
    /// one answer each, on two shards, and is told apart by client group and replica; its
    /// estimate is within a few samples of the truth, and a drained sketch starts empty.
    #[test]
    fn the_sketch_keeps_the_heavy_registry() {
        let regs = [RegistryKeys {
            key: "set".into(),
            replicas: vec!["eu".into(), "us".into()],
        }];
        let labels = ClientLabels::new(["NL", "US"]);
        let (nl, us) = (labels.index(Some("NL")), labels.index(Some("US")));
        let c = ReplicaCounters::sharded(&regs, labels, 2);
        let d = [DnsCounters::for_shard(0), DnsCounters::for_shard(1)];
        let (mut from_nl, mut from_us) = (0u64, 0u64);
        for i in 0..100_000u32 {
            let id = if i % 10 == 0 { 7 } else { 1_000 + i % 5_000 };
            let s = (i % 2) as usize;
            // The heavy registry: 3 in 5 of its answers for NL clients from eu, the rest
            // for US clients from us.
            let (replica, label) = if id == 7 && i % 50 < 30 {
                from_nl += 1;
                (0, nl)
            } else if id == 7 {
                from_us += 1;
                (1, us)
            } else {
                (0, nl)
            };
            if d[s].sample_due() {
                c.sample_registry(s, id, 0, replica, label);
            }
        }
        let top = c.take_hitters();
        assert_eq!(top[0].id, 7, "{:?}", &top[..3]);
        let near = |est: u64, truth: u64| est.abs_diff(truth) <= 2 * HITTER_EVERY * 16;
        assert!(near(top[0].answers, from_nl + from_us), "{:?}", top[0]);
        let cell = |g: &str, r: &str| {
            top[0]
                .cells
                .iter()
                .find(|c| &*c.0 == g && &*c.1 == r)
                .map_or(0, |c| c.2)
        };
        assert!(near(cell("NL", "eu"), from_nl), "{:?}", top[0].cells);
        assert!(near(cell("US", "us"), from_us), "{:?}", top[0].cells);
        assert_eq!(top[0].cells.len(), 2, "{:?}", top[0].cells);
        assert!(c.take_hitters().is_empty(), "drained");
        // A shard past the count shares cells instead of panicking; a replica past the set
        // is ignored.
        c.sample_registry(9, 3, 0, 1, us);
        c.sample_registry(0, 4, 0, 5, us);
        c.sample_registry(0, 4, 9, 0, us);
        let top = c.take_hitters();
        assert_eq!(top.len(), 1);
        assert_eq!((top[0].id, top[0].answers), (3, HITTER_EVERY));
        assert_eq!(
            top[0].cells,
            [(Arc::from("US"), Arc::from("us"), HITTER_EVERY)]
        );
    }
}
