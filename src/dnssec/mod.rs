//! DNSSEC keys (issue 21, first part): key files in BIND's format, so that keys made by
//! `dnssec-keygen`, `ldns-keygen` or Knot's `keymgr` work and keys made here work with
//! them; key tags (RFC 4034 appendix B) and DS records (RFC 4509, SHA-256) for the parent.
//! Signing is in `sign`.
//!
//! ```text
//! Kexample.net.+013+55648.key       example.net. IN DNSKEY 257 3 13 <public key, base64>
//! Kexample.net.+013+55648.private   Private-key-format: v1.3
//!                                   Algorithm: 13 (ECDSAP256SHA256)
//!                                   PrivateKey: <private key, base64>
//! ```
//!
//! Algorithms: 13 (ECDSA P-256 with SHA-256, the default) and 15 (Ed25519), from `ring`.
//! A private key is never logged or printed: `Debug` leaves it out.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};

pub mod cache;
pub mod sign;
pub(crate) mod warm;

/// DNSKEY flags: zone key (bit 7) and secure entry point (bit 15).
pub const FLAGS_ZSK: u16 = 256;
/// A KSK or CSK: zone key + SEP.
pub const FLAGS_KSK: u16 = 257;

/// A supported algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// 13: ECDSA P-256 with SHA-256.
    EcdsaP256Sha256,
    /// 15: Ed25519.
    Ed25519,
}

impl Algorithm {
    /// Its number in DNSKEY, RRSIG and DS.
    pub fn number(self) -> u8 {
        match self {
            Self::EcdsaP256Sha256 => 13,
            Self::Ed25519 => 15,
        }
    }

    /// From its number; other algorithms are refused with a reason.
    pub fn from_number(n: u8) -> Result<Self, String> {
        match n {
            13 => Ok(Self::EcdsaP256Sha256),
            15 => Ok(Self::Ed25519),
            other => Err(format!(
                "algorithm {other} is not supported: use 13 (ECDSAP256SHA256) or 15 (ED25519)"
            )),
        }
    }

    /// Its mnemonic in BIND's private-key files.
    fn mnemonic(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => "ECDSAP256SHA256",
            Self::Ed25519 => "ED25519",
        }
    }

    fn public_len(self) -> usize {
        match self {
            Self::EcdsaP256Sha256 => 64,
            Self::Ed25519 => 32,
        }
    }
}

/// A zone's key: its DNSKEY and the private key that signs with it.
#[derive(Clone)]
pub struct Key {
    /// The zone, lower case, absolute (`example.net.`).
    pub zone: String,
    /// DNSKEY flags (256 ZSK, 257 KSK or CSK).
    pub flags: u16,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The DNSKEY public key field.
    pub public: Vec<u8>,
    private: Vec<u8>,
    /// BIND's timing metadata (the `.private` file's `Publish:`, `Activate:`, `Inactive:`
    /// and `Delete:` lines): when the key is in the DNSKEY RRset and when it signs.
    pub times: KeyTimes,
}

/// When a key is published and when it signs, in Unix seconds; None: no limit that way
/// (a key without metadata is published and signs). Read at load and reload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyTimes {
    pub publish: Option<u64>,
    pub activate: Option<u64>,
    pub inactive: Option<u64>,
    pub delete: Option<u64>,
}

impl KeyTimes {
    /// In the DNSKEY RRset at `now`: published and not yet deleted.
    pub fn published(&self, now: u64) -> bool {
        self.publish.is_none_or(|t| t <= now) && self.delete.is_none_or(|t| now < t)
    }

    /// Signing at `now`: published, activated and not yet inactive.
    pub fn active(&self, now: u64) -> bool {
        self.published(now)
            && self.activate.is_none_or(|t| t <= now)
            && self.inactive.is_none_or(|t| now < t)
    }

    /// The state at `now`, for `check-config`.
    pub fn describe(&self, now: u64) -> String {
        if !self.published(now) {
            return match self.publish.filter(|t| *t > now) {
                Some(t) => format!("not yet published (publishes {})", format_time(t)),
                None => "deleted".into(),
            };
        }
        if self.active(now) {
            return "published, signing".into();
        }
        match self.activate.filter(|t| *t > now) {
            Some(t) => format!("published, not signing yet (activates {})", format_time(t)),
            None => "published, no longer signing".into(),
        }
    }
}

