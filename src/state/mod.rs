//! The state every query is answered from: one immutable [`Snapshot`] behind one `ArcSwap`.
//!
//! A reload or a health flip builds a whole new snapshot and publishes it with one store; a
//! query loads the current one once and answers from it alone, so no answer mixes two
//! generations (pingora's two-swap race, avoided by construction).

mod apply;
pub(crate) mod catalog;
pub(crate) mod command;
pub mod events;
pub(crate) mod freshness;
mod incident_feed;
pub(crate) use incident_feed::count as incident_count;
pub mod incidents;
mod masks;
mod notes;
pub mod readiness;
mod registries;
mod status;
mod trim;
pub mod view;
pub(crate) mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, Replica};
use crate::global::{Deps, GlobalZone, Globals, ReplicaSet, SetKind, SetReplica, encode_rr};
use crate::health::book::TargetTable;
use crate::health::spec::HealthSpec;
use crate::metrics::{ClientLabels, RegistryKeys, ReplicaCounters};
use crate::problem::{Problem, Problems};
use crate::routing::{
    BuiltinRegions, GeoDb, GeoError, GeoSet, LatencyTable, Locator, RegionSpec, resolve_regions,
};
use crate::zone::ZoneSet;
use catalog::{CatalogIndex, Entry};
use freshness::HealthClock;
pub use masks::HealthMasks;

/// Everything needed to answer a query, captured at one instant. Never mutated in place.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Increases with every publish.
    pub(crate) generation: u64,
    /// The configuration.
    pub config: Arc<Config>,
    /// The static zones.
    pub(crate) zones: Arc<ZoneSet>,
    /// Latency table, geo database, regions and default order.
    pub locator: Arc<Locator>,
    /// The global names, prepared for answering.
    pub(crate) globals: Arc<Globals>,
    /// Which replicas of each registry may be answered, from the health book.
    pub health: Arc<HealthMasks>,
    /// The deadline of `health` (one clock for the process, carried by every publish).
    pub(crate) health_clock: Arc<HealthClock>,
    /// What to probe.
    pub(crate) targets: Arc<TargetTable>,
    /// Answer counters by replica set and replica, and by client label.
    pub(crate) counters: Arc<ReplicaCounters>,
    /// The writer's catalog index, as loaded; the writer takes it out before the first
    /// publish ([`Snapshot::take_index`]), so snapshots in service never hold one.
    pub(crate) index: Option<Arc<CatalogIndex>>,
}

impl Snapshot {
    /// Load the config file and everything it names, validating all of it. Returns every
    /// problem found (config, zones, catalog) with file, line and reason.
    pub fn load(config_path: &Path) -> Result<Self, Problems> {
        let (mut snap, index) = Self::load_indexed(config_path)?;
        snap.index = Some(Arc::new(index));
        Ok(snap)
    }

    /// [`load`](Self::load) of a config already read (the demo's and the signed fuzz
    /// harness's, given keys made on the spot).
    pub(crate) fn from_config(config: Config) -> Result<Self, Problems> {
        let (mut snap, index) = Self::from_config_indexed(config)?;
        snap.index = Some(Arc::new(index));
        Ok(snap)
    }

    /// The catalog index for the writer: the one loaded with the snapshot, or one built
    /// from its registries.
    pub(crate) fn take_index(&mut self) -> CatalogIndex {
        match self.index.take() {
            Some(i) => Arc::try_unwrap(i).unwrap_or_else(|i| (*i).clone()),
            None => CatalogIndex::from_globals(&self.globals, &self.zones),
        }
    }

    /// [`load`](Self::load), with the writer's catalog index apart.
    pub(crate) fn load_indexed(config_path: &Path) -> Result<(Self, CatalogIndex), Problems> {
        let started = std::time::Instant::now();
        let config = Config::load(config_path)?;
        let loaded = Self::from_config_indexed(config)?;
        tracing::info!(
            registries = loaded.0.globals.len(),
            profiles = loaded.0.globals.profiles.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "configuration and catalog loaded"
        );
        Ok(loaded)
    }

