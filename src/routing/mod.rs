//! Pure replica selection: who is the client, how far is each region, which
//! replica wins.
//!
//! ```text
//!  Client { addr (canonical, masked), source_prefix }
//!     │
//!     ▼  Locator::locate            first hit wins
//!  1. latency table  (LPM over geo/latency.csv)      -> measured RTT per region
//!  2. mmdb City db   (the file of the client's family; lat/lon -> haversine
//!                     -> RTT estimate per region)
//!  3. default order  (no RTTs)
//!     │
//!     ▼  Location { basis, network, label, scope_prefix, rtt per region }
//!  rank(location, candidates, routable mask, n, &mut out)  -> replica indices
//!  explain(location, candidates, routable)                 -> full ranking
//! ```
//!
//! Nothing here does I/O on the query path; files are read only by the
//! loaders ([`BuiltinRegions::parse`], [`LatencyTable::load`], [`GeoDb::open`],
//! which also detects the database's schema).
//! [`Locator::locate`] and [`rank`] do not allocate.
//!
//! # ECS scope
//!
//! RFC 7871 §7.2.1: "the SCOPE PREFIX-LENGTH ... indicates the range of
//! addresses to which the answer applies". [`Location::scope_prefix`] is the
//! prefix length that decided the answer (the table entry, the mmdb network,
//! or /0 for the default order), lengthened to the shortest `P` such that
//! `addr/P` contains no other, more specific, latency-table entry, and capped
//! at the family length. It may exceed the query's source prefix, which the
//! RFC allows. With no data at all the default answer does not depend on the
//! client and the scope is 0.

mod geo;
mod latency;
mod mask;
mod rank;
mod regions;

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

pub(crate) use geo::{GeoDb, GeoHit, GeoSet, Schema, distance_km, estimate_rtt_ms};
pub use latency::{LatencyTable, TableMatch};
pub use mask::{MAX_REPLICAS, ReplicaMask};
pub(crate) use rank::GeoExplanation;
pub use rank::{
    Candidate, Candidates, ExplainRow, Explanation, ReplicaIndex, TooManyReplicas, explain, rank,
};
pub use regions::{
    BuiltinRegion, BuiltinRegions, Region, RegionError, RegionId, RegionSpec, Regions,
    resolve_regions,
};

//------------ GeoError -------------------------------------------------------

/// A data file under `geo/` (regions, latency table, mmdb) could not be used.
///
/// Displays as `geo/latency.csv:12: unknown region "westeurop"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct GeoError {
    /// The file as given to the loader.
    pub(crate) file: String,
    /// 1-based line, when the problem is on one line.
    pub(crate) line: Option<usize>,
    /// What is wrong.
    pub(crate) reason: String,
}

impl GeoError {
    fn new(file: &str, line: Option<usize>, reason: String) -> Self {
        Self {
            file: file.to_owned(),
            line,
            reason,
        }
    }
}

impl fmt::Display for GeoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

//------------ Client ---------------------------------------------------------

/// The client a query is answered for: the ECS subnet, or the packet source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    /// Canonical address, already masked to `source_prefix`.
    pub addr: IpAddr,
    /// 32 or 128 for a packet source; the ECS source prefix otherwise.
    pub(crate) source_prefix: u8,
}

impl Client {
    /// A packet source address (IPv4-mapped IPv6 becomes IPv4).
    pub fn from_source(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        Self {
            addr,
            source_prefix: family_len(addr),
        }
    }

    /// An ECS subnet: the address is masked to `source_prefix` (capped at
    /// the family length). The family is kept as sent.
    pub(crate) fn from_subnet(addr: IpAddr, source_prefix: u8) -> Self {
        let source_prefix = source_prefix.min(family_len(addr));
        let addr = IpNet::new(addr, source_prefix).map_or(addr, |n| n.network());
        Self {
            addr,
            source_prefix,
        }
    }

