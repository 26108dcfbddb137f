//! Ranking a registry's replicas for one [`Location`]: [`rank`] for the
//! answer path (no allocation) and [`explain`] for the CLI and admin API
//! (allocates; same ordering code).
//!
//! Order: lowest RTT first; replicas whose region has no RTT for this location
//! come after every replica with one, in default order; ties go to the earlier
//! region in the default order, then to the lower replica index.

use ipnet::IpNet;
use serde::Serialize;

use super::mask::{MAX_REPLICAS, ReplicaMask};
use super::regions::RegionId;
use super::{Basis, Location, RegionOrder, Schema};

/// Position of a replica in its registry's replica list.
pub type ReplicaIndex = u8;

//------------ Candidates -----------------------------------------------------

/// One replica as routing sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The region the replica runs in.
    pub region: RegionId,
}

/// A registry's replicas, at most [`MAX_REPLICAS`], stored inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidates {
    items: [Candidate; MAX_REPLICAS],
    len: u8,
    /// Default-order position per replica when the registry overrides the
    /// server-wide default order.
    positions: Option<[u16; MAX_REPLICAS]>,
}

/// A registry has more than [`MAX_REPLICAS`] replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} replicas; a registry may have at most 64")]
pub struct TooManyReplicas(pub usize);

impl Candidates {
    /// The replicas in registry order (replica index = position).
    pub fn new(items: &[Candidate]) -> Result<Self, TooManyReplicas> {
        if items.len() > MAX_REPLICAS {
            return Err(TooManyReplicas(items.len()));
        }
        let mut c = Self {
            items: [Candidate {
                region: RegionId(0),
            }; MAX_REPLICAS],
            len: items.len() as u8, // <= 64, checked above
            positions: None,
        };
        c.items[..items.len()].copy_from_slice(items);
        Ok(c)
    }

    /// Like [`Candidates::new`], for a registry with its own default order
    /// (it replaces the server-wide one when RTTs tie or are unknown).
    pub(crate) fn with_order(
        items: &[Candidate],
        order: &RegionOrder,
    ) -> Result<Self, TooManyReplicas> {
        let mut c = Self::new(items)?;
        let mut positions = [u16::MAX; MAX_REPLICAS];
        for (p, item) in positions.iter_mut().zip(items) {
            *p = order.position(item.region);
        }
        c.positions = Some(positions);
        Ok(c)
    }

    /// Default-order position of replica `i` for `location`.
    fn position(&self, location: &Location<'_>, i: usize) -> u16 {
        match &self.positions {
            Some(p) => p[i],
            None => location.default_position(self.items[i].region),
        }
    }

    /// No replicas.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of replicas.
    pub(crate) fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// The replicas.
    pub(crate) fn as_slice(&self) -> &[Candidate] {
        &self.items[..self.len()]
    }

    /// Every replica.
    pub fn all(&self) -> ReplicaMask {
        ReplicaMask::first(self.len())
    }
}

//------------ Ordering -------------------------------------------------------

const KEY_UNROUTABLE: u64 = 1 << 63;
const KEY_NO_RTT: u64 = 1 << 56;

/// The sort key of one replica: `[no-rtt flag | rtt ms | default position |
/// replica index]`, so that comparing keys is the documented order and the
/// index can be read back from the low byte.
fn key(location: &Location<'_>, candidates: &Candidates, i: usize) -> u64 {
    let region = candidates.items[i].region;
    let index = i as u64; // < 64
    let order = (u64::from(candidates.position(location, i)) << 8) | index;
    match location.rtt_ms(region) {
        Some(rtt) => (u64::from(rtt) << 24) | order,
        None => KEY_NO_RTT | order,
    }
}

/// Fill `keys` with the sorted keys of the replicas selected by `mask`
/// (all replicas when `with_unroutable`, unroutable ones sorted last).
fn sorted_keys(
    location: &Location<'_>,
    candidates: &Candidates,
    mask: ReplicaMask,
    with_unroutable: bool,
    keys: &mut [u64; MAX_REPLICAS],
) -> usize {
    let mut k = 0;
    for i in 0..candidates.len() {
        let routable = mask.contains(i);
        if !routable && !with_unroutable {
            continue;
        }
        let flag = if routable { 0 } else { KEY_UNROUTABLE };
        keys[k] = key(location, candidates, i) | flag;
        k += 1;
    }
    keys[..k].sort_unstable();
    k
}

