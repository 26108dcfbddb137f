//! Operator overrides: disable or enable one replica of one registry, or a whole region across
//! registries, without any remote control plane. Each override carries a reason, who set it
//! (token name or client address), when, and an optional expiry.
//!
//! Overrides persist in a state file (`[admin] state_file`, default `steerdns-state.json` next
//! to the config), written atomically: a temp file in the same directory, write, fsync the
//! file, rename over the old one, fsync the directory. A reader (or a restart after
//! `kill -9`) sees the old file or the new one, never a torn mix; a change is acknowledged
//! only after the directory fsync. Failures are classified by the rename: before it, the old
//! file stays and nothing changes; after it (the directory fsync failed) the new file is in
//! place, so the change counts as committed in memory too (memory and disk agree), with an
//! error logged that its durability across a power loss is in doubt.
//!
//! The same file holds the runtime health modes (the kill switch, [`Modes`]), written with
//! the same discipline, so a mode switched through the admin API survives a restart.
//!
//! A corrupt state file is an error naming the file and the reason: the server must not start
//! with silently dropped overrides. A missing file means no overrides.
//!
//! The query API ([`Overrides::is_disabled`]) is pure. Every change returns an [`AuditEvent`]
//! and logs one line. Writes block on fsync: the state task calls the mutating methods from
//! `tokio::task::spawn_blocking` (or accepts a few ms of blocking; there is one writer).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::health::spec::HealthMode;
use tracing::{error, info};

/// Default state file name, next to the config file.
pub(crate) const DEFAULT_STATE_FILE: &str = "steerdns-state.json";

/// State file format version.
const STATE_VERSION: u32 = 1;

mod keys;

pub use keys::{RegionName, RegistryKey, ReplicaKey};

//------------ Target ------------------------------------------------------------------------

/// What an override disables.
#[derive(Clone, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// One replica of one registry.
    Replica {
        /// `[registries.KEY]`.
        registry: RegistryKey,
        /// `[registries.R.replicas.KEY]`.
        replica: ReplicaKey,
    },
    /// Every replica in a region, across registries.
    Region {
        /// Region name.
        region: RegionName,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Replica { registry, replica } => write!(f, "replica {registry}/{replica}"),
            Target::Region { region } => write!(f, "region {region}"),
        }
    }
}

//------------ Override ----------------------------------------------------------------------

/// One operator override (a disable).
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// What is disabled.
    pub(crate) target: Target,
    /// Why, in the operator's words.
    pub(crate) reason: String,
    /// Who: `token:NAME` or the client address.
    pub(crate) who: String,
    /// When it was set.
    #[serde(with = "rfc3339")]
    pub(crate) created_at: SystemTime,
    /// When it lapses by itself (None: until enabled again).
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub(crate) until: Option<SystemTime>,
}

impl Override {
    /// Whether it is in force at `now`.
    pub(crate) fn active(&self, now: SystemTime) -> bool {
        self.until.is_none_or(|u| now < u)
    }

    /// Whether it disables `registry`/`replica` (in `region`).
    pub(crate) fn covers(&self, registry: &str, replica: &str, region: &str) -> bool {
        match &self.target {
            Target::Replica {
                registry: g,
                replica: p,
            } => g == registry && p == replica,
            Target::Region { region: r } => r == region,
        }
    }
}

//------------ AuditEvent --------------------------------------------------------------------

/// What changed.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A target was disabled (or its disable replaced).
    Disabled,
    /// A target was enabled again by an operator.
    Enabled,
    /// An override lapsed at its `until`.
    Expired,
}

/// A record of one change, returned to the caller (for the event history) and logged.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct AuditEvent {
    /// What happened.
    pub action: AuditAction,
    /// To what.
    pub(crate) target: Target,
    /// Who did it (`steerdns` for expiry).
    pub(crate) who: String,
    /// The reason given.
    pub(crate) reason: String,
    /// When.
    #[serde(with = "rfc3339")]
    pub(crate) at: SystemTime,
    /// Expiry of a disable.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub(crate) until: Option<SystemTime>,
    /// With `[fleet]`: `shared` or `local, not yet shared` (see `state::view::Ack::fleet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
}

impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            AuditAction::Disabled => "disabled",
            AuditAction::Enabled => "enabled",
            AuditAction::Expired => "override expired for",
        };
        write!(f, "{action} {} by {}", self.target, self.who)?;
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        if let Some(u) = self.until {
            write!(f, " (until {})", humantime::format_rfc3339_seconds(u))?;
        }
        Ok(())
    }
}

//------------ OverrideError -----------------------------------------------------------------

/// Loading or saving the state file failed.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// The file could not be read or written.
    #[error("state file {}: {source}", path.display())]
    Io {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid state file.
    #[error("state file {}: {reason}", path.display())]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Enable of something that is not disabled.
    #[error("{0} is not disabled")]
    NotDisabled(Target),
}

//------------ Overrides ---------------------------------------------------------------------

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    overrides: Vec<Override>,
    /// Runtime health modes (the kill switch); absent in files written before they
    /// persisted.
    #[serde(default, skip_serializing_if = "Modes::is_empty")]
    modes: Modes,
}

/// Runtime health modes set through the admin API (the kill switch), persisted in the state
/// file beside the overrides so they survive restarts.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Modes {
    /// Server-wide mode (None: each registry's configured mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server: Option<HealthMode>,
    /// Per-registry modes by registry key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) registries: BTreeMap<RegistryKey, HealthMode>,
}

impl Modes {
    fn is_empty(&self) -> bool {
        self.server.is_none() && self.registries.is_empty()
    }
}

/// The set of overrides and the file it persists to. Owned by the single writer (the state
/// task); the routing view gets a plain `disabled(registry, replica)` predicate built from it.
#[derive(Debug)]
pub struct Overrides {
    path: PathBuf,
    entries: Vec<Override>,
    modes: Modes,
    /// Syncs the state file's directory after the rename: `sync_dir` in service; a fault
    /// seam for tests (a failing directory fsync cannot be produced otherwise).
    sync_dir: fn(&Path) -> io::Result<()>,
}