    /// IPv4-mapped addresses with at least the mapping prefix become IPv4.
    fn canonical(self) -> Self {
        match self.addr {
            IpAddr::V6(a) if self.source_prefix >= 96 => match a.to_ipv4_mapped() {
                Some(v4) => Self {
                    addr: IpAddr::V4(v4),
                    source_prefix: self.source_prefix - 96,
                },
                None => self,
            },
            _ => self,
        }
    }
}

fn family_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

//------------ Basis / Location -----------------------------------------------

/// Which layer decided a [`Location`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// A latency-table entry matched.
    LatencyTable,
    /// The mmdb gave coordinates.
    Geo,
    /// Neither; the configured default order.
    DefaultOrder,
}

impl Basis {
    /// Stable name for metrics labels and logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Basis::LatencyTable => "latency_table",
            Basis::Geo => "geo",
            Basis::DefaultOrder => "default_order",
        }
    }
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a client is, as far as routing is concerned. Borrows from the
/// [`Locator`] that produced it; small and `Copy`.
#[derive(Clone, Copy)]
pub struct Location<'a> {
    /// Which layer decided.
    pub(crate) basis: Basis,
    /// The table prefix or mmdb network that decided; for the default basis
    /// the mmdb network without coordinates, if there was one.
    pub(crate) network: Option<IpNet>,
    /// Label for metrics: the table's label column, or the mmdb country
    /// ISO code (else continent code).
    pub(crate) label: Option<&'a str>,
    /// The ECS scope prefix length for the answer (see the module doc).
    pub scope_prefix: u8,
    /// The geo database that was consulted (the file of the client's
    /// family), when the latency table did not decide.
    pub(crate) geo_db: Option<&'a GeoDb>,
    rtts: Rtts<'a>,
    locator: &'a Locator,
}

#[derive(Clone, Copy, Debug)]
enum Rtts<'a> {
    /// The matched table row, indexed by region.
    Table(&'a [Option<u32>]),
    /// Client coordinates; RTTs are estimated per region on demand.
    Geo { lat: f64, lon: f64 },
    /// No RTTs.
    None,
}

impl<'a> Location<'a> {
    /// RTT in ms to `region`: measured (table), estimated (geo) or unknown.
    pub(crate) fn rtt_ms(&self, region: RegionId) -> Option<u32> {
        match self.rtts {
            Rtts::Table(row) => row.get(region.index()).copied().flatten(),
            Rtts::Geo { lat, lon } => {
                let r = self.locator.regions.get(region)?;
                Some(estimate_rtt_ms(distance_km(lat, lon, r)))
            }
            Rtts::None => None,
        }
    }

    /// Great-circle distance in km to `region` (geo basis only).
    pub fn distance_km(&self, region: RegionId) -> Option<f64> {
        match self.rtts {
            Rtts::Geo { lat, lon } => {
                Some(distance_km(lat, lon, self.locator.regions.get(region)?))
            }
            _ => None,
        }
    }

    /// The client's coordinates for the geo basis.
    pub(crate) fn point(&self) -> Option<(f64, f64)> {
        match self.rtts {
            Rtts::Geo { lat, lon } => Some((lat, lon)),
            _ => None,
        }
    }

    /// Position of `region` in the server-wide default order (regions not
    /// listed follow, in id order). A registry's own order is applied by
    /// [`Candidates::with_order`].
    pub(crate) fn default_position(&self, region: RegionId) -> u16 {
        self.locator.default_position(region)
    }

    /// The regions the RTTs are indexed by.
    pub(crate) fn regions(&self) -> &'a Regions {
        &self.locator.regions
    }
}

impl fmt::Debug for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Location")
            .field("basis", &self.basis)
            .field("network", &self.network)
            .field("label", &self.label)
            .field("scope_prefix", &self.scope_prefix)
            .field("geo_db", &self.geo_db.map(GeoDb::source))
            .field("rtts", &self.rtts)
            .finish()
    }
}

//------------ RegionOrder ----------------------------------------------------

