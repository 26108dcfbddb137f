//! Regions: the built-in coordinate table (`geo/regions.toml`) and the runtime
//! [`Regions`] list that the rest of routing indexes with a small [`RegionId`].
//!
//! The server config names the regions it uses (`[regions.NAME]`); coordinates
//! that the config omits come from the built-in table. [`resolve_regions`] does
//! that merge and is the only way to build a [`Regions`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;

use super::GeoError;

/// The built-in region table shipped with steerdns (`geo/regions.toml`).
const BUNDLED_REGIONS: &str = include_str!("../../geo/regions.toml");

//------------ RegionId -------------------------------------------------------

/// Index of a region in [`Regions`]; stable for the life of one `Regions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RegionId(pub u16);

impl RegionId {
    /// The index as a `usize`, for slicing per-region tables.
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

//------------ Region / Regions -----------------------------------------------

/// One configured region with its coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    /// The region key as written in the config (`westeurope`).
    pub(crate) name: Box<str>,
    /// Human-readable name (`West Europe`); the key when none is known.
    pub(crate) display_name: Box<str>,
    /// Latitude in degrees.
    pub(crate) latitude: f64,
    /// Longitude in degrees.
    pub(crate) longitude: f64,
    /// Latitude in radians and its cosine, precomputed for the haversine.
    pub(super) lat_rad: f64,
    pub(super) cos_lat: f64,
    pub(super) lon_rad: f64,
}

/// The configured regions, in configuration order, indexed by [`RegionId`].
#[derive(Clone, Debug, Default)]
pub struct Regions {
    list: Vec<Region>,
    by_name: HashMap<Box<str>, RegionId>,
}

impl Regions {
    /// Number of regions.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// The region with this id, if it exists.
    pub(crate) fn get(&self, id: RegionId) -> Option<&Region> {
        self.list.get(id.index())
    }

    /// The id of the region named `name`.
    pub(crate) fn id(&self, name: &str) -> Option<RegionId> {
        self.by_name.get(name).copied()
    }

    /// The name of region `id`, or `"?"` for an id from another `Regions`.
    pub(crate) fn name(&self, id: RegionId) -> &str {
        self.get(id).map_or("?", |r| &r.name)
    }

    #[cfg(test)]
    /// All regions with their ids, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (RegionId, &Region)> {
        self.list.iter().enumerate().map(|(i, r)| {
            // `resolve_regions` refuses more than u16::MAX regions.
            (RegionId(u16::try_from(i).unwrap_or(u16::MAX)), r)
        })
    }
}

//------------ BuiltinRegions -------------------------------------------------

/// One row of `geo/regions.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BuiltinRegion {
    /// `azure`, `aws` or `gcp`; informational only.
    #[serde(default)]
    pub(crate) provider: Option<String>,
    /// Human-readable name.
    pub(crate) display_name: String,
    /// Latitude in degrees.
    pub(crate) latitude: f64,
    /// Longitude in degrees.
    pub(crate) longitude: f64,
}

/// The built-in table of cloud region coordinates.
#[derive(Clone, Debug, Default)]
pub struct BuiltinRegions {
    map: BTreeMap<String, BuiltinRegion>,
}

impl BuiltinRegions {
    /// The table compiled into the binary from `geo/regions.toml`.
    pub fn bundled() -> Self {
        // The bundled file is checked by a unit test, so a parse failure here
        // cannot happen in a tested build; fall back to an empty table anyway.
        Self::parse(BUNDLED_REGIONS, "geo/regions.toml").unwrap_or_default()
    }

    /// Parse a regions file; `file` names it in errors.
    pub(crate) fn parse(text: &str, file: &str) -> Result<Self, GeoError> {
        let map: BTreeMap<String, BuiltinRegion> = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text.get(..s.start).unwrap_or(text).lines().count().max(1));
            GeoError::new(file, line, e.message().to_owned())
        })?;
        for (name, r) in &map {
            check_coordinates(r.latitude, r.longitude).map_err(|reason| {
                GeoError::new(file, None, format!("region \"{name}\": {reason}"))
            })?;
        }
        Ok(Self { map })
    }

    /// The built-in entry for `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&BuiltinRegion> {
        self.map.get(name)
    }

    #[cfg(test)]
    /// Number of built-in regions.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

