//! The writer's apply steps: [`World`] holds what the writer owns (the health book, the
//! catalog index, the overrides, the runtime modes) and turns one event — a probe outcome, a
//! tick, an override, a mode switch, a catalog put or delete, a reload — into the next
//! snapshot, computed completely before anything is published. Synchronous and without I/O
//! but the override state file and the catalog journal, which must be on disk before a
//! change is acknowledged; `state::writer` is the loop around it. Every event kind has a
//! unit test below, on a real snapshot, without sockets or a prober.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::{error, warn};

use crate::catalog::file::Journal;
use crate::global::{Globals, Registry};
use crate::health::book::{HealthBook, Masks, TargetId};
use crate::health::spec::HealthMode;
use crate::metrics::Metrics;
use crate::overrides::{AuditEvent, OverrideError, Overrides, Target, format_time, time_plus};
use crate::routing::{Locator, ReplicaMask};
use crate::state::catalog::{CatalogIndex, profile_keys};
use crate::state::command::{AdminError, ModeCommand, OverrideAction, OverrideCommand};
use crate::state::events::EventLog;
use crate::state::incidents::Incidents;
use crate::state::view::{Ack, EventKind as ViewKind};
use crate::state::{HealthMasks, Snapshot};

/// Runtime health modes set through the admin API (the kill switch). They survive reloads
/// and, persisted in the state file, restarts.
pub(super) use crate::overrides::Modes;

/// The writer's state and its apply steps: each takes the snapshot in service and one event
/// and returns the next snapshot to publish (None: nothing routing reads changed). No I/O but
/// the override state file and the catalog journal, which must be on disk before the change
/// is acknowledged.
pub(super) struct World {
    pub(super) book: HealthBook,
    pub(super) index: CatalogIndex,
    pub(super) overrides: Overrides,
    pub(super) modes: Modes,
    pub(super) events: EventLog,
    pub(super) metrics: Arc<Metrics>,
    pub(super) journal: Option<Journal>,
    pub(super) started_at: String,
    pub(super) last_book_event: Option<Instant>,
    /// Per probe target: name and stale_after; when it last reported; whether stale now.
    pub(super) target_names: HashMap<TargetId, (String, Duration)>,
    pub(super) last_outcome: HashMap<TargetId, Instant>,
    pub(super) stale: HashSet<TargetId>,
    /// The fleet link's state for `/v1/status`, when `[fleet]` is configured.
    pub(super) fleet_status: Option<crate::state::view::FleetStatus>,
    /// The shortest `stale_after` of any probe target (`None`: nothing is probed): how long
    /// the health view stays valid after the writer last looked at it.
    pub(super) stale_after_min: Option<Duration>,
    /// Open and recent incidents (`state::incidents`).
    pub(super) incidents: Incidents,
    /// The regions' coordinates: where a failed replica's clients go now.
    pub(super) locator: Arc<Locator>,
    /// `steerdns_rerouted_registries` by (region, resource), and each open incident's part.
    pub(super) rerouted: HashMap<(Arc<str>, Arc<str>), u64>,
    pub(super) reported_rerouted: HashMap<u64, u64>,
    /// Registries (`incidents::REGISTRY` + id) with a replica override in an incident.
    pub(super) override_contributors: HashSet<u32>,
}

impl World {
    pub(super) fn new(
        snap: &Snapshot,
        index: CatalogIndex,
        overrides: Overrides,
        events: EventLog,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut w = Self {
            book: HealthBook::new(&snap.targets),
            index,
            modes: overrides.modes().clone(),
            overrides,
            events,
            metrics,
            journal: None,
            started_at: format_time(SystemTime::now()),
            last_book_event: None,
            target_names: HashMap::new(),
            last_outcome: HashMap::new(),
            stale: HashSet::new(),
            fleet_status: None,
            stale_after_min: None,
            incidents: Incidents::default(),
            locator: snap.locator.clone(),
            rerouted: HashMap::new(),
            reported_rerouted: HashMap::new(),
            override_contributors: HashSet::new(),
        };
        w.replan(snap);
        w
    }

    /// Point the book at a snapshot's targets and profiles (states of surviving keys kept).
    pub(super) fn replan(&mut self, snap: &Snapshot) {
        self.book.replan(&snap.targets);
        self.locator = snap.locator.clone();
        for p in &snap.globals.profiles {
            self.book.add_profile(&profile_keys(&snap.globals, p));
        }
        self.target_names = snap
            .targets
            .probe_targets()
            .iter()
            .map(|t| (t.id, (t.check.to_string(), t.timing.stale_after)))
            .collect();
        self.stale_after_min = self.target_names.values().map(|(_, s)| *s).min();
        let names = &self.target_names;
        self.last_outcome.retain(|t, _| names.contains_key(t));
        self.stale.retain(|t| names.contains_key(t));
    }

    /// The mode a profile routes on (without per-registry switches).
    pub(super) fn profile_mode(&self, g: &Globals, p: u32) -> HealthMode {
        let set_mode = g
            .profiles
            .get(p as usize)
            .and_then(|p| g.sets.get(p.set as usize))
            .map_or(HealthMode::Deep, |s| s.mode);
        self.modes.server.unwrap_or(set_mode)
    }