    /// [`from_config`](Self::from_config), plus the writer's catalog index.
    pub(crate) fn from_config_indexed(config: Config) -> Result<(Self, CatalogIndex), Problems> {
        let zones = ZoneSet::load_dir(&config.zones_dir, config.dnssec.as_ref(), &config.path);
        let locator = load_locator(&config);
        let (zones, locator) = match (zones, locator) {
            (Ok(z), Ok(l)) => (z, l),
            (z, l) => {
                let mut all = z.err().unwrap_or_default();
                all.extend(l.err().unwrap_or_default());
                return Err(Problems(all));
            }
        };
        let (targets, sets) = replica_sets(&config, &locator).map_err(Problems)?;
        // In the order of zones.zones(), which CatalogIndex::new numbers the same way.
        let global_zones = global_zones(&zones).map_err(|e| {
            Problems(vec![Problem::file(
                &config.path,
                format!("cannot encode a SOA or its RRSIG: {e}"),
            )])
        })?;
        let mut globals = Globals::new(sets.into(), global_zones.into());
        let mut index = CatalogIndex::new(&zones, &globals);
        let mut problems = Vec::new();
        let sets = globals.sets.clone();
        let set_of: HashMap<(SetKind, &str), u32> = sets
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.kind, &*s.key), i as u32))
            .collect();
        for reg in &config.registries {
            let Some(&set) = set_of.get(&(SetKind::Registry, reg.set.key.as_str())) else {
                continue;
            };
            let entry = Entry {
                key: reg.set.key.as_str().into(),
                name: reg.name.clone(),
                set,
                depends_on: None,
                ttl: None,
                answers: None,
            };
            // A failed put changes nothing.
            if let Err(e) = index.put(&mut globals, &zones, entry) {
                problems.push(Problem::at(
                    &config.path,
                    crate::config::line_in_file(
                        &config.path,
                        &format!("registries.{}", reg.set.key),
                        Some("name"),
                    ),
                    e,
                ));
            }
        }
        if let Some(files) = &config.catalog {
            let templates = |t: &str| set_of.get(&(SetKind::Template, t)).copied();
            load_catalog(
                files,
                &templates,
                &mut globals,
                &mut index,
                &zones,
                &mut problems,
            );
        }
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        for k in &config.admin.metrics_registries {
            if index.name_of(k).is_none() {
                problems.push(Problem::at(
                    &config.path,
                    crate::config::line_in_file(&config.path, "admin", Some("metrics_registries")),
                    format!("admin.metrics_registries names {k:?}, which is not a registry"),
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        let counters = replica_counters(&globals, &locator, &config, &index);
        Ok((
            Self {
                targets: Arc::new(targets),
                counters: Arc::new(counters),
                generation: 1,
                health: Arc::new(HealthMasks::all(&globals)),
                health_clock: Arc::new(HealthClock::new()),
                config: Arc::new(config),
                zones: Arc::new(zones),
                locator: Arc::new(locator),
                globals: Arc::new(globals),
                index: None,
            },
            index,
        ))
    }
}

/// What the global names need of each zone (its negative SOA, its signer), in the order of
/// `zones.zones()`, which the global names' zone indices follow.
fn global_zones(zones: &ZoneSet) -> Result<Vec<GlobalZone>, hickory_proto::ProtoError> {
    let mut out = Vec::with_capacity(zones.len());
    for z in zones.zones() {
        let mut g = GlobalZone {
            apex_labels: z.origin().num_labels(),
            negative_ttl: z.negative_soa().ttl,
            signer: crate::global::SignerRef(z.signer_arc()),
            ..GlobalZone::default()
        };
        encode_rr(&mut g.negative_soa, z.negative_soa(), false)?;
        for sig in z.negative_soa_sigs() {
            encode_rr(&mut g.negative_soa_sigs, sig, false)?;
        }
        out.push(g);
    }
    Ok(out)
}

impl Snapshot {
    /// The signers of its zones (to hand their caches to the next snapshot's, see
    /// [`adopt_signatures`](Self::adopt_signatures)).
    pub(crate) fn signers(&self) -> Vec<Arc<crate::dnssec::sign::ZoneSigner>> {
        self.zones.zones().filter_map(|z| z.signer_arc()).collect()
    }

    /// After a reload: each signed zone's new signer takes the cached signatures of the
    /// signer it replaces when the keys are the same, so the steered answers signed before
    /// the reload are not signed again on their first query after it. Returns how many.
    pub(crate) fn adopt_signatures(&self, old: &[Arc<crate::dnssec::sign::ZoneSigner>]) -> usize {
        self.zones
            .zones()
            .filter_map(|z| z.signer())
            .map(|new| {
                old.iter()
                    .find(|o| o.apex() == new.apex())
                    .map_or(0, |o| new.adopt_cache(o))
            })
            .sum()
    }

    /// Zone `zone`'s static part signed, as a zone file (see `Zone::dump_signed`).
    pub(crate) fn dump_signed(
        &self,
        zone: &str,
        now: std::time::SystemTime,
    ) -> Result<String, String> {
        let origin = hickory_proto::rr::Name::from_ascii(zone)
            .map_err(|e| format!("{zone}: {e}"))?
            .to_lowercase();
        let origin = if origin.is_fqdn() {
            origin
        } else {
            let mut o = origin;
            o.set_fqdn(true);
            o
        };
        let z = self
            .zones
            .zones()
            .find(|z| *z.origin() == origin)
            .ok_or_else(|| format!("no zone {origin} is served"))?;
        z.dump_signed(now)
            .ok_or_else(|| format!("{origin} is not signed ([dnssec] zones)"))
    }

    /// The signer of zone `zone` (its origin, e.g. `registry.example.`), when it is signed:
    /// its counters and signature cache, for tests and tools.
    pub fn signer_of(&self, zone: &str) -> Option<Arc<crate::dnssec::sign::ZoneSigner>> {
        let origin = hickory_proto::rr::Name::from_ascii(zone).ok()?;
        self.zones
            .zones()
            .find(|z| *z.origin() == origin)?
            .signer_arc()
    }

    /// This snapshot with the zones whose signatures are due signed again at `now` (the
    /// same keys, the same data), or None when none is due. The writer calls it on its tick:
    /// static signatures are renewed without a reload, each zone at half its validity.
    pub(crate) fn resigned(&self, now: std::time::SystemTime) -> Option<Snapshot> {
        if !self.zones.sign_due(now) {
            return None;
        }
        let started = std::time::Instant::now();
        let zones = self.zones.resigned(now);
        let global = match global_zones(&zones) {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the signed zones' SOA; signatures not renewed");
                return None;
            }
        };
        let mut globals = (*self.globals).clone();
        globals.zones = global.into();
        tracing::info!(
            zones = zones.zones().filter(|z| z.signer().is_some()).count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "zone signatures renewed"
        );
        Some(Snapshot {
            zones: Arc::new(zones),
            globals: Arc::new(globals),
            ..self.clone()
        })
    }

    /// How a query for global name `name` of type `qtype` from `source` (with `ecs`) is
    /// answered now, with live health: the one explain behind the CLI and the admin API.
    /// None when `name` is not a global name.
    pub(crate) fn explain(
        &self,
        name: &hickory_proto::rr::Name,
        qtype: u16,
        source: std::net::IpAddr,
        ecs: Option<&crate::wire::ClientSubnet>,
    ) -> Option<crate::global::Explained> {
        let reg = self.globals.find_name(name)?;
        let (set, answers) = self.globals.parts(reg)?;
        let masks = self.masks(reg).0;
        Some(crate::global::explain(
            &self.locator,
            &self.zones,
            crate::global::Target {
                registry: reg,
                set,
                answers,
            },
            &masks,
            qtype,
            source.to_canonical(),
            ecs,
        ))
    }
}

/// The catalog file and its journal, put into `globals` entry by entry; every problem with
/// the file and line.
fn load_catalog(
    files: &crate::config::CatalogFiles,
    templates: &dyn Fn(&str) -> Option<u32>,
    globals: &mut Globals,
    index: &mut CatalogIndex,
    zones: &ZoneSet,
    problems: &mut Vec<Problem>,
) {
    use crate::catalog::file::{JournalOp, parse_catalog, parse_journal};
    let text = match std::fs::read_to_string(&files.file) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem::file(&files.file, format!("cannot read: {e}")));
            return;
        }
    };
    let started = std::time::Instant::now();
    let entries = match parse_catalog(&text, &files.file) {
        Ok(e) => e,
        Err(p) => {
            problems.extend(p);
            return;
        }
    };
    drop(text);
    tracing::debug!(
        entries = entries.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "catalog parsed"
    );
    let put = |entry: crate::catalog::file::CatalogEntry,
               file: &Path,
               globals: &mut Globals,
               index: &mut CatalogIndex,
               problems: &mut Vec<Problem>| {
        let line = Some(entry.line);
        let Some(set) = templates(&entry.template) else {
            problems.push(Problem::at(
                file,
                line,
                format!(
                    "template {:?} has no [templates.{}] table",
                    entry.template, entry.template
                ),
            ));
            return;
        };
        let e = Entry {
            key: entry.key,
            name: entry.name,
            set,
            depends_on: entry.depends_on,
            ttl: entry.ttl,
            answers: entry.answers,
        };
        if let Err(reason) = index.put(globals, zones, e) {
            problems.push(Problem::at(file, line, reason));
        }
    };
    let started = std::time::Instant::now();
    for entry in entries {
        if problems.len() >= 100 {
            break;
        }
        put(entry, &files.file, globals, index, problems);
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "catalog entries put"
    );
    let journal = match std::fs::read_to_string(&files.journal) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            problems.push(Problem::file(&files.journal, format!("cannot read: {e}")));
            return;
        }
    };
    match parse_journal(&journal, &files.journal) {
        Err(p) => problems.extend(p),
        Ok((ops, torn)) => {
            if let Some(t) = torn {
                tracing::warn!(problem = %t, "ignoring a torn last line of the catalog journal");
            }
            for op in ops {
                match op {
                    JournalOp::Put { entry, .. } => {
                        put(entry, &files.journal, globals, index, problems)
                    }
                    JournalOp::Delete { key, .. } => {
                        index.delete(globals, &key);
                    }
                }
            }
        }
    }
}

