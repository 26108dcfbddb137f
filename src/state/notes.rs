//! What the writer says about changes: fail-open and shadow divergence once per profile,
//! the health-state gauges of the config file's registries, and the health book's
//! transitions and guard changes copied into the event log and metrics.

use std::time::SystemTime;

use tracing::{error, info, warn};

use crate::global::{Globals, SetKind};
use crate::health::book::{EventKind as BookKind, Masks, Resource};
use crate::state::HealthMasks;
use crate::state::view::{EventKind as ViewKind, WallClock};

use super::apply::World;

impl World {
    /// Log and record what changed between two mask sets: fail-open and shadow divergence,
    /// once per profile (naming the registry when the profile has one). `changed` names the
    /// profiles that may differ (None: all of them, after a rebuild): an event costs what it
    /// changed, not the number of profiles.
    pub(super) fn note_health(
        &mut self,
        g: &Globals,
        old: &HealthMasks,
        new: &HealthMasks,
        changed: Option<&[u32]>,
    ) {
        let everything = changed.is_none();
        let members = self.index.members();
        let all: Vec<u32>;
        let changed = match changed {
            Some(c) => c,
            None => {
                // Everything anew: gauges of registries that are gone go too.
                self.metrics.set_health_states(std::iter::empty());
                all = (0..new.profiles.len() as u32).collect();
                &all
            }
        };
        for &p in changed {
            let p = p as usize;
            let Some(m) = new.profiles.get(p) else {
                continue;
            };
            let was = old.profiles.get(p);
            let n = members.get(p).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let name = profile_name(g, p as u32);
            let was_open = was.is_some_and(|w| w.fail_open);
            if was_open != m.fail_open {
                if m.fail_open {
                    self.metrics.fail_open_started(&name);
                    error!(registries = n, profile = %name, "every enabled replica is degraded: failing open, answering all of them");
                } else {
                    info!(registries = n, profile = %name, "no longer failing open");
                }
                let msg = if m.fail_open {
                    "every enabled replica degraded: failing open"
                } else {
                    "no longer failing open"
                };
                self.events.push(
                    SystemTime::now(),
                    ViewKind::FailOpen,
                    Some(&name),
                    None,
                    msg,
                );
            }
            let diverged = |x: &Masks| x.shadow_deep.is_some_and(|d| d != x.routable);
            if was.is_some_and(diverged) != diverged(m) {
                let msg = if diverged(m) {
                    let deep = m.shadow_deep.unwrap_or(m.routable);
                    warn!(profile = %name, routed = ?m.routable, ?deep, "shadow mode: deep checks would change routing");
                    format!(
                        "shadow: deep health would change routing (routed replicas {:?}, deep {deep:?})",
                        m.routable
                    )
                } else {
                    info!(profile = %name, "shadow mode: deep checks agree with routing again");
                    "shadow: deep health agrees with routing again".to_string()
                };
                self.events
                    .push(SystemTime::now(), ViewKind::Shadow, Some(&name), None, msg);
            }
        }
        if old.guard_engaged != new.guard_engaged {
            self.metrics.guard(new.guard_engaged);
        }
        self.update_state_metrics(g, changed);
        self.note_incidents(g, new, (!everything).then_some(changed));
    }

    /// Health-state gauges of the config file's registries (bounded by the config file), for
    /// the profiles in `changed`; the other gauges keep their values.
    pub(super) fn update_state_metrics(&self, g: &Globals, changed: &[u32]) {
        let now_wall = SystemTime::now();
        for &p in changed {
            let p = p as usize;
            let Some(set) = g
                .profiles
                .get(p)
                .and_then(|prof| g.sets.get(prof.set as usize))
            else {
                continue;
            };
            if set.kind != SetKind::Registry
                || self.index.members().get(p).copied().unwrap_or(0) == 0
            {
                continue;
            }
            let mode = self.profile_mode(g, p as u32);
            for (i, r) in set.replicas.iter().enumerate() {
                let state = match self
                    .overrides
                    .is_disabled(&set.key, &r.key, &r.region, now_wall)
                {
                    Some(_) => "disabled",
                    None => self.book.routed_status(p as u32, i, mode).as_str(),
                };
                self.metrics.set_health_state(&set.key, &r.key, state);
            }
        }
    }

    //--- events ------------------------------------------------------------------------------

    /// Copy new book history entries (transitions, guard) into the event log and metrics.
    pub(super) fn forward_book_events(&mut self) {
        let clock = WallClock::now();
        let last = self.last_book_event;
        let fresh: Vec<_> = self
            .book
            .history()
            .filter(|e| last.is_none_or(|l| e.at > l))
            .cloned()
            .collect();
        for e in fresh {
            self.last_book_event = Some(self.last_book_event.map_or(e.at, |n| n.max(e.at)));
            let at = clock.wall(e.at);
            match &e.kind {
                BookKind::Transition {
                    check,
                    transition,
                    key,
                } => {
                    self.metrics.transition(transition.to.as_str());
                    let deps = match &key.resource {
                        Resource::Whole => String::new(),
                        Resource::Deps(d) => format!(" [{}]", d.join(",")),
                    };
                    self.events.push(
                        at,
                        ViewKind::Transition,
                        None,
                        None,
                        format!(
                            "{check}{deps}: {} -> {} ({})",
                            transition.from, transition.to, transition.reason
                        ),
                    );
                }
                BookKind::GuardEngaged { failing, total } => {
                    self.metrics.guard(true);
                    self.events.push(
                        at,
                        ViewKind::Guard,
                        None,
                        None,
                        format!("mass-failure guard engaged: {failing} of {total} targets failing; holding state"),
                    );
                }
                BookKind::GuardReleased => {
                    self.metrics.guard(false);
                    self.events.push(
                        at,
                        ViewKind::Guard,
                        None,
                        None,
                        "mass-failure guard released",
                    );
                }
            }
        }
    }
}

/// A profile's name in logs: its config registry, or its template and `depends_on`.
pub(super) fn profile_name(g: &Globals, p: u32) -> String {
    let Some(prof) = g.profiles.get(p as usize) else {
        return String::new();
    };
    let Some(set) = g.sets.get(prof.set as usize) else {
        return String::new();
    };
    match (set.kind, &prof.depends_on) {
        (SetKind::Registry, _) => set.key.to_string(),
        (SetKind::Template, Some(d)) => format!("template/{}[{}]", set.key, d.join(",")),
        (SetKind::Template, None) => format!("template/{}", set.key),
    }
}