    /// Replicas of profile `p`'s set disabled by a region override.
    pub(super) fn region_disabled(&self, g: &Globals, p: u32, now: SystemTime) -> ReplicaMask {
        let Some(set) = g
            .profiles
            .get(p as usize)
            .and_then(|p| g.sets.get(p.set as usize))
        else {
            return ReplicaMask::EMPTY;
        };
        let regions: Vec<&str> = self
            .overrides
            .active(now)
            .filter_map(|o| match &o.target {
                Target::Region { region } => Some(region.as_str()),
                Target::Replica { .. } => None,
            })
            .collect();
        if regions.is_empty() {
            return ReplicaMask::EMPTY;
        }
        set.replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| regions.contains(&&*r.region))
            .map(|(i, _)| i)
            .collect()
    }

    pub(super) fn profile_masks(&self, g: &Globals, p: u32, now: SystemTime) -> Masks {
        self.book
            .masks(p, self.profile_mode(g, p), self.region_disabled(g, p, now))
    }

    /// A registry's own masks when it has a replica override or a mode of its own.
    pub(super) fn exception(&self, g: &Globals, reg: &Registry, now: SystemTime) -> Option<Masks> {
        let key = reg.key();
        let mode = self.modes.registries.get(key).copied();
        let (set, _) = g.parts(reg)?;
        let replica_disabled = set
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                matches!(self.overrides.is_disabled(key, &r.key, &r.region, now),
                    Some(o) if matches!(o.target, Target::Replica { .. }))
            })
            .map(|(i, _)| i)
            .collect::<ReplicaMask>();
        if mode.is_none() && replica_disabled.is_empty() {
            return None;
        }
        let mode = mode.unwrap_or_else(|| self.profile_mode(g, reg.profile));
        let disabled = replica_disabled | self.region_disabled(g, reg.profile, now);
        Some(self.book.masks(reg.profile, mode, disabled))
    }

    /// Registries with an override or a mode of their own.
    pub(super) fn exception_keys(&self, now: SystemTime) -> Vec<String> {
        let mut keys: Vec<String> = self
            .overrides
            .active(now)
            .filter_map(|o| match &o.target {
                Target::Replica { registry, .. } => Some(registry.to_string()),
                Target::Region { .. } => None,
            })
            .chain(self.modes.registries.keys().map(ToString::to_string))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    pub(super) fn registry(&self, g: &Globals, key: &str) -> Option<Registry> {
        g.find(self.index.name_of(key)?).cloned()
    }

    /// Every mask from scratch: after a reload, a region override, a server-wide mode, an
    /// override expiry. O(profiles + exceptions).
    pub(super) fn all_masks(&self, g: &Globals) -> HealthMasks {
        let now = SystemTime::now();
        let profiles = (0..g.profiles.len() as u32)
            .map(|p| self.profile_masks(g, p, now))
            .collect();
        let exceptions = self
            .exception_keys(now)
            .iter()
            .filter_map(|k| self.registry(g, k))
            .filter_map(|r| Some((r.id, self.exception(g, &r, now)?)))
            .collect();
        HealthMasks {
            profiles,
            exceptions,
            guard_engaged: self.book.guard_engaged(),
        }
    }

    /// The whole snapshot `snap` with masks computed for its registries.
    pub(super) fn rebuild(&mut self, snap: &Snapshot) -> Snapshot {
        let health = self.all_masks(&snap.globals);
        self.note_health(&snap.globals, &snap.health, &health, None);
        Snapshot {
            health: Arc::new(health),
            ..snap.clone()
        }
    }

    /// Masks after `profiles` changed: those recomputed, and the exceptions on them.
    pub(super) fn updated(&self, snap: &Snapshot, profiles: &[u32]) -> HealthMasks {
        let now = SystemTime::now();
        let g = &snap.globals;
        let mut h = (*snap.health).clone();
        for &p in profiles {
            if let Some(m) = h.profiles.get_mut(p as usize) {
                *m = self.profile_masks(g, p, now);
            }
        }
        if !h.exceptions.is_empty() {
            let touched: HashSet<u32> = profiles.iter().copied().collect();
            for k in self.exception_keys(now) {
                if let Some(r) = self.registry(g, &k)
                    && touched.contains(&r.profile)
                    && let Some(m) = self.exception(g, &r, now)
                {
                    h.exceptions.insert(r.id, m);
                }
            }
        }
        h.guard_engaged = self.book.guard_engaged();
        h
    }

    /// A probe outcome.
    pub(super) fn outcome(
        &mut self,
        snap: &Snapshot,
        target: TargetId,
        outcome: &crate::health::outcome::ProbeOutcome,
        now: Instant,
    ) -> Option<Snapshot> {
        let name = self
            .target_names
            .get(&target)
            .map_or("unknown", |(n, _)| n.as_str());
        let result = match &outcome.result {
            Ok(_) => "ok",
            Err(f) => f.label(),
        };
        self.metrics.probe(name, result, outcome.latency);
        self.last_outcome.insert(target, now);
        let affected = self.book.observe(target, outcome, now);
        self.forward_book_events();
        let next = self.changed(snap, &affected);
        // Keys that stayed degraded with another cause: their profiles' masks did not change,
        // their incidents did.
        let recaused: Vec<u32> = self
            .book
            .take_recaused()
            .into_iter()
            .filter(|p| affected.binary_search(p).is_err())
            .collect();
        if !recaused.is_empty() {
            let health = next.as_ref().map_or(&snap.health, |n| &n.health);
            self.note_incidents(&snap.globals, health, Some(&recaused));
        }
        next
    }

    /// The next snapshot after `affected` profiles (or the guard) changed.
    pub(super) fn changed(&mut self, snap: &Snapshot, affected: &[u32]) -> Option<Snapshot> {
        if affected.is_empty() && self.book.guard_engaged() == snap.health.guard_engaged {
            return None;
        }
        let health = self.updated(snap, affected);
        // Only the affected profiles (and the exceptions on them, and the guard) can differ.
        let same = health.guard_engaged == snap.health.guard_engaged
            && health.exceptions == snap.health.exceptions
            && affected
                .iter()
                .all(|&p| health.profiles.get(p as usize) == snap.health.profiles.get(p as usize));
        if same {
            return None;
        }
        self.note_health(&snap.globals, &snap.health, &health, Some(affected));
        Some(Snapshot {
            health: Arc::new(health),
            ..snap.clone()
        })
    }

    /// Time passes: stale verdicts, guard ageing, override expiry.
    pub(super) fn tick(&mut self, snap: &Snapshot, now: Instant) -> Option<Snapshot> {
        // Signatures of static zones renewed at half their validity (rare: days apart).
        let resigned = snap.resigned(SystemTime::now());
        let next = self.tick_health(resigned.as_ref().unwrap_or(snap), now);
        next.or(resigned)
    }

    /// The health part of [`tick`](Self::tick).
    fn tick_health(&mut self, snap: &Snapshot, now: Instant) -> Option<Snapshot> {
        for (target, at) in &self.last_outcome {
            let stale_after = self
                .target_names
                .get(target)
                .map_or(Duration::MAX, |(_, s)| *s);
            let stale = now.saturating_duration_since(*at) > stale_after;
            if stale && self.stale.insert(*target) {
                self.metrics.stale_verdict();
                let name = self
                    .target_names
                    .get(target)
                    .map_or("unknown", |(n, _)| n.as_str());
                warn!(probe_target = %name, "no probe outcome for stale_after: the verdict expires to unknown");
            } else if !stale {
                self.stale.remove(target);
            }
        }
        let affected = self.book.tick(now);
        self.forward_book_events();
        if self.expire_overrides() {
            return Some(self.rebuild(snap));
        }
        self.changed(snap, &affected)
    }

    pub(super) fn expire_overrides(&mut self) -> bool {
        let now = SystemTime::now();
        if self.overrides.next_expiry().is_none_or(|t| t > now) {
            return false;
        }
        match self.overrides.prune(now) {
            Ok(expired) => {
                for e in &expired {
                    self.events.push_audit(e);
                }
                self.metrics
                    .set_overrides(self.overrides.active(now).count());
                !expired.is_empty()
            }
            Err(e) => {
                error!(error = %e, "cannot write the override state file after an expiry");
                false
            }
        }
    }

    /// Disable or enable a replica or a region.
    pub(super) fn set_override(
        &mut self,
        snap: &Snapshot,
        c: OverrideCommand,
    ) -> Result<(AuditEvent, Snapshot), AdminError> {
        let g = &snap.globals;
        match &c.target {
            Target::Replica { registry, replica } => {
                let reg = self
                    .registry(g, registry)
                    .ok_or_else(|| AdminError::NotFound(format!("no registry {registry}")))?;
                let (set, _) = g
                    .parts(&reg)
                    .ok_or_else(|| AdminError::NotFound(format!("no registry {registry}")))?;
                if !set.replicas.iter().any(|r| &*r.key == replica) {
                    return Err(AdminError::NotFound(format!(
                        "registry {registry} has no replica {replica}"
                    )));
                }
            }
            Target::Region { region } => {
                if !snap.config.regions.iter().any(|(n, _)| n == region) {
                    return Err(AdminError::NotFound(format!("no region {region}")));
                }
            }
        }
        let now = SystemTime::now();
        let result = match c.action {
            OverrideAction::Disable => {
                let until = c.duration.map(|d| time_plus(now, d));
                self.overrides
                    .disable(c.target.clone(), &c.reason, &c.who, until, now)
            }
            OverrideAction::Enable => {
                self.overrides
                    .enable(c.target.clone(), &c.reason, &c.who, now)
            }
        };
        let event = match result {
            Ok(event) => event,
            Err(OverrideError::NotDisabled(t)) => {
                return Err(AdminError::Conflict(format!("{t} is not disabled")));
            }
            Err(e) => return Err(AdminError::Failed(e.to_string())),
        };
        self.events.push_audit(&event);
        self.metrics
            .set_overrides(self.overrides.active(now).count());
        let next = match &c.target {
            // One registry: its exception only.
            Target::Replica { registry, .. } => {
                let mut h = (*snap.health).clone();
                let mut profile = Vec::new();
                if let Some(reg) = self.registry(g, registry) {
                    match self.exception(g, &reg, now) {
                        Some(m) => h.exceptions.insert(reg.id, m),
                        None => h.exceptions.remove(&reg.id),
                    };
                    profile.push(reg.profile);
                }
                self.note_health(g, &snap.health, &h, Some(&profile));
                Snapshot {
                    health: Arc::new(h),
                    ..snap.clone()
                }
            }
            Target::Region { .. } => self.rebuild(snap),
        };
        Ok((event, next))
    }

    /// Write `modes` to the state file, then put them in force (not before: a mode that
    /// would not survive a restart is refused).
    fn persist_modes(&mut self, modes: Modes) -> Result<(), AdminError> {
        self.overrides
            .set_modes(modes)
            .map_err(|e| AdminError::Failed(e.to_string()))?;
        self.modes = self.overrides.modes().clone();
        Ok(())
    }

    /// Switch the health mode of one registry or of all.
    pub(super) fn set_mode(
        &mut self,
        snap: &Snapshot,
        c: ModeCommand,
    ) -> Result<(Ack, Snapshot), AdminError> {
        let mode = c.mode;
        let g = &snap.globals;
        let next = match &c.registry {
            Some(r) => {
                let reg = self
                    .registry(g, r)
                    .ok_or_else(|| AdminError::NotFound(format!("no registry {r}")))?;
                let mut modes = self.modes.clone();
                modes.registries.insert(r.as_str().into(), mode);
                self.persist_modes(modes)?;
                let mut h = (*snap.health).clone();
                if let Some(m) = self.exception(g, &reg, SystemTime::now()) {
                    h.exceptions.insert(reg.id, m);
                }
                self.note_health(g, &snap.health, &h, Some(&[reg.profile]));
                Snapshot {
                    health: Arc::new(h),
                    ..snap.clone()
                }
            }
            None => {
                // Server-wide: every registry, replacing per-registry switches.
                self.persist_modes(Modes {
                    server: Some(mode),
                    registries: Default::default(),
                })?;
                self.rebuild(snap)
            }
        };
        let scope = c.registry.as_deref().unwrap_or("every registry");
        warn!(mode = %mode, scope, who = %c.who, "health mode switched");
        self.events.push(
            SystemTime::now(),
            ViewKind::Mode,
            c.registry.as_deref(),
            None,
            format!("mode {mode} for {scope} (by {})", c.who),
        );
        Ok((
            Ack {
                message: format!("mode {mode} for {scope}"),
                generation: Some(snap.generation + 1),
                fleet: None,
            },
            next,
        ))
    }

    /// Switch to a freshly loaded snapshot: health of surviving keys kept, masks computed for
    /// the new registries before anything is published.
    pub(super) fn reload(
        &mut self,
        current: &Snapshot,
        next: Snapshot,
        index: CatalogIndex,
    ) -> std::io::Result<Snapshot> {
        if next.config.listen != current.config.listen
            || next.config.admin.listen != current.config.admin.listen
        {
            warn!("listen addresses changed in the config; they take effect at the next restart");
        }
        self.journal = match &next.config.catalog {
            Some(c) => Some(Journal::open(&c.journal)?),
            None => None,
        };
        self.index = index;
        self.replan(&next);
        self.metrics.install_replica_counters(next.counters.clone());
        self.metrics.install_signers(&next.zones);
        let empty = HealthMasks::default();
        let health = self.all_masks(&next.globals);
        self.note_health(&next.globals, &empty, &health, None);
        Ok(Snapshot {
            health: Arc::new(health),
            ..next
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The apply steps, one event kind at a time, on a real snapshot (the repository's zones)
    //! without sockets, a prober or a runtime: each step's result is the next snapshot.

    use std::path::PathBuf;

    use super::*;
    use crate::config::Config;
    use crate::health::outcome::{Failure, Pass, ProbeOutcome};
    use crate::state::view::{IncidentPage, RegistryRequest, ReplicaState, StatusQuery};

    const S: Duration = Duration::from_secs(1);

    /// Config registry `cfg` (own URLs), catalog registries `a0..a{n}` on template `fleet`
    /// judged on `storage` (even) or `cache` (odd).
    fn world(n: usize) -> (World, Snapshot, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut lines = String::from("key,name,template,depends_on,ttl,answers\n");
        for i in 0..n {
            let dep = if i % 2 == 0 { "storage" } else { "cache" };
            lines.push_str(&format!("a{i},a{i}.registry.example.,fleet,{dep},,\n"));
        }
        std::fs::write(dir.path().join("registries.csv"), lines).unwrap();
        let mut text = format!(
            "version = 1\n[server]\nzones_dir = {:?}\n[admin]\nstate_file = \"state.json\"\n\
             [regions.westeurope]\n[regions.eastus]\n\
             [health]\ninterval = \"10s\"\ntimeout = \"1s\"\nfailure_threshold = 2\n\
             mass_failure_min_targets = 100\n\
             [catalog]\nfile = \"registries.csv\"\n[templates.fleet]\n",
            repo.join("zones")
        );
        for (i, r) in ["eastus", "westeurope"].iter().enumerate() {
            text.push_str(&format!(
                "[templates.fleet.replicas.{r}]\nipv4 = [\"192.0.2.{i}\"]\nhealth.url = \"http://127.0.9.{i}/fleet\"\n\
                 [registries.cfg.replicas.{r}]\nipv4 = [\"192.0.2.{i}\"]\nhealth.url = \"http://127.0.9.{i}/cfg\"\n"
            ));
        }
        text.push_str("[registries.cfg]\nname = \"cfg.registry.example.\"\n");
        let path = dir.path().join("steerdns.toml");
        std::fs::write(&path, &text).unwrap();
        let config = Config::from_toml(&text, &path).unwrap();
        let (snap, index) = Snapshot::from_config_indexed(config).unwrap();
        let overrides = Overrides::load(&dir.path().join("state.json"), SystemTime::now()).unwrap();
        let mut w = World::new(
            &snap,
            index,
            overrides,
            EventLog::new(64),
            Arc::new(Metrics::new()),
        );
        w.journal = Some(Journal::open(&dir.path().join("registries.csv.journal")).unwrap());
        let snap = w.rebuild(&snap);
        (w, snap, dir)
    }

    fn reg(snap: &Snapshot, key: &str) -> Registry {
        snap.globals
            .find_name(
                &hickory_proto::rr::Name::from_ascii(format!("{key}.registry.example.")).unwrap(),
            )
            .unwrap()
            .clone()
    }

    fn masks(snap: &Snapshot, key: &str) -> Masks {
        snap.health.get(&reg(snap, key))
    }

    /// The deep target of replica `i` of `key`.
    fn deep(snap: &Snapshot, key: &str, i: usize) -> TargetId {
        let r = reg(snap, key);
        snap.globals.parts(&r).unwrap().0.replicas[i].deep.unwrap()
    }

    fn failing_doc(at: Instant, failing: &str) -> ProbeOutcome {
        let doc = crate::health::outcome::DeepDoc::parse(&serde_json::json!({
            "checks": {
                "storage": if failing == "storage" { "down" } else { "ok" },
                "cache": if failing == "cache" { "down" } else { "ok" },
            }
        }));
        ProbeOutcome {
            at,
            latency: S / 100,
            result: Err(Failure::Status(503)),
            document: doc.map(Arc::new),
        }
    }

    fn ok(at: Instant) -> ProbeOutcome {
        ProbeOutcome {
            at,
            latency: S / 100,
            result: Ok(Pass { status: Some(200) }),
            document: None,
        }
    }

    /// Westeurope's document reports `storage` failing twice (the threshold): the snapshot
    /// after the second outcome.
    fn storage_fails(w: &mut World, snap: &Snapshot, now: Instant) -> Snapshot {
        let t = deep(snap, "a0", 1);
        assert!(
            w.outcome(snap, t, &failing_doc(now, "storage"), now)
                .is_none()
        );
        w.outcome(snap, t, &failing_doc(now + S, "storage"), now + S)
            .unwrap()
    }

    fn disable(target: Target) -> OverrideCommand {
        OverrideCommand {
            action: OverrideAction::Disable,
            target,
            reason: "test".into(),
            who: "test".into(),
            duration: None,
        }
    }

    fn enable(target: Target) -> OverrideCommand {
        OverrideCommand {
            action: OverrideAction::Enable,
            ..disable(target)
        }
    }

    /// Replica `replica` of registry `registry`.
    fn replica(registry: &str, replica: &str) -> Target {
        Target::Replica {
            registry: registry.into(),
            replica: replica.into(),
        }
    }

    #[test]
    fn an_outcome_changes_exactly_the_profiles_of_its_flipped_keys() {
        let (mut w, snap, _dir) = world(6);
        let now = Instant::now();
        let t = deep(&snap, "a0", 1); // westeurope's shared document
        // One failure moves nothing: no snapshot to publish.
        assert!(
            w.outcome(&snap, t, &failing_doc(now, "storage"), now)
                .is_none()
        );
        let next = w
            .outcome(&snap, t, &failing_doc(now + S, "storage"), now + S)
            .expect("the second failure degrades the storage key");
        for i in 0..6 {
            let want = if i % 2 == 0 { 0b01 } else { 0b11 };
            assert_eq!(masks(&next, &format!("a{i}")).routable.bits(), want, "a{i}");
        }
        assert_eq!(masks(&next, "cfg").routable.bits(), 0b11);
        // The name table is the same one: only masks changed.
        assert!(Arc::ptr_eq(&next.globals, &snap.globals));
        // A passing probe of an unrelated target changes nothing.
        assert!(
            w.outcome(&next, deep(&next, "cfg", 0), &ok(now + 2 * S), now + 2 * S)
                .is_none()
        );
    }

    #[test]
    fn a_dependency_fault_is_one_incident_with_the_exact_count_and_closes_when_mended() {
        let (mut w, snap, _dir) = world(9);
        let now = Instant::now();
        let snap = storage_fails(&mut w, &snap, now);
        let v = w
            .incidents_view(&snap.globals, &Default::default())
            .unwrap();
        assert_eq!(v.open.len(), 1, "{v:?}");
        let i = &v.open[0];
        assert_eq!(i.registries, 5, "a0 a2 a4 a6 a8 depend on storage");
        assert_eq!(i.cause.resource, "storage");
        assert_eq!(i.cause.region, "westeurope");
        assert_eq!(i.answered_now.len(), 1);
        assert_eq!(i.answered_now[0].region.as_deref(), Some("eastus"));
        assert_eq!(i.samples, ["a0", "a2", "a4", "a6", "a8"]);
        assert!(w.metrics.render().contains(
            "steerdns_rerouted_registries{region=\"westeurope\",resource=\"storage\"} 5"
        ));
        // Paged through, two at a time.
        let mut after = None;
        let mut keys = Vec::new();
        loop {
            let page = w
                .incident_registries(
                    i.id,
                    &IncidentPage {
                        after: after.clone(),
                        limit: Some(2),
                    },
                )
                .unwrap();
            keys.extend(page.registries);
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(keys, ["a0", "a2", "a4", "a6", "a8"]);
        // A catalog put on the same profile counts at once.
        let req = RegistryRequest {
            name: "new.registry.example.".into(),
            template: "fleet".into(),
            depends_on: Some(vec!["storage".into()]),
            ttl: None,
            answers: None,
        };
        let (_, snap) = w.put_registry(&snap, "new".into(), req, "test").unwrap();
        assert_eq!(
            w.incidents_view(&snap.globals, &Default::default())
                .unwrap()
                .open[0]
                .registries,
            6
        );
        // Mended: closed, and the gauge goes.
        let t = deep(&snap, "a0", 1);
        let mut snap = snap;
        for k in 2..6 {
            if let Some(next) = w.outcome(&snap, t, &failing_doc(now + k * S, "none"), now + k * S)
            {
                snap = next;
            }
        }
        let v = w
            .incidents_view(&snap.globals, &Default::default())
            .unwrap();
        assert!(v.open.is_empty(), "{v:?}");
        assert_eq!(v.recent[0].peak_registries, 6);
        assert!(!w.metrics.render().contains("steerdns_rerouted_registries{"));
        assert!(matches!(
            w.incident_registries(99, &IncidentPage::default()),
            Err(AdminError::NotFound(_))
        ));
    }

    /// A registry judged on storage and cache stays degraded when storage mends and cache
    /// fails instead: no mask changes, but it leaves the storage incident for a cache one.
    #[test]
    fn a_key_that_stays_degraded_with_another_cause_changes_incident() {
        let (mut w, snap, _dir) = world(4);
        let req = RegistryRequest {
            name: "both.registry.example.".into(),
            template: "fleet".into(),
            depends_on: Some(vec!["storage".into(), "cache".into()]),
            ttl: None,
            answers: None,
        };
        let (_, snap) = w.put_registry(&snap, "both".into(), req, "test").unwrap();
        let now = Instant::now();
        let snap = storage_fails(&mut w, &snap, now);
        let open = |w: &World, snap: &Snapshot| -> Vec<(String, u64)> {
            w.incidents_view(&snap.globals, &Default::default())
                .unwrap()
                .open
                .iter()
                .map(|i| (i.cause.resource.clone(), i.registries))
                .collect()
        };
        assert_eq!(open(&w, &snap), [("storage".to_string(), 3)], "a0 a2 both");
        // Storage passes, cache fails: `both` is still degraded (no new snapshot needed for
        // it), now because of cache; a0 and a2 wait for storage to pass twice.
        let t = deep(&snap, "a0", 1);
        let later = now + 2 * S;
        let snap = w
            .outcome(&snap, t, &failing_doc(later, "cache"), later)
            .unwrap_or(snap);
        assert!(
            masks(&snap, "both").routable.bits() == 0b01,
            "still degraded"
        );
        let mut got = open(&w, &snap);
        got.sort();
        assert_eq!(
            got,
            [("cache".to_string(), 1), ("storage".to_string(), 2)],
            "both moved to a cache incident"
        );
        // The same cause again is no change.
        let again = now + 3 * S;
        let snap = w
            .outcome(&snap, t, &failing_doc(again, "cache"), again)
            .unwrap_or(snap);
        let mut got = open(&w, &snap);
        got.sort();
        assert_eq!(got[0], ("cache".to_string(), 3), "a1 a3 both: {got:?}");
    }

    #[test]
    fn a_tick_expires_stale_verdicts() {
        let (mut w, snap, _dir) = world(2);
        let now = Instant::now();
        let snap = storage_fails(&mut w, &snap, now);
        assert_eq!(masks(&snap, "a0").routable.bits(), 0b01);
        assert!(
            w.tick(&snap, now + 20 * S).is_none(),
            "not stale yet (3 × 10 s)"
        );
        let next = w
            .tick(&snap, now + 32 * S)
            .expect("stale: unknown, routable");
        assert_eq!(masks(&next, "a0").routable.bits(), 0b11);
    }

    #[test]
    fn overrides_touch_one_registry_or_one_region() {
        let (mut w, snap, _dir) = world(4);
        let (_, next) = w
            .set_override(
                &snap,
                disable(Target::Replica {
                    registry: "a0".into(),
                    replica: "westeurope".into(),
                }),
            )
            .unwrap();
        assert_eq!(masks(&next, "a0").routable.bits(), 0b01);
        assert_eq!(
            masks(&next, "a2").routable.bits(),
            0b11,
            "same profile, no override"
        );
        assert_eq!(next.health.exceptions.len(), 1);
        assert_eq!(next.health.profiles, snap.health.profiles);
        let (_, next) = w
            .set_override(
                &next,
                disable(Target::Region {
                    region: "eastus".into(),
                }),
            )
            .unwrap();
        assert_eq!(
            masks(&next, "a0").routable.bits(),
            0,
            "both disabled: NODATA"
        );
        for k in ["a1", "a2", "cfg"] {
            assert_eq!(masks(&next, k).routable.bits(), 0b10, "{k}");
        }
        let e = w
            .set_override(
                &next,
                disable(Target::Replica {
                    registry: "a0".into(),
                    replica: "nowhere".into(),
                }),
            )
            .unwrap_err();
        assert!(matches!(e, AdminError::NotFound(_)), "{e:?}");
        let mut enable = disable(Target::Region {
            region: "westeurope".into(),
        });
        enable.action = OverrideAction::Enable;
        assert!(matches!(
            w.set_override(&next, enable),
            Err(AdminError::Conflict(_))
        ));
    }

    #[test]
    fn overrides_are_incidents_of_one_registry_or_of_a_region() {
        let (mut w, snap, _dir) = world(6);
        let (_, snap) = w
            .set_override(&snap, disable(replica("a0", "westeurope")))
            .unwrap();
        let v = w
            .incidents_view(&snap.globals, &Default::default())
            .unwrap();
        assert_eq!(v.open.len(), 1, "{v:?}");
        let i = &v.open[0];
        assert_eq!(i.cause.id, "a0/westeurope disabled");
        assert_eq!(
            (i.registries, i.samples.clone()),
            (1, vec!["a0".to_string()])
        );
        assert_eq!(i.answered_now[0].region.as_deref(), Some("eastus"));
        let page = w
            .incident_registries(i.id, &IncidentPage::default())
            .unwrap();
        assert_eq!(page.registries, ["a0"]);
        // A region: every registry with a replica there (6 catalog + cfg).
        let (_, snap) = w
            .set_override(
                &snap,
                disable(Target::Region {
                    region: "eastus".into(),
                }),
            )
            .unwrap();
        let v = w
            .incidents_view(&snap.globals, &Default::default())
            .unwrap();
        let region = v
            .open
            .iter()
            .find(|i| i.cause.id == "region eastus disabled")
            .expect("the region incident");
        assert_eq!(region.registries, 7);
        // a0 has nowhere to go now: both replicas disabled.
        let a0 = v
            .open
            .iter()
            .find(|i| i.cause.id == "a0/westeurope disabled")
            .unwrap();
        assert_eq!(a0.answered_now[0].region, None);
        assert!(!a0.answered_now[0].fail_open);
        // Enabled again: both close.
        let (_, snap) = w
            .set_override(&snap, enable(replica("a0", "westeurope")))
            .unwrap();
        let eastus = Target::Region {
            region: "eastus".into(),
        };
        let (_, snap) = w.set_override(&snap, enable(eastus)).unwrap();
        let v = w
            .incidents_view(&snap.globals, &Default::default())
            .unwrap();
        assert!(v.open.is_empty(), "{v:?}");
        assert_eq!(v.recent.len(), 2);
    }

    #[test]
    fn modes_switch_one_registry_or_all() {
        let (mut w, snap, _dir) = world(2);
        let now = Instant::now();
        let snap = storage_fails(&mut w, &snap, now);
        let cmd = |registry: Option<&str>, mode| ModeCommand {
            mode,
            registry: registry.map(str::to_owned),
            who: "test".into(),
        };
        let (_, next) = w.set_mode(&snap, cmd(Some("a0"), HealthMode::Off)).unwrap();
        assert_eq!(
            masks(&next, "a0").routable.bits(),
            0b11,
            "off: latency only"
        );
        assert_eq!(next.health.profiles, snap.health.profiles, "nobody else");
        let (_, next) = w.set_mode(&next, cmd(None, HealthMode::Deep)).unwrap();
        assert_eq!(
            masks(&next, "a0").routable.bits(),
            0b01,
            "server-wide replaces per registry"
        );
        assert!(next.health.exceptions.is_empty());
        assert!(matches!(
            w.set_mode(&next, cmd(Some("nope"), HealthMode::Off)),
            Err(AdminError::NotFound(_))
        ));
    }

    /// A mode switched through the admin API is in the state file before it is acknowledged,
    /// and a restart (a new World on the same state file) starts with it in force.
    #[test]
    fn modes_survive_a_restart() {
        let (mut w, snap, dir) = world(2);
        let cmd = |registry: Option<&str>, mode| ModeCommand {
            mode,
            registry: registry.map(str::to_owned),
            who: "test".into(),
        };
        w.set_mode(&snap, cmd(None, HealthMode::Shallow)).unwrap();
        let (_, next) = w.set_mode(&snap, cmd(Some("a0"), HealthMode::Off)).unwrap();
        drop(w);
        let (snap2, index) =
            Snapshot::load_indexed(&dir.path().join("steerdns.toml")).expect("reload config");
        let overrides = Overrides::load(&dir.path().join("state.json"), SystemTime::now()).unwrap();
        let w2 = World::new(
            &snap2,
            index,
            overrides,
            EventLog::new(64),
            Arc::new(Metrics::new()),
        );
        assert_eq!(w2.modes.server, Some(HealthMode::Shallow));
        assert_eq!(w2.modes.registries.get("a0"), Some(&HealthMode::Off));
        let g = &next.globals;
        assert_eq!(
            w2.profile_mode(g, reg(&next, "a1").profile),
            HealthMode::Shallow
        );
        // A truncated state file stops the start with an error naming the file.
        let path = dir.path().join("state.json");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 3]).unwrap();
        let err = Overrides::load(&path, SystemTime::now()).unwrap_err();
        assert!(err.to_string().contains("state.json"), "{err}");
    }

    #[test]
    fn catalog_puts_and_deletes_touch_one_record_and_are_journaled() {
        let (mut w, snap, dir) = world(10);
        let req = |depends_on: &[&str]| RegistryRequest {
            name: "new.registry.example.".into(),
            template: "fleet".into(),
            depends_on: Some(depends_on.iter().map(|d| d.to_string()).collect()),
            ttl: Some("7s".into()),
            answers: None,
        };
        let (_, next) = w
            .put_registry(&snap, "new".into(), req(&["storage"]), "test")
            .unwrap();
        assert_eq!(next.globals.len(), snap.globals.len() + 1);
        // An existing profile (fleet, storage), a new TTL: one new answer set, no new mask.
        assert_eq!(next.health.profiles.len(), snap.health.profiles.len());
        assert_eq!(
            next.globals.answer_sets.len(),
            snap.globals.answer_sets.len() + 1
        );
        assert_eq!(reg(&next, "new").profile, reg(&next, "a0").profile);
        // A new resource set: one new profile, computed before publishing.
        let (_, next2) = w
            .put_registry(&next, "new".into(), req(&["cache", "storage"]), "test")
            .unwrap();
        assert_eq!(next2.health.profiles.len(), next.health.profiles.len() + 1);
        assert_eq!(masks(&next2, "new"), Masks::all(2));
        assert!(matches!(
            w.put_registry(&next2, "cfg".into(), req(&[]), "test"),
            Err(AdminError::Conflict(_))
        ));
        let (_, next3) = w.delete_registry(&next2, "new", "test").unwrap();
        assert_eq!(next3.globals.len(), snap.globals.len());
        assert!(matches!(
            w.delete_registry(&next3, "new", "test"),
            Err(AdminError::NotFound(_))
        ));
        assert!(matches!(
            w.delete_registry(&next3, "cfg", "test"),
            Err(AdminError::Conflict(_))
        ));
        let journal = std::fs::read_to_string(dir.path().join("registries.csv.journal")).unwrap();
        assert_eq!(journal.lines().count(), 3, "{journal}");
    }

    #[test]
    fn a_reload_computes_masks_for_the_new_registry_set_before_it_is_published() {
        let (mut w, snap, dir) = world(4);
        let (_, snap) = w
            .set_override(
                &snap,
                disable(Target::Replica {
                    registry: "a3".into(),
                    replica: "westeurope".into(),
                }),
            )
            .unwrap();
        // Registries inserted in front of a3 (keys and names that sort first).
        let mut lines = String::from("key,name,template,depends_on,ttl,answers\n");
        for k in ["0a", "0b", "a0", "a1", "a2", "a3"] {
            lines.push_str(&format!("{k},{k}.registry.example.,fleet,cache,,\n"));
        }
        std::fs::write(dir.path().join("registries.csv"), lines).unwrap();
        let (loaded, index) = Snapshot::load_indexed(&dir.path().join("steerdns.toml")).unwrap();
        let next = w.reload(&snap, loaded, index).unwrap();
        assert_eq!(next.globals.len(), 7);
        assert_eq!(masks(&next, "a3").routable.bits(), 0b01, "still disabled");
        assert_eq!(masks(&next, "0a").routable.bits(), 0b11);
    }

    #[test]
    fn status_pages_are_sorted_and_filtered() {
        let (mut w, snap, _dir) = world(30);
        let page = |after: Option<&str>, state: Option<ReplicaState>| StatusQuery {
            after: after.map(str::to_owned),
            state,
            limit: Some(10),
            ..Default::default()
        };
        let v = w.status(&snap, &page(None, None), true).unwrap();
        assert_eq!(v.registries.len(), 10);
        assert_eq!(v.summary.registries, 31);
        assert_eq!(v.next.as_deref(), Some("a17"), "keys sort as text");
        let now = Instant::now();
        let snap = storage_fails(&mut w, &snap, now);
        let v = w
            .status(&snap, &page(None, Some(ReplicaState::Degraded)), true)
            .unwrap();
        assert!(v.registries.iter().all(|r| {
            let i: usize = r.key[1..].parse().unwrap();
            i.is_multiple_of(2)
        }));
        assert_eq!(v.summary.states.get(&ReplicaState::Degraded), Some(&15));
        assert_eq!(v.summary.regions["westeurope"][&ReplicaState::Degraded], 15);
        // Overridden registries are exceptions to their profile's state: a2 (storage, now
        // disabled there instead of degraded) leaves the degraded pages, a3 (cache) is on the
        // disabled ones.
        let mut snap = snap;
        for r in ["a2", "a3"] {
            snap = w
                .set_override(&snap, disable(replica(r, "westeurope")))
                .unwrap()
                .1;
        }
        let all = |w: &World, snap: &Snapshot, state: ReplicaState| {
            let mut keys = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut q = page(after.as_deref(), Some(state));
                q.limit = Some(4);
                let v = w.status(snap, &q, true).unwrap();
                assert!(v.registries.len() <= 4);
                keys.extend(v.registries.into_iter().map(|r| r.key));
                match v.next {
                    Some(n) => after = Some(n),
                    None => return keys,
                }
            }
        };
        let mut want: Vec<String> = (0..30)
            .filter(|i| i % 2 == 0 && *i != 2)
            .map(|i| format!("a{i}"))
            .collect();
        want.sort();
        assert_eq!(all(&w, &snap, ReplicaState::Degraded), want);
        assert_eq!(all(&w, &snap, ReplicaState::Disabled), ["a2", "a3"]);
    }
}
