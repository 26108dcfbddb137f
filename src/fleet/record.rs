//! Shared operator changes as etcd records, and the one conflict rule. Pure: no I/O.
//!
//! Every admin change (an override, a health mode, a catalog registry) is one record under
//! a key that names what it changes (`ops/override/replica/REG/REP`, `ops/mode/server`,
//! `ops/registry/KEY`, ...), carrying a [`Stamp`]: the wall-clock time it was made, in
//! milliseconds, and the instance that made it. An enable or a removal is a record too (not
//! a deleted key), so a later enable beats an earlier disable made during a partition.
//!
//! # The conflict rule
//!
//! For one key, **the record with the greater stamp wins**: the later time, and at the same
//! millisecond the greater instance id (byte order). Every instance applies the same rule to
//! the same records and ends in the same state, whatever order it sees them in; a change
//! that loses is logged (`fleet change lost`) where the loss is seen. Clocks matter: an
//! instance whose clock runs ahead wins ties it should not (run NTP, as etcd itself needs).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use tokio::sync::oneshot;

use crate::overrides::{AuditEvent, Target};
use crate::state::command::{AdminError, Command, ModeCommand, OverrideAction, OverrideCommand};
use crate::state::view::{Ack, ModeName, RegistryRequest};

/// When and where a change was made. Ordered by time, then instance id.
#[derive(Clone, Debug, Deserialize, Eq, Ord, PartialEq, PartialOrd, Serialize)]
pub(crate) struct Stamp {
    /// Milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    /// The instance that made it.
    pub(crate) instance: String,
}

impl Stamp {
    pub(crate) fn now(instance: &str) -> Self {
        Self {
            at_ms: ms(SystemTime::now()),
            instance: instance.to_string(),
        }
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = UNIX_EPOCH + Duration::from_millis(self.at_ms);
        write!(
            f,
            "{} by {}",
            humantime::format_rfc3339_millis(t),
            self.instance
        )
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A disable's details.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub(crate) struct Disable {
    pub(crate) reason: String,
    /// When it lapses (ms since the epoch), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) until_ms: Option<u64>,
}

/// What a record sets.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Change {
    /// A replica or region disabled (`disable`) or enabled (None).
    Override {
        target: Target,
        who: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable: Option<Disable>,
    },
    /// A health mode, server-wide (`registry` None) or for one registry.
    Mode {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        registry: Option<String>,
        mode: ModeName,
        who: String,
    },
    /// A catalog registry put (`request`) or removed (None).
    Registry {
        key: String,
        who: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<RegistryRequest>,
    },
}

/// One shared change.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Record {
    pub(crate) stamp: Stamp,
    pub(crate) change: Change,
    /// The stamp of the change to the same key in force where this one was made (None:
    /// none): a record it replaces with another stamp was made concurrently, and lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) base: Option<Stamp>,
}

impl Record {
    /// Whether replacing `earlier` with this record overrides a change its maker had not
    /// seen (a conflict, settled by the rule), rather than following it.
    pub(crate) fn overrides_unseen(&self, earlier: &Record) -> bool {
        self.base.as_ref() != Some(&earlier.stamp)
    }
}

impl Change {
    /// The key (below `CLUSTER/`) of what it changes: one record per key, the latest wins.
    pub(crate) fn key(&self) -> String {
        match self {
            Change::Override {
                target: Target::Replica { registry, replica },
                ..
            } => format!("ops/override/replica/{registry}/{replica}"),
            Change::Override {
                target: Target::Region { region },
                ..
            } => format!("ops/override/region/{region}"),
            Change::Mode { registry: None, .. } => "ops/mode/server".into(),
            Change::Mode {
                registry: Some(r), ..
            } => format!("ops/mode/registry/{r}"),
            Change::Registry { key, .. } => format!("ops/registry/{key}"),
        }
    }

    /// The change an admin command makes, at `now`; None for commands that stay local
    /// (reload, status).
    pub(crate) fn of(command: &Command, now: SystemTime) -> Option<Change> {
        Some(match command {
            Command::Override { command: c, .. } => Change::Override {
                target: c.target.clone(),
                who: c.who.clone(),
                disable: (c.action == OverrideAction::Disable).then(|| Disable {
                    reason: c.reason.clone(),
                    until_ms: c.duration.map(|d| ms(crate::overrides::time_plus(now, d))),
                }),
            },
            Command::Mode { command: c, .. } => Change::Mode {
                registry: c.registry.clone(),
                mode: c.mode,
                who: c.who.clone(),
            },
            Command::PutRegistry {
                key, request, who, ..
            } => Change::Registry {
                key: key.clone(),
                who: who.clone(),
                request: Some(request.clone()),
            },
            Command::DeleteRegistry { key, who, .. } => Change::Registry {
                key: key.clone(),
                who: who.clone(),
                request: None,
            },
            Command::Reload { .. }
            | Command::Status { .. }
            | Command::Incidents { .. }
            | Command::RegistryKeys { .. }
            | Command::IncidentRegistries { .. }
            | Command::FleetVerdicts { .. }
            | Command::FleetStatus { .. } => return None,
        })
    }

