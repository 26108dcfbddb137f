//! The fleet link's local file (`[fleet] state_file`): the stamp of the last change applied
//! per etcd key, and the changes made here that etcd has not acknowledged yet. Written
//! atomically (temp file, fsync, rename, directory fsync) like the override state file, so
//! a restart during a partition still shares what was acknowledged as "local, not yet
//! shared", and does not re-apply what it had already seen.
//!
//! The state itself (overrides, modes, catalog) stays in the override state file and the
//! catalog journal, which the writer keeps; this file only remembers what the fleet needs
//! for the conflict rule.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::record::{Record, Stamp};
use crate::overrides::{WriteError, write_atomically};

const VERSION: u32 = 1;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    version: u32,
    #[serde(default)]
    stamps: BTreeMap<String, Stamp>,
    #[serde(default)]
    pending: BTreeMap<String, Record>,
}

/// What the fleet link remembers across restarts.
#[derive(Debug)]
pub(crate) struct Local {
    path: PathBuf,
    /// Per etcd key (below `CLUSTER/`): the stamp of the change in force here.
    pub(crate) stamps: BTreeMap<String, Stamp>,
    /// Per etcd key: a change made here, applied, not yet written to etcd.
    pub(crate) pending: BTreeMap<String, Record>,
}

impl Local {
    /// Read `path`; a missing file is an empty record, a corrupt one an error naming it.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let file = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<FileV1>(&bytes)
                .map_err(|e| format!("fleet state file {}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileV1 {
                version: VERSION,
                ..FileV1::default()
            },
            Err(e) => return Err(format!("fleet state file {}: {e}", path.display())),
        };
        if file.version != VERSION {
            return Err(format!(
                "fleet state file {}: version {} (this steerdns reads {VERSION})",
                path.display(),
                file.version
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            stamps: file.stamps,
            pending: file.pending,
        })
    }

    /// Write it atomically; the error names the file.
    pub(crate) fn save(&self) -> Result<(), String> {
        let file = FileV1 {
            version: VERSION,
            stamps: self.stamps.clone(),
            pending: self.pending.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
        write_atomically(&self.path, &bytes, |d| std::fs::File::open(d)?.sync_all()).map_err(|e| {
            let e = match e {
                WriteError::BeforeRename(e) | WriteError::AfterRename(e) => e,
            };
            format!("fleet state file {}: {e}", self.path.display())
        })
    }

    /// The stamp a new change here gets for `key`: now, and always later than the change in
    /// force, so an operator's latest action wins over what this instance has seen even
    /// when its clock is behind.
    pub(crate) fn next_stamp(&self, key: &str, instance: &str) -> Stamp {
        let mut s = Stamp::now(instance);
        if let Some(seen) = self.stamps.get(key).filter(|seen| **seen >= s) {
            s.at_ms = seen.at_ms + 1;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::record::Change;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fleet.json");
        let mut l = Local::load(&path).expect("missing is empty");
        assert!(l.stamps.is_empty() && l.pending.is_empty());
        let far = Stamp {
            at_ms: u64::MAX / 2,
            instance: "b".into(),
        };
        l.stamps.insert("ops/mode/server".into(), far.clone());
        let next = l.next_stamp("ops/mode/server", "a");
        assert_eq!((next.at_ms, next.instance.as_str()), (far.at_ms + 1, "a"));
        l.pending.insert(
            "ops/mode/server".into(),
            Record {
                stamp: next,
                change: Change::Mode {
                    registry: None,
                    mode: crate::state::view::ModeName::Off,
                    who: "t".into(),
                },
                base: None,
            },
        );
        l.save().expect("save");
        let back = Local::load(&path).expect("load");
        assert_eq!(back.stamps, l.stamps);
        assert_eq!(back.pending, l.pending);
        std::fs::write(&path, b"{").expect("write");
        let e = Local::load(&path).expect_err("corrupt");
        assert!(e.contains("fleet.json"), "{e}");
    }
}