fn check_coordinates(latitude: f64, longitude: f64) -> Result<(), String> {
    if !(-90.0..=90.0).contains(&latitude) {
        return Err(format!("latitude {latitude} is outside -90..=90"));
    }
    if !(-180.0..=180.0).contains(&longitude) {
        return Err(format!("longitude {longitude} is outside -180..=180"));
    }
    Ok(())
}

//------------ resolve_regions ------------------------------------------------

/// One `[regions.NAME]` table from the server config.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RegionSpec<'a> {
    /// The table key.
    pub name: &'a str,
    /// `latitude`, if given.
    pub latitude: Option<f64>,
    /// `longitude`, if given.
    pub longitude: Option<f64>,
    /// `display_name`, if given.
    pub display_name: Option<&'a str>,
}

/// Why the configured regions could not be resolved. Every variant names the
/// region.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    /// No coordinates in the config and none built in.
    #[error(
        "region \"{0}\": no latitude/longitude given and not a built-in region (see geo/regions.toml)"
    )]
    Unknown(String),
    /// Only one of latitude and longitude was given.
    #[error("region \"{0}\": give both latitude and longitude, or neither")]
    HalfCoordinates(String),
    /// Coordinates out of range or not finite.
    #[error("region \"{name}\": {reason}")]
    BadCoordinates {
        /// The region.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// `default_order` names a region that is not configured.
    #[error("default_order names region \"{0}\", which is not configured under [regions]")]
    NotConfigured(String),
    /// The same name twice (in `[regions]` or in `default_order`).
    #[error("region \"{0}\" is listed twice")]
    Duplicate(String),
    /// An empty name.
    #[error("region name must not be empty")]
    EmptyName,
    /// More regions than a [`RegionId`] can index.
    #[error("too many regions ({0}); at most 65535")]
    TooMany(usize),
}