/// Write the best `n` routable replicas for `location` into `out`, best
/// first, and return how many were written (`min(n, routable count)`).
///
/// `routable` has bit `i` set when replica `i` may be answered. When it
/// selects none, this returns 0 and the caller applies its fail-open rule
/// (typically: call again with [`Candidates::all`]). No allocation.
pub fn rank(
    location: &Location<'_>,
    candidates: &Candidates,
    routable: ReplicaMask,
    n: usize,
    out: &mut [ReplicaIndex; MAX_REPLICAS],
) -> usize {
    if n == 1 {
        // The common `answers = 1`: the least key in one pass, no key array to clear and
        // sort. Keys are distinct (the replica index is in the low bits), so this is the
        // first of the full ranking.
        let best = (0..candidates.len())
            .filter(|&i| routable.contains(i))
            .map(|i| key(location, candidates, i))
            .min();
        return match best {
            Some(key) => {
                out[0] = (key & 0xff) as ReplicaIndex;
                1
            }
            None => 0,
        };
    }
    let mut keys = [0u64; MAX_REPLICAS];
    let k = sorted_keys(location, candidates, routable, false, &mut keys);
    let m = k.min(n);
    for (o, key) in out.iter_mut().zip(&keys[..m]) {
        *o = (key & 0xff) as ReplicaIndex;
    }
    m
}

//------------ Explain --------------------------------------------------------

/// A full ranking for `steerdns explain` and the admin API.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    /// Which layer decided.
    pub(crate) basis: Basis,
    /// The latency-table prefix or mmdb network that decided (or, for the
    /// default basis, the mmdb network that had no coordinates).
    pub(crate) network: Option<IpNet>,
    /// The metrics label (table label, or country / continent code).
    pub(crate) label: Option<String>,
    /// The ECS scope prefix the answer carries.
    pub(crate) scope_prefix: u8,
    /// The geo database consulted, when the latency table did not decide.
    pub(crate) geo: Option<GeoExplanation>,
    /// Every replica, routable ones first in answer order, then the others
    /// in the order they would have had.
    pub(crate) replicas: Vec<ExplainRow>,
}

/// What the geo database said about the client.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct GeoExplanation {
    /// The file (the one serving the client's family).
    pub(crate) database: String,
    /// Its detected schema.
    pub(crate) schema: Schema,
    /// The database network the client fell in (also when it had no data).
    pub(crate) network: Option<IpNet>,
    /// The record's latitude in degrees (rounded to 4 decimals, about 11 m),
    /// when it had coordinates.
    pub(crate) latitude: Option<f64>,
    /// The record's longitude, likewise.
    pub(crate) longitude: Option<f64>,
}

/// One replica in an [`Explanation`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExplainRow {
    /// The replica's index in its registry.
    pub(crate) replica: ReplicaIndex,
    /// Its region.
    pub(crate) region: RegionId,
    /// The region's name.
    pub(crate) region_name: String,
    /// RTT for this location (measured for the table basis, estimated for geo).
    pub(crate) rtt_ms: Option<u32>,
    /// Great-circle distance from the client's coordinates to the region, km
    /// (rounded to 0.1 km; geo basis only). `rtt_ms` is estimated from it.
    pub distance_km: Option<f64>,
    /// Whether `routable` selected it.
    pub routable: bool,
}

