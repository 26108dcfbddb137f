//! Which record layout a City database uses, decided once when it is opened.
//!
//! | schema | coordinates | label | written by |
//! |---|---|---|---|
//! | `nested` (GeoIP2) | `location.latitude`, `location.longitude` | `country.iso_code`, else `continent.code` | MaxMind GeoIP2/GeoLite2-City, DB-IP City Lite (GeoIP2-compatible by design) |
//! | `flat` | `latitude`, `longitude` (float32) | `country_code` | `@ip-location-db/*-city-mmdb` (`geolite2-city`, `dbip-city`; one IPv4 and one IPv6 file) |
//!
//! # Detection
//!
//! [`survey`] walks a bounded, well-spread sample of the database's networks:
//! the first [`SAMPLE_PER_BLOCK`] networks with data in each /4 of the IPv4
//! space (in an IPv6 file: of the `::/96` subtree, else of `::ffff:0:0/96`)
//! and in each /7 of `2000::/3` (where all global IPv6 unicast lives).
//! Each record is decoded in both layouts; the layout that yields
//! coordinates in more records wins. The metadata (`database_type`,
//! `description`) names the product for most files and only breaks a tie; a
//! sample that contradicts it is reported. A database in which no sampled
//! record has coordinates in either layout is refused, naming the fields its
//! records do have: it could only ever send every client to the default
//! order.
//!
//! The per-query decode ([`Schema::read`]) then reads only the detected
//! layout's fields, borrowing from the database: no allocation.

use std::collections::BTreeSet;
use std::fmt;

use maxminddb::{LookupResult, MaxMindDbError, Metadata, Reader, WithinOptions};
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Networks with data read from each sample block.
pub(super) const SAMPLE_PER_BLOCK: usize = 32;

/// The IPv4 sample: every /4 (first octet 0, 16, ..., 240).
const IPV4_BLOCKS: [&str; 16] = [
    "0.0.0.0/4",
    "16.0.0.0/4",
    "32.0.0.0/4",
    "48.0.0.0/4",
    "64.0.0.0/4",
    "80.0.0.0/4",
    "96.0.0.0/4",
    "112.0.0.0/4",
    "128.0.0.0/4",
    "144.0.0.0/4",
    "160.0.0.0/4",
    "176.0.0.0/4",
    "192.0.0.0/4",
    "208.0.0.0/4",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// The IPv6 sample: every /7 of 2000::/3.
const IPV6_BLOCKS: [&str; 16] = [
    "2000::/7", "2200::/7", "2400::/7", "2600::/7", "2800::/7", "2a00::/7", "2c00::/7", "2e00::/7",
    "3000::/7", "3200::/7", "3400::/7", "3600::/7", "3800::/7", "3a00::/7", "3c00::/7", "3e00::/7",
];

/// The IPv4 sample of an IPv6 file whose IPv4 data sits under `::ffff:0:0/96`
/// (IPv4-mapped) rather than in the `::/96` subtree readers use for IPv4.
const IPV4_MAPPED_BLOCKS: [&str; 16] = [
    "::ffff:0.0.0.0/100",
    "::ffff:16.0.0.0/100",
    "::ffff:32.0.0.0/100",
    "::ffff:48.0.0.0/100",
    "::ffff:64.0.0.0/100",
    "::ffff:80.0.0.0/100",
    "::ffff:96.0.0.0/100",
    "::ffff:112.0.0.0/100",
    "::ffff:128.0.0.0/100",
    "::ffff:144.0.0.0/100",
    "::ffff:160.0.0.0/100",
    "::ffff:176.0.0.0/100",
    "::ffff:192.0.0.0/100",
    "::ffff:208.0.0.0/100",
    "::ffff:224.0.0.0/100",
    "::ffff:240.0.0.0/100",
];

/// Field names listed in a refusal, at most.
const MAX_FIELDS_LISTED: usize = 24;

//------------ Schema ---------------------------------------------------------

/// A City record layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Schema {
    /// GeoIP2: `location.latitude/longitude`, `country.iso_code`, `continent.code`.
    Nested,
    /// ip-location-db: top-level `latitude`, `longitude`, `country_code`.
    Flat,
}

