//! `[dnssec]`: which zones are signed, with which keys, and how signatures are timed.
//!
//! ```toml
//! [dnssec]
//! zones = ["registry.example."]   # each needs keys in key_dir
//! key_dir = "keys"                # relative to the config file: K<zone>+<alg>+<tag>.{key,private}
//! validity = "14d"                # inception to expiration
//! inception_offset = "1h"         # inception this far back (resolvers' clock skew)
//! jitter = "1d"                   # at most this much off each RRset's expiration
//! dnskey_ttl = "1h"               # TTL of DNSKEY, CDS and CDNSKEY
//! signature_cache = 262144        # steered answers' signed RRsets kept (slots)
//! ```
//!
//! Every key file of a zone in `key_dir` signs: flags 257 (KSK or CSK) sign the key RRsets,
//! flags 256 (ZSK) the rest; with no ZSK the 257 key signs everything (a CSK). Keys are read
//! when the config is, so `check-config` reports a missing, unreadable or foreign key with
//! its file and line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::Name;
use serde::Deserialize;

use super::file::Dur;
use crate::dnssec::Key;
use crate::dnssec::sign::Timing;
use crate::problem::Problem;

/// `[dnssec]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DnssecSpec {
    /// Zones to sign (their origins).
    #[serde(default)]
    pub(crate) zones: Vec<String>,
    /// The key directory, relative to the config file (default `keys`).
    pub(crate) key_dir: Option<String>,
    pub(crate) validity: Option<Dur>,
    pub(crate) inception_offset: Option<Dur>,
    pub(crate) jitter: Option<Dur>,
    pub(crate) dnskey_ttl: Option<Dur>,
    /// Slots of the signature cache of steered answers (default 262 144).
    pub(crate) signature_cache: Option<usize>,
}

/// One signed zone and its keys.
#[derive(Clone, Debug)]
pub(crate) struct ZoneKeys {
    /// The zone's origin, lower case.
    pub(crate) zone: Name,
    /// Its keys (at least one with flags 257), by tag.
    pub(crate) keys: Vec<Key>,
}

/// `[dnssec]`, validated, keys read.
#[derive(Clone, Debug)]
pub(crate) struct DnssecConfig {
    pub(crate) key_dir: PathBuf,
    pub(crate) zones: Vec<ZoneKeys>,
    pub(crate) timing: Timing,
    pub(crate) dnskey_ttl: u32,
    pub(crate) signature_cache: usize,
}

impl DnssecConfig {
    /// Every zone of `origins` signed by one CSK made now (ECDSA P-256), default timing and
    /// DNSKEY TTL: the demo's `--dnssec` and the signed fuzz harness. With `write`, the key
    /// files go into `key_dir` (created if missing).
    pub(crate) fn fresh(
        origins: impl IntoIterator<Item = Name>,
        key_dir: PathBuf,
        write: bool,
        signature_cache: usize,
    ) -> Result<Self, String> {
        use crate::dnssec::{Algorithm, FLAGS_KSK};
        if write {
            std::fs::create_dir_all(&key_dir).map_err(|e| format!("{}: {e}", key_dir.display()))?;
        }
        let mut zones = Vec::new();
        for origin in origins {
            let key = Key::generate(&origin.to_ascii(), FLAGS_KSK, Algorithm::EcdsaP256Sha256)?;
            if write {
                key.write(&key_dir)
                    .map_err(|e| format!("{}: {e}", key_dir.display()))?;
            }
            zones.push(ZoneKeys {
                zone: origin.to_lowercase(),
                keys: vec![key],
            });
        }
        Ok(Self {
            key_dir,
            zones,
            timing: Timing::default(),
            dnskey_ttl: 3_600,
            signature_cache,
        })
    }
}

impl DnssecSpec {
    /// Validate, reading the keys from `key_dir` relative to `dir`. Problems in the config
    /// file come from `at`; problems in a key file name that file and line.
    pub(crate) fn resolve(
        self,
        dir: &Path,
        problems: &mut Vec<Problem>,
        at: impl Fn(&str, Option<&str>, String) -> Problem,
    ) -> Option<DnssecConfig> {
        let key_dir = dir.join(self.key_dir.as_deref().unwrap_or("keys"));
        let d = |v: Option<Dur>, default: u64| v.map_or(Duration::from_secs(default), |d| d.0);
        let timing = Timing {
            validity: d(self.validity, 14 * 86_400),
            inception_offset: d(self.inception_offset, 3_600),
            jitter: d(self.jitter, 86_400),
        };
        let dnskey_ttl = d(self.dnskey_ttl, 3_600);
        if timing.validity < Duration::from_secs(3_600) {
            problems.push(at(
                "dnssec",
                Some("validity"),
                "dnssec.validity must be at least 1h".into(),
            ));
        }
        if timing.jitter * 2 > timing.validity {
            problems.push(at(
                "dnssec",
                Some("jitter"),
                "dnssec.jitter must be at most half of dnssec.validity".into(),
            ));
        }
        if dnskey_ttl.is_zero() || dnskey_ttl > Duration::from_secs(86_400) {
            problems.push(at(
                "dnssec",
                Some("dnskey_ttl"),
                "dnssec.dnskey_ttl must be between 1s and 1d".into(),
            ));
        }
        let mut zones: Vec<ZoneKeys> = Vec::new();
        for z in &self.zones {
            let zone = match Name::from_ascii(z) {
                Ok(mut n) => {
                    n.set_fqdn(true);
                    n.to_lowercase()
                }
                Err(e) => {
                    problems.push(at(
                        "dnssec",
                        Some("zones"),
                        format!("dnssec.zones: {z:?} is not a domain name: {e}"),
                    ));
                    continue;
                }
            };
            if zones.iter().any(|k| k.zone == zone) {
                problems.push(at(
                    "dnssec",
                    Some("zones"),
                    format!("dnssec.zones names {zone} twice"),
                ));
                continue;
            }
            match Key::read_zone(&key_dir, &zone.to_ascii()) {
                Err(e) => problems.push(Problem::at(&e.file, e.line, e.reason)),
                Ok(keys) if keys.is_empty() => problems.push(at(
                    "dnssec",
                    Some("zones"),
                    format!(
                        "dnssec.zones: no key for {zone} in {} (make one with `steerdns dnssec keygen {zone} --dir {}`)",
                        key_dir.display(),
                        key_dir.display()
                    ),
                )),
                Ok(keys) if !keys.iter().any(|k| k.flags == crate::dnssec::FLAGS_KSK) => {
                    problems.push(at(
                        "dnssec",
                        Some("zones"),
                        format!(
                            "dnssec.zones: {zone} has only ZSKs (flags 256) in {}: add a KSK or CSK (flags 257) to sign its DNSKEY RRset",
                            key_dir.display()
                        ),
                    ))
                }
                Ok(keys) => zones.push(ZoneKeys { zone, keys }),
            }
        }
        if zones.is_empty() {
            return None;
        }
        Some(DnssecConfig {
            key_dir,
            zones,
            timing,
            dnskey_ttl: dnskey_ttl.as_secs() as u32,
            signature_cache: self.signature_cache.unwrap_or(1 << 18),
        })
    }
}
