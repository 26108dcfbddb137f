//! Signing (RFC 4034 §3.1.8.1 and §6): RRSIGs over RRsets in canonical form, and the NSEC
//! records of compact denial (RFC 9824): one NSEC at the query name whose next name is its
//! immediate successor (`\000.name`), so a proof covers no other name and nothing can be
//! walked.
//!
//! The crypto is `ring`'s (ECDSA P-256 with fixed-size `r‖s` signatures, RFC 6605; Ed25519,
//! RFC 8080). Records made here carry their RDATA as opaque bytes (`RData::Unknown`), which
//! hickory-proto emits as given: RRSIG, DNSKEY, CDS, CDNSKEY and NSEC without its `dnssec`
//! feature (which would change the zone parser's and the emitters' signatures crate-wide).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair};

use super::cache::{Cached, SigCache};
use super::{Algorithm, FLAGS_KSK, Key};
use std::sync::Arc;

/// The NXNAME meta-type (RFC 9824 §3.3) in the bitmap of a compact NXDOMAIN proof.
pub(crate) const NXNAME: u16 = 128;

/// How signatures are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// From inception to expiration, before jitter.
    pub validity: Duration,
    /// Inception this far before the signing time (clock skew between us and resolvers).
    pub inception_offset: Duration,
    /// At most this much is taken off each RRset's expiration (spread by owner and type), so
    /// that signatures made together do not all expire together.
    pub jitter: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            validity: Duration::from_secs(14 * 86_400),
            inception_offset: Duration::from_secs(3_600),
            jitter: Duration::from_secs(86_400),
        }
    }
}

enum Pair {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// One key, ready to sign.
struct SigningKey {
    tag: u16,
    algorithm: Algorithm,
    /// Flags 257: signs the DNSKEY, CDS and CDNSKEY RRsets (and everything, with no ZSK).
    ksk: bool,
    pair: Pair,
}

/// Who asks the signature cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// A query: counted as a hit or a miss.
    Query,
    /// Pre-signing ahead of a failover (`dnssec::warm`): not counted; what it signs is.
    Warm,
}

