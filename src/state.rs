//! The state every query is answered from: one immutable [`Snapshot`] behind one `ArcSwap`.
//!
//! A reload or a health flip builds a whole new snapshot and publishes it with one store; a
//! query loads the current one once and answers from it alone, so no answer mixes two
//! generations (pingora's two-swap race, avoided by construction).

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::global::Globals;
use crate::health::book::{HealthPlan, HealthView, PlanBuilder};
use crate::health::spec::{SpecLevel, resolve};
use crate::metrics::{ClientLabels, RegistryKeys, ReplicaCounters};
use crate::problem::{Problem, Problems};
use crate::routing::{
    BuiltinRegions, GeoDb, GeoError, LatencyTable, Locator, RegionSpec, resolve_regions,
};
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
    /// Latency table, geo database, regions and default order.
    pub locator: Arc<Locator>,
    /// The global names, prepared for answering.
    pub globals: Arc<Globals>,
    /// Which replicas of each registry may be answered, from the health view.
    pub health: Arc<HealthMasks>,
    /// What to probe and how each replica is judged (registry and replica indices match
    /// `globals`).
    pub plan: Arc<HealthPlan>,
    /// Answer counters by registry/replica and client label, laid out for this config.
    pub counters: Arc<ReplicaCounters>,
}

/// Per registry (by index in `Globals::registries`): which replicas are routable (health, with
/// the fail-open rules applied) and which are enabled (not disabled by an operator).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthMasks {
    /// Bit i: replica i may be answered.
    pub routable: Vec<u64>,
    /// Bit i: replica i is not disabled by an operator.
    pub enabled: Vec<u64>,
    /// Every enabled replica of the registry is degraded: answering as if all were healthy.
    pub fail_open: Vec<bool>,
    /// Shadow mode: the mask deep health would have given (None in other modes).
    pub shadow_deep: Vec<Option<u64>>,
    /// The mass-failure guard holds the current state (the prober's own network is suspect).
    pub guard_engaged: bool,
}

impl HealthMasks {
    /// Every replica routable and enabled (before any probe has run).
    pub fn all(globals: &Globals) -> Self {
        let masks: Vec<u64> = globals
            .registries
            .iter()
            .map(|r| r.candidates.all())
            .collect();
        Self {
            fail_open: vec![false; masks.len()],
            shadow_deep: vec![None; masks.len()],
            routable: masks.clone(),
            enabled: masks,
            guard_engaged: false,
        }
    }

    /// Masks from a health view; `enabled(registry)` gives the operator's mask.
    pub fn from_view(
        view: &HealthView,
        enabled: impl Fn(usize) -> u64,
        guard_engaged: bool,
    ) -> Self {
        Self {
            routable: view.registries.iter().map(|r| r.routable).collect(),
            enabled: (0..view.registries.len()).map(enabled).collect(),
            fail_open: view.registries.iter().map(|r| r.fail_open).collect(),
            shadow_deep: view.registries.iter().map(|r| r.deep_routable).collect(),
            guard_engaged,
        }
    }