impl Overrides {
    /// Load `path` (a missing file means no overrides). Expired entries are dropped from
    /// memory; the file is rewritten by the next change or [`Overrides::prune`].
    pub fn load(path: &Path, now: SystemTime) -> Result<Self, OverrideError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Self {
                    path: path.to_path_buf(),
                    entries: Vec::new(),
                    modes: Modes::default(),
                    sync_dir,
                });
            }
            Err(source) => {
                return Err(OverrideError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let file: StateFile = serde_json::from_str(&text).map_err(|e| OverrideError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if file.version != STATE_VERSION {
            return Err(OverrideError::Corrupt {
                path: path.to_path_buf(),
                reason: format!(
                    "version {} is not supported (this steerdns writes {STATE_VERSION})",
                    file.version
                ),
            });
        }
        let entries = file
            .overrides
            .into_iter()
            .filter(|o| o.active(now))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            entries,
            modes: file.modes,
            sync_dir,
        })
    }

    /// The override that disables `registry`/`replica` (in `region`) at `now`, if any; a
    /// replica override wins over a region one.
    pub fn is_disabled(
        &self,
        registry: &str,
        replica: &str,
        region: &str,
        now: SystemTime,
    ) -> Option<&Override> {
        let mut region_hit = None;
        for o in self.entries.iter().filter(|o| o.active(now)) {
            if o.covers(registry, replica, region) {
                match o.target {
                    Target::Replica { .. } => return Some(o),
                    Target::Region { .. } => region_hit = region_hit.or(Some(o)),
                }
            }
        }
        region_hit
    }

    /// Overrides in force at `now`.
    pub fn active(&self, now: SystemTime) -> impl Iterator<Item = &Override> {
        self.entries.iter().filter(move |o| o.active(now))
    }

    /// Disable `target` (replacing an existing disable of the same target) and persist.
    /// On a write error nothing changes.
    pub fn disable(
        &mut self,
        target: Target,
        reason: &str,
        who: &str,
        until: Option<SystemTime>,
        now: SystemTime,
    ) -> Result<AuditEvent, OverrideError> {
        let mut next: Vec<Override> = self
            .entries
            .iter()
            .filter(|o| o.active(now) && o.target != target)
            .cloned()
            .collect();
        next.push(Override {
            target: target.clone(),
            reason: reason.to_owned(),
            who: who.to_owned(),
            created_at: now,
            until,
        });
        self.commit(next)?;
        Ok(audit(AuditEvent {
            action: AuditAction::Disabled,
            target,
            who: who.to_owned(),
            reason: reason.to_owned(),
            at: now,
            until,
            fleet: None,
        }))
    }

    /// Enable `target` again and persist. Enabling what is not disabled is an error (the
    /// operator probably named the wrong thing).
    pub fn enable(
        &mut self,
        target: Target,
        reason: &str,
        who: &str,
        now: SystemTime,
    ) -> Result<AuditEvent, OverrideError> {
        if !self.active(now).any(|o| o.target == target) {
            return Err(OverrideError::NotDisabled(target));
        }
        let next = self
            .entries
            .iter()
            .filter(|o| o.active(now) && o.target != target)
            .cloned()
            .collect();
        self.commit(next)?;
        Ok(audit(AuditEvent {
            action: AuditAction::Enabled,
            target,
            who: who.to_owned(),
            reason: reason.to_owned(),
            at: now,
            until: None,
            fleet: None,
        }))
    }

    /// Drop entries whose `until` has passed, persisting when any were dropped; returns one
    /// event per lapsed override. Call it from the state task's timer (e.g. every second, or
    /// at the next `until`).
    pub fn prune(&mut self, now: SystemTime) -> Result<Vec<AuditEvent>, OverrideError> {
        let (keep, gone): (Vec<Override>, Vec<Override>) =
            self.entries.iter().cloned().partition(|o| o.active(now));
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        self.commit(keep)?;
        Ok(gone
            .into_iter()
            .map(|o| {
                audit(AuditEvent {
                    action: AuditAction::Expired,
                    target: o.target,
                    who: "steerdns".into(),
                    reason: o.reason,
                    at: now,
                    until: o.until,
                    fleet: None,
                })
            })
            .collect())
    }

    /// The runtime health modes in force.
    pub(crate) fn modes(&self) -> &Modes {
        &self.modes
    }

    /// Replace the runtime health modes and persist them. On a write error nothing changes.
    pub(crate) fn set_modes(&mut self, modes: Modes) -> Result<(), OverrideError> {
        let entries = self.entries.clone();
        self.write(entries, modes)
    }

    /// The earliest `until` among the entries, for the state task's prune timer.
    pub(crate) fn next_expiry(&self) -> Option<SystemTime> {
        self.entries.iter().filter_map(|o| o.until).min()
    }

    fn commit(&mut self, next: Vec<Override>) -> Result<(), OverrideError> {
        let modes = self.modes.clone();
        self.write(next, modes)
    }

    fn write(&mut self, next: Vec<Override>, modes: Modes) -> Result<(), OverrideError> {
        let file = StateFile {
            version: STATE_VERSION,
            overrides: next,
            modes,
        };
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| OverrideError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        match write_atomically(&self.path, &bytes, self.sync_dir) {
            Ok(()) => {}
            // The new file is in place: a restart (or any reader) sees it, so memory must
            // agree with it. Only its durability across a power loss is in doubt.
            Err(WriteError::AfterRename(e)) => {
                error!(path = %self.path.display(), error = %e,
                    "state file renamed into place but its directory fsync failed; the change is in force and may not survive a power loss");
            }
            Err(WriteError::BeforeRename(source)) => {
                return Err(OverrideError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        }
        self.entries = file.overrides;
        self.modes = file.modes;
        Ok(())
    }
}

fn audit(e: AuditEvent) -> AuditEvent {
    info!(target: "steerdns::audit", action = ?e.action, who = %e.who, "{e}");
    e
}

/// Where an atomic write failed: before the rename the old file is in place (nothing
/// changed); after it the new file is (the change is committed, its durability in doubt).
#[derive(Debug)]
pub(crate) enum WriteError {
    /// Temp file, write, file fsync or rename failed: the old content stays.
    BeforeRename(io::Error),
    /// The rename succeeded; the directory fsync failed: the new content is in place.
    AfterRename(io::Error),
}

/// fsync a directory (makes a rename in it durable).
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Write `bytes` to `path` so that the file is always either the old or the new content:
/// temp file in the same directory, write, fsync, rename, fsync the directory (`sync`).
pub(crate) fn write_atomically(
    path: &Path,
    bytes: &[u8],
    sync: fn(&Path) -> io::Result<()>,
) -> Result<(), WriteError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        WriteError::BeforeRename(io::Error::new(
            io::ErrorKind::InvalidInput,
            "state file has no name",
        ))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(WriteError::BeforeRename(e));
    }
    sync(&dir).map_err(WriteError::AfterRename)
}