/// A zone's keys and signature timing: signs its RRsets and makes its denial records.
pub struct ZoneSigner {
    apex: Name,
    /// The apex in canonical wire form: the RRSIG signer name.
    apex_wire: Vec<u8>,
    keys: Vec<SigningKey>,
    /// Whether some key is a ZSK (flags 256): then the KSKs sign only the key RRsets.
    split: bool,
    /// The DNSKEY, CDNSKEY and CDS RDATA (canonical = wire), in key order.
    dnskey: Vec<Vec<u8>>,
    cdnskey: Vec<Vec<u8>>,
    cds: Vec<Vec<u8>>,
    timing: Timing,
    rng: SystemRandom,
    /// Signatures of steered answers and of denials made when asked.
    cache: SigCache,
    /// Signatures made (for `steerdns_dnssec_signatures_total`).
    made: std::sync::atomic::AtomicU64,
    /// Of those, made ahead of any query by pre-signing (`dnssec::warm`).
    presigned: std::sync::atomic::AtomicU64,
    /// The earliest expiration (Unix seconds) of the signatures made at load for the zone's
    /// static data, set by each (re-)signing of the zone.
    static_expiry: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ZoneSigner {
    /// Tags and algorithms only: never key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneSigner")
            .field("apex", &self.apex)
            .field(
                "keys",
                &self
                    .keys
                    .iter()
                    .map(|k| (k.tag, k.algorithm.number(), k.ksk))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// `name` lower-cased, uncompressed: its canonical wire form (RFC 4034 §6.2).
pub fn canonical_wire(name: &Name) -> Vec<u8> {
    crate::global::wire_lower(name)
}

/// The RDATA of `rec` in canonical form (names lower-cased where RFC 4034 §6.2 and RFC 6840
/// §5.1 say, never compressed).
pub fn canonical_rdata(rec: &Record) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_canonical_form(true);
    // Our own records' RDATA always encodes; a failure leaves what was written (and the
    // signature then does not verify, which validators report), never a panic.
    let _ = rec.data.emit(&mut enc);
    buf
}

/// [`type_bitmap`] into `out` without allocating (`types` is sorted in place); its length.
/// Types past what `out` holds are left out.
pub(crate) fn type_bitmap_into(types: &mut [u16], out: &mut [u8]) -> usize {
    types.sort_unstable();
    let mut len = 0;
    let mut i = 0;
    while i < types.len() {
        let window = types[i] >> 8;
        let mut bits = [0u8; 32];
        let mut used = 0;
        while i < types.len() && types[i] >> 8 == window {
            let low = (types[i] & 0xff) as usize;
            bits[low / 8] |= 0x80 >> (low % 8);
            used = used.max(low / 8 + 1);
            i += 1;
        }
        if len + 2 + used > out.len() {
            break;
        }
        out[len] = window as u8;
        out[len + 1] = used as u8;
        out[len + 2..len + 2 + used].copy_from_slice(&bits[..used]);
        len += 2 + used;
    }
    len
}

/// An NSEC type bitmap (RFC 4034 §4.1.2) of `types`.
pub(crate) fn type_bitmap(types: &[u16]) -> Vec<u8> {
    let mut types = types.to_vec();
    // At most 256 windows of 2 + 32 octets.
    let mut out = vec![0u8; 256 * 34];
    let n = type_bitmap_into(&mut types, &mut out);
    out.truncate(n);
    out
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A record of `rtype` with opaque RDATA.
pub(crate) fn opaque(owner: Name, rtype: RecordType, ttl: u32, rdata: Vec<u8>) -> Record {
    Record::from_rdata(
        owner,
        ttl,
        RData::Unknown {
            code: rtype,
            rdata: NULL::with(rdata),
        },
    )
}

impl ZoneSigner {
    /// A signer for zone `apex` with `keys` (at least one, all of this zone; the caller has
    /// read and checked them), caching up to `cache_slots` signed RRsets. The keys' timing
    /// metadata is read now: published keys are in the DNSKEY RRset, active ones sign.
    pub fn new(
        apex: &Name,
        keys: &[Key],
        timing: Timing,
        cache_slots: usize,
    ) -> Result<Self, String> {
        let now = unix(SystemTime::now());
        let published: Vec<&Key> = keys.iter().filter(|k| k.times.published(now)).collect();
        if published.is_empty() {
            return Err(format!("no published key for {apex}"));
        }
        let rng = SystemRandom::new();
        let mut signing = Vec::with_capacity(keys.len());
        for k in published.iter().filter(|k| k.times.active(now)) {
            let pair = match k.algorithm {
                Algorithm::EcdsaP256Sha256 => {
                    let mut point = vec![0x04];
                    point.extend_from_slice(&k.public);
                    Pair::Ecdsa(
                        EcdsaKeyPair::from_private_key_and_public_key(
                            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                            &k.private,
                            &point,
                            &rng,
                        )
                        .map_err(|_| format!("key {} does not make a key pair", k.tag()))?,
                    )
                }
                Algorithm::Ed25519 => Pair::Ed25519(
                    Ed25519KeyPair::from_seed_and_public_key(&k.private, &k.public)
                        .map_err(|_| format!("key {} does not make a key pair", k.tag()))?,
                ),
            };
            signing.push(SigningKey {
                tag: k.tag(),
                algorithm: k.algorithm,
                ksk: k.flags == FLAGS_KSK,
                pair,
            });
        }
        let ksks: Vec<&Key> = published
            .iter()
            .copied()
            .filter(|k| k.flags == FLAGS_KSK)
            .collect();
        if !signing.iter().any(|k| k.ksk) {
            return Err(format!(
                "no active key of {apex} has flags 257 (a KSK or CSK) to sign its DNSKEY RRset"
            ));
        }
        let split = signing.iter().any(|k| !k.ksk);
        let mut cds = Vec::new();
        for k in &ksks {
            let mut r = Vec::with_capacity(36);
            r.extend_from_slice(&k.tag().to_be_bytes());
            r.push(k.algorithm.number());
            r.push(2);
            r.extend_from_slice(&k.ds_sha256());
            cds.push(r);
        }
        Ok(Self {
            apex: apex.to_lowercase(),
            apex_wire: canonical_wire(apex),
            keys: signing,
            split,
            dnskey: published.iter().map(|k| k.dnskey_rdata()).collect(),
            cdnskey: ksks.iter().map(|k| k.dnskey_rdata()).collect(),
            cds,
            timing,
            rng,
            cache: SigCache::new(cache_slots),
            made: std::sync::atomic::AtomicU64::new(0),
            presigned: std::sync::atomic::AtomicU64::new(0),
            static_expiry: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The zone's apex.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// The signature cache (hits and misses, for metrics and tests).
    pub fn cache(&self) -> &SigCache {
        &self.cache
    }

    /// The RRSIGs of the RRset of `owner_wire` (canonical wire form, `labels` labels),
    /// `rtype` and `ttl` whose canonical RDATA are `rdatas` (any order; sorted here): from
    /// the cache, or signed now and cached. No allocation on a hit for keys up to 1 KiB.
    pub fn cached(
        &self,
        owner_wire: &[u8],
        labels: u8,
        rtype: RecordType,
        ttl: u32,
        rdatas: &mut [&[u8]],
        now: SystemTime,
    ) -> Option<Arc<Cached>> {
        self.cached_for(Lookup::Query, owner_wire, labels, rtype, ttl, rdatas, now)
    }

    /// [`cached`](Self::cached) for a query (counted as a hit or a miss) or for pre-signing
    /// (not counted; what it signs counts as pre-signed).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn cached_for(
        &self,
        lookup: Lookup,
        owner_wire: &[u8],
        labels: u8,
        rtype: RecordType,
        ttl: u32,
        rdatas: &mut [&[u8]],
        now: SystemTime,
    ) -> Option<Arc<Cached>> {
        rdatas.sort_unstable();
        let mut stack = [0u8; 1024];
        let mut heap = Vec::new();
        let need = owner_wire.len() + 6 + rdatas.iter().map(|r| 2 + r.len()).sum::<usize>();
        let buf: &mut [u8] = if need <= stack.len() {
            &mut stack[..need]
        } else {
            heap.resize(need, 0);
            &mut heap
        };
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(owner_wire);
        put(&u16::from(rtype).to_be_bytes());
        put(&ttl.to_be_bytes());
        let mut prev: Option<&[u8]> = None;
        for r in rdatas.iter() {
            if prev == Some(*r) {
                continue;
            }
            put(&(r.len() as u16).to_be_bytes());
            put(r);
            prev = Some(r);
        }
        let key = &buf[..at];
        let t = unix(now);
        if let Some(c) = self.cache.get(key, t, lookup == Lookup::Query) {
            return Some(c);
        }
        let mut unique: Vec<&[u8]> = rdatas.to_vec();
        unique.dedup();
        let sigs = self.sign_wire(owner_wire, labels, rtype, 1, &unique, ttl, now);
        if sigs.is_empty() {
            return None;
        }
        if lookup == Lookup::Warm {
            self.presigned
                .fetch_add(sigs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        let fresh = self.timing.validity.saturating_sub(self.timing.jitter) / 2;
        Some(self.cache.put(key, t + fresh.as_secs(), sigs))
    }

    /// Whether `other` signs exactly as this one does: the same zone, timing, DNSKEY RRset
    /// and signing keys (tag, algorithm, role). Then their signatures are interchangeable.
    pub(crate) fn same_keys(&self, other: &ZoneSigner) -> bool {
        let ids = |s: &ZoneSigner| -> Vec<(u16, u8, bool)> {
            s.keys
                .iter()
                .map(|k| (k.tag, k.algorithm.number(), k.ksk))
                .collect()
        };
        self.apex == other.apex
            && self.timing == other.timing
            && self.split == other.split
            && self.dnskey == other.dnskey
            && ids(self) == ids(other)
    }

    /// After a reload: take the cached signatures of `old`, the signer this one replaces,
    /// when it signs with the same keys (none otherwise: a rollover step changed them).
    /// Returns how many entries.
    pub(crate) fn adopt_cache(&self, old: &ZoneSigner) -> usize {
        if self.same_keys(old) {
            self.cache.adopt(&old.cache)
        } else {
            0
        }
    }

    /// The timing it signs with.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The key RRsets to publish at the apex with `ttl`: DNSKEY (every key), CDNSKEY and CDS
    /// (the KSKs: RFC 7344, so the parent can follow a KSK rollover).
    pub fn key_rrsets(&self, ttl: u32) -> Vec<(RecordType, Vec<Record>)> {
        let set = |t: RecordType, rdatas: &[Vec<u8>]| {
            (
                t,
                rdatas
                    .iter()
                    .map(|r| opaque(self.apex.clone(), t, ttl, r.clone()))
                    .collect(),
            )
        };
        vec![
            set(RecordType::DNSKEY, &self.dnskey),
            set(RecordType::CDNSKEY, &self.cdnskey),
            set(RecordType::CDS, &self.cds),
        ]
    }

    /// RRSIGs (one per signing key) over the RRset `records` (one owner, type and class),
    /// owned by `owner` with `ttl` as their TTL and original TTL, valid from `now` (less the
    /// inception offset) for the validity less a jitter spread by owner and type.
    pub fn sign(
        &self,
        owner: &Name,
        records: &[&Record],
        ttl: u32,
        now: SystemTime,
    ) -> Vec<Record> {
        let Some(first) = records.first() else {
            return Vec::new();
        };
        let rtype = first.record_type();
        let mut rdatas: Vec<Vec<u8>> = records.iter().map(|r| canonical_rdata(r)).collect();
        self.sign_rdatas(
            owner,
            rtype,
            u16::from(first.dns_class),
            &mut rdatas,
            ttl,
            now,
        )
    }

    /// [`sign`](Self::sign) over RDATA already in canonical form (class IN unless given).
    pub(crate) fn sign_rdatas(
        &self,
        owner: &Name,
        rtype: RecordType,
        class: u16,
        rdatas: &mut Vec<Vec<u8>>,
        ttl: u32,
        now: SystemTime,
    ) -> Vec<Record> {
        // RFC 4034 §6.3: the RRs sorted by canonical RDATA, duplicates removed.
        rdatas.sort();
        rdatas.dedup();
        let refs: Vec<&[u8]> = rdatas.iter().map(Vec::as_slice).collect();
        self.sign_wire(
            &canonical_wire(owner),
            owner.num_labels(),
            rtype,
            class,
            &refs,
            ttl,
            now,
        )
        .into_iter()
        .map(|rdata| opaque(owner.clone(), RecordType::RRSIG, ttl, rdata))
        .collect()
    }

    /// The RRSIG RDATA (one per signing key) over the RRset of `owner_wire` (canonical wire
    /// form, `labels` labels without a leading `*`) and `rtype` whose canonical RDATA are
    /// `rdatas`, sorted and without duplicates.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sign_wire(
        &self,
        owner_wire: &[u8],
        labels: u8,
        rtype: RecordType,
        class: u16,
        rdatas: &[&[u8]],
        ttl: u32,
        now: SystemTime,
    ) -> Vec<Vec<u8>> {
        let (inception, expiration) = self.window(owner_wire, rtype, now);
        let key_rrset = matches!(
            rtype,
            RecordType::DNSKEY | RecordType::CDNSKEY | RecordType::CDS
        );
        let mut out = Vec::new();
        for key in &self.keys {
            // KSKs sign the key RRsets; ZSKs the rest; a CSK (no ZSK beside it) everything.
            let signs = if key_rrset {
                key.ksk
            } else {
                !key.ksk || !self.split
            };
            if !signs {
                continue;
            }
            let mut rdata = Vec::with_capacity(18 + self.apex_wire.len() + 64);
            rdata.extend_from_slice(&u16::from(rtype).to_be_bytes());
            rdata.push(key.algorithm.number());
            rdata.push(labels);
            rdata.extend_from_slice(&ttl.to_be_bytes());
            rdata.extend_from_slice(&expiration.to_be_bytes());
            rdata.extend_from_slice(&inception.to_be_bytes());
            rdata.extend_from_slice(&key.tag.to_be_bytes());
            rdata.extend_from_slice(&self.apex_wire);
            // RFC 4034 §3.1.8.1: the RRSIG RDATA without the signature, then each RR.
            let mut data = rdata.clone();
            for r in rdatas.iter() {
                data.extend_from_slice(owner_wire);
                data.extend_from_slice(&u16::from(rtype).to_be_bytes());
                data.extend_from_slice(&class.to_be_bytes());
                data.extend_from_slice(&ttl.to_be_bytes());
                data.extend_from_slice(&(r.len() as u16).to_be_bytes());
                data.extend_from_slice(r);
            }
            let sig = match &key.pair {
                Pair::Ecdsa(p) => match p.sign(&self.rng, &data) {
                    Ok(s) => s.as_ref().to_vec(),
                    Err(_) => continue,
                },
                Pair::Ed25519(p) => p.sign(&data).as_ref().to_vec(),
            };
            rdata.extend_from_slice(&sig);
            out.push(rdata);
        }
        self.made
            .fetch_add(out.len() as u64, std::sync::atomic::Ordering::Relaxed);
        out
    }

    /// Signatures made so far.
    pub fn signatures_made(&self) -> u64 {
        self.made.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Signatures made by pre-signing so far.
    pub fn signatures_presigned(&self) -> u64 {
        self.presigned.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The earliest expiration of the zone's static signatures (Unix seconds; 0: not signed
    /// yet).
    pub fn static_expiry(&self) -> u64 {
        self.static_expiry
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Note that the zone's static data was signed at `now`: its earliest expiration is the
    /// validity less the whole jitter from then.
    pub(crate) fn note_signed(&self, now: SystemTime) {
        let t = unix(now)
            + self
                .timing
                .validity
                .saturating_sub(self.timing.jitter)
                .as_secs();
        self.static_expiry
            .store(t, std::sync::atomic::Ordering::Relaxed);
    }

    /// (inception, expiration) in RRSIG serial time for an RRset of `owner` and `rtype`
    /// signed at `now`: the expiration less a jitter that owner and type pick.
    fn window(&self, owner: &[u8], rtype: RecordType, now: SystemTime) -> (u32, u32) {
        let t = unix(now);
        let inception = t.saturating_sub(self.timing.inception_offset.as_secs());
        let jitter = self.timing.jitter.as_secs();
        let spread = if jitter == 0 {
            0
        } else {
            // FNV-1a over owner and type: stable for an RRset, spread across RRsets.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in owner.iter().chain(&u16::from(rtype).to_be_bytes()) {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
            h % jitter
        };
        let expiration = t + self.timing.validity.as_secs() - spread.min(jitter);
        // RFC 4034 §3.1.5: serial number arithmetic modulo 2^32.
        (inception as u32, expiration as u32)
    }

    /// The compact-denial NSEC at `owner` (RFC 9824): next name `\000.owner`, the `types`
    /// present there plus RRSIG and NSEC; with `ttl` (the zone's negative TTL, RFC 9077).
    pub fn nsec(&self, owner: &Name, types: &[u16], ttl: u32) -> Record {
        let mut rdata = vec![1, 0];
        rdata.extend_from_slice(&canonical_wire(owner));
        let mut all = types.to_vec();
        all.push(u16::from(RecordType::RRSIG));
        all.push(u16::from(RecordType::NSEC));
        rdata.extend_from_slice(&type_bitmap(&all));
        opaque(owner.clone(), RecordType::NSEC, ttl, rdata)
    }

    /// [`signed_nsec`](Self::signed_nsec) through the signature cache: a denial asked
    /// again (the same name, a resolver retrying) is not signed again.
    pub fn cached_nsec(
        &self,
        owner: &Name,
        types: &[u16],
        ttl: u32,
        now: SystemTime,
    ) -> Vec<Record> {
        let nsec = self.nsec(owner, types, ttl);
        let RData::Unknown { rdata, .. } = &nsec.data else {
            return Vec::new();
        };
        let mut one: [&[u8]; 1] = [&rdata.anything];
        let sigs = self.cached(
            &canonical_wire(owner),
            owner.num_labels(),
            RecordType::NSEC,
            ttl,
            &mut one,
            now,
        );
        let mut out = vec![nsec.clone()];
        if let Some(c) = sigs {
            out.extend(
                c.rrsigs
                    .iter()
                    .map(|r| opaque(owner.clone(), RecordType::RRSIG, ttl, r.to_vec())),
            );
        }
        out
    }

    /// The NSEC at `owner` with `types` and its RRSIGs, signed at `now`.
    pub fn signed_nsec(
        &self,
        owner: &Name,
        types: &[u16],
        ttl: u32,
        now: SystemTime,
    ) -> Vec<Record> {
        let nsec = self.nsec(owner, types, ttl);
        let mut sigs = self.sign(owner, &[&nsec], ttl, now);
        sigs.insert(0, nsec);
        sigs
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_follow_rfc_4034() {
        // RFC 4034 §4.3's example: A MX RRSIG NSEC TYPE1234.
        let b = type_bitmap(&[1, 15, 46, 47, 1234]);
        assert_eq!(
            b,
            [
                0x00, 0x06, 0x40, 0x01, 0x00, 0x00, 0x00, 0x03, 0x04, 0x1b, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20
            ]
        );
        let mut out = [0u8; 64];
        let mut types = [1234, 47, 46, 15, 1];
        let n = type_bitmap_into(&mut types, &mut out);
        assert_eq!(&out[..n], &b[..]);
        // NXNAME (128) lands in window 0, octet 16.
        let b = type_bitmap(&[46, 47, NXNAME]);
        assert_eq!(&b[..2], &[0, 17]);
        assert_eq!(b[2 + 16], 0x80);
    }

    #[test]
    fn signatures_verify_with_the_public_key() {
        for alg in [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519] {
            let key = Key::generate("example.", FLAGS_KSK, alg).unwrap();
            let apex = Name::from_ascii("example.").unwrap();
            let s = ZoneSigner::new(&apex, std::slice::from_ref(&key), Timing::default(), 1024)
                .unwrap();
            let owner = Name::from_ascii("WWW.example.").unwrap();
            let a = Record::from_rdata(owner.clone(), 300, RData::A("192.0.2.1".parse().unwrap()));
            let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            let sigs = s.sign(&owner, &[&a], 300, now);
            assert_eq!(sigs.len(), 1);
            let RData::Unknown { rdata, .. } = &sigs[0].data else {
                panic!()
            };
            let r = &rdata.anything;
            assert_eq!(u16::from_be_bytes([r[0], r[1]]), 1, "covers A");
            assert_eq!(r[3], 2, "labels");
            let exp = u32::from_be_bytes([r[8], r[9], r[10], r[11]]);
            let inc = u32::from_be_bytes([r[12], r[13], r[14], r[15]]);
            assert_eq!(inc, 1_800_000_000 - 3_600);
            assert!(exp <= 1_800_000_000 + 14 * 86_400 && exp > 1_800_000_000 + 13 * 86_400);
            assert_eq!(u16::from_be_bytes([r[16], r[17]]), key.tag());
            let signer_end = 18 + 9;
            assert_eq!(&r[18..signer_end], b"\x07example\x00");
            // What was signed, rebuilt by hand: RDATA less the signature, then the RR with
            // the owner lower-cased.
            let mut data = r[..signer_end].to_vec();
            data.extend_from_slice(b"\x03www\x07example\x00\x00\x01\x00\x01");
            data.extend_from_slice(&300u32.to_be_bytes());
            data.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
            let (alg_v, point): (&dyn signature::VerificationAlgorithm, Vec<u8>) = match alg {
                Algorithm::EcdsaP256Sha256 => (&signature::ECDSA_P256_SHA256_FIXED, {
                    let mut p = vec![4];
                    p.extend_from_slice(&key.public);
                    p
                }),
                Algorithm::Ed25519 => (&signature::ED25519, key.public.clone()),
            };
            signature::UnparsedPublicKey::new(alg_v, &point)
                .verify(&data, &r[signer_end..])
                .unwrap();
        }
    }

    #[test]
    fn a_zsk_signs_the_data_and_the_ksk_the_keys() {
        let ksk = Key::generate("example.", FLAGS_KSK, Algorithm::EcdsaP256Sha256).unwrap();
        let zsk = Key::generate("example.", 256, Algorithm::EcdsaP256Sha256).unwrap();
        let apex = Name::from_ascii("example.").unwrap();
        let s =
            ZoneSigner::new(&apex, &[ksk.clone(), zsk.clone()], Timing::default(), 1024).unwrap();
        let tag_of = |r: &Record| {
            let RData::Unknown { rdata, .. } = &r.data else {
                panic!()
            };
            u16::from_be_bytes([rdata.anything[16], rdata.anything[17]])
        };
        let now = SystemTime::now();
        let keys = s.key_rrsets(3600);
        let dnskey: Vec<&Record> = keys[0].1.iter().collect();
        assert_eq!(dnskey.len(), 2);
        let sigs = s.sign(&apex, &dnskey, 3600, now);
        assert_eq!(sigs.iter().map(tag_of).collect::<Vec<_>>(), [ksk.tag()]);
        let nsec = s.signed_nsec(&apex, &[1], 60, now);
        assert_eq!(nsec.len(), 2);
        assert_eq!(tag_of(&nsec[1]), zsk.tag());
        // CDS and CDNSKEY: the KSK only.
        assert_eq!((keys[1].1.len(), keys[2].1.len()), (1, 1));
        // A ZSK alone cannot sign the DNSKEY RRset.
        assert!(ZoneSigner::new(&apex, &[zsk], Timing::default(), 1024).is_err());
    }
}
