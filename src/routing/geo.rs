//! The geo layer: a MaxMind-format City database (GeoLite2-City, DB-IP City
//! Lite) gives the client's latitude/longitude; the great-circle distance to
//! each region turns into an RTT estimate.
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

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use maxminddb::Reader;
use serde::Deserialize;

use super::GeoError;
use super::regions::Region;

/// Mean Earth radius in km (IUGG).
const EARTH_RADIUS_KM: f64 = 6371.0;
/// Fixed part of the estimate, ms.
const BASE_RTT_MS: f64 = 5.0;
/// Great-circle km per millisecond of round trip (fibre at ~2/3 c, there and back).
const KM_PER_RTT_MS: f64 = 100.0;

//------------ GeoDb ----------------------------------------------------------

/// An open MaxMind-format City database.
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    /// The file name, for explain output and logs.
    source: String,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("source", &self.source)
            .field("database_type", &self.reader.metadata().database_type)
            .finish()
    }
}

/// What the database says about an address.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeoHit<'a> {
    /// The database network the address fell in (also for a miss: the
    /// network with no data). Same family as the looked-up address.
    pub network: IpNet,
    /// Latitude and longitude in degrees, when the record has both.
    pub point: Option<(f64, f64)>,
    /// Country ISO code, else continent code, for metrics labels.
    pub label: Option<&'a str>,
}

/// The subset of a GeoIP2 City record we read (decoding the full
/// `geoip2::City` would allocate for its subdivisions on every query).
#[derive(Deserialize)]
struct CityLite<'a> {
    #[serde(default)]
    location: LocationLite,
    #[serde(borrow, default)]
    country: CodeLite<'a>,
    #[serde(borrow, default)]
    continent: CodeLite<'a>,
}

#[derive(Deserialize, Default)]
struct LocationLite {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

#[derive(Deserialize, Default)]
struct CodeLite<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

impl GeoDb {
    /// Open a database file.
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        let source = path.display().to_string();
        let reader = Reader::open_readfile(path)
            .map_err(|e| GeoError::new(&source, None, format!("not a usable mmdb: {e}")))?;
        Self::check(reader, source)
    }

    /// Use a database already in memory; `source` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, source: &str) -> Result<Self, GeoError> {
        let reader = Reader::from_source(bytes)
            .map_err(|e| GeoError::new(source, None, format!("not a usable mmdb: {e}")))?;
        Self::check(reader, source.to_owned())
    }

    fn check(reader: Reader<Vec<u8>>, source: String) -> Result<Self, GeoError> {
        let ty = &reader.metadata().database_type;
        if !ty.contains("City") {
            tracing::warn!(
                file = %source,
                database_type = %ty,
                "mmdb is not a City database; records without coordinates fall back to the default order"
            );
        }
        Ok(Self { reader, source })
    }

    /// The file the database came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The `database_type` from the file's metadata.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Look up an address (IPv4-mapped IPv6 addresses are canonicalised to
    /// IPv4 first). `None` only when the database is corrupt at this address.
    pub fn lookup(&self, addr: IpAddr) -> Option<GeoHit<'_>> {
        let addr = addr.to_canonical();
        let res = match self.reader.lookup(addr) {
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
        let rec: Option<CityLite<'_>> = match res.decode() {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "mmdb record does not decode");
                None
            }
        };
        let Some(rec) = rec else {
            return Some(GeoHit {
                network,
                point: None,
                label: None,
            });
        };
        let point = match (rec.location.latitude, rec.location.longitude) {
            (Some(lat), Some(lon)) if lat.is_finite() && lon.is_finite() => Some((lat, lon)),
            _ => None,
        };
        Some(GeoHit {
            network,
            point,
            label: rec.country.iso_code.or(rec.continent.code),
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
pub(super) mod tests {
    use super::super::regions::{BuiltinRegions, RegionSpec, resolve_regions};
    use super::*;
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

    /// A tiny City database: Amsterdam for 192.0.2.0/24, New York for
    /// 198.51.100.0/25, Singapore for 2001:db8:5::/48, and a record without
    /// coordinates (continent only) for 203.0.113.0/24.
    pub(in crate::routing) fn test_mmdb() -> Vec<u8> {
        let mut w = mmdb_writer::Writer::new("Test-City");
        let rec = |lat, lon, cc, cont| Rec {
            location: Loc {
                latitude: lat,
                longitude: lon,
            },
            country: Cc { iso_code: cc },
            continent: Cont { code: cont },
        };
        w.insert(
            "192.0.2.0/24".parse::<IpNet>().unwrap(),
            &rec(52.37, 4.90, "NL", "EU"),
        )
        .unwrap();
        w.insert(
            "198.51.100.0/25".parse::<IpNet>().unwrap(),
            &rec(40.71, -74.01, "US", "NA"),
        )
        .unwrap();
        w.insert(
            "2001:db8:5::/48".parse::<IpNet>().unwrap(),
            &rec(1.29, 103.85, "SG", "AS"),
        )
        .unwrap();
        w.insert(
            "203.0.113.0/24".parse::<IpNet>().unwrap(),
            &CountryOnly {
                continent: Cont { code: "OC" },
            },
        )
        .unwrap();
        w.to_bytes().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lookups_v4_v6_and_misses() {
        let db = GeoDb::from_bytes(test_mmdb(), "test.mmdb").unwrap();
        assert_eq!(db.database_type(), "Test-City");
        assert_eq!(db.source(), "test.mmdb");

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
    fn ipv4_mapped_addresses_are_canonicalised() {
        let db = GeoDb::from_bytes(test_mmdb(), "test.mmdb").unwrap();
        let h = db.lookup(ip("::ffff:192.0.2.77")).unwrap();
        assert_eq!(h.network.to_string(), "192.0.2.0/24");
        assert_eq!(h.label, Some("NL"));
        // A mapped network is converted back to IPv4.
        assert_eq!(
            to_ipnet(ip("192.0.2.1"), ip("::ffff:192.0.2.0"), 120)
                .unwrap()
                .to_string(),
            "192.0.2.0/24"
        );
    }

    #[test]
    fn garbage_is_refused() {
        let err = GeoDb::from_bytes(b"not an mmdb".to_vec(), "x.mmdb").unwrap_err();
        assert!(
            err.to_string().starts_with("x.mmdb: not a usable mmdb"),
            "{err}"
        );
        assert!(GeoDb::open(Path::new("/nonexistent.mmdb")).is_err());
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