/// The probe targets and the replica sets: one per template, one per config-file registry.
fn replica_sets(
    config: &Config,
    locator: &Locator,
) -> Result<(TargetTable, Vec<ReplicaSet>), Vec<Problem>> {
    let at = |table: &str, e: &crate::health::spec::SpecError| {
        let key = e.key.rsplit('.').next().unwrap_or(e.key);
        Problem::at(
            &config.path,
            crate::config::line_in_file(&config.path, table, Some(key)),
            e.to_string(),
        )
    };
    let mut targets = TargetTable::new(&config.health).map_err(|e| vec![at("health", &e)])?;
    let mut problems = Vec::new();
    let mut sets = Vec::new();
    let mut deps: HashMap<Vec<String>, Deps> = HashMap::new();
    for (t, template) in config.sets() {
        let (kind, tables) = match template {
            true => (SetKind::Template, "templates"),
            false => (SetKind::Registry, "registries"),
        };
        let (key, health, replicas) = (&t.key, &t.health, &t.replicas);
        let table = format!("{tables}.{key}");
        let mode = match targets.mode(health) {
            Ok(m) => m,
            Err(e) => {
                problems.push(at(&format!("{table}.health"), &e));
                continue;
            }
        };
        let mut reps = Vec::with_capacity(replicas.len());
        for rep in replicas {
            match targets.replica(health, &rep.health) {
                Ok(checks) => reps.push(SetReplica {
                    key: rep.key.as_str().into(),
                    region: rep.region.as_str().into(),
                    deep: checks.deep,
                    shallow: checks.shallow,
                    depends_on: checks.depends_on.map(|mut d| {
                        d.sort();
                        d.dedup();
                        deps.entry(d.clone()).or_insert_with(|| d.into()).clone()
                    }),
                    spec: clone_replica(rep),
                }),
                Err(e) => problems.push(at(&format!("{table}.replicas.{}.health", rep.key), &e)),
            }
        }
        match ReplicaSet::new(
            key,
            kind,
            reps,
            t.default_order.as_deref(),
            locator.regions(),
            (mode, t.ttl, t.answers),
        ) {
            Ok(s) => sets.push(s),
            Err(e) => problems.push(Problem::file(&config.path, format!("{table}: {e}"))),
        }
    }
    if problems.is_empty() {
        Ok((targets, sets))
    } else {
        Err(problems)
    }
}

