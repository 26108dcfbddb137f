//! Incidents: what failed, which registries it moved and where their clients go now.
//!
//! An incident is one *cause* — a resource failing at one replica (a dependency named by a
//! deep-health document, or a whole probe target that cannot be read), or a region disabled
//! by an operator — with the profiles it reroutes. The writer tells this core, per profile
//! whose masks changed, which causes take which of its replicas away and where that
//! replica's clients are answered now ([`Incidents::set_profile`]); the core keeps, per open
//! incident, each profile's contribution and the running totals, so the exact count of
//! rerouted registries is a sum kept up to date by difference, never a walk of the
//! registries. [`Incidents::finish`] closes a batch (one writer step) and says which
//! incidents opened, changed or closed in it — one event per incident per step, however
//! many profiles moved.
//!
//! Pure: no clock (times are passed in), no I/O, no registry names; the writer turns
//! profiles into registry keys through the catalog index when a page asks for them.
//!
//! # Flapping
//!
//! A cause that fails again within `flap_window` of its incident closing reopens that
//! incident (same id, `flaps` counted) instead of opening a new one.
//!
//! # Cost
//!
//! Per changed profile: O(its causes); per batch: O(incidents touched). Memory: per open
//! incident, one entry per contributing profile (profiles are bounded by templates ×
//! dependency sets, not by registries); `history` closed incidents are kept.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Closed incidents kept for `GET /v1/incidents`.
pub(crate) const HISTORY: usize = 256;
/// A cause that fails again this soon after its incident closed reopens it.
pub(crate) const FLAP_WINDOW: Duration = Duration::from_secs(600);

/// Contributors at and above this are single registries (registry id + `REGISTRY`), not
/// profiles: a replica override takes one registry's replica away. Profiles never get near
/// 2^31.
pub(crate) const REGISTRY: u32 = 1 << 31;

/// What takes a replica away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    /// A dependency named in the replica's deep-health document reports failing.
    Dependency,
    /// The whole probe target fails (unreachable, bad status, no readable document).
    Target,
    /// An operator disabled the region.
    RegionDisabled,
    /// An operator disabled one registry's replica.
    ReplicaDisabled,
}

/// One cause: its identity and what an operator reads of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cause {
    /// Identity: the probe target and the resource (`GET http://…/health [storage-17]`), or
    /// `region eastus disabled`.
    pub(crate) id: Arc<str>,
    pub(crate) kind: CauseKind,
    /// The failing replica's region.
    pub(crate) region: Arc<str>,
    /// The resource: the dependency's name, `*` for a whole target, the region for an
    /// override.
    pub(crate) resource: Arc<str>,
    /// The probe target (`GET http://…`), or the override.
    pub(crate) check: Arc<str>,
}

/// Where the clients of a failed replica are answered now.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Now {
    /// The nearest routable replica, in this region.
    Region(Arc<str>),
    /// Every enabled replica is degraded: the registry fails open (answers all of them).
    FailOpen,
    /// Nothing is routable (every replica disabled): NODATA.
    Nowhere,
}

/// One profile's part in an incident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Part {
    /// Its registries.
    pub(crate) registries: u32,
    pub(crate) now: Now,
}

/// What an incident reports; compared between batches to tell an update from no change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) registries: u64,
    /// Registries by where their clients go now.
    pub(crate) now: BTreeMap<Now, u64>,
}

impl Totals {
    fn add(&mut self, part: &Part) {
        self.registries += u64::from(part.registries);
        *self.now.entry(part.now.clone()).or_default() += u64::from(part.registries);
    }

    fn sub(&mut self, part: &Part) {
        self.registries -= u64::from(part.registries);
        if let Some(n) = self.now.get_mut(&part.now) {
            *n -= u64::from(part.registries);
            if *n == 0 {
                self.now.remove(&part.now);
            }
        }
    }

    /// Registries failing open.
    pub(crate) fn failing_open(&self) -> u64 {
        self.now.get(&Now::FailOpen).copied().unwrap_or(0)
    }
}

/// One incident, open or closed.
#[derive(Clone, Debug)]
pub(crate) struct Incident {
    pub(crate) id: u64,
    pub(crate) cause: Cause,
    pub(crate) opened: SystemTime,
    pub(crate) updated: SystemTime,
    pub(crate) closed: Option<SystemTime>,
    /// Times it reopened within the flap window.
    pub(crate) flaps: u32,
    /// The most registries it held rerouted at once.
    pub(crate) peak: u64,
    /// Contributing profiles (empty once closed).
    pub(crate) profiles: BTreeMap<u32, Part>,
    /// Every profile that contributed while it was open (a registry's failover timeline);
    /// forgotten at a reload, which renumbers profiles.
    pub(crate) ever: std::collections::BTreeSet<u32>,
    pub(crate) totals: Totals,
    /// The totals last reported by [`Incidents::finish`].
    reported: Totals,
}

