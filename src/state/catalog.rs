//! The writer's side of the registry catalog: the key index, the interning tables of
//! profiles and answer sets, and the put/delete steps that change [`Globals`] by one record
//! (one shard copied) without touching any other registry.
//!
//! Rules a registry must pass (the config file's, the catalog file's and the admin API's
//! alike): its global name lies inside a served zone, is not a name with data in the zone
//! file, does not lie below a delegation, and is not another registry's name; `answers` is
//! 1..=8 and the TTL at most 1 h. A global name may be its zone's apex: the registry then
//! answers A, AAAA and ANY there, so the zone file must have no addresses at the apex and the
//! replicas no CNAME (none may be at an apex, RFC 1034 §3.6.2); the apex keeps its SOA, NS
//! and every other type from the zone file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use hickory_proto::rr::{Name, RecordType};

use crate::config::{MAX_ANSWERS, MAX_REGISTRY_TTL};
use crate::global::{AnswerSet, Deps, Globals, Profile, Registry, RegistryIds, wire_lower};
use crate::health::book::{HealthKey, ProfileKeys, Resource};
use crate::zone::ZoneSet;

/// One registry to put: the catalog's columns with the template resolved to a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The key.
    pub(crate) key: Box<str>,
    /// The global name (absolute).
    pub(crate) name: Name,
    /// The replica set (index in `Globals::sets`).
    pub(crate) set: u32,
    /// Its own `depends_on` (None: the set's).
    pub(crate) depends_on: Option<Vec<String>>,
    /// TTL in seconds (None: the set's).
    pub(crate) ttl: Option<u32>,
    /// Replicas per answer (None: the set's).
    pub(crate) answers: Option<u8>,
}

/// What a put changed, for the health engine.
#[derive(Debug)]
pub(crate) struct Put {
    /// The stored record's id.
    pub(crate) id: u32,
    /// The record it replaced (same key).
    pub(crate) replaced: Option<Registry>,
    /// A profile that did not exist before (its masks must be computed).
    pub(crate) new_profile: Option<u32>,
}

/// Key index and interning tables; owned by the writer.
#[derive(Clone, Debug, Default)]
pub(crate) struct CatalogIndex {
    /// Registry key → lower-cased wire name, sorted (status pages).
    keys: BTreeMap<Arc<str>, Box<[u8]>>,
    profiles: HashMap<Profile, u32>,
    answers: HashMap<(u32, u32), u32>,
    deps: std::collections::HashSet<Deps>,
    zones: HashMap<Name, u16>,
    /// Registries per profile.
    members: Vec<u32>,
    /// (profile, key) of every registry, sorted: an incident's registries page by profile
    /// without walking the others (about 40 bytes a registry).
    by_profile: BTreeSet<(u32, Arc<str>)>,
    /// Registry id → key (the same strings as `keys`): the heavy hitters are sampled by id.
    by_id: Vec<Option<Arc<str>>>,
    next_id: u32,
    /// Template name → its set (index in `Globals::sets`).
    templates: HashMap<Box<str>, u32>,
}

impl CatalogIndex {
    /// An empty index for a zone set (zone index = position in `zones.zones()`) and the
    /// replica sets of `g`.
    pub(crate) fn new(zones: &ZoneSet, g: &Globals) -> Self {
        Self {
            zones: zones
                .zones()
                .enumerate()
                .map(|(i, z)| (z.origin().clone(), i as u16))
                .collect(),
            templates: g
                .sets
                .iter()
                .enumerate()
                .filter(|(_, s)| s.kind == crate::global::SetKind::Template)
                .map(|(i, s)| (Box::<str>::from(&*s.key), i as u32))
                .collect(),
            ..Self::default()
        }
    }

    /// The replica set of a template.
    pub(crate) fn template(&self, name: &str) -> Option<u32> {
        self.templates.get(name).copied()
    }

    /// The index of a table built elsewhere (`Snapshot::load`): walks every registry once.
    pub(crate) fn from_globals(g: &Globals, zones: &ZoneSet) -> Self {
        let mut index = Self::new(zones, g);
        index.profiles = g
            .profiles
            .iter()
            .enumerate()
            .map(|(i, p)| ((**p).clone(), i as u32))
            .collect();
        index.answers = g
            .answer_sets
            .iter()
            .enumerate()
            .map(|(i, a)| ((a.set, a.ttl), i as u32))
            .collect();
        index.deps = g
            .profiles
            .iter()
            .filter_map(|p| p.depends_on.clone())
            .collect();
        index.members = vec![0; g.profiles.len()];
        for r in g.iter() {
            let key: Arc<str> = r.key().into();
            index.keys.insert(key.clone(), r.name_wire().into());
            index.by_profile.insert((r.profile, key.clone()));
            index.set_id(r.id, Some(key));
            if let Some(m) = index.members.get_mut(r.profile as usize) {
                *m += 1;
            }
            index.next_id = index.next_id.max(r.id + 1);
        }
        index
    }