impl Schema {
    /// Stable name (config reports, explain).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Schema::Nested => "nested",
            Schema::Flat => "flat",
        }
    }

    /// The fields that give the coordinates.
    pub(crate) fn coordinate_fields(self) -> &'static [&'static str] {
        match self {
            Schema::Nested => &["location.latitude", "location.longitude"],
            Schema::Flat => &["latitude", "longitude"],
        }
    }

    /// The fields that give the label, in order of preference.
    pub(crate) fn label_fields(self) -> &'static [&'static str] {
        match self {
            Schema::Nested => &["country.iso_code", "continent.code"],
            Schema::Flat => &["country_code"],
        }
    }

    /// Decode a record's coordinates and label in this layout. `Ok(None)`
    /// when the network has no data. Borrows; no allocation.
    pub(super) fn read<'a>(
        self,
        res: &LookupResult<'a, Vec<u8>>,
    ) -> Result<Option<Fix<'a>>, MaxMindDbError> {
        Ok(match self {
            Schema::Nested => res.decode::<NestedRecord<'a>>()?.map(NestedRecord::fix),
            Schema::Flat => res.decode::<FlatRecord<'a>>()?.map(FlatRecord::fix),
        })
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one record says, in either layout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Fix<'a> {
    /// Latitude and longitude in degrees, when the record has both (finite).
    pub(super) point: Option<(f64, f64)>,
    /// Country code, else continent code; never empty.
    pub(super) label: Option<&'a str>,
}

fn point(lat: Degrees, lon: Degrees) -> Option<(f64, f64)> {
    match (lat.0, lon.0) {
        (Some(lat), Some(lon)) if lat.is_finite() && lon.is_finite() => Some((lat, lon)),
        _ => None,
    }
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// The subset of a GeoIP2 City record we read (decoding the full
/// `geoip2::City` would allocate for its subdivisions on every query).
#[derive(Deserialize)]
struct NestedRecord<'a> {
    #[serde(default)]
    location: LocationLite,
    #[serde(borrow, default)]
    country: CodeLite<'a>,
    #[serde(borrow, default)]
    continent: CodeLite<'a>,
}

#[derive(Deserialize, Default)]
struct LocationLite {
    #[serde(default)]
    latitude: Degrees,
    #[serde(default)]
    longitude: Degrees,
}

#[derive(Deserialize, Default)]
struct CodeLite<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

impl<'a> NestedRecord<'a> {
    fn fix(self) -> Fix<'a> {
        Fix {
            point: point(self.location.latitude, self.location.longitude),
            label: nonempty(self.country.iso_code).or(nonempty(self.continent.code)),
        }
    }
}

/// The fields of a flat record we read.
#[derive(Deserialize)]
struct FlatRecord<'a> {
    #[serde(default)]
    latitude: Degrees,
    #[serde(default)]
    longitude: Degrees,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
}

impl<'a> FlatRecord<'a> {
    fn fix(self) -> Fix<'a> {
        Fix {
            point: point(self.latitude, self.longitude),
            label: nonempty(self.country_code),
        }
    }
}

/// A coordinate of any numeric type: GeoIP2 writes doubles, ip-location-db
/// float32 (the decoder does not widen: `f64` accepts only doubles). Any
/// other value reads as none, so the rest of the record still decodes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Degrees(Option<f64>);