//------------ time formats ------------------------------------------------------------------

/// Parse an RFC 3339 timestamp as written by [`format_time`].
pub(crate) fn parse_time(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s).map_err(|e| format!("invalid time {s:?}: {e}"))
}

/// Format a time as RFC 3339 with second precision, UTC.
pub(crate) fn format_time(t: SystemTime) -> String {
    // Before 1970 cannot be formatted; clamp (never happens with real clocks).
    let t = if t < UNIX_EPOCH { UNIX_EPOCH } else { t };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Add a duration to a time without overflow (saturating far in the future).
pub fn time_plus(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d)
        .unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(253_402_300_799))
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(*t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_time(&s).map_err(serde::de::Error::custom)
    }
}

mod rfc3339_opt {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::format_time(*t)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| super::parse_time(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing_sync(_: &Path) -> io::Result<()> {
        Err(io::Error::other("injected directory fsync failure"))
    }

    /// A rename that succeeded is committed even when the directory fsync after it fails:
    /// memory agrees with what a fresh load of the file gives, for disable, enable and
    /// prune alike.
    #[test]
    fn a_failed_directory_fsync_after_the_rename_is_committed() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("s.json");
        let mut o = Overrides::load(&path, t(0)).expect("load");
        o.sync_dir = failing_sync;
        let agree = |o: &Overrides, now| {
            let fresh = Overrides::load(&path, now).expect("reload");
            assert_eq!(
                o.active(now).collect::<Vec<_>>(),
                fresh.active(now).collect::<Vec<_>>()
            );
        };
        o.disable(rep("contoso", "westeurope"), "incident", "ops", None, t(1))
            .expect("committed despite the fsync failure");
        assert!(o.is_disabled("contoso", "westeurope", "we", t(2)).is_some());
        agree(&o, t(2));
        o.disable(region("eastus"), "m", "ops", Some(t(10)), t(3))
            .expect("committed");
        agree(&o, t(4));
        o.enable(rep("contoso", "westeurope"), "", "ops", t(5))
            .expect("committed");
        assert!(o.is_disabled("contoso", "westeurope", "we", t(6)).is_none());
        agree(&o, t(6));
        assert_eq!(o.prune(t(11)).expect("committed").len(), 1);
        agree(&o, t(11));
        assert_eq!(o.active(t(11)).count(), 0);
    }