/// Merge the configured regions with the built-in table into the runtime
/// [`Regions`]; ids follow the order of `configured`.
pub fn resolve_regions(
    configured: &[RegionSpec<'_>],
    builtin: &BuiltinRegions,
) -> Result<Regions, RegionError> {
    if configured.len() > usize::from(u16::MAX) {
        return Err(RegionError::TooMany(configured.len()));
    }
    let mut regions = Regions::default();
    for spec in configured {
        if spec.name.is_empty() {
            return Err(RegionError::EmptyName);
        }
        let known = builtin.get(spec.name);
        let (latitude, longitude) = match (spec.latitude, spec.longitude, known) {
            (Some(lat), Some(lon), _) => (lat, lon),
            (None, None, Some(b)) => (b.latitude, b.longitude),
            (None, None, None) => return Err(RegionError::Unknown(spec.name.to_owned())),
            _ => return Err(RegionError::HalfCoordinates(spec.name.to_owned())),
        };
        check_coordinates(latitude, longitude).map_err(|reason| RegionError::BadCoordinates {
            name: spec.name.to_owned(),
            reason,
        })?;
        let display_name = spec
            .display_name
            .or(known.map(|b| b.display_name.as_str()))
            .unwrap_or(spec.name);
        let id = RegionId(u16::try_from(regions.list.len()).unwrap_or(u16::MAX));
        if regions.by_name.insert(spec.name.into(), id).is_some() {
            return Err(RegionError::Duplicate(spec.name.to_owned()));
        }
        let lat_rad = latitude.to_radians();
        regions.list.push(Region {
            name: spec.name.into(),
            display_name: display_name.into(),
            latitude,
            longitude,
            lat_rad,
            cos_lat: lat_rad.cos(),
            lon_rad: longitude.to_radians(),
        });
    }
    Ok(regions)
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

//------------ Tests ----------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(name: &str) -> RegionSpec<'_> {
        RegionSpec {
            name,
            ..Default::default()
        }
    }

    #[test]
    fn bundled_table_parses_and_has_the_major_regions() {
        let b = BuiltinRegions::parse(BUNDLED_REGIONS, "geo/regions.toml").unwrap();
        assert!(b.len() > 90, "{}", b.len());
        for name in [
            "westeurope",
            "eastus",
            "southeastasia",
            "us-east-1",
            "eu-west-1",
            "europe-west4",
        ] {
            assert!(b.get(name).is_some(), "{name}");
        }
        assert_eq!(b.get("westeurope").unwrap().display_name, "West Europe");
        assert_eq!(BuiltinRegions::bundled().len(), b.len());
    }

    #[test]
    fn resolve_fills_coordinates_and_display_names() {
        let b = BuiltinRegions::bundled();
        let r = resolve_regions(
            &[
                RegionSpec {
                    display_name: Some("Amsterdam"),
                    ..spec("westeurope")
                },
                spec("eastus"),
                RegionSpec {
                    latitude: Some(1.0),
                    longitude: Some(2.0),
                    ..spec("lab")
                },
            ],
            &b,
        )
        .unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r.id("eastus"), Some(RegionId(1)));
        let we = r.get(RegionId(0)).unwrap();
        assert_eq!(&*we.display_name, "Amsterdam");
        assert_eq!(we.latitude, 52.3667);
        assert_eq!(&*r.get(RegionId(1)).unwrap().display_name, "East US");
        let lab = r.get(RegionId(2)).unwrap();
        assert_eq!((lab.latitude, lab.longitude), (1.0, 2.0));
        assert_eq!(&*lab.display_name, "lab");
        assert_eq!(r.name(RegionId(2)), "lab");
        assert_eq!(r.name(RegionId(9)), "?");
        assert_eq!(r.iter().count(), 3);
    }

    #[test]
    fn resolve_errors_name_the_region() {
        let b = BuiltinRegions::bundled();
        let err = resolve_regions(&[spec("westeurop")], &b).unwrap_err();
        assert_eq!(err, RegionError::Unknown("westeurop".into()));
        assert!(err.to_string().contains("\"westeurop\""), "{err}");

        let half = RegionSpec {
            latitude: Some(1.0),
            ..spec("eastus")
        };
        assert_eq!(
            resolve_regions(&[half], &b).unwrap_err(),
            RegionError::HalfCoordinates("eastus".into())
        );
        let bad = RegionSpec {
            latitude: Some(91.0),
            longitude: Some(0.0),
            ..spec("x")
        };
        let err = resolve_regions(&[bad], &b).unwrap_err();
        assert!(
            err.to_string().starts_with("region \"x\": latitude 91"),
            "{err}"
        );
        let nan = RegionSpec {
            latitude: Some(f64::NAN),
            longitude: Some(0.0),
            ..spec("y")
        };
        assert!(matches!(
            resolve_regions(&[nan], &b),
            Err(RegionError::BadCoordinates { .. })
        ));
        assert_eq!(
            resolve_regions(&[spec("eastus"), spec("eastus")], &b).unwrap_err(),
            RegionError::Duplicate("eastus".into())
        );
        assert_eq!(
            resolve_regions(&[spec("")], &b).unwrap_err(),
            RegionError::EmptyName
        );
    }

    #[test]
    fn regions_file_errors_carry_file_and_line() {
        let text = "[a]\ndisplay_name = \"A\"\nlatitude = 1.0\nlongitude = 2.0\n\n[b]\ndisplay_name = \"B\"\nlatitude = \"x\"\nlongitude = 2.0\n";
        let err = BuiltinRegions::parse(text, "geo/regions.toml").unwrap_err();
        assert!(err.to_string().starts_with("geo/regions.toml:8: "), "{err}");

        let text = "[a]\ndisplay_name = \"A\"\nlatitude = 100.0\nlongitude = 2.0\n";
        let err = BuiltinRegions::parse(text, "r.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "r.toml: region \"a\": latitude 100 is outside -90..=90"
        );
        let text = "[a]\ndisplay_name = \"A\"\nlatitude = 1.0\nlongitude = 2.0\ncolour = 1\n";
        assert!(BuiltinRegions::parse(text, "r.toml").is_err());
    }
}