fn clone_replica(r: &Replica) -> Replica {
    Replica {
        key: r.key.clone(),
        region: r.region.clone(),
        ipv4: r.ipv4.clone(),
        ipv6: r.ipv6.clone(),
        cname: r.cname.clone(),
        health: HealthSpec::default(),
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
    // Every file is opened (and its schema detected) before the family rule is applied, so
    // each unusable file is reported.
    let mut dbs = Vec::with_capacity(config.mmdb.len());
    for path in &config.mmdb {
        match GeoDb::open(path) {
            Ok(db) => dbs.push(db),
            Err(e) => problems.push(geo_problem(e)),
        }
    }
    let geo = match dbs.is_empty() {
        true => None,
        false => match GeoSet::new(dbs) {
            Ok(set) => Some(set),
            Err(e) => {
                problems.push(geo_problem(e));
                None
            }
        },
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
    pub(crate) fn new(first: Snapshot) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(first)))
    }

    /// The current snapshot, for one query (a guard: do not hold across `.await`).
    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.0.load()
    }

    /// An owned snapshot, safe to hold across `.await`.
    pub fn load(&self) -> Arc<Snapshot> {
        self.0.load_full()
    }

    /// Publish a new snapshot; its generation is set to one past the current one.
    pub(crate) fn publish(&self, mut next: Snapshot) {
        let current = self.0.load();
        next.generation = current.generation + 1;
        // One health clock for the process: a snapshot built from a fresh load (a reload)
        // must not restart the deadline the writer keeps.
        next.health_clock = Arc::clone(&current.health_clock);
        drop(current);
        self.0.store(Arc::new(next));
    }
}

