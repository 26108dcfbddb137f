//! Routing benchmarks: `locate` and `locate + rank` against a 100 000-prefix
//! latency table (random IPv4 /24s and IPv6 /48s) and 100 000 registries of
//! three replicas each.
//!
//! `cargo bench --bench routing -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use steerdns::routing::{
    BuiltinRegions, Candidate, Candidates, Client, LatencyTable, Locator, MAX_REPLICAS, RegionId,
    RegionSpec, rank, resolve_regions,
};

const PREFIXES: usize = 100_000;
const REGISTRIES: usize = 100_000;
const QUERIES: usize = 8192;
const REGIONS: [&str; 6] = [
    "westeurope",
    "eastus",
    "southeastasia",
    "westus2",
    "japaneast",
    "brazilsouth",
];

struct Setup {
    locator: Locator,
    registries: Vec<Candidates>,
    by_name: HashMap<String, usize>,
    /// (registry name, client) per query.
    queries: Vec<(String, Client)>,
}

fn setup() -> Setup {
    let mut rng = StdRng::seed_from_u64(7);
    let specs = REGIONS.map(|name| RegionSpec {
        name,
        ..Default::default()
    });
    let regions = resolve_regions(&specs, &BuiltinRegions::bundled()).unwrap();

    // Random /24s and /48s, three regions measured per prefix.
    let mut nets: HashSet<String> = HashSet::new();
    let mut v4: Vec<u32> = Vec::new();
    let mut v6: Vec<u128> = Vec::new();
    while nets.len() < PREFIXES {
        if nets.len().is_multiple_of(2) {
            let a = rng.random::<u32>() & 0xffff_ff00;
            if nets.insert(format!("{}/24", Ipv4Addr::from(a))) {
                v4.push(a);
            }
        } else {
            // Random /48s inside 2000::/4.
            let a = ((0x2u128 << 124) | (rng.random::<u128>() >> 4)) & (!0u128 << 80);
            if nets.insert(format!("{}/48", Ipv6Addr::from(a))) {
                v6.push(a);
            }
        }
    }
    let mut csv = String::with_capacity(PREFIXES * 3 * 40);
    for net in &nets {
        for _ in 0..3 {
            let r = REGIONS[rng.random_range(0..REGIONS.len())];
            let rtt = rng.random_range(1..300);
            csv.push_str(&format!("{net},{r},{rtt}\n"));
        }
    }
    // Drop duplicate (prefix, region) cells from the random draw.
    let mut seen = HashSet::new();
    let csv: String = csv
        .lines()
        .filter(|l| seen.insert(l.rsplit_once(',').unwrap().0.to_owned()))
        .map(|l| format!("{l}\n"))
        .collect();
    let table = LatencyTable::parse(&csv, "bench.csv", &regions).unwrap();
    assert_eq!(table.len(), PREFIXES);
    let locator = Locator::new(regions, Some(table), None, &REGIONS).unwrap();

    let mut registries = Vec::with_capacity(REGISTRIES);
    let mut by_name = HashMap::with_capacity(REGISTRIES);
    for i in 0..REGISTRIES {
        let c: Vec<Candidate> = (0..3)
            .map(|_| Candidate {
                region: RegionId(rng.random_range(0..REGIONS.len() as u16)),
            })
            .collect();
        registries.push(Candidates::new(&c).unwrap());
        by_name.insert(format!("r{i}.registry.example."), i);
    }

    // Half the clients inside a table prefix, half anywhere.
    let queries = (0..QUERIES)
        .map(|i| {
            let addr = match i % 4 {
                0 => IpAddr::V4(Ipv4Addr::from(
                    v4[rng.random_range(0..v4.len())] | rng.random_range(0..256),
                )),
                1 => IpAddr::V6(Ipv6Addr::from(
                    v6[rng.random_range(0..v6.len())] | rng.random_range(0..1u128 << 80),
                )),
                2 => IpAddr::V4(Ipv4Addr::from(rng.random::<u32>())),
                _ => IpAddr::V6(Ipv6Addr::from(
                    (0x2u128 << 124) | (rng.random::<u128>() >> 4),
                )),
            };
            let name = format!("r{}.registry.example.", rng.random_range(0..REGISTRIES));
            (name, Client::from_source(addr))
        })
        .collect();
    Setup {
        locator,
        registries,
        by_name,
        queries,
    }
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let mut i = 0usize;
    c.bench_function("locate", |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES;
            let loc = s.locator.locate(black_box(s.queries[i].1));
            black_box(loc.scope_prefix)
        })
    });
    let mut i = 0usize;
    c.bench_function("rank(n=3) only", |b| {
        let loc = s.locator.locate(s.queries[0].1);
        let mut out = [0u8; MAX_REPLICAS];
        b.iter(|| {
            i = (i + 1) % QUERIES;
            let reg = &s.registries[i];
            black_box(rank(black_box(&loc), reg, reg.all(), 3, &mut out))
        })
    });
    let table = s.locator.table().unwrap();
    let mut i = 0usize;
    c.bench_function("table lpm only", |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES;
            black_box(table.lookup(black_box(s.queries[i].1.addr)).is_some())
        })
    });
    let mut i = 0usize;
    c.bench_function("table scope only", |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES;
            black_box(table.scope(black_box(s.queries[i].1.addr), 24))
        })
    });
    let mut i = 0usize;
    c.bench_function("registry lookup + locate + rank(n=1)", |b| {
        let mut out = [0u8; MAX_REPLICAS];
        b.iter(|| {
            i = (i + 1) % QUERIES;
            let (name, client) = &s.queries[i];
            let reg = &s.registries[s.by_name[black_box(name.as_str())]];
            let loc = s.locator.locate(black_box(*client));
            let n = rank(&loc, reg, reg.all(), 1, &mut out);
            black_box((n, out[0], loc.scope_prefix))
        })
    });
    let mut i = 0usize;
    c.bench_function("locate + rank(n=3)", |b| {
        let mut out = [0u8; MAX_REPLICAS];
        b.iter(|| {
            i = (i + 1) % QUERIES;
            let reg = &s.registries[i % REGISTRIES];
            let loc = s.locator.locate(black_box(s.queries[i].1));
            black_box(rank(&loc, reg, reg.all(), 3, &mut out))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
