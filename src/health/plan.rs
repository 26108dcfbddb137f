//! The probe targets of a configuration: every replica's layered health settings resolved
//! into a deep and a shallow check, identical checks deduplicated into one [`TargetId`] (a
//! hash of the check, its timing and thresholds, stable across reloads).

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::book::{ProbeTarget, TargetId};
use super::spec::{
    CheckSpec, GuardSettings, HealthMode, HealthSpec, SpecError, SpecLevel, Thresholds, Timing,
    resolve,
};

#[derive(Clone, Debug)]
pub(super) struct TargetPlan {
    pub(super) target: ProbeTarget,
    pub(super) thresholds: Thresholds,
}

/// A replica's resolved health: its two checks' targets and its `depends_on`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaChecks {
    /// Deep check target (None: no URL, stays unknown).
    pub deep: Option<TargetId>,
    /// Shallow check target.
    pub shallow: Option<TargetId>,
    /// `depends_on` of the resolved settings.
    pub(crate) depends_on: Option<Vec<String>>,
}

/// The deduplicated probe targets of a configuration, and the guard settings.
#[derive(Clone, Debug)]
pub struct TargetTable {
    server: HealthSpec,
    pub(super) guard: GuardSettings,
    pub(super) targets: HashMap<TargetId, TargetPlan>,
}

impl TargetTable {
    /// Starts from the server-level `[health]` table.
    pub fn new(server: &HealthSpec) -> Result<Self, SpecError> {
        server.check_level(SpecLevel::Server)?;
        let guard = server.guard()?;
        resolve(&[server])?;
        Ok(Self {
            server: server.clone(),
            guard,
            targets: HashMap::new(),
        })
    }

    /// The mode of a registry or template whose health table is `spec`.
    pub(crate) fn mode(&self, spec: &HealthSpec) -> Result<HealthMode, SpecError> {
        spec.check_level(SpecLevel::Registry)?;
        Ok(resolve(&[&self.server, spec])?.mode)
    }

    /// Resolve one replica (`set` is its registry's or template's health table) and register
    /// its checks.
    pub fn replica(
        &mut self,
        set: &HealthSpec,
        replica: &HealthSpec,
    ) -> Result<ReplicaChecks, SpecError> {
        replica.check_level(SpecLevel::Replica)?;
        let s = resolve(&[&self.server, set, replica])?;
        let deep = s
            .deep
            .map(|c| self.target(c, s.timing, s.thresholds))
            .transpose()?;
        let shallow = s
            .shallow
            .map(|c| self.target(c, s.timing, s.thresholds))
            .transpose()?;
        Ok(ReplicaChecks {
            deep,
            shallow,
            depends_on: s.depends_on,
        })
    }

    fn target(
        &mut self,
        check: CheckSpec,
        timing: Timing,
        thresholds: Thresholds,
    ) -> Result<TargetId, SpecError> {
        let mut h = DefaultHasher::new();
        (&check, &timing, &thresholds).hash(&mut h);
        let id = TargetId(h.finish());
        match self.targets.get(&id) {
            Some(t)
                if *t.target.check != check
                    || t.target.timing != timing
                    || t.thresholds != thresholds =>
            {
                Err(SpecError {
                    key: "url",
                    reason: format!("internal: probe target id collision for {check}"),
                })
            }
            Some(_) => Ok(id),
            None => {
                self.targets.insert(
                    id,
                    TargetPlan {
                        target: ProbeTarget {
                            id,
                            check: Arc::new(check),
                            timing,
                        },
                        thresholds,
                    },
                );
                Ok(id)
            }
        }
    }

    /// The probe targets, sorted by id, for the prober's watch channel.
    pub fn probe_targets(&self) -> Arc<[ProbeTarget]> {
        let mut v: Vec<ProbeTarget> = self.targets.values().map(|t| t.target.clone()).collect();
        v.sort_by_key(|t| t.id);
        v.into()
    }

    /// How many targets.
    pub(crate) fn len(&self) -> usize {
        self.targets.len()
    }

    /// A target's check and timing.
    #[cfg(test)]
    pub(crate) fn get(&self, id: TargetId) -> Option<&ProbeTarget> {
        self.targets.get(&id).map(|t| &t.target)
    }
}
