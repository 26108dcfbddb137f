//! DNSSEC signing costs: one ECDSA P-256 and one Ed25519 signature over a steered A RRset
//! (what a cache miss costs per signing key), and a cache hit (what every later answer costs).
//! Signatures per second per core follow: 1 / (time per signature). And the walk of a full
//! signature cache that each pre-signing round starts with.
//!
//! `cargo bench --bench signing -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::rr::{Name, RecordType};
use steerdns::dnssec::cache::SigCache;
use steerdns::dnssec::sign::{Timing, ZoneSigner, canonical_wire};
use steerdns::dnssec::{Algorithm, FLAGS_KSK, Key};

fn signing(c: &mut Criterion) {
    let apex = Name::from_ascii("registry.example.").unwrap();
    let owner = Name::from_ascii("contoso.registry.example.").unwrap();
    let wire = canonical_wire(&owner);
    for (label, alg) in [
        ("ecdsa-p256", Algorithm::EcdsaP256Sha256),
        ("ed25519", Algorithm::Ed25519),
    ] {
        let key = Key::generate("registry.example.", FLAGS_KSK, alg).unwrap();
        // A cache of the minimum size: every iteration below asks for a new RRset (a miss).
        let signer = ZoneSigner::new(&apex, &[key], Timing::default(), 1024).unwrap();
        // The cached signatures of the steered A RRset holding `addr`.
        let ask = |addr: [u8; 4]| {
            let mut rdatas: [&[u8]; 1] = [&addr];
            black_box(signer.cached(&wire, 3, RecordType::A, 5, &mut rdatas, SystemTime::now()))
        };
        let mut n: u32 = 0;
        c.bench_function(
            &format!("sign a steered A RRset (cache miss), {label}"),
            |b| {
                b.iter(|| {
                    n = n.wrapping_add(1);
                    ask(n.to_be_bytes())
                })
            },
        );
        c.bench_function(
            &format!("a cached steered A RRset (cache hit), {label}"),
            |b| b.iter(|| ask([192, 0, 2, 10])),
        );
    }
}

/// The floor of a pre-signing round (`src/dnssec/warm.rs`): a walk of every slot of the
/// default-sized signature cache, full, reading each entry's owner. Independent of the
/// registry count; the signatures it then makes cost what a miss costs, above.
fn presign_walk(c: &mut Criterion) {
    let slots = 262_144;
    let cache = SigCache::new(slots);
    for i in 0..slots as u32 {
        let mut key = canonical_wire(&Name::from_ascii(format!("r{i}.registry.example.")).unwrap());
        key.extend_from_slice(&[0, 1, 0, 0, 0, 5, 0, 4]);
        key.extend_from_slice(&i.to_be_bytes());
        cache.put(&key, u64::MAX, vec![vec![0; 64]]);
    }
    c.bench_function("walk a full signature cache of 262 144 slots", |b| {
        b.iter(|| black_box(cache.entries().map(|e| e.owner().len()).sum::<usize>()))
    });
}

criterion_group!(benches, signing, presign_walk);
criterion_main!(benches);
