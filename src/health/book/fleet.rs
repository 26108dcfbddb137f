//! The health book's side of the fleet (`crate::fleet`): routing on the fleet's verdicts
//! while its view is current, and this instance's own exceptions for it to publish.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{FleetVerdict, HealthBook, KeySlot, Status, routes_differently};

impl HealthBook {
    /// What routing reads of a key: its own verdict, or the fleet's while the fleet's view
    /// is current (degraded by a quorum; otherwise not degraded, whatever this instance
    /// sees on its own path).
    pub(super) fn routed(&self, slot: &KeySlot) -> Status {
        match (&slot.fleet, self.fleet.is_some()) {
            (_, false) => slot.effective,
            (Some(v), true) if v.degraded => Status::Degraded,
            (_, true) if slot.effective == Status::Degraded => Status::Healthy,
            (_, true) => slot.effective,
        }
    }

    /// Switches routing to the fleet's verdicts (`Some`: the keys some live instance
    /// reports, by fleet name) or back to this instance's own (`None`: the fleet's view is
    /// not current). Returns the profiles whose masks may have changed. O(keys).
    pub(crate) fn set_fleet(
        &mut self,
        verdicts: Option<Arc<HashMap<Arc<str>, FleetVerdict>>>,
    ) -> Vec<u32> {
        let before: Vec<Status> = self.keys.iter().map(|k| self.routed(k)).collect();
        for slot in &mut self.keys {
            slot.fleet = verdicts.as_ref().and_then(|v| v.get(&slot.name).cloned());
        }
        self.fleet = verdicts;
        let mut affected = Vec::new();
        for (slot, was) in self.keys.iter().zip(before) {
            if routes_differently(self.routed(slot), was) {
                affected.extend_from_slice(&slot.profiles);
            }
        }
        affected.sort_unstable();
        affected.dedup();
        affected
    }

    /// The fleet names of the keys this instance itself judges degraded and some profile
    /// reads: what it publishes as its exceptions. O(keys).
    pub(crate) fn own_degraded(&self) -> BTreeSet<Arc<str>> {
        self.keys
            .iter()
            // Only keys some profile reads: a whole-document key of a target whose registries
            // all judge it by `depends_on` routes nothing, and etcd should not grow with it.
            .filter(|k| k.effective == Status::Degraded && !k.profiles.is_empty())
            .map(|k| k.name.clone())
            .collect()
    }
}