/// Rank every replica for `location` and say why; allocates.
pub fn explain(
    location: &Location<'_>,
    candidates: &Candidates,
    routable: ReplicaMask,
) -> Explanation {
    let mut keys = [0u64; MAX_REPLICAS];
    let k = sorted_keys(location, candidates, routable, true, &mut keys);
    let regions = location.regions();
    let replicas = keys[..k]
        .iter()
        .map(|key| {
            let replica = (key & 0xff) as ReplicaIndex;
            let region = candidates.as_slice()[usize::from(replica)].region;
            ExplainRow {
                replica,
                region,
                region_name: regions.name(region).to_owned(),
                rtt_ms: location.rtt_ms(region),
                distance_km: location.distance_km(region).map(|d| round_to(d, 10.0)),
                routable: key & KEY_UNROUTABLE == 0,
            }
        })
        .collect();
    Explanation {
        basis: location.basis,
        network: location.network,
        label: location.label.map(str::to_owned),
        scope_prefix: location.scope_prefix,
        geo: location.geo_db.map(|db| {
            let point = location.point();
            GeoExplanation {
                database: db.source().to_owned(),
                schema: db.schema(),
                network: location.network,
                latitude: point.map(|p| round_to(p.0, 1e4)),
                longitude: point.map(|p| round_to(p.1, 1e4)),
            }
        }),
        replicas,
    }
}

/// Round to `1 / per_unit` (explain output; float32 coordinates read back
/// as 52.37, not 52.369998931884766).
fn round_to(v: f64, per_unit: f64) -> f64 {
    (v * per_unit).round() / per_unit
}