/// BIND's timestamp form, `YYYYMMDDHHMMSS` (UTC).
pub fn format_time(t: u64) -> String {
    let text = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
    )
    .to_string();
    text.chars().filter(char::is_ascii_digit).collect()
}

/// A time as `dnssec-settime` takes it: `now`, `now+DURATION` or `+DURATION` (humantime:
/// `1d`, `2h`), or `YYYYMMDDHHMMSS` (UTC); `none` clears it (Ok(None)).
pub fn parse_time(text: &str, now: u64) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    if t.eq_ignore_ascii_case("now") {
        return Ok(Some(now));
    }
    let rel = t.strip_prefix("now").unwrap_or(t);
    if let Some(d) = rel.strip_prefix('+') {
        let d = humantime::parse_duration(d).map_err(|e| format!("{text:?}: {e}"))?;
        return Ok(Some(now + d.as_secs()));
    }
    if t.len() == 14 && t.bytes().all(|b| b.is_ascii_digit()) {
        let iso = format!(
            "{}-{}-{}T{}:{}:{}Z",
            &t[0..4],
            &t[4..6],
            &t[6..8],
            &t[8..10],
            &t[10..12],
            &t[12..14]
        );
        let at = humantime::parse_rfc3339(&iso).map_err(|e| format!("{text:?}: {e}"))?;
        return Ok(Some(
            at.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        ));
    }
    Err(format!(
        "{text:?} is not a time: use now, +DURATION (+1d), YYYYMMDDHHMMSS or none"
    ))
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("zone", &self.zone)
            .field("flags", &self.flags)
            .field("algorithm", &self.algorithm)
            .field("tag", &self.tag())
            .finish_non_exhaustive()
    }
}

/// A problem with a key file: the file, the line (when one is to blame) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The file.
    pub file: PathBuf,
    /// Its line, 1-based.
    pub line: Option<usize>,
    /// Why.
    pub reason: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

impl std::error::Error for KeyError {}

/// `name` in canonical wire form (RFC 4034 §6.2: lower case, no compression).
pub fn canonical_name(name: &str) -> Result<Vec<u8>, String> {
    let n = hickory_proto::rr::Name::from_ascii(name)
        .map_err(|e| format!("{name:?} is not a domain name: {e}"))?;
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in n.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    Ok(out)
}

fn absolute_lower(zone: &str) -> String {
    let z = zone.trim().to_ascii_lowercase();
    if z.ends_with('.') { z } else { format!("{z}.") }
}

impl Key {
    /// The DNSKEY RDATA: flags, protocol 3, algorithm, public key.
    pub fn dnskey_rdata(&self) -> Vec<u8> {
        let mut r = Vec::with_capacity(4 + self.public.len());
        r.extend_from_slice(&self.flags.to_be_bytes());
        r.push(3);
        r.push(self.algorithm.number());
        r.extend_from_slice(&self.public);
        r
    }

    /// The key tag (RFC 4034 appendix B).
    pub fn tag(&self) -> u16 {
        let mut ac: u32 = 0;
        for (i, b) in self.dnskey_rdata().iter().enumerate() {
            ac += if i & 1 == 1 {
                u32::from(*b)
            } else {
                u32::from(*b) << 8
            };
        }
        ac += (ac >> 16) & 0xFFFF;
        (ac & 0xFFFF) as u16
    }