    /// Modes persist with the same discipline and survive a fresh load; a truncated file is
    /// an error naming it.
    #[test]
    fn modes_persist_and_a_truncated_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("s.json");
        let mut o = Overrides::load(&path, t(0)).expect("load");
        o.disable(rep("a", "b"), "r", "ops", None, t(1))
            .expect("ok");
        let mut m = Modes {
            server: Some(HealthMode::Off),
            ..Default::default()
        };
        m.registries.insert("contoso".into(), HealthMode::Shallow);
        o.set_modes(m.clone()).expect("persist");
        let fresh = Overrides::load(&path, t(2)).expect("reload");
        assert_eq!(fresh.modes(), &m);
        assert_eq!(fresh.active(t(2)).count(), 1);
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.contains("\"server\": \"off\""), "{text}");
        fs::write(&path, &text[..text.len() / 2]).expect("truncate");
        let err = Overrides::load(&path, t(3)).expect_err("truncated");
        assert!(err.to_string().contains("s.json"), "{err}");
    }

    /// A failure before the rename changes nothing, in memory or on disk.
    #[test]
    fn a_failure_before_the_rename_changes_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("s.json");
        let mut o = Overrides::load(&path, t(0)).expect("load");
        o.disable(rep("a", "b"), "r", "ops", None, t(1))
            .expect("ok");
        // The state file's path is now a directory: the rename over it fails.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).expect("dir");
        fs::write(blocked.join("x"), b"x").expect("file");
        o.path = blocked;
        let err = o
            .disable(rep("c", "d"), "r", "ops", None, t(2))
            .expect_err("rename over a non-empty directory fails");
        assert!(err.to_string().contains("blocked"), "{err}");
        assert!(o.is_disabled("c", "d", "x", t(3)).is_none());
        assert!(o.is_disabled("a", "b", "x", t(3)).is_some());
    }

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn rep(g: &str, p: &str) -> Target {
        Target::Replica {
            registry: g.into(),
            replica: p.into(),
        }
    }

    fn region(r: &str) -> Target {
        Target::Region { region: r.into() }
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tmp");
        let o = Overrides::load(&dir.path().join("s.json"), t(0)).expect("load");
        assert_eq!(o.active(t(0)).count(), 0);
    }

    #[test]
    fn disable_enable_persist_and_query() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("s.json");
        let mut o = Overrides::load(&path, t(0)).expect("load");
        let e = o
            .disable(
                rep("contoso", "westeurope"),
                "storage incident",
                "token:ops",
                None,
                t(1),
            )
            .expect("disable");
        assert_eq!(e.action, AuditAction::Disabled);
        assert_eq!(
            e.to_string(),
            "disabled replica contoso/westeurope by token:ops: storage incident"
        );
        o.disable(
            region("eastus"),
            "maintenance",
            "127.0.0.1",
            Some(t(100)),
            t(2),
        )
        .expect("disable region");

        let hit = o
            .is_disabled("contoso", "westeurope", "westeurope", t(3))
            .expect("disabled");
        assert_eq!(hit.reason, "storage incident");
        assert!(
            o.is_disabled("fabrikam", "westeurope", "westeurope", t(3))
                .is_none()
        );
        let hit = o
            .is_disabled("fabrikam", "east", "eastus", t(3))
            .expect("region");
        assert_eq!(hit.who, "127.0.0.1");
        assert!(
            o.is_disabled("fabrikam", "east", "eastus", t(100))
                .is_none(),
            "expired"
        );

        // Survives a restart, byte for byte.
        let again = Overrides::load(&path, t(3)).expect("reload");
        assert_eq!(again.entries, o.entries);

        let e = o
            .enable(rep("contoso", "westeurope"), "fixed", "token:ops", t(4))
            .expect("enable");
        assert_eq!(e.action, AuditAction::Enabled);
        assert!(
            o.is_disabled("contoso", "westeurope", "westeurope", t(5))
                .is_none()
        );
        let again = Overrides::load(&path, t(5)).expect("reload");
        assert_eq!(again.active(t(5)).count(), 1);

        let err = o
            .enable(rep("contoso", "westeurope"), "", "x", t(6))
            .expect_err("not disabled");
        assert_eq!(
            err.to_string(),
            "replica contoso/westeurope is not disabled"
        );
    }

    #[test]
    fn replica_override_wins_and_disable_replaces() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut o = Overrides::load(&dir.path().join("s.json"), t(0)).expect("load");
        o.disable(region("westeurope"), "region", "a", None, t(1))
            .expect("d");
        o.disable(rep("c", "w"), "one", "b", None, t(2)).expect("d");
        o.disable(rep("c", "w"), "two", "b", Some(t(50)), t(3))
            .expect("d");
        assert_eq!(o.active(t(4)).count(), 2);
        let hit = o.is_disabled("c", "w", "westeurope", t(4)).expect("hit");
        assert_eq!(hit.reason, "two");
        // After the replica override lapses the region one still holds.
        let hit = o.is_disabled("c", "w", "westeurope", t(60)).expect("hit");
        assert_eq!(hit.reason, "region");
    }

    #[test]
    fn expired_are_ignored_and_pruned() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("s.json");
        let mut o = Overrides::load(&path, t(0)).expect("load");
        o.disable(rep("c", "w"), "brief", "a", Some(t(10)), t(0))
            .expect("d");
        o.disable(rep("c", "e"), "long", "a", None, t(0))
            .expect("d");
        assert_eq!(o.next_expiry(), Some(t(10)));
        assert!(o.prune(t(5)).expect("prune").is_empty());
        let gone = o.prune(t(10)).expect("prune");
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].action, AuditAction::Expired);
        assert_eq!(gone[0].target, rep("c", "w"));
        let text = fs::read_to_string(&path).expect("read");
        assert!(!text.contains("brief"), "{text}");
        // Loading drops expired entries even when the file still has them.
        let mut o2 = Overrides::load(&path, t(0)).expect("load");
        o2.disable(rep("x", "y"), "soon", "a", Some(t(20)), t(0))
            .expect("d");
        let o3 = Overrides::load(&path, t(30)).expect("load");
        assert_eq!(o3.active(t(30)).count(), 1);
    }

    #[test]
    fn corrupt_file_is_an_error_naming_file_and_reason() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("s.json");
        fs::write(&path, "{\"version\":1,\"overrides\":[{\"target\":").expect("write");
        let e = Overrides::load(&path, t(0)).expect_err("corrupt");
        let s = e.to_string();
        assert!(
            s.starts_with(&format!("state file {}: ", path.display())),
            "{s}"
        );
        assert!(s.contains("EOF"), "{s}");
        fs::write(&path, "{\"version\":2,\"overrides\":[]}").expect("write");
        let s = Overrides::load(&path, t(0))
            .expect_err("version")
            .to_string();
        assert!(s.contains("version 2 is not supported"), "{s}");
        fs::write(&path, "{\"version\":1,\"overrides\":[],\"extra\":1}").expect("write");
        let s = Overrides::load(&path, t(0))
            .expect_err("unknown")
            .to_string();
        assert!(s.contains("unknown field `extra`"), "{s}");
    }

    #[test]
    fn failed_write_changes_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("missing-dir").join("s.json");
        let mut o = Overrides::load(&path, t(0)).expect("load");
        let e = o
            .disable(rep("c", "w"), "x", "a", None, t(0))
            .expect_err("no dir");
        assert!(matches!(e, OverrideError::Io { .. }), "{e}");
        assert_eq!(o.active(t(0)).count(), 0);
    }

    #[test]
    fn file_format_is_readable_json() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("s.json");
        let mut o = Overrides::load(&path, t(0)).expect("load");
        o.disable(rep("c", "w"), "why", "token:ops", Some(t(60)), t(0))
            .expect("d");
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(v["version"], 1);
        let e = &v["overrides"][0];
        assert_eq!(e["target"]["kind"], "replica");
        assert_eq!(e["target"]["registry"], "c");
        assert_eq!(e["created_at"], "2027-01-15T08:00:00Z");
        assert_eq!(e["until"], "2027-01-15T08:01:00Z");
    }
}