//------------ Tests ----------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::{client, flat_locator, locator};
    use super::super::{distance_km, estimate_rtt_ms};
    use super::*;

    fn cands(regions: &[u16]) -> Candidates {
        let v: Vec<Candidate> = regions
            .iter()
            .map(|&r| Candidate {
                region: RegionId(r),
            })
            .collect();
        Candidates::new(&v).unwrap()
    }

    fn ranked(loc: &Location<'_>, c: &Candidates, mask: u64, n: usize) -> Vec<u8> {
        let mut out = [0; MAX_REPLICAS];
        let k = rank(loc, c, ReplicaMask::from_bits(mask), n, &mut out);
        out[..k].to_vec()
    }

    #[test]
    fn lowest_rtt_wins_and_n_limits() {
        // regions: 0 westeurope, 1 eastus, 2 southeastasia.
        let l = locator(true, false);
        // 10.1.2.7 -> 10.1.2.0/24: eastus 5, westeurope 30, southeastasia 200.
        let loc = l.locate(client("10.1.2.7"));
        assert_eq!(loc.basis, Basis::LatencyTable);
        let c = cands(&[0, 1, 2]);
        assert_eq!(ranked(&loc, &c, c.all().bits(), 3), [1, 0, 2]);
        assert_eq!(ranked(&loc, &c, c.all().bits(), 1), [1]);
        // n larger than the replica count returns them all.
        assert_eq!(ranked(&loc, &c, c.all().bits(), 10), [1, 0, 2]);
        assert_eq!(ranked(&loc, &c, c.all().bits(), 0), Vec::<u8>::new());
    }

    #[test]
    fn the_best_one_is_the_first_of_the_full_ranking() {
        let l = locator(true, false);
        let c = cands(&[0, 1, 2, 1, 0, 2, 2]);
        for ip in [
            "10.1.2.7",
            "10.9.9.9",
            "192.0.2.1",
            "2001:db8::1",
            "127.0.0.1",
        ] {
            let loc = l.locate(client(ip));
            for mask in 0..(1u64 << 7) {
                let all = ranked(&loc, &c, mask, MAX_REPLICAS);
                let one = ranked(&loc, &c, mask, 1);
                assert_eq!(
                    one,
                    all.first().copied().into_iter().collect::<Vec<_>>(),
                    "{ip} {mask:b}"
                );
            }
        }
    }

    #[test]
    fn routable_mask_filters() {
        let l = locator(true, false);
        let loc = l.locate(client("10.1.2.7"));
        let c = cands(&[0, 1, 2]);
        assert_eq!(ranked(&loc, &c, 0b101, 3), [0, 2]);
        assert_eq!(ranked(&loc, &c, 0b100, 3), [2]);
        assert_eq!(ranked(&loc, &c, 0, 3), Vec::<u8>::new());
        // Bits past the replica count are ignored.
        assert_eq!(ranked(&loc, &c, u64::MAX << 3, 3), Vec::<u8>::new());
        assert_eq!(ranked(&loc, &cands(&[]), u64::MAX, 3), Vec::<u8>::new());
    }

    #[test]
    fn ties_and_unknown_rtts() {
        let l = locator(true, false);
        // 10.9.9.9 -> 10.0.0.0/8: westeurope 10, eastus 90, southeastasia unknown.
        let loc = l.locate(client("10.9.9.9"));
        // Two replicas in the same region tie: lower index first. The
        // unknown-RTT region goes last.
        let c = cands(&[2, 1, 0, 0]);
        assert_eq!(ranked(&loc, &c, c.all().bits(), 4), [2, 3, 1, 0]);

        // Equal RTTs: earlier default-order region first (default order is
        // southeastasia, eastus, westeurope in this locator).
        let loc = l.locate(client("10.3.0.1")); // 10.3.0.0/16: all three 50
        assert_eq!(loc.network.unwrap().to_string(), "10.3.0.0/16");
        let c = cands(&[0, 1, 2]);
        assert_eq!(ranked(&loc, &c, c.all().bits(), 3), [2, 1, 0]);

        // Default basis: pure default order, then index.
        let loc = l.locate(client("172.16.0.1"));
        assert_eq!(loc.basis, Basis::DefaultOrder);
        let c = cands(&[0, 0, 1, 2]);
        assert_eq!(ranked(&loc, &c, c.all().bits(), 4), [3, 2, 0, 1]);
    }

    #[test]
    fn registry_default_order_overrides_the_server_one() {
        let l = locator(true, false);
        let order = RegionOrder::new(l.regions(), &["westeurope", "southeastasia"]).unwrap();
        let c = Candidates::with_order(
            &[0u16, 1, 2].map(|r| Candidate {
                region: RegionId(r),
            }),
            &order,
        )
        .unwrap();
        // Default basis: westeurope, southeastasia, then eastus (unlisted).
        let loc = l.locate(client("172.16.0.1"));
        assert_eq!(ranked(&loc, &c, c.all().bits(), 3), [0, 2, 1]);
        // Equal RTTs (10.3.0.0/16): the registry's order breaks the tie.
        let loc = l.locate(client("10.3.0.1"));
        assert_eq!(ranked(&loc, &c, c.all().bits(), 3), [0, 2, 1]);
        let e = explain(&loc, &c, c.all());
        let order: Vec<u8> = e.replicas.iter().map(|r| r.replica).collect();
        assert_eq!(order, [0, 2, 1]);
        // Lowest RTT still wins over any order.
        let loc = l.locate(client("10.1.2.7"));
        assert_eq!(ranked(&loc, &c, c.all().bits(), 1), [1]);
    }

    #[test]
    fn candidates_limit_is_enforced() {
        let many = vec![
            Candidate {
                region: RegionId(0)
            };
            65
        ];
        assert_eq!(Candidates::new(&many).unwrap_err(), TooManyReplicas(65));
        let c = Candidates::new(&many[..64]).unwrap();
        assert_eq!(c.all().bits(), u64::MAX);
        assert_eq!(c.len(), 64);
        assert!(cands(&[]).is_empty());
        assert_eq!(cands(&[]).all(), ReplicaMask::EMPTY);
        let l = locator(false, false);
        let loc = l.locate(client("192.0.2.1"));
        let mut out = [0; MAX_REPLICAS];
        assert_eq!(rank(&loc, &c, c.all(), 64, &mut out), 64);
        assert_eq!(out[63], 63);
    }

    #[test]
    fn explain_uses_the_same_order() {
        let l = locator(true, false);
        let loc = l.locate(client("10.9.9.9"));
        let c = cands(&[2, 1, 0, 0]);
        let e = explain(&loc, &c, ReplicaMask::from_bits(0b1011));
        assert_eq!(e.basis, Basis::LatencyTable);
        assert_eq!(e.network.unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(e.scope_prefix, 13);
        assert_eq!(e.label.as_deref(), Some("NL"));
        let order: Vec<(u8, bool)> = e.replicas.iter().map(|r| (r.replica, r.routable)).collect();
        assert_eq!(order, [(3, true), (1, true), (0, true), (2, false)]);
        assert_eq!(e.replicas[0].region_name, "westeurope");
        assert_eq!(e.replicas[0].rtt_ms, Some(10));
        assert_eq!(e.replicas[2].rtt_ms, None);
        // The routable prefix of the explanation is what `rank` answers.
        let routable: Vec<u8> = e
            .replicas
            .iter()
            .filter(|r| r.routable)
            .map(|r| r.replica)
            .collect();
        assert_eq!(ranked(&loc, &c, 0b1011, 64), routable);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["basis"], "latency_table");
        assert_eq!(json["network"], "10.0.0.0/8");
    }

    #[test]
    fn explain_shows_the_geo_database_coordinates_and_distances() {
        // Nested: the combined test file; flat: the IPv6 file of the pair.
        for (l, addr, file, schema, net, (lat, lon)) in [
            (
                locator(false, true),
                "192.0.2.7",
                "test.mmdb",
                Schema::Nested,
                "192.0.2.0/24",
                (52.37, 4.90),
            ),
            (
                flat_locator(),
                "2001:db8:a::1",
                "city-ipv6.mmdb",
                Schema::Flat,
                "2001:db8:a::/48",
                (-33.87, 151.21),
            ),
        ] {
            let loc = l.locate(client(addr));
            let c = cands(&[0, 1, 2]);
            let e = explain(&loc, &c, c.all());
            assert_eq!(e.basis, Basis::Geo);
            let g = e.geo.clone().expect("geo consulted");
            assert_eq!(g.database, file);
            assert_eq!(g.schema, schema);
            assert_eq!(g.network.unwrap().to_string(), net);
            // Rounded to 4 decimals: the float32 flat values read back as written.
            assert_eq!((g.latitude, g.longitude), (Some(lat), Some(lon)));
            for row in &e.replicas {
                let region = l.regions().get(row.region).unwrap();
                let (plat, plon) = loc.point().unwrap();
                let d = distance_km(plat, plon, region);
                assert_eq!(row.distance_km, Some((d * 10.0).round() / 10.0), "{addr}");
                assert_eq!(row.rtt_ms, Some(estimate_rtt_ms(d)), "{addr}");
            }
            // Nearest first.
            let d: Vec<f64> = e.replicas.iter().map(|r| r.distance_km.unwrap()).collect();
            assert!(d.windows(2).all(|w| w[0] <= w[1]), "{d:?}");
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(json["geo"]["database"], file);
            assert_eq!(json["geo"]["schema"], schema.as_str());
            assert_eq!(json["geo"]["network"], net);
            assert_eq!(json["geo"]["latitude"], lat);
            assert!(json["replicas"][0]["distance_km"].is_f64());
        }
        // Amsterdam -> westeurope (Amsterdam) is a few km: 5 ms.
        let l = locator(false, true);
        let e = explain(
            &l.locate(client("192.0.2.7")),
            &cands(&[0]),
            ReplicaMask::from_bits(1),
        );
        assert!(e.replicas[0].distance_km.unwrap() < 5.0);
        assert_eq!(e.replicas[0].rtt_ms, Some(5));

        // A record without coordinates: the database and network, no point,
        // no distances. The latency table deciding: no geo at all.
        let e = explain(
            &l.locate(client("203.0.113.1")),
            &cands(&[0, 1]),
            ReplicaMask::from_bits(0b11),
        );
        assert_eq!(e.basis, Basis::DefaultOrder);
        let g = e.geo.unwrap();
        assert_eq!(g.network.unwrap().to_string(), "203.0.113.0/24");
        assert_eq!((g.latitude, g.longitude), (None, None));
        assert!(e.replicas.iter().all(|r| r.distance_km.is_none()));
        let l = locator(true, true);
        assert!(
            explain(
                &l.locate(client("10.9.9.9")),
                &cands(&[0]),
                ReplicaMask::from_bits(1)
            )
            .geo
            .is_none()
        );
    }
}
