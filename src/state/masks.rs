//! What routing may answer for each registry, as the writer publishes it, and the one read of
//! it the answer path makes (with the health view's deadline applied, see `freshness`).

use std::collections::HashMap;

use super::Snapshot;
use crate::global::{Globals, Registry};
use crate::health::book::Masks;

/// What routing may answer: masks per health profile (shared by every registry of the
/// profile), and per registry for the few with an exception (a replica override or a
/// per-registry mode).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthMasks {
    /// By profile index (`Globals::profiles`).
    pub profiles: Vec<Masks>,
    /// By registry id, for registries judged apart from their profile.
    pub(crate) exceptions: HashMap<u32, Masks>,
    /// The mass-failure guard holds the current state (the prober's own network is suspect).
    pub guard_engaged: bool,
}

impl HealthMasks {
    /// Every replica routable and enabled (before any probe has run).
    pub(crate) fn all(globals: &Globals) -> Self {
        Self {
            profiles: globals
                .profiles
                .iter()
                .map(|p| {
                    Masks::all(
                        globals
                            .sets
                            .get(p.set as usize)
                            .map_or(0, |s| s.replicas.len()),
                    )
                })
                .collect(),
            exceptions: HashMap::new(),
            guard_engaged: false,
        }
    }

    /// The masks of a registry.
    #[inline]
    pub(crate) fn get(&self, reg: &Registry) -> Masks {
        if !self.exceptions.is_empty()
            && let Some(m) = self.exceptions.get(&reg.id)
        {
            return *m;
        }
        self.profiles
            .get(reg.profile as usize)
            .copied()
            .unwrap_or(Masks::all(64))
    }
}

impl Snapshot {
    /// The masks the answer path routes `reg` on, and whether they are the health view's
    /// own (`true`: the view is past its deadline, every verdict counts as `unknown`, only
    /// operator overrides hold; see [`freshness`](super::freshness)).
    #[inline]
    pub(crate) fn masks(&self, reg: &Registry) -> (Masks, bool) {
        let m = self.health.get(reg);
        // Expiry can only add enabled replicas that are not routable: skip the clock when
        // there are none.
        if m.routable != m.enabled && self.health_clock.expired() {
            let unknown = Masks {
                routable: m.enabled,
                fail_open: false,
                ..m
            };
            return (unknown, true);
        }
        (m, false)
    }
}