    /// The wire name of the registry with this key.
    pub(crate) fn name_of(&self, key: &str) -> Option<&[u8]> {
        self.keys.get(key).map(|n| &**n)
    }

    /// Keys in order, from just after `after`.
    pub(crate) fn keys_after<'a>(
        &'a self,
        after: Option<&str>,
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        use std::ops::Bound;
        let start = match after {
            Some(a) => Bound::Excluded(Arc::<str>::from(a)),
            None => Bound::Unbounded,
        };
        self.keys
            .range((start, Bound::Unbounded))
            .map(|(k, n)| (&**k, &**n))
    }

    /// Keys in order, from `first` on (included).
    pub(crate) fn keys_from<'a>(
        &'a self,
        first: &str,
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        use std::ops::Bound;
        self.keys
            .range((Bound::Included(Arc::<str>::from(first)), Bound::Unbounded))
            .map(|(k, n)| (&**k, &**n))
    }

    /// Registries per profile (index = profile).
    pub(crate) fn members(&self) -> &[u32] {
        &self.members
    }

    /// Validate `e` and store it in `g` (replacing the registry with the same key). Costs
    /// O(1) amortised: one shard copy, plus encoding an answer set the first time a
    /// (set, TTL) pair is seen.
    pub(crate) fn put(
        &mut self,
        g: &mut Globals,
        zones: &ZoneSet,
        e: Entry,
    ) -> Result<Put, String> {
        let set = g
            .sets
            .get(e.set as usize)
            .ok_or_else(|| format!("registry {}: no replica set {}", e.key, e.set))?;
        let zone = zones.find(&e.name).ok_or_else(|| {
            format!(
                "registry {}: global name {} is not inside any served zone",
                e.key, e.name
            )
        })?;
        let apex = e.name == *zone.origin();
        if apex {
            if let Some(rtype) = [RecordType::A, RecordType::AAAA]
                .into_iter()
                .find(|t| zone.has_rrset(&e.name, *t))
            {
                return Err(format!(
                    "registry {}: global name {} is the apex of the zone in {}, which has {rtype} \
                     records there; at the apex the registry answers A and AAAA per client, so \
                     remove them from the zone file",
                    e.key,
                    e.name,
                    zone.file().display()
                ));
            }
            if let Some(rep) = set.replicas.iter().find(|r| r.spec.cname.is_some()) {
                return Err(format!(
                    "registry {}: global name {} is the apex of the zone in {}, where a CNAME \
                     cannot be (RFC 1034 §3.6.2), and replica {} of {} answers with a CNAME",
                    e.key,
                    e.name,
                    zone.file().display(),
                    rep.key,
                    set.key
                ));
            }
        } else if zone.has_data(&e.name) {
            return Err(format!(
                "registry {}: global name {} collides with a name in {}",
                e.key,
                e.name,
                zone.file().display()
            ));
        }
        if zone.is_below_cut(&e.name) {
            return Err(format!(
                "registry {}: global name {} lies in a delegated subzone",
                e.key, e.name
            ));
        }
        let ttl = e.ttl.unwrap_or(set.ttl);
        if u64::from(ttl) > MAX_REGISTRY_TTL.as_secs() {
            return Err(format!(
                "registry {}: ttl {ttl}s is longer than the maximum of 3600s",
                e.key
            ));
        }
        let answers = e.answers.unwrap_or(set.answers);
        if answers == 0 || answers > MAX_ANSWERS {
            return Err(format!(
                "registry {}: answers must be between 1 and {MAX_ANSWERS}",
                e.key
            ));
        }
        let wire = wire_lower(&e.name);
        if let Some(other) = g.find(&wire)
            && other.key() != &*e.key
        {
            return Err(format!(
                "registry {}: global name {} is also used by registry {}",
                e.key,
                e.name,
                other.key()
            ));
        }
        let zone = *self.zones.get(zone.origin()).unwrap_or(&0);
        let answer_set = match self.answers.get(&(e.set, ttl)) {
            Some(a) => *a,
            None => {
                let a = AnswerSet::new(e.set, set, ttl, zones)?;
                let id = g.answer_sets.len() as u32;
                g.answer_sets.push(Arc::new(a));
                self.answers.insert((e.set, ttl), id);
                id
            }
        };
        let depends_on = e.depends_on.map(|mut d| {
            d.sort();
            d.dedup();
            match self.deps.get(d.as_slice()) {
                Some(shared) => shared.clone(),
                None => {
                    let shared: Deps = d.into();
                    self.deps.insert(shared.clone());
                    shared
                }
            }
        });
        let profile = Profile {
            set: e.set,
            depends_on,
        };
        let mut new_profile = None;
        let profile = match self.profiles.get(&profile) {
            Some(p) => *p,
            None => {
                let id = g.profiles.len() as u32;
                g.profiles.push(Arc::new(profile.clone()));
                self.profiles.insert(profile, id);
                self.members.push(0);
                new_profile = Some(id);
                id
            }
        };
        // A changed name under the same key: the old name goes.
        let old_by_key = self.keys.get(&*e.key).cloned();
        let mut replaced = None;
        if let Some(old) = &old_by_key
            && **old != *wire
        {
            replaced = g.remove(old);
        }
        let id = match (&replaced, g.find(&wire)) {
            (Some(r), _) => r.id,
            (None, Some(r)) => r.id,
            (None, None) => {
                self.next_id += 1;
                self.next_id - 1
            }
        };
        let registry = Registry::new(
            &e.key,
            &e.name,
            RegistryIds {
                id,
                profile,
                answer_set,
                zone,
                apex,
                answers,
            },
        );
        let profile_of = registry.profile;
        if let Some(r) = g.insert(registry) {
            replaced = Some(r);
        }
        if let Some(r) = &replaced
            && let Some(m) = self.members.get_mut(r.profile as usize)
        {
            *m -= 1;
            self.by_profile.remove(&(r.profile, r.key().into()));
            self.set_id(r.id, None);
        }
        self.members[profile_of as usize] += 1;
        let key: Arc<str> = e.key.into();
        self.by_profile.insert((profile_of, key.clone()));
        self.set_id(id, Some(key.clone()));
        self.keys.insert(key, wire.into_boxed_slice());
        Ok(Put {
            id,
            replaced,
            new_profile,
        })
    }

    /// Remove the registry with this key.
    pub(crate) fn delete(&mut self, g: &mut Globals, key: &str) -> Option<Registry> {
        let wire = self.keys.remove(key)?;
        let r = g.remove(&wire)?;
        if let Some(m) = self.members.get_mut(r.profile as usize) {
            *m -= 1;
        }
        self.by_profile.remove(&(r.profile, Arc::from(key)));
        self.set_id(r.id, None);
        Some(r)
    }

    fn set_id(&mut self, id: u32, key: Option<Arc<str>>) {
        let i = id as usize;
        if self.by_id.len() <= i {
            if key.is_none() {
                return;
            }
            self.by_id.resize(i + 1, None);
        }
        self.by_id[i] = key;
    }

    /// The key of the registry with this id, if it exists.
    pub(crate) fn key_of_id(&self, id: u32) -> Option<&str> {
        self.by_id.get(id as usize)?.as_deref()
    }

    /// The keys of the registries of `profiles`, in key order, from just after `after`: at
    /// most `limit`, and whether more follow. Costs O(profiles × limit), whatever the
    /// number of registries.
    pub(crate) fn keys_of_profiles(
        &self,
        profiles: impl IntoIterator<Item = u32>,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<&str>, bool) {
        use std::ops::Bound;
        let mut keys: Vec<&str> = Vec::new();
        for p in profiles {
            let start = match after {
                Some(a) => Bound::Excluded((p, Arc::<str>::from(a))),
                None => Bound::Included((p, Arc::<str>::from(""))),
            };
            keys.extend(
                self.by_profile
                    .range((start, Bound::Excluded((p + 1, Arc::<str>::from("")))))
                    .take(limit + 1)
                    .map(|(_, k)| &**k),
            );
        }
        keys.sort_unstable();
        keys.dedup();
        let more = keys.len() > limit;
        keys.truncate(limit);
        (keys, more)
    }
}

/// The health keys of a profile: per replica, the deep check judged on the registry's
/// `depends_on` (else the replica's, else the whole result) and the shallow check.
pub(crate) fn profile_keys(g: &Globals, p: &Profile) -> ProfileKeys {
    let mut keys = ProfileKeys::default();
    let Some(set) = g.sets.get(p.set as usize) else {
        return keys;
    };
    for rep in &set.replicas {
        let deps = p.depends_on.as_ref().or(rep.depends_on.as_ref());
        keys.deep.push(rep.deep.map(|target| HealthKey {
            target,
            resource: deps.map_or(Resource::Whole, |d| Resource::Deps(d.clone())),
        }));
        keys.shallow.push(rep.shallow.map(HealthKey::whole));
    }
    keys
}
