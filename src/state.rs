//! The state every query is answered from: one immutable [`Snapshot`] behind one `ArcSwap`.
//!
//! A reload or a health flip builds a whole new snapshot and publishes it with one store; a
//! query loads the current one once and answers from it alone, so no answer mixes two
//! generations (pingora's two-swap race, avoided by construction).

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::problem::Problems;
use crate::zone::ZoneSet;

/// Everything needed to answer a query, captured at one instant. Never mutated in place.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Increases with every publish.
    pub generation: u64,
    /// The configuration.
    pub config: Arc<Config>,
    /// The static zones.
    pub zones: Arc<ZoneSet>,
}

impl Snapshot {
    /// Load the config file and everything it names, validating all of it. Returns every
    /// problem found (config, zones) with file, line and reason.
    pub fn load(config_path: &Path) -> Result<Self, Problems> {
        let config = Config::load(config_path)?;
        Self::from_config(config)
    }

    /// Load the zones and data a parsed config names.
    pub fn from_config(config: Config) -> Result<Self, Problems> {
        let zones = ZoneSet::load_dir(&config.zones_dir).map_err(Problems)?;
        let mut problems = Vec::new();
        for reg in &config.registries {
            match zones.find(&reg.name) {
                None => problems.push(crate::problem::Problem::file(
                    &config.path,
                    format!(
                        "registry {}: global name {} is not inside any served zone",
                        reg.key, reg.name
                    ),
                )),
                Some(zone) => {
                    if zone.has_data(&reg.name) {
                        problems.push(crate::problem::Problem::file(
                            &config.path,
                            format!(
                                "registry {}: global name {} collides with a name in {}",
                                reg.key,
                                reg.name,
                                zone.file().display()
                            ),
                        ));
                    }
                    if zone.is_below_cut(&reg.name) {
                        problems.push(crate::problem::Problem::file(
                            &config.path,
                            format!(
                                "registry {}: global name {} lies in a delegated subzone",
                                reg.key, reg.name
                            ),
                        ));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        Ok(Self {
            generation: 1,
            config: Arc::new(config),
            zones: Arc::new(zones),
        })
    }
}

/// Cheap-clone handle to the current snapshot, shared by the socket loops, the admin API and
/// the state task.
#[derive(Clone, Debug)]
pub struct Shared(Arc<ArcSwap<Snapshot>>);

impl Shared {
    /// Start with a first snapshot.
    pub fn new(first: Snapshot) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(first)))
    }

    /// The current snapshot, for one query (a guard: do not hold across `.await`).
    pub fn current(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.0.load()
    }

    /// An owned snapshot, safe to hold across `.await`.
    pub fn load(&self) -> Arc<Snapshot> {
        self.0.load_full()
    }

    /// Publish a new snapshot; its generation is set to one past the current one.
    pub fn publish(&self, mut next: Snapshot) {
        next.generation = self.0.load().generation + 1;
        self.0.store(Arc::new(next));
    }
}