/// A default region order (server-wide `routing.default_order`, or a
/// registry's override): the position of every region, prepared once.
/// Regions the order does not name follow it, in id (configuration) order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegionOrder {
    ids: Vec<RegionId>,
    /// Position per region id.
    positions: Vec<u16>,
}

impl RegionOrder {
    /// Build from region names; errors name an unknown or repeated region.
    pub(crate) fn new(regions: &Regions, names: &[&str]) -> Result<Self, RegionError> {
        let mut ids = Vec::with_capacity(names.len());
        for name in names {
            let id = regions
                .id(name)
                .ok_or_else(|| RegionError::NotConfigured((*name).to_owned()))?;
            if ids.contains(&id) {
                return Err(RegionError::Duplicate((*name).to_owned()));
            }
            ids.push(id);
        }
        let mut positions = vec![u16::MAX; regions.len()];
        for (pos, id) in ids.iter().enumerate() {
            positions[id.index()] = u16::try_from(pos).unwrap_or(u16::MAX);
        }
        let unlisted = positions.iter_mut().filter(|p| **p == u16::MAX);
        for (next, p) in (ids.len()..).zip(unlisted) {
            *p = u16::try_from(next).unwrap_or(u16::MAX);
        }
        Ok(Self { ids, positions })
    }

    #[cfg(test)]
    /// The regions the order names, in order.
    pub(crate) fn ids(&self) -> &[RegionId] {
        &self.ids
    }

    /// Position of `region` (`u16::MAX` for an id from other `Regions`).
    pub(crate) fn position(&self, region: RegionId) -> u16 {
        self.positions
            .get(region.index())
            .copied()
            .unwrap_or(u16::MAX)
    }
}

//------------ Locator --------------------------------------------------------

/// The three routing layers, loaded; immutable once built.
#[derive(Debug)]
pub struct Locator {
    regions: Regions,
    table: Option<LatencyTable>,
    geo: Option<GeoSet>,
    default_order: RegionOrder,
}

impl Locator {
    /// Build a locator. `table` must have been parsed against `regions`.
    /// `default_order` names configured regions; regions it omits rank after
    /// it in id (configuration) order.
    pub fn new(
        regions: Regions,
        table: Option<LatencyTable>,
        geo: Option<GeoSet>,
        default_order: &[&str],
    ) -> Result<Self, RegionError> {
        let default_order = RegionOrder::new(&regions, default_order)?;
        Ok(Self {
            regions,
            table,
            geo,
            default_order,
        })
    }

    /// Where `client` is. Never fails, never allocates.
    ///
    /// An IPv4-mapped IPv6 client (`::ffff:a.b.c.d`, source prefix >= 96) is
    /// located as IPv4; its scope is then reported as an IPv6 prefix length
    /// (IPv4 scope + 96), matching the family the client was given in.
    pub fn locate(&self, client: Client) -> Location<'_> {
        let canonical = client.canonical();
        let mut location = self.locate_canonical(canonical.addr);
        if canonical.addr.is_ipv4() && client.addr.is_ipv6() {
            location.scope_prefix += 96;
        }
        location
    }

    fn locate_canonical(&self, addr: IpAddr) -> Location<'_> {
        if let Some(t) = &self.table
            && let Some(m) = t.lookup(addr)
        {
            return Location {
                basis: Basis::LatencyTable,
                network: Some(m.net),
                label: m.label,
                scope_prefix: t.match_scope(addr, &m),
                geo_db: None,
                rtts: Rtts::Table(m.rtts),
                locator: self,
            };
        }
        let geo = self.geo.as_ref().and_then(|g| g.for_addr(addr));
        let location = |basis, network, label, from, rtts| Location {
            basis,
            network,
            label,
            scope_prefix: self.scope(addr, from),
            geo_db: geo,
            rtts,
            locator: self,
        };
        let Some(geo) = geo else {
            return location(Basis::DefaultOrder, None, None, 0, Rtts::None);
        };
        match geo.lookup(addr) {
            Some(GeoHit {
                network,
                point: Some((lat, lon)),
                label,
            }) => location(
                Basis::Geo,
                Some(network),
                label,
                network.prefix_len(),
                Rtts::Geo { lat, lon },
            ),
            Some(GeoHit { network, label, .. }) => location(
                Basis::DefaultOrder,
                Some(network),
                label,
                network.prefix_len(),
                Rtts::None,
            ),
            // A corrupt database at this address: the answer cannot be
            // generalised to any range, so scope it to the address.
            None => location(
                Basis::DefaultOrder,
                None,
                None,
                family_len(addr),
                Rtts::None,
            ),
        }
    }

    fn scope(&self, addr: IpAddr, from: u8) -> u8 {
        let from = from.min(family_len(addr));
        self.table.as_ref().map_or(from, |t| t.scope(addr, from))
    }

    fn default_position(&self, region: RegionId) -> u16 {
        self.default_order.position(region)
    }

    /// The configured regions.
    pub(crate) fn regions(&self) -> &Regions {
        &self.regions
    }

    /// The latency table, if configured.
    pub fn table(&self) -> Option<&LatencyTable> {
        self.table.as_ref()
    }

    /// The geo databases, if configured.
    pub(crate) fn geo(&self) -> Option<&GeoSet> {
        self.geo.as_ref()
    }

    #[cfg(test)]
    /// The server-wide default order.
    pub(crate) fn default_order(&self) -> &RegionOrder {
        &self.default_order
    }
}