    /// (routable, enabled) for a registry.
    pub fn get(&self, registry: usize) -> (u64, u64) {
        (
            self.routable.get(registry).copied().unwrap_or(u64::MAX),
            self.enabled.get(registry).copied().unwrap_or(u64::MAX),
        )
    }
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
        let zones = ZoneSet::load_dir(&config.zones_dir);
        let locator = load_locator(&config);
        let (zones, locator) = match (zones, locator) {
            (Ok(z), Ok(l)) => (z, l),
            (z, l) => {
                let mut all = z.err().unwrap_or_default();
                all.extend(l.err().unwrap_or_default());
                return Err(Problems(all));
            }
        };
        let mut problems = Vec::new();
        for reg in &config.registries {
            match zones.find(&reg.name) {
                None => problems.push(Problem::file(
                    &config.path,
                    format!(
                        "registry {}: global name {} is not inside any served zone",
                        reg.key, reg.name
                    ),
                )),
                Some(zone) => {
                    if zone.has_data(&reg.name) {
                        problems.push(Problem::file(
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
                        problems.push(Problem::file(
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
        let globals = Globals::prepare(&config.registries, &zones, locator.regions(), &config.path)
            .map_err(Problems)?;
        let plan = health_plan(&config).map_err(Problems)?;
        let counters = replica_counters(&globals, &locator);
        Ok(Self {
            plan: Arc::new(plan),
            counters: Arc::new(counters),
            generation: 1,
            health: Arc::new(HealthMasks::all(&globals)),
            config: Arc::new(config),
            zones: Arc::new(zones),
            locator: Arc::new(locator),
            globals: Arc::new(globals),
        })
    }
}

/// Regions, latency table, mmdb and default order, each problem with its file and line.
fn load_locator(config: &Config) -> Result<Locator, Vec<Problem>> {
    let geo_problem = |e: GeoError| Problem::at(e.file, e.line, e.reason);
    let config_problem = |reason: String| Problem::file(&config.path, reason);
    let specs: Vec<RegionSpec<'_>> = config
        .regions
        .iter()
        .map(|(name, r)| RegionSpec {
            name,
            latitude: r.latitude,
            longitude: r.longitude,
            display_name: r.display_name.as_deref(),
        })
        .collect();
    let builtin = BuiltinRegions::bundled();
    let regions =
        resolve_regions(&specs, &builtin).map_err(|e| vec![config_problem(e.to_string())])?;
    let mut problems = Vec::new();
    let table = match &config.latency_table {
        Some(path) => match LatencyTable::load(path, &regions) {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(geo_problem(e));
                None
            }
        },
        None => None,
    };
    let geo = match &config.mmdb {
        Some(path) => match GeoDb::open(path) {
            Ok(g) => Some(g),
            Err(e) => {
                problems.push(geo_problem(e));
                None
            }
        },
        None => None,
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let order: Vec<&str> = config.default_order.iter().map(String::as_str).collect();
    Locator::new(regions, table, geo, &order).map_err(|e| vec![config_problem(e.to_string())])
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

/// The health plan: every layer of health settings resolved, each problem named by its table.
fn health_plan(config: &Config) -> Result<HealthPlan, Vec<Problem>> {
    let at = |table: &str, e: &crate::health::spec::SpecError| {
        let key = e.key.rsplit('.').next().unwrap_or(e.key);
        Problem::at(
            &config.path,
            crate::config::line_in_file(&config.path, table, Some(key)),
            e.to_string(),
        )
    };
    let mut builder = PlanBuilder::new(&config.health).map_err(|e| vec![at("health", &e)])?;
    let mut problems = Vec::new();
    for reg in &config.registries {
        let table = format!("registries.{}", reg.key);
        if let Err(e) = reg
            .health
            .check_level(SpecLevel::Registry)
            .and_then(|()| resolve(&[&config.health, &reg.health]))
        {
            problems.push(at(&format!("{table}.health"), &e));
            continue;
        }
        let mut ok = true;
        for rep in &reg.replicas {
            if let Err(e) = rep
                .health
                .check_level(SpecLevel::Replica)
                .and_then(|()| resolve(&[&config.health, &reg.health, &rep.health]))
            {
                problems.push(at(&format!("{table}.replicas.{}.health", rep.key), &e));
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        let replicas: Vec<(&str, &crate::health::spec::HealthSpec)> = reg
            .replicas
            .iter()
            .map(|r| (r.key.as_str(), &r.health))
            .collect();
        if let Err(e) = builder.add_registry(&reg.key, &reg.health, &replicas) {
            problems.push(at(&table, &e));
        }
    }
    if problems.is_empty() {
        Ok(builder.finish())
    } else {
        Err(problems)
    }
}

/// Answer counters for every registry and replica, with the client labels the latency table
/// and the mmdb (two-letter country and continent codes) can produce.
fn replica_counters(globals: &Globals, locator: &Locator) -> ReplicaCounters {
    let keys: Vec<RegistryKeys> = globals
        .registries
        .iter()
        .map(|r| RegistryKeys {
            key: r.key.clone(),
            replicas: r.replicas.iter().map(|p| p.key.clone()).collect(),
        })
        .collect();
    let mut labels: Vec<String> = locator
        .table()
        .map(|t| {
            t.iter()
                .filter_map(|m| m.label.map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    labels.dedup();
    ReplicaCounters::new(
        &keys,
        ClientLabels::new(
            labels
                .into_iter()
                .chain(ClientLabels::all_two_letter_codes()),
        ),
    )
}
