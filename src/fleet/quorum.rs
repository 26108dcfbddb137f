//! The fleet's health verdicts from the instances' exceptions. Pure: no I/O.
//!
//! Each instance publishes, under its own lease, the health keys it judges degraded
//! (`health/INSTANCE/KEY`; absence means not degraded) and its membership
//! (`members/INSTANCE`). When an instance dies its lease expires and etcd deletes both, so
//! the live set and the reports are always of instances that are alive. A key's fleet
//! verdict is degraded when at least `quorum.needed(live)` live instances report it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::config::fleet::Quorum;
use crate::health::keys::FleetVerdict;

/// What the watch has shown of the instances.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub(crate) struct FleetHealth {
    /// Instances with a live lease.
    pub(crate) live: BTreeSet<String>,
    /// Health key → instances that report it degraded.
    pub(crate) reports: BTreeMap<String, BTreeSet<String>>,
}

/// Which fleet key a `CLUSTER/`-relative etcd key is.
#[derive(Debug, Eq, PartialEq)]
pub(crate) enum HealthKey<'a> {
    /// `members/INSTANCE`.
    Member(&'a str),
    /// `health/INSTANCE/KEY`.
    Report(&'a str, &'a str),
}

impl<'a> HealthKey<'a> {
    pub(crate) fn parse(key: &'a str) -> Option<Self> {
        if let Some(i) = key.strip_prefix("members/") {
            return Some(Self::Member(i));
        }
        let (instance, k) = key.strip_prefix("health/")?.split_once('/')?;
        Some(Self::Report(instance, k))
    }
}

impl FleetHealth {
    /// A key was put (`present`) or deleted.
    pub(crate) fn apply(&mut self, key: &HealthKey<'_>, present: bool) {
        match *key {
            HealthKey::Member(i) if present => {
                self.live.insert(i.to_string());
            }
            HealthKey::Member(i) => {
                self.live.remove(i);
            }
            HealthKey::Report(i, k) if present => {
                self.reports
                    .entry(k.to_string())
                    .or_default()
                    .insert(i.to_string());
            }
            HealthKey::Report(i, k) => {
                if let Some(set) = self.reports.get_mut(k) {
                    set.remove(i);
                    if set.is_empty() {
                        self.reports.remove(k);
                    }
                }
            }
        }
    }

    /// The verdict of every key some live instance reports (the others: not degraded).
    pub(crate) fn verdicts(&self, quorum: Quorum) -> HashMap<Arc<str>, FleetVerdict> {
        let needed = quorum.needed(self.live.len());
        self.reports
            .iter()
            .filter_map(|(k, who)| {
                let live: Arc<[String]> = who.intersection(&self.live).cloned().collect();
                (!live.is_empty()).then(|| {
                    let degraded = live.len() >= needed;
                    (
                        Arc::from(k.as_str()),
                        FleetVerdict {
                            degraded,
                            reported_by: live,
                        },
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(live: &[&str], reports: &[(&str, &str)]) -> FleetHealth {
        let mut f = FleetHealth::default();
        for i in live {
            f.apply(&HealthKey::Member(i), true);
        }
        for (i, k) in reports {
            f.apply(&HealthKey::Report(i, k), true);
        }
        f
    }

    fn degraded(f: &FleetHealth, q: Quorum) -> Vec<String> {
        let mut v: Vec<String> = f
            .verdicts(q)
            .into_iter()
            .filter(|(_, v)| v.degraded)
            .map(|(k, _)| k.to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn keys_parse() {
        assert_eq!(HealthKey::parse("members/a"), Some(HealthKey::Member("a")));
        assert_eq!(
            HealthKey::parse("health/a/00ff/st1,st2"),
            Some(HealthKey::Report("a", "00ff/st1,st2"))
        );
        assert_eq!(HealthKey::parse("ops/mode/server"), None);
    }

    #[test]
    fn one_instance_of_three_is_not_a_majority() {
        let f = fleet(&["a", "b", "c"], &[("a", "k1"), ("a", "k2"), ("b", "k2")]);
        assert_eq!(degraded(&f, Quorum::Majority), ["k2"]);
        assert_eq!(degraded(&f, Quorum::Any), ["k1", "k2"]);
        assert_eq!(degraded(&f, Quorum::All), Vec::<String>::new());
        assert_eq!(degraded(&f, Quorum::Count(2)), ["k2"]);
        let v = f.verdicts(Quorum::Majority);
        assert_eq!(&*v["k1"].reported_by, ["a".to_string()]);
    }

    #[test]
    fn a_dead_instance_neither_counts_nor_votes() {
        let mut f = fleet(&["a", "b", "c"], &[("a", "k"), ("b", "k")]);
        assert_eq!(degraded(&f, Quorum::All), Vec::<String>::new());
        // c's lease expires: two live, both report.
        f.apply(&HealthKey::Member("c"), false);
        assert_eq!(degraded(&f, Quorum::All), ["k"]);
        // b's lease expires too; its report is deleted with it.
        f.apply(&HealthKey::Member("b"), false);
        f.apply(&HealthKey::Report("b", "k"), false);
        assert_eq!(degraded(&f, Quorum::Majority), ["k"]);
        f.apply(&HealthKey::Report("a", "k"), false);
        assert!(f.reports.is_empty());
        // A report of an instance not (yet) seen live does not vote.
        let f = fleet(&["a"], &[("z", "k")]);
        assert!(f.verdicts(Quorum::Any).is_empty());
    }
}