    /// The SHA-256 DS digest (RFC 4509): of the owner's canonical name and the DNSKEY RDATA.
    pub fn ds_sha256(&self) -> Vec<u8> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&canonical_name(&self.zone).unwrap_or_default());
        ctx.update(&self.dnskey_rdata());
        ctx.finish().as_ref().to_vec()
    }

    /// The DS record for the parent, in presentation form.
    pub fn ds(&self) -> String {
        let hex: String = self
            .ds_sha256()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        format!(
            "{} IN DS {} {} 2 {hex}",
            self.zone,
            self.tag(),
            self.algorithm.number()
        )
    }

    /// The DNSKEY record in presentation form (the `.key` file's line).
    pub fn dnskey(&self) -> String {
        format!(
            "{} IN DNSKEY {} 3 {} {}",
            self.zone,
            self.flags,
            self.algorithm.number(),
            B64.encode(&self.public)
        )
    }

    /// The key as a BIND `trust-anchors` entry (`delv -a`, `named.conf`).
    pub fn trust_anchor(&self) -> String {
        format!(
            "{} static-key {} 3 {} \"{}\";",
            self.zone,
            self.flags,
            self.algorithm.number(),
            B64.encode(&self.public)
        )
    }

    /// BIND's file name stem: `K<zone>+<alg>+<tag>`.
    pub fn file_stem(&self) -> String {
        format!(
            "K{}+{:03}+{:05}",
            self.zone,
            self.algorithm.number(),
            self.tag()
        )
    }

    /// A new key for `zone` with `flags`.
    pub fn generate(zone: &str, flags: u16, algorithm: Algorithm) -> Result<Key, String> {
        let rng = SystemRandom::new();
        let (private, public) = match algorithm {
            Algorithm::EcdsaP256Sha256 => {
                let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng)
                    .map_err(|_| "cannot generate an ECDSA key".to_string())?;
                let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
                    .map_err(|_| "cannot read the generated key".to_string())?;
                // Uncompressed point 04 || X || Y: DNSKEY holds X || Y.
                let public = pair.public_key().as_ref()[1..].to_vec();
                // ring's P-256 PKCS#8 holds the scalar as the 32 bytes after `04 20`.
                let der = pkcs8.as_ref();
                let private = der
                    .windows(2)
                    .position(|w| w == [0x04, 0x20])
                    .and_then(|i| der.get(i + 2..i + 34))
                    .ok_or("cannot find the private scalar")?
                    .to_vec();
                (private, public)
            }
            Algorithm::Ed25519 => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| "cannot generate an Ed25519 key".to_string())?;
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                    .map_err(|_| "cannot read the generated key".to_string())?;
                let public = pair.public_key().as_ref().to_vec();
                let der = pkcs8.as_ref();
                let private = der
                    .windows(2)
                    .position(|w| w == [0x04, 0x20])
                    .and_then(|i| der.get(i + 2..i + 34))
                    .ok_or("cannot find the private seed")?
                    .to_vec();
                (private, public)
            }
        };
        let key = Key {
            zone: absolute_lower(zone),
            flags,
            algorithm,
            public,
            private,
            times: KeyTimes::default(),
        };
        // The private half must make the public half, or the files would be useless.
        key.check_pair()
            .map_err(|e| format!("generated key: {e}"))?;
        Ok(key)
    }

    /// Whether the private key belongs to the public key.
    fn check_pair(&self) -> Result<(), String> {
        match self.algorithm {
            Algorithm::EcdsaP256Sha256 => {
                let mut point = vec![0x04];
                point.extend_from_slice(&self.public);
                EcdsaKeyPair::from_private_key_and_public_key(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &self.private,
                    &point,
                    &SystemRandom::new(),
                )
                .map(|_| ())
                .map_err(|_| "the private key does not match the public key".to_string())
            }
            Algorithm::Ed25519 => {
                Ed25519KeyPair::from_seed_and_public_key(&self.private, &self.public)
                    .map(|_| ())
                    .map_err(|_| "the private key does not match the public key".to_string())
            }
        }
    }

    /// The `.private` file's text.
    fn private_text(&self) -> String {
        let mut text = format!(
            "Private-key-format: v1.3\nAlgorithm: {} ({})\nPrivateKey: {}\n",
            self.algorithm.number(),
            self.algorithm.mnemonic(),
            B64.encode(&self.private)
        );
        for (label, t) in [
            ("Publish", self.times.publish),
            ("Activate", self.times.activate),
            ("Inactive", self.times.inactive),
            ("Delete", self.times.delete),
        ] {
            if let Some(t) = t {
                text.push_str(&format!("{label}: {}\n", format_time(t)));
            }
        }
        text
    }

    /// Write the `.private` file of the key file `key_file` again (its timing changed).
    pub fn rewrite_private(&self, key_file: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = key_file.with_extension("private");
        std::fs::write(&path, self.private_text())?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
    }

    /// Write `K<zone>+<alg>+<tag>.key` and `.private` (mode 0600) into `dir`; the stem.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let stem = dir.join(self.file_stem());
        // The stem has dots of its own: append, never `with_extension`.
        let with = |ext: &str| PathBuf::from(format!("{}.{ext}", stem.display()));
        let role = if self.flags & 1 == 1 {
            "key-signing"
        } else {
            "zone-signing"
        };
        std::fs::write(
            with("key"),
            format!(
                "; This is a {role} key, keyid {}, for {}\n{}\n",
                self.tag(),
                self.zone,
                self.dnskey()
            ),
        )?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(with("private"))?;
        f.write_all(self.private_text().as_bytes())?;
        Ok(stem)
    }

    /// Read a key from its `.key` file (the `.private` beside it): problems name file and
    /// line. `zone`, when given, must be the key's owner.
    pub fn read(key_file: &Path, zone: Option<&str>) -> Result<Key, KeyError> {
        let err = |file: &Path, line: Option<usize>, reason: String| KeyError {
            file: file.to_path_buf(),
            line,
            reason,
        };
        let text = std::fs::read_to_string(key_file)
            .map_err(|e| err(key_file, None, format!("cannot read: {e}")))?;
        let (n, line) = text
            .lines()
            .enumerate()
            .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with(';'))
            .ok_or_else(|| err(key_file, None, "no DNSKEY record".into()))?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields
            .iter()
            .position(|f| f.eq_ignore_ascii_case("DNSKEY"))
            .ok_or_else(|| err(key_file, Some(n + 1), "not a DNSKEY record".into()))?;
        let owner = absolute_lower(fields[0]);
        let rest = &fields[at + 1..];
        if rest.len() < 4 {
            return Err(err(
                key_file,
                Some(n + 1),
                "DNSKEY needs flags, protocol, algorithm and key".into(),
            ));
        }
        let flags: u16 = rest[0].parse().map_err(|_| {
            err(
                key_file,
                Some(n + 1),
                format!("flags {:?} is not a number", rest[0]),
            )
        })?;
        let algorithm = rest[2]
            .parse::<u8>()
            .map_err(|_| format!("algorithm {:?} is not a number", rest[2]))
            .and_then(Algorithm::from_number)
            .map_err(|e| err(key_file, Some(n + 1), e))?;
        let public = B64.decode(rest[3..].concat()).map_err(|e| {
            err(
                key_file,
                Some(n + 1),
                format!("the public key is not base64: {e}"),
            )
        })?;
        if public.len() != algorithm.public_len() {
            return Err(err(
                key_file,
                Some(n + 1),
                format!(
                    "a {} public key has {} bytes, not {}",
                    algorithm.mnemonic(),
                    algorithm.public_len(),
                    public.len()
                ),
            ));
        }
        if let Some(z) = zone
            && absolute_lower(z) != owner
        {
            return Err(err(
                key_file,
                Some(n + 1),
                format!("this key is for {owner}, not {}", absolute_lower(z)),
            ));
        }
        let private_file = key_file.with_extension("private");
        let ptext = std::fs::read_to_string(&private_file)
            .map_err(|e| err(&private_file, None, format!("cannot read: {e}")))?;
        let mut private = None;
        let mut times = KeyTimes::default();
        for (i, l) in ptext.lines().enumerate() {
            let timing = [
                ("Publish:", &mut times.publish),
                ("Activate:", &mut times.activate),
                ("Inactive:", &mut times.inactive),
                ("Delete:", &mut times.delete),
            ];
            let mut was_time = false;
            for (label, slot) in timing {
                if let Some(v) = l.strip_prefix(label) {
                    was_time = true;
                    *slot = parse_time(v.trim(), 0)
                        .ok()
                        .flatten()
                        .filter(|_| v.trim().len() == 14);
                    if slot.is_none() {
                        return Err(err(
                            &private_file,
                            Some(i + 1),
                            format!("{label} {:?} is not YYYYMMDDHHMMSS", v.trim()),
                        ));
                    }
                }
            }
            if was_time {
                continue;
            }
            if let Some(v) = l.strip_prefix("Algorithm:") {
                let num = v.split_whitespace().next().unwrap_or("");
                if num.parse::<u8>().ok() != Some(algorithm.number()) {
                    return Err(err(
                        &private_file,
                        Some(i + 1),
                        format!(
                            "algorithm {num} here, {} in the .key file",
                            algorithm.number()
                        ),
                    ));
                }
            } else if let Some(v) = l.strip_prefix("PrivateKey:") {
                private = Some(B64.decode(v.trim()).map_err(|e| {
                    err(
                        &private_file,
                        Some(i + 1),
                        format!("the private key is not base64: {e}"),
                    )
                })?);
            }
        }
        let mut private =
            private.ok_or_else(|| err(&private_file, None, "no PrivateKey line".into()))?;
        // BIND writes the P-256 scalar without its leading zero bytes (one key in 256 has
        // 31 bytes): ring wants all 32.
        if algorithm == Algorithm::EcdsaP256Sha256 && private.len() < 32 {
            let mut padded = vec![0; 32 - private.len()];
            padded.extend_from_slice(&private);
            private = padded;
        }
        let key = Key {
            zone: owner,
            flags,
            algorithm,
            public,
            private,
            times,
        };
        key.check_pair().map_err(|e| err(&private_file, None, e))?;
        Ok(key)
    }

    /// Every key of `zone` in `dir` (`K<zone>+*.key`), sorted by tag.
    pub fn read_zone(dir: &Path, zone: &str) -> Result<Vec<Key>, KeyError> {
        let zone = absolute_lower(zone);
        let prefix = format!("K{zone}+");
        let mut keys = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| KeyError {
            file: dir.to_path_buf(),
            line: None,
            reason: format!("cannot read the key directory: {e}"),
        })?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_ascii_lowercase();
            if name.starts_with(&prefix.to_ascii_lowercase()) && name.ends_with(".key") {
                keys.push(Key::read(&e.path(), Some(&zone))?);
            }
        }
        keys.sort_by_key(Key::tag);
        Ok(keys)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Timing metadata: BIND's timestamps both ways, relative times, and what they mean.
    #[test]
    fn key_times_round_trip_and_decide_publishing_and_signing() {
        assert_eq!(parse_time("20261207043000", 0), Ok(Some(1_796_617_800)));
        assert_eq!(format_time(1_796_617_800), "20261207043000");
        assert_eq!(parse_time("+1d", 100), Ok(Some(86_500)));
        assert_eq!(parse_time("now+1h", 100), Ok(Some(3_700)));
        assert_eq!(parse_time("none", 100), Ok(None));
        assert!(parse_time("tomorrow", 0).is_err());
        let dir = tempfile::tempdir().unwrap();
        let mut k = Key::generate("t.example", FLAGS_ZSK, Algorithm::EcdsaP256Sha256).unwrap();
        k.times.activate = Some(2_000);
        k.times.delete = Some(5_000);
        let stem = k.write(dir.path()).unwrap();
        let file = PathBuf::from(format!("{}.key", stem.display()));
        let back = Key::read(&file, None).unwrap();
        assert_eq!(back.times, k.times);
        assert!(back.times.published(1_000) && !back.times.active(1_000));
        assert!(back.times.active(2_000) && !back.times.published(5_000));
        assert!(back.times.describe(1_000).contains("not signing yet"));
        let mut later = back;
        later.times.inactive = Some(3_000);
        later.rewrite_private(&file).unwrap();
        let again = Key::read(&file, None).unwrap();
        assert!(again.times.published(3_000) && !again.times.active(3_000));
        assert_eq!(again.times.describe(3_000), "published, no longer signing");
    }

    /// RFC 6605 §6.1: the P-256 example key, its tag and its SHA-256 DS.
    fn rfc6605(dir: &Path) -> PathBuf {
        let key = dir.join("Kexample.net.+013+55648.key");
        std::fs::write(
            &key,
            "; RFC 6605 6.1\nexample.net. 3600 IN DNSKEY 257 3 13 (\n",
        )
        .unwrap();
        std::fs::write(
            &key,
            "example.net. 3600 IN DNSKEY 257 3 13 GojIhhXUN/u4v54ZQqGSnyhWJwaubCvTmeexv7bR6edb krSqQpF64cYbcB7wNcP+e+MAnLr+Wi9xMWyQLc8NAA==\n",
        )
        .unwrap();
        std::fs::write(
            key.with_extension("private"),
            "Private-key-format: v1.2\nAlgorithm: 13 (ECDSAP256SHA256)\nPrivateKey: GU6SnQ/Ou+xC5RumuIUIuJZteXT2z0O/ok1s38Et6mQ=\n",
        )
        .unwrap();
        key
    }

    #[test]
    fn the_rfc_6605_example_has_its_tag_and_ds() {
        let dir = tempfile::tempdir().unwrap();
        let k = Key::read(&rfc6605(dir.path()), Some("EXAMPLE.NET")).unwrap();
        assert_eq!(k.tag(), 55648);
        assert_eq!(
            k.ds(),
            "example.net. IN DS 55648 13 2 B4C8C1FE2E7477127B27115656AD6256F424625BF5C1E2770CE6D6E37DF61D17"
        );
        assert!(
            !format!("{k:?}").contains("GU6S"),
            "Debug hides the private key"
        );
        assert_eq!(Key::read_zone(dir.path(), "example.net").unwrap().len(), 1);
    }

    #[test]
    fn generated_keys_round_trip_through_their_files() {
        for alg in [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519] {
            let dir = tempfile::tempdir().unwrap();
            let k = Key::generate("Registry.Example", FLAGS_KSK, alg).unwrap();
            let stem = k.write(dir.path()).unwrap();
            let file = |ext: &str| PathBuf::from(format!("{}.{ext}", stem.display()));
            assert!(file("key").ends_with(format!("{}.key", k.file_stem())));
            let back = Key::read(&file("key"), Some("registry.example.")).unwrap();
            assert_eq!((back.tag(), back.ds()), (k.tag(), k.ds()));
            assert_eq!(
                Key::read_zone(dir.path(), "registry.example")
                    .unwrap()
                    .len(),
                1
            );
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(file("private"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// A scalar with a leading zero byte, written without it as BIND does, still reads.
    #[test]
    fn a_p256_scalar_without_its_leading_zero_reads() {
        let dir = tempfile::tempdir().unwrap();
        let k = loop {
            let k = Key::generate("z.example", FLAGS_KSK, Algorithm::EcdsaP256Sha256).unwrap();
            if k.private[0] == 0 {
                break k;
            }
        };
        let stem = k.write(dir.path()).unwrap();
        let file = |ext: &str| PathBuf::from(format!("{}.{ext}", stem.display()));
        let short = format!(
            "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\nPrivateKey: {}\n",
            B64.encode(&k.private[1..])
        );
        std::fs::write(file("private"), short).unwrap();
        let back = Key::read(&file("key"), None).unwrap();
        assert_eq!(back.ds(), k.ds());
    }

    #[test]
    fn key_problems_name_file_line_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let key = rfc6605(dir.path());
        let e = Key::read(&key, Some("other.example")).unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(
            e.reason.contains("for example.net., not other.example."),
            "{e}"
        );
        std::fs::write(&key, "example.net. IN DNSKEY 257 3 8 AwEAAQ==\n").unwrap();
        let e = Key::read(&key, None).unwrap_err();
        assert!(
            e.to_string().contains("algorithm 8 is not supported"),
            "{e}"
        );
        std::fs::remove_file(key.with_extension("private")).unwrap();
        let _ = rfc6605(dir.path());
        std::fs::write(
            key.with_extension("private"),
            "Algorithm: 13 (ECDSAP256SHA256)\nPrivateKey: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        )
        .unwrap();
        let e = Key::read(&key, None).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        std::fs::remove_file(key.with_extension("private")).unwrap();
        let e = Key::read(&key, None).unwrap_err();
        assert!(e.to_string().contains(".private: cannot read"), "{e}");
    }
}