/// What happened to an incident in one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Opened (or reopened within the flap window).
    Opened,
    /// Its registries or their destinations changed.
    Updated,
    /// Nothing is rerouted by it any more.
    Closed,
}

/// Open incidents by cause, recent closed ones, and who contributes what.
#[derive(Debug)]
pub(crate) struct Incidents {
    open: HashMap<Arc<str>, Incident>,
    closed: VecDeque<Incident>,
    /// Per profile: (replica index, cause id) it contributes to.
    by_profile: HashMap<u32, Vec<(usize, Arc<str>)>>,
    /// Causes touched since the last `finish`, and which of them opened in this batch.
    touched: HashSet<Arc<str>>,
    opened: HashSet<Arc<str>>,
    next_id: u64,
    flap_window: Duration,
    history: usize,
}

impl Default for Incidents {
    fn default() -> Self {
        Self::new(FLAP_WINDOW, HISTORY)
    }
}

impl Incidents {
    pub(crate) fn new(flap_window: Duration, history: usize) -> Self {
        Self {
            open: HashMap::new(),
            closed: VecDeque::new(),
            by_profile: HashMap::new(),
            touched: HashSet::new(),
            opened: HashSet::new(),
            next_id: 1,
            flap_window,
            history: history.max(1),
        }
    }

    /// The causes profile `p`'s replica `i` contributed to in the last batch that set it.
    pub(crate) fn causes_of(&self, p: u32, i: usize) -> Vec<Cause> {
        self.by_profile
            .get(&p)
            .into_iter()
            .flatten()
            .filter(|(r, _)| *r == i)
            .filter_map(|(_, id)| self.open.get(id).map(|inc| inc.cause.clone()))
            .collect()
    }

    /// Replace profile `p`'s contributions: `parts` are (replica index, cause, part).
    pub(crate) fn set_profile(
        &mut self,
        p: u32,
        parts: Vec<(usize, Cause, Part)>,
        now: SystemTime,
    ) {
        for (_, id) in self.by_profile.remove(&p).unwrap_or_default() {
            if let Some(inc) = self.open.get_mut(&id)
                && let Some(part) = inc.profiles.remove(&p)
            {
                inc.totals.sub(&part);
                self.touched.insert(id);
            }
        }
        let mut mine = Vec::with_capacity(parts.len());
        for (i, cause, part) in parts {
            let id = cause.id.clone();
            let inc = match self.open.get_mut(&id) {
                Some(inc) => inc,
                None => {
                    let inc = self.open_incident(cause, now);
                    self.opened.insert(id.clone());
                    self.open.entry(id.clone()).or_insert(inc)
                }
            };
            // Two replicas of one profile with the same cause (one region listed twice):
            // the profile's registries count once.
            if !inc.profiles.contains_key(&p) {
                inc.totals.add(&part);
                inc.profiles.insert(p, part);
                inc.ever.insert(p);
            }
            self.touched.insert(id.clone());
            mine.push((i, id));
        }
        if !mine.is_empty() {
            self.by_profile.insert(p, mine);
        }
    }

    /// Forget every profile's contributions (a reload renumbers profiles); the incidents stay
    /// open until the batch's `finish`, and those nobody contributes to again close there.
    pub(crate) fn clear_profiles(&mut self) {
        self.by_profile.clear();
        for (id, inc) in &mut self.open {
            inc.profiles.clear();
            inc.ever.clear();
            inc.totals = Totals::default();
            self.touched.insert(id.clone());
        }
        for inc in &mut self.closed {
            inc.ever.clear();
        }
    }