    /// The writer command that applies it at `now`, and where its outcome arrives. A
    /// disable whose expiry has passed applies as an enable.
    pub(crate) fn command(&self, now: SystemTime) -> (Command, Outcome) {
        match self {
            Change::Override {
                target,
                who,
                disable,
            } => {
                let until = disable
                    .as_ref()
                    .and_then(|d| d.until_ms)
                    .map(|u| UNIX_EPOCH + Duration::from_millis(u));
                let live = disable.as_ref().filter(|_| until.is_none_or(|u| u > now));
                let (reply, rx) = oneshot::channel();
                let command = OverrideCommand {
                    action: if live.is_some() {
                        OverrideAction::Disable
                    } else {
                        OverrideAction::Enable
                    },
                    target: target.clone(),
                    reason: live.map(|d| d.reason.clone()).unwrap_or_default(),
                    who: who.clone(),
                    duration: until.map(|u| u.duration_since(now).unwrap_or_default()),
                };
                (Command::Override { command, reply }, Outcome::Audit(rx))
            }
            Change::Mode {
                registry,
                mode,
                who,
            } => {
                let (reply, rx) = oneshot::channel();
                let command = ModeCommand {
                    mode: *mode,
                    registry: registry.clone(),
                    who: who.clone(),
                };
                (Command::Mode { command, reply }, Outcome::Ack(rx))
            }
            Change::Registry { key, who, request } => {
                let (reply, rx) = oneshot::channel();
                let (key, who) = (key.clone(), who.clone());
                let command = match request {
                    Some(request) => Command::PutRegistry {
                        key,
                        request: request.clone(),
                        who,
                        reply,
                    },
                    None => Command::DeleteRegistry { key, who, reply },
                };
                (command, Outcome::Ack(rx))
            }
        }
    }
}

/// Where the writer's outcome of an applied change arrives.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// An override's audit event.
    Audit(oneshot::Receiver<Result<AuditEvent, AdminError>>),
    /// A mode's or a registry's acknowledgement.
    Ack(oneshot::Receiver<Result<Ack, AdminError>>),
}

impl Outcome {
    /// The outcome; a change that finds the state already as it says (an enable of what is
    /// not disabled, a removal of what is not there) is no error.
    pub(crate) async fn settled(self) -> Result<(), AdminError> {
        let gone = || AdminError::Unavailable("the state task dropped the change".into());
        let r = match self {
            Outcome::Audit(rx) => rx.await.map_err(|_| gone())?.map(drop),
            Outcome::Ack(rx) => rx.await.map_err(|_| gone())?.map(drop),
        };
        match r {
            Err(AdminError::Conflict(_) | AdminError::NotFound(_)) => Ok(()),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(at_ms: u64, instance: &str) -> Stamp {
        Stamp {
            at_ms,
            instance: instance.into(),
        }
    }

    #[test]
    fn later_wins_then_greater_instance() {
        assert!(stamp(2, "a") > stamp(1, "b"));
        assert!(stamp(1, "b") > stamp(1, "a"));
        assert_eq!(stamp(1, "a"), stamp(1, "a"));
    }

    #[test]
    fn a_record_replacing_one_its_maker_had_not_seen_is_a_conflict() {
        let change = Change::Mode {
            registry: None,
            mode: ModeName::Off,
            who: "x".into(),
        };
        let rec = |at, i: &str, base: Option<Stamp>| Record {
            stamp: stamp(at, i),
            change: change.clone(),
            base,
        };
        let first = rec(1, "a", None);
        assert!(!rec(2, "b", Some(stamp(1, "a"))).overrides_unseen(&first));
        assert!(rec(2, "b", None).overrides_unseen(&first));
        assert!(rec(3, "b", Some(stamp(0, "c"))).overrides_unseen(&first));
    }

    #[test]
    fn keys_name_what_changes() {
        let replica = Change::Override {
            target: Target::Replica {
                registry: "contoso".into(),
                replica: "westeurope".into(),
            },
            who: "token:ops".into(),
            disable: None,
        };
        assert_eq!(replica.key(), "ops/override/replica/contoso/westeurope");
        let mode = Change::Mode {
            registry: None,
            mode: ModeName::Off,
            who: "x".into(),
        };
        assert_eq!(mode.key(), "ops/mode/server");
        let reg = Change::Registry {
            key: "t1".into(),
            who: "x".into(),
            request: None,
        };
        assert_eq!(reg.key(), "ops/registry/t1");
        let json = serde_json::to_string(&Record {
            stamp: stamp(5, "a"),
            change: replica,
            base: None,
        })
        .expect("json");
        assert_eq!(
            json,
            r#"{"stamp":{"at_ms":5,"instance":"a"},"change":{"kind":"override","target":{"kind":"replica","registry":"contoso","replica":"westeurope"},"who":"token:ops"}}"#
        );
    }

    #[test]
    fn an_expired_disable_applies_as_an_enable() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let change = |until_ms| Change::Override {
            target: Target::Region {
                region: "eu".into(),
            },
            who: "a".into(),
            disable: Some(Disable {
                reason: "r".into(),
                until_ms,
            }),
        };
        let action = |c: &Change| match c.command(now).0 {
            Command::Override { command, .. } => (command.action, command.duration),
            _ => panic!("not an override"),
        };
        assert_eq!(
            action(&change(Some(160_000))),
            (OverrideAction::Disable, Some(Duration::from_secs(60)))
        );
        assert_eq!(action(&change(Some(90_000))).0, OverrideAction::Enable);
        assert_eq!(action(&change(None)), (OverrideAction::Disable, None));
    }
}
