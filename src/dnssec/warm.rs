//! Pre-signing: the signatures of a steered name's next answer exist before a failover
//! publishes it, so the first query after the failover finds them cached instead of
//! signing (tens of µs) on the answer path.
//!
//! A registry answers with one of a small known set of RRsets (each set of up to `answers`
//! of its replicas), so the next answer is one of them whichever replica fails. Two moments
//! ask for them to be signed:
//!
//! - **A key's first failure** (not degraded yet: `failure_threshold` failures in a row are
//!   needed): the profiles reading that key will change answers within a few probe
//!   intervals if it keeps failing. Those intervals (seconds) are the time to sign.
//! - **Every publish that changed masks** (a flip, an override, a mode, the fleet's view, a
//!   threshold of 1): signed right after it, for whatever the first case did not cover.
//!
//! Which registries: the ones whose signed answers are in the signature cache, i.e. the ones
//! validating resolvers ask for now. The warmer walks the cache (a fixed number of slots,
//! not the registry list) and signs, for each registry of an asked profile found there,
//! every RRset it can answer with (`dns::presign_registry`). A registry nobody asked with
//! the DO bit lately is signed on its first query, as before. Per request the work is
//! O(cache slots) plus the signatures made, at most a quarter of the slots, so one request
//! never replaces more than a quarter of what queries put in the cache.
//!
//! The writer never waits: it adds profiles to a pending set under a short lock and
//! notifies; one thread ("steerdns-presign", at nice 10 so that it yields the CPU to the
//! answer path) takes the whole set, so requests made while it signs merge into the next
//! round instead of queueing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Condvar, Mutex};
use tracing::{debug, error};

use crate::state::{Shared, Snapshot};

/// What to sign ahead.
#[derive(Debug, Default)]
struct Pending {
    /// Profiles (indices in `Globals::profiles`) whose registries may answer differently.
    profiles: HashSet<u32>,
    /// Every profile (a server-wide change: the guard, a region, an exception).
    all: bool,
    /// The writer is gone: the thread ends.
    stop: bool,
}

#[derive(Debug, Default)]
struct Inner {
    pending: Mutex<Pending>,
    wake: Condvar,
}

/// The writer's handle on the pre-signing thread. Dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct Warmer {
    inner: Arc<Inner>,
}

impl Warmer {
    /// Start the thread; it reads the snapshot in service from `shared` at each round.
    pub(crate) fn spawn(shared: Shared) -> std::io::Result<Self> {
        let inner = Arc::new(Inner::default());
        let worker = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("steerdns-presign".into())
            .spawn(move || run(&worker, &shared))?;
        Ok(Self { inner })
    }

    /// Sign ahead for the registries of `profiles` (never blocks on signing).
    pub(crate) fn profiles(&self, profiles: &[u32]) {
        if profiles.is_empty() {
            return;
        }
        self.inner.pending.lock().profiles.extend(profiles);
        self.inner.wake.notify_one();
    }

    /// Sign ahead for every registry found in the cache.
    pub(crate) fn all(&self) {
        self.inner.pending.lock().all = true;
        self.inner.wake.notify_one();
    }
}

impl Drop for Warmer {
    fn drop(&mut self) {
        self.inner.pending.lock().stop = true;
        self.inner.wake.notify_one();
    }
}

/// Run the calling thread at nice 10: signing ahead yields the CPU to the answer path.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_priority() {
    // SAFETY: gettid has no preconditions; setpriority on our own thread id only changes
    // this thread's nice value (raising it needs no privilege) and touches no memory of ours.
    let r = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
    };
    if r != 0 {
        debug!("cannot lower the pre-signing thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

fn run(inner: &Inner, shared: &Shared) {
    lower_priority();
    loop {
        let job = {
            let mut p = inner.pending.lock();
            while p.profiles.is_empty() && !p.all && !p.stop {
                inner.wake.wait(&mut p);
            }
            if p.stop {
                return;
            }
            std::mem::take(&mut *p)
        };
        let snap = shared.load();
        let filter = (!job.all).then_some(&job.profiles);
        let started = std::time::Instant::now();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            warm(&snap, filter, SystemTime::now())
        })) {
            Ok(w) if w.registries > 0 => debug!(
                registries = w.registries,
                rrsets = w.rrsets,
                signatures = w.signatures,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "pre-signed the answers a failover may give"
            ),
            Ok(_) => {}
            Err(_) => error!("pre-signing panicked; the first queries after a failover sign"),
        }
    }
}

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Warmed {
    /// Registries whose RRsets were looked at.
    pub(crate) registries: usize,
    /// RRsets looked at (cached already, or signed now).
    pub(crate) rrsets: usize,
    /// Signatures made.
    pub(crate) signatures: u64,
}