//------------ Tests ----------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod tests {
    use super::*;

    /// Regions 0 westeurope, 1 eastus, 2 southeastasia; default order
    /// southeastasia, eastus, westeurope (deliberately not id order).
    pub(super) fn locator(with_table: bool, with_geo: bool) -> Locator {
        let specs = ["westeurope", "eastus", "southeastasia"].map(|name| RegionSpec {
            name,
            ..Default::default()
        });
        let regions = resolve_regions(&specs, &BuiltinRegions::bundled()).unwrap();
        let table = with_table.then(|| {
            LatencyTable::parse(
                "\
10.0.0.0/8,westeurope,10,NL
10.0.0.0/8,eastus,90
10.1.2.0/24,eastus,5,US
10.1.2.0/24,westeurope,30
10.1.2.0/24,southeastasia,200
10.3.0.0/16,westeurope,50
10.3.0.0/16,eastus,50
10.3.0.0/16,southeastasia,50
192.0.2.128/25,southeastasia,3,lab
2001:db8::/32,westeurope,20
2001:db8:1::/48,southeastasia,8
",
                "test.csv",
                &regions,
            )
            .unwrap()
        });
        let geo = with_geo.then(|| {
            GeoSet::new(vec![
                GeoDb::from_bytes(geo::tests::test_mmdb(), "test.mmdb").unwrap(),
            ])
            .unwrap()
        });
        Locator::new(
            regions,
            table,
            geo,
            &["southeastasia", "eastus", "westeurope"],
        )
        .unwrap()
    }

    /// Regions 0 westeurope, 1 eastus, 2 southeastasia, 3 australiaeast; the
    /// flat-schema IPv4 and IPv6 files of `geo::tests::flat_mmdb`.
    pub(super) fn flat_locator() -> Locator {
        let specs =
            ["westeurope", "eastus", "southeastasia", "australiaeast"].map(|name| RegionSpec {
                name,
                ..Default::default()
            });
        let regions = resolve_regions(&specs, &BuiltinRegions::bundled()).unwrap();
        let set = GeoSet::new(vec![
            GeoDb::from_bytes(geo::tests::flat_mmdb(false), "city-ipv4.mmdb").unwrap(),
            GeoDb::from_bytes(geo::tests::flat_mmdb(true), "city-ipv6.mmdb").unwrap(),
        ])
        .unwrap();
        Locator::new(regions, None, Some(set), &[]).unwrap()
    }

    pub(super) fn client(s: &str) -> Client {
        Client::from_source(s.parse().unwrap())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn table_basis_and_scope() {
        let l = locator(true, true);
        let loc = l.locate(client("10.9.9.9"));
        assert_eq!(loc.basis, Basis::LatencyTable);
        assert_eq!(loc.network.unwrap().to_string(), "10.0.0.0/8");
        // 10.1.2.0/24 and 10.3.0.0/16 sit inside 10/8.
        assert_eq!(loc.scope_prefix, 13);
        assert_eq!(loc.label, Some("NL"));
        assert_eq!(loc.rtt_ms(RegionId(0)), Some(10));
        assert_eq!(loc.rtt_ms(RegionId(2)), None);
        assert_eq!(loc.rtt_ms(RegionId(7)), None);
        assert_eq!(loc.point(), None);
        assert_eq!(l.locate(client("10.1.9.9")).scope_prefix, 21);
        assert_eq!(l.locate(client("10.1.2.7")).scope_prefix, 24);
        assert_eq!(l.locate(client("10.3.200.1")).scope_prefix, 16);

        let loc = l.locate(client("2001:db8:1::7"));
        assert_eq!(loc.network.unwrap().to_string(), "2001:db8:1::/48");
        assert_eq!(loc.scope_prefix, 48);
        assert_eq!(l.locate(client("2001:db8:2::7")).scope_prefix, 47);
        assert!(format!("{loc:?}").contains("LatencyTable"));
    }

    #[test]
    fn table_wins_over_geo_and_geo_scope_respects_the_table() {
        let l = locator(true, true);
        // 192.0.2.128/25 is in the table; the mmdb has 192.0.2.0/24.
        let loc = l.locate(client("192.0.2.200"));
        assert_eq!(loc.basis, Basis::LatencyTable);
        assert_eq!(loc.label, Some("lab"));
        // The lower half of the mmdb /24 is geo, scoped /25 because the
        // table's /25 sits in the other half.
        let loc = l.locate(client("192.0.2.7"));
        assert_eq!(loc.basis, Basis::Geo);
        assert_eq!(loc.network.unwrap().to_string(), "192.0.2.0/24");
        assert_eq!(loc.scope_prefix, 25);
        assert_eq!(loc.label, Some("NL"));
    }

    #[test]
    fn geo_basis_rtts_and_scope() {
        let l = locator(false, true);
        let loc = l.locate(client("192.0.2.7"));
        assert_eq!(loc.basis, Basis::Geo);
        assert_eq!(loc.scope_prefix, 24);
        assert_eq!(loc.point(), Some((52.37, 4.90)));
        let we = loc.rtt_ms(RegionId(0)).unwrap();
        let us = loc.rtt_ms(RegionId(1)).unwrap();
        let sea = loc.rtt_ms(RegionId(2)).unwrap();
        assert!(we < 8 && we < us && us < sea, "{we} {us} {sea}");

        let loc = l.locate(client("2001:db8:5::99"));
        assert_eq!(loc.basis, Basis::Geo);
        assert_eq!(loc.scope_prefix, 48);
        assert_eq!(loc.label, Some("SG"));
        let c = Candidates::new(&[0u16, 1, 2].map(|r| Candidate {
            region: RegionId(r),
        }))
        .unwrap();
        let mut out = [0; MAX_REPLICAS];
        assert_eq!(rank(&loc, &c, c.all(), 1, &mut out), 1);
        assert_eq!(out[0], 2);

        // IPv4-mapped source -> located as IPv4.
        let loc = l.locate(client("::ffff:198.51.100.9"));
        assert_eq!(loc.basis, Basis::Geo);
        assert_eq!(loc.label, Some("US"));
        assert_eq!(loc.scope_prefix, 25);
        // Also when a caller hands in a raw mapped address.
        let raw = Client {
            addr: ip("::ffff:198.51.100.9"),
            source_prefix: 128,
        };
        let loc = l.locate(raw);
        assert_eq!(loc.network.unwrap().to_string(), "198.51.100.0/25");
        assert_eq!(loc.scope_prefix, 96 + 25);
    }

    #[test]
    fn flat_ipv4_and_ipv6_files_each_serve_their_family() {
        let l = flat_locator();
        let all = Candidates::new(&[0u16, 1, 2, 3].map(|r| Candidate {
            region: RegionId(r),
        }))
        .unwrap();
        let best = |c: &str| {
            let loc = l.locate(client(c));
            let mut out = [0; MAX_REPLICAS];
            assert_eq!(rank(&loc, &all, all.all(), 1, &mut out), 1, "{c}");
            (
                loc.basis,
                loc.geo_db.map(GeoDb::source),
                l.regions().name(RegionId(u16::from(out[0]))).to_owned(),
                loc.scope_prefix,
            )
        };
        let geo = |file: &'static str, region: &str, scope| {
            (Basis::Geo, Some(file), region.to_owned(), scope)
        };
        // Singapore, New York, Amsterdam from the IPv4 file; Sydney and
        // Frankfurt from the IPv6 file.
        assert_eq!(
            best("100.64.9.9"),
            geo("city-ipv4.mmdb", "southeastasia", 16)
        );
        assert_eq!(best("100.65.0.1"), geo("city-ipv4.mmdb", "eastus", 16));
        assert_eq!(best("192.0.2.200"), geo("city-ipv4.mmdb", "westeurope", 24));
        assert_eq!(
            best("::ffff:100.64.9.9"),
            geo("city-ipv4.mmdb", "southeastasia", 16)
        );
        assert_eq!(
            best("2001:db8:a::1"),
            geo("city-ipv6.mmdb", "australiaeast", 48)
        );
        assert_eq!(
            best("2001:db8:b:7::1"),
            geo("city-ipv6.mmdb", "westeurope", 48)
        );
        // The flat record's float32 coordinates, as read.
        let loc = l.locate(client("2001:db8:a::1"));
        assert_eq!(
            loc.point(),
            Some((f64::from(-33.87f32), f64::from(151.21f32)))
        );
        assert_eq!(loc.label, Some("AU"));
        let d = loc.distance_km(RegionId(3)).unwrap();
        assert!(d < 5.0, "Sydney to australiaeast: {d} km");
        assert_eq!(loc.rtt_ms(RegionId(3)), Some(estimate_rtt_ms(d)));
        // A row without coordinates, and a miss: the default order, with the
        // file that was asked.
        let loc = l.locate(client("100.66.0.1"));
        assert_eq!((loc.basis, loc.label), (Basis::DefaultOrder, Some("NZ")));
        assert_eq!(loc.geo_db.map(GeoDb::source), Some("city-ipv4.mmdb"));
        assert_eq!(loc.distance_km(RegionId(0)), None);
        let loc = l.locate(client("2001:db8:f::1"));
        assert_eq!(loc.basis, Basis::DefaultOrder);
        assert_eq!(loc.geo_db.map(GeoDb::source), Some("city-ipv6.mmdb"));
    }

    #[test]
    fn geo_miss_falls_back_with_the_mmdb_network_as_scope() {
        let l = locator(false, true);
        let loc = l.locate(client("198.51.100.200"));
        assert_eq!(loc.basis, Basis::DefaultOrder);
        assert_eq!(loc.network.unwrap().to_string(), "198.51.100.128/25");
        assert_eq!(loc.scope_prefix, 25);
        assert_eq!(loc.rtt_ms(RegionId(0)), None);
        // Record without coordinates keeps its label.
        let loc = l.locate(client("203.0.113.1"));
        assert_eq!(loc.basis, Basis::DefaultOrder);
        assert_eq!(loc.label, Some("OC"));
        assert_eq!(loc.scope_prefix, 24);
    }

    #[test]
    fn default_basis_scope() {
        // No data at all: the answer does not depend on the client.
        let l = locator(false, false);
        let loc = l.locate(client("192.0.2.1"));
        assert_eq!(loc.basis, Basis::DefaultOrder);
        assert_eq!(loc.scope_prefix, 0);
        assert_eq!(loc.network, None);
        assert_eq!(loc.label, None);
        // With a table, the default answer is scoped away from its entries.
        let l = locator(true, false);
        let loc = l.locate(client("172.16.0.1"));
        assert_eq!(loc.basis, Basis::DefaultOrder);
        // 172 = 1010_1100 vs 10 = 0000_1010 and 192 = 1100_0000: common
        // prefix with 192.0.2.255 is 1 bit -> scope 2.
        assert_eq!(loc.scope_prefix, 2);
        assert!(l.locate(client("11.0.0.1")).scope_prefix > 0);
        // IPv6 outside every IPv6 entry.
        assert_eq!(l.locate(client("3fff::1")).scope_prefix, 4);
    }

    #[test]
    fn ecs_source_shorter_than_the_entry() {
        let l = locator(true, false);
        // ECS 10.1.0.0/16: the masked address is looked up; the scope can
        // exceed the source prefix.
        let c = Client::from_subnet(ip("10.1.2.3"), 16);
        assert_eq!(c.addr, ip("10.1.0.0"));
        let loc = l.locate(c);
        assert_eq!(loc.network.unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(loc.scope_prefix, 23);
        let c = Client::from_subnet(ip("10.1.2.3"), 24);
        assert_eq!(l.locate(c).scope_prefix, 24);
        assert_eq!(Client::from_subnet(ip("10.1.2.3"), 40).source_prefix, 32);
        assert_eq!(Client::from_subnet(ip("2001:db8::1"), 0).addr, ip("::"));
    }

    #[test]
    fn client_canonicalisation() {
        let c = client("::ffff:192.0.2.1");
        assert_eq!(c.addr, ip("192.0.2.1"));
        assert_eq!(c.source_prefix, 32);
        let c = Client {
            addr: ip("::ffff:192.0.2.0"),
            source_prefix: 120,
        }
        .canonical();
        assert_eq!((c.addr, c.source_prefix), (ip("192.0.2.0"), 24));
        let c = Client::from_subnet(ip("::ffff:0:0"), 64).canonical();
        assert_eq!(c.addr, ip("::"));
    }

    #[test]
    fn locator_default_order_validation() {
        let regions = || {
            resolve_regions(
                &[
                    RegionSpec {
                        name: "westeurope",
                        ..Default::default()
                    },
                    RegionSpec {
                        name: "eastus",
                        ..Default::default()
                    },
                ],
                &BuiltinRegions::bundled(),
            )
            .unwrap()
        };
        let err = Locator::new(regions(), None, None, &["westeurop"]).unwrap_err();
        assert_eq!(err, RegionError::NotConfigured("westeurop".into()));
        assert!(err.to_string().contains("\"westeurop\""));
        let err = Locator::new(regions(), None, None, &["eastus", "eastus"]).unwrap_err();
        assert_eq!(err, RegionError::Duplicate("eastus".into()));
        // Regions missing from the default order follow it.
        let l = Locator::new(regions(), None, None, &["eastus"]).unwrap();
        assert_eq!(l.default_order().ids(), &[RegionId(1)]);
        let loc = l.locate(client("192.0.2.1"));
        assert_eq!(loc.default_position(RegionId(1)), 0);
        assert_eq!(loc.default_position(RegionId(0)), 1);
        assert_eq!(loc.default_position(RegionId(9)), u16::MAX);
        assert!(l.table().is_none() && l.geo().is_none());
        assert_eq!(l.regions().len(), 2);
    }

    #[test]
    fn locator_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Locator>();
        assert_send_sync::<Location<'static>>();
        assert_send_sync::<Candidates>();
    }

    #[test]
    fn geo_error_display() {
        let e = GeoError::new(
            "geo/latency.csv",
            Some(12),
            "unknown region \"westeurop\"".into(),
        );
        assert_eq!(
            e.to_string(),
            "geo/latency.csv:12: unknown region \"westeurop\""
        );
        assert_eq!(Basis::Geo.to_string(), "geo");
    }
}