    fn open_incident(&mut self, cause: Cause, now: SystemTime) -> Incident {
        let recent = self.closed.iter().position(|c| {
            c.cause.id == cause.id
                && c.closed
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|d| d <= self.flap_window)
        });
        if let Some(pos) = recent
            && let Some(mut inc) = self.closed.remove(pos)
        {
            inc.closed = None;
            inc.flaps += 1;
            inc.updated = now;
            inc.reported = Totals::default();
            return inc;
        }
        let id = self.next_id;
        self.next_id += 1;
        Incident {
            id,
            cause,
            opened: now,
            updated: now,
            closed: None,
            flaps: 0,
            peak: 0,
            profiles: BTreeMap::new(),
            ever: Default::default(),
            totals: Totals::default(),
            reported: Totals::default(),
        }
    }

    /// End a batch: what opened, changed or closed since the last call, by incident id order.
    pub(crate) fn finish(&mut self, now: SystemTime) -> Vec<(Change, Incident)> {
        let mut out = Vec::new();
        let opened = std::mem::take(&mut self.opened);
        for id in std::mem::take(&mut self.touched) {
            let Some(inc) = self.open.get_mut(&id) else {
                continue;
            };
            if inc.profiles.is_empty() {
                let Some(mut inc) = self.open.remove(&id) else {
                    continue;
                };
                inc.closed = Some(now);
                inc.updated = now;
                let was_open = !opened.contains(&id);
                if was_open || inc.flaps > 0 {
                    if was_open {
                        out.push((Change::Closed, inc.clone()));
                    }
                    if self.closed.len() == self.history {
                        self.closed.pop_front();
                    }
                    self.closed.push_back(inc);
                }
                continue;
            }
            inc.peak = inc.peak.max(inc.totals.registries);
            if opened.contains(&id) {
                inc.reported = inc.totals.clone();
                out.push((Change::Opened, inc.clone()));
            } else if inc.reported != inc.totals {
                inc.updated = now;
                inc.reported = inc.totals.clone();
                out.push((Change::Updated, inc.clone()));
            }
        }
        out.sort_by_key(|(_, i)| i.id);
        out
    }

    /// Open incidents, newest first.
    pub(crate) fn open(&self) -> Vec<&Incident> {
        let mut v: Vec<&Incident> = self.open.values().collect();
        v.sort_by_key(|i| std::cmp::Reverse(i.id));
        v
    }

    /// Closed incidents, most recently closed first.
    pub(crate) fn closed(&self) -> impl Iterator<Item = &Incident> {
        self.closed.iter().rev()
    }

    /// One incident by id, open or closed.
    pub(crate) fn get(&self, id: u64) -> Option<&Incident> {
        self.open
            .values()
            .find(|i| i.id == id)
            .or_else(|| self.closed.iter().find(|i| i.id == id))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Table tests of the incident rules: one cause is one incident whatever the number of
    //! profiles it touches; counts follow the parts by difference; a batch reports each
    //! incident once; a flap reopens; a reload's clear-and-set keeps identities.

    use super::*;

    fn cause(id: &str) -> Cause {
        Cause {
            id: id.into(),
            kind: CauseKind::Dependency,
            region: "westeurope".into(),
            resource: id.into(),
            check: "GET http://127.0.9.1/health".into(),
        }
    }

    fn part(n: u32, region: &str) -> Part {
        Part {
            registries: n,
            now: Now::Region(region.into()),
        }
    }

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn changes(v: &[(Change, Incident)]) -> Vec<(Change, u64, u64)> {
        v.iter()
            .map(|(c, i)| (*c, i.id, i.totals.registries))
            .collect()
    }

    #[test]
    fn one_cause_over_many_profiles_is_one_incident_with_the_exact_count() {
        let mut inc = Incidents::default();
        for p in 0..100u32 {
            inc.set_profile(p, vec![(1, cause("storage"), part(p + 1, "eastus"))], t(1));
        }
        let c = inc.finish(t(1));
        assert_eq!(changes(&c), vec![(Change::Opened, 1, 5050)]);
        assert_eq!(c[0].1.profiles.len(), 100);
        assert_eq!(c[0].1.totals.now[&Now::Region("eastus".into())], 5050);
        // Nothing changed: nothing reported.
        inc.set_profile(7, vec![(1, cause("storage"), part(8, "eastus"))], t(2));
        assert!(inc.finish(t(2)).is_empty());
        // One profile's destination moves: an update with the new split.
        inc.set_profile(
            7,
            vec![(
                1,
                cause("storage"),
                Part {
                    registries: 8,
                    now: Now::FailOpen,
                },
            )],
            t(3),
        );
        let c = inc.finish(t(3));
        assert_eq!(changes(&c), vec![(Change::Updated, 1, 5050)]);
        assert_eq!(c[0].1.totals.failing_open(), 8);
        // Profiles mend one by one; the last one closes it.
        for p in 0..99u32 {
            inc.set_profile(p, vec![], t(4));
        }
        assert_eq!(changes(&inc.finish(t(4))), vec![(Change::Updated, 1, 100)]);
        inc.set_profile(99, vec![], t(5));
        let c = inc.finish(t(5));
        assert_eq!(changes(&c), vec![(Change::Closed, 1, 0)]);
        assert_eq!(c[0].1.closed, Some(t(5)));
        assert_eq!(c[0].1.peak, 5050);
        assert!(inc.open().is_empty());
        assert_eq!(inc.closed().count(), 1);
    }

    #[test]
    fn a_second_cause_is_a_second_incident_and_a_profile_can_feed_both() {
        let mut inc = Incidents::default();
        inc.set_profile(
            0,
            vec![
                (0, cause("storage"), part(10, "eastus")),
                (1, cause("cache"), part(10, "westeurope")),
            ],
            t(1),
        );
        inc.set_profile(1, vec![(1, cause("cache"), part(5, "westeurope"))], t(1));
        let c = inc.finish(t(1));
        assert_eq!(
            changes(&c),
            vec![(Change::Opened, 1, 10), (Change::Opened, 2, 15)]
        );
        assert_eq!(inc.causes_of(0, 1), vec![cause("cache")]);
        assert!(inc.causes_of(1, 0).is_empty());
        // Profile 0 mends its storage only.
        inc.set_profile(0, vec![(1, cause("cache"), part(10, "westeurope"))], t(2));
        assert_eq!(changes(&inc.finish(t(2))), vec![(Change::Closed, 1, 0)]);
        assert_eq!(inc.open().len(), 1);
        assert_eq!(inc.get(2).unwrap().totals.registries, 15);
        assert!(inc.get(1).unwrap().closed.is_some());
    }

    #[test]
    fn a_flapping_cause_reopens_its_incident_within_the_window_only() {
        let mut inc = Incidents::new(Duration::from_secs(60), 8);
        let fail = |inc: &mut Incidents, s| {
            inc.set_profile(0, vec![(0, cause("storage"), part(3, "eastus"))], t(s));
            inc.finish(t(s))
        };
        let mend = |inc: &mut Incidents, s| {
            inc.set_profile(0, vec![], t(s));
            inc.finish(t(s))
        };
        assert_eq!(changes(&fail(&mut inc, 0)), vec![(Change::Opened, 1, 3)]);
        assert_eq!(changes(&mend(&mut inc, 10)), vec![(Change::Closed, 1, 0)]);
        let c = fail(&mut inc, 30);
        assert_eq!(changes(&c), vec![(Change::Opened, 1, 3)], "same incident");
        assert_eq!(c[0].1.flaps, 1);
        assert_eq!(c[0].1.opened, t(0));
        mend(&mut inc, 40);
        assert_eq!(inc.closed().count(), 1, "one incident, not two");
        // Past the window: a new incident.
        assert_eq!(changes(&fail(&mut inc, 200)), vec![(Change::Opened, 2, 3)]);
    }

    #[test]
    fn a_reload_keeps_open_incidents_that_still_have_contributors() {
        let mut inc = Incidents::default();
        inc.set_profile(4, vec![(0, cause("storage"), part(3, "eastus"))], t(1));
        inc.set_profile(5, vec![(0, cause("cache"), part(2, "eastus"))], t(1));
        inc.finish(t(1));
        // Profiles renumbered: storage's profile is 0 now, cache is gone.
        inc.clear_profiles();
        inc.set_profile(0, vec![(0, cause("storage"), part(4, "eastus"))], t(2));
        let c = inc.finish(t(2));
        assert_eq!(
            changes(&c),
            vec![(Change::Updated, 1, 4), (Change::Closed, 2, 0)]
        );
        // Opened and gone within one batch: nothing to report, nothing kept.
        inc.set_profile(9, vec![(0, cause("auth"), part(1, "eastus"))], t(3));
        inc.set_profile(9, vec![], t(3));
        assert!(inc.finish(t(3)).is_empty());
        assert_eq!(inc.closed().count(), 1);
    }

    #[test]
    fn closed_history_is_bounded() {
        let mut inc = Incidents::new(Duration::ZERO, 2);
        for s in 0..5u64 {
            inc.set_profile(
                0,
                vec![(0, cause(&format!("dep{s}")), part(1, "eastus"))],
                t(2 * s),
            );
            inc.finish(t(2 * s));
            inc.set_profile(0, vec![], t(2 * s + 1));
            inc.finish(t(2 * s + 1));
        }
        let ids: Vec<u64> = inc.closed().map(|i| i.id).collect();
        assert_eq!(ids, vec![5, 4]);
    }
}