/// One round: for each signed zone, the registries of `profiles` (None: all) found in its
/// signature cache get every RRset they can answer with signed, up to a quarter of the
/// cache's slots in signatures.
pub(crate) fn warm(snap: &Snapshot, profiles: Option<&HashSet<u32>>, now: SystemTime) -> Warmed {
    let mut out = Warmed::default();
    // One walk per signed zone (each zone has its own signer and cache).
    for zone in snap.globals.zones.iter() {
        let Some(signer) = zone.signer.0.as_deref() else {
            continue;
        };
        let budget = (signer.cache().slots() / 4) as u64;
        let before = signer.signatures_presigned();
        let mut seen: HashSet<u32> = HashSet::new();
        for entry in signer.cache().entries() {
            if signer.signatures_presigned() - before >= budget {
                break;
            }
            let Some(reg) = snap.globals.find(entry.owner()) else {
                continue;
            };
            if profiles.is_some_and(|p| !p.contains(&reg.profile)) || !seen.insert(reg.id) {
                continue;
            }
            out.rrsets += crate::dns::presign_registry(snap, reg, now);
            out.registries += 1;
        }
        out.signatures += signer.signatures_presigned() - before;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::PathBuf;

    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::{Name, RecordType};

    use super::*;
    use crate::dns::{Transport, handle};
    use crate::metrics::DnsCounters;

    /// `two` answers with 2 of its 3 replicas (only eastus has AAAA); `one` with 1 of 2.
    fn signed() -> (Snapshot, crate::fuzzing::SignedHarness, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut text = format!(
            "version = 1\n[server]\nzones_dir = {:?}\n\
             [regions.westeurope]\n[regions.eastus]\n[regions.southeastasia]\n\
             [registries.two]\nname = \"two.registry.example.\"\nanswers = 2\n\
             [registries.one]\nname = \"one.registry.example.\"\n",
            repo.join("zones")
        );
        for (i, r) in ["westeurope", "eastus", "southeastasia"].iter().enumerate() {
            let v6 = if *r == "eastus" {
                "ipv6 = [\"2001:db8::1\"]\n"
            } else {
                ""
            };
            text.push_str(&format!(
                "[registries.two.replicas.{r}]\nipv4 = [\"192.0.2.{i}\"]\n{v6}"
            ));
            if i < 2 {
                text.push_str(&format!(
                    "[registries.one.replicas.{r}]\nipv4 = [\"198.51.100.{i}\"]\n"
                ));
            }
        }
        let path = dir.path().join("steerdns.toml");
        std::fs::write(&path, &text).unwrap();
        let h = crate::fuzzing::SignedHarness::load(&path).unwrap();
        (h.snapshot(), h, dir)
    }

    fn ask(snap: &Snapshot, name: &str, rtype: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(true);
        m.set_edns(e);
        let mut out = Vec::new();
        handle(
            snap,
            &m.to_vec().unwrap(),
            "127.0.1.9".parse().unwrap(),
            Transport::Udp,
            &mut out,
            &DnsCounters::default(),
        )
        .unwrap();
        out
    }

    #[test]
    fn every_answer_a_registry_can_give_is_signed_once_for_the_registries_asked_for() {
        let (snap, harness, _dir) = signed();
        let signer = snap.signer_of("registry.example.").unwrap();
        let now = SystemTime::now();
        // Nothing asked with DO yet: nothing in the cache, nothing to sign ahead.
        assert_eq!(warm(&snap, None, now), Warmed::default());
        let reply = ask(&snap, "two.registry.example.", RecordType::A);
        harness.check_signatures(&reply).unwrap();
        assert_eq!(signer.cache().counts(), (0, 1));
        // Another profile asked: `two` is not in it.
        let one = snap
            .globals
            .find(&crate::global::wire_lower(
                &Name::from_ascii("one.registry.example.").unwrap(),
            ))
            .unwrap()
            .profile;
        let only_one: HashSet<u32> = [one].into();
        assert_eq!(warm(&snap, Some(&only_one), now), Warmed::default());
        // `two`: A from each replica and each pair (3 + 3), AAAA from eastus alone; the pair
        // it answered with is cached already.
        let w = warm(&snap, None, now);
        assert_eq!(
            w,
            Warmed {
                registries: 1,
                rrsets: 7,
                signatures: 6
            }
        );
        assert_eq!(signer.signatures_presigned(), 6);
        assert_eq!(
            signer.cache().counts(),
            (0, 1),
            "pre-signing is not counted as lookups"
        );
        // Again: all cached, nothing signed.
        assert_eq!(warm(&snap, None, now).signatures, 0);
        // What a query now gets is among them, and verifies.
        let reply = ask(&snap, "two.registry.example.", RecordType::AAAA);
        harness.check_signatures(&reply).unwrap();
        assert_eq!(signer.cache().counts(), (1, 1));
    }
}