impl<'de> Deserialize<'de> for Degrees {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Degrees;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Degrees, E> {
                Ok(Degrees(Some(v)))
            }
            fn visit_f32<E: de::Error>(self, v: f32) -> Result<Degrees, E> {
                Ok(Degrees(Some(f64::from(v))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Degrees, E> {
                Ok(Degrees(Some(v as f64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Degrees, E> {
                Ok(Degrees(Some(v as f64)))
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Degrees, E> {
                Ok(Degrees(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Degrees, E> {
                Ok(Degrees(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Degrees, E> {
                Ok(Degrees(None))
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Degrees, E> {
                Ok(Degrees(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Degrees, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Degrees(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Degrees, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Degrees(None))
            }
        }
        d.deserialize_any(V)
    }
}

//------------ Survey ---------------------------------------------------------

/// What the sample of a database showed, kept for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Survey {
    /// The layout detected.
    pub(crate) schema: Schema,
    /// What the metadata names, when it names a known product.
    pub(crate) hint: Option<Schema>,
    /// Sampled IPv4 networks with data.
    pub(crate) ipv4_networks: usize,
    /// The IPv4 data is only under `::ffff:0:0/96`, so IPv4 clients are
    /// looked up as IPv4-mapped addresses.
    pub(crate) ipv4_mapped: bool,
    /// Sampled IPv6 networks with data.
    pub(crate) ipv6_networks: usize,
    /// Sampled networks with coordinates in `schema`.
    pub(crate) with_coordinates: usize,
}

impl Survey {
    /// Every sampled network with data.
    pub(crate) fn networks(&self) -> usize {
        self.ipv4_networks + self.ipv6_networks
    }

    /// The sample and the metadata disagree (reported, not refused).
    pub(crate) fn contradicts_metadata(&self) -> bool {
        self.hint.is_some_and(|h| h != self.schema)
    }
}

/// The schema the metadata names, for the products whose conventions are known.
pub(super) fn hint(meta: &Metadata) -> Option<Schema> {
    let ty = meta.database_type.to_ascii_lowercase();
    let described = |needle: &str| {
        meta.description
            .values()
            .any(|d| d.to_ascii_lowercase().contains(needle))
    };
    if ["geoip2-", "geolite2-", "dbip-"]
        .iter()
        .any(|p| ty.starts_with(p))
    {
        Some(Schema::Nested)
    } else if ty == "city ipv4" || ty == "city ipv6" || described("ip-location-db") {
        // sapics/ip-location-to-mmdb names its output "<kind> ipv<N>".
        Some(Schema::Flat)
    } else {
        None
    }
}

#[derive(Default)]
struct Tally {
    ipv4: usize,
    ipv6: usize,
    nested: usize,
    flat: usize,
    fields: BTreeSet<String>,
}

impl Tally {
    fn add(&mut self, res: &LookupResult<'_, Vec<u8>>) {
        let has_point = |s: Schema| s.read(res).ok().flatten().and_then(|f| f.point).is_some();
        self.nested += usize::from(has_point(Schema::Nested));
        self.flat += usize::from(has_point(Schema::Flat));
        if let Ok(Some(Fields(names))) = res.decode::<Fields>() {
            self.fields.extend(names);
        }
    }
}

/// Sample the database and decide its schema; `Err` is the reason it is
/// refused (no data, or no coordinates in either layout).
pub(super) fn survey(reader: &Reader<Vec<u8>>) -> Result<Survey, String> {
    let meta = reader.metadata();
    let mut t = Tally::default();
    for block in IPV4_BLOCKS {
        sample(reader, block, Part::Ipv4, &mut t);
    }
    let mut ipv4_mapped = false;
    if meta.ip_version == 6 {
        if t.ipv4 == 0 {
            for block in IPV4_MAPPED_BLOCKS {
                sample(reader, block, Part::Ipv4Mapped, &mut t);
            }
            ipv4_mapped = t.ipv4 > 0;
        }
        for block in IPV6_BLOCKS {
            sample(reader, block, Part::Ipv6, &mut t);
        }
    }
    let hint = hint(meta);
    let networks = t.ipv4 + t.ipv6;
    if networks == 0 {
        return Err(format!(
            "no networks with data in the sample (database_type {:?}, ip_version {})",
            meta.database_type, meta.ip_version
        ));
    }
    let schema = match (t.nested, t.flat) {
        (0, 0) => return Err(no_coordinates(meta, networks, &t.fields)),
        (n, f) if n > f => Schema::Nested,
        (n, f) if f > n => Schema::Flat,
        _ => hint.unwrap_or(Schema::Nested),
    };
    Ok(Survey {
        schema,
        hint,
        ipv4_networks: t.ipv4,
        ipv4_mapped,
        ipv6_networks: t.ipv6,
        with_coordinates: match schema {
            Schema::Nested => t.nested,
            Schema::Flat => t.flat,
        },
    })
}

/// Which part of the address space a sample block is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Ipv4,
    Ipv4Mapped,
    Ipv6,
}

/// Read up to [`SAMPLE_PER_BLOCK`] networks with data in `block`.
fn sample(reader: &Reader<Vec<u8>>, block: &str, part: Part, t: &mut Tally) {
    // The blocks are constants that parse; a database that cannot iterate
    // one (an IPv6 block in an IPv4 database is never asked) is skipped.
    let Ok(net) = block.parse() else { return };
    let Ok(iter) = reader.within(net, WithinOptions::default()) else {
        return;
    };
    for item in iter.take(SAMPLE_PER_BLOCK) {
        let Ok(res) = item else { break };
        // A walk inside one record yields that record's (larger) network:
        // an IPv6 database without an IPv4 subtree answers an IPv4 walk with
        // the IPv6 network that covers ::/96. That is not IPv4 data.
        let Ok(n) = res.network() else { continue };
        let ours = match part {
            Part::Ipv4 => n.is_ipv4(),
            Part::Ipv4Mapped => match n.ip() {
                std::net::IpAddr::V6(a) => n.prefix() >= 96 && a.to_ipv4_mapped().is_some(),
                std::net::IpAddr::V4(_) => false,
            },
            Part::Ipv6 => n.is_ipv6(),
        };
        if !ours {
            continue;
        }
        match part {
            Part::Ipv4 | Part::Ipv4Mapped => t.ipv4 += 1,
            Part::Ipv6 => t.ipv6 += 1,
        }
        t.add(&res);
    }
}

fn no_coordinates(meta: &Metadata, networks: usize, fields: &BTreeSet<String>) -> String {
    let mut seen: Vec<&str> = fields
        .iter()
        .map(String::as_str)
        .take(MAX_FIELDS_LISTED)
        .collect();
    if fields.len() > MAX_FIELDS_LISTED {
        seen.push("...");
    }
    let seen = if seen.is_empty() {
        "no named fields".to_owned()
    } else {
        seen.join(", ")
    };
    format!(
        "no coordinates in any of the {networks} sampled networks (looked for \
         location.latitude/location.longitude and latitude/longitude); their records have: \
         {seen} (database_type {:?}). A City database is needed; every client would get \
         the default order",
        meta.database_type
    )
}

//------------ Fields ---------------------------------------------------------

/// The field paths of one record, two levels deep (`country`,
/// `country.iso_code`). Only for the survey: allocates.
struct Fields(Vec<String>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Top;
        impl<'de> Visitor<'de> for Top {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let Keys(sub) = map.next_value()?;
                    out.extend(sub.into_iter().map(|s| format!("{key}.{s}")));
                    out.push(key);
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(Top)
    }
}

/// The keys of a map value; nothing for any other value.
struct Keys(Vec<String>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeysVisitor)
    }
}

struct KeysVisitor;

impl<'de> Visitor<'de> for KeysVisitor {
    type Value = Keys;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
        let mut keys = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            keys.push(k);
        }
        Ok(Keys(keys))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Keys, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Keys(Vec::new()))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Keys, E> {
        Ok(Keys(Vec::new()))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Keys, E> {
        Ok(Keys(Vec::new()))
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Keys, E> {
        Ok(Keys(Vec::new()))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Keys, E> {
        Ok(Keys(Vec::new()))
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Keys, E> {
        Ok(Keys(Vec::new()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Keys, E> {
        Ok(Keys(Vec::new()))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Keys, E> {
        Ok(Keys(Vec::new()))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Keys, E> {
        Ok(Keys(Vec::new()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Keys, E> {
        Ok(Keys(Vec::new()))
    }
    fn visit_none<E: de::Error>(self) -> Result<Keys, E> {
        Ok(Keys(Vec::new()))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Keys, D::Error> {
        Keys::deserialize(d)
    }
}