/// Answer counters for every replica set and replica (and for each allow-listed registry,
/// `[admin] metrics_registries`), with the client labels the latency table and the mmdb
/// (two-letter country and continent codes) can produce.
fn replica_counters(
    globals: &Globals,
    locator: &Locator,
    config: &Config,
    index: &CatalogIndex,
) -> ReplicaCounters {
    let set_keys = |key: String, s: &ReplicaSet| RegistryKeys {
        key,
        replicas: s.replicas.iter().map(|p| p.key.to_string()).collect(),
    };
    let keys: Vec<RegistryKeys> = globals
        .sets
        .iter()
        .map(|s| {
            let key = match s.kind {
                SetKind::Registry => s.key.to_string(),
                SetKind::Template => format!("template/{}", s.key),
            };
            set_keys(key, s)
        })
        .collect();
    let own: Vec<(u32, RegistryKeys)> = config
        .admin
        .metrics_registries
        .iter()
        .filter_map(|k| {
            let reg = globals.find(index.name_of(k)?)?;
            let (set, _) = globals.parts(reg)?;
            // A config-file registry is its own set: it has its series already.
            (set.kind == SetKind::Template).then(|| (reg.id, set_keys(k.clone(), set)))
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
    // One shard per UDP worker thread, plus one for TCP (`metrics::DnsCounters::shard`).
    let shards = 1 + config.udp.workers * config.listen.len();
    let labels = ClientLabels::new(
        labels
            .into_iter()
            .chain(ClientLabels::all_two_letter_codes()),
    );
    ReplicaCounters::with_registries(&keys, &own, labels, shards)
}
