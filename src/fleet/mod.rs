//! The fleet link: several steerdns instances that agree, through etcd (`[fleet]`,
//! `docs/fleet.md`). A thin adapter on top of the writer: it feeds the writer the same
//! commands the admin API does, and nothing below imports it.
//!
//! ```text
//!  admin API ──Command──► fleet link ──same Command──► writer ──► Snapshot (ArcSwap)
//!                            │  ▲ ▲                      │
//!          shared change ────┘  │ └── FleetVerdicts ◄────┤ own degraded keys (watch)
//!       (record, stamp) ▼       │                        │
//!                     etcd  ────┘ watch: others' changes, leases, exceptions
//! ```
//!
//! - **Local first.** An admin change is applied by this instance's writer first (and so
//!   persisted in its state file), then written to etcd within `[fleet] timeout`. The reply
//!   says `"fleet": "shared"` or `"fleet": "local, not yet shared"`; a change not shared is
//!   kept in the fleet file and written when etcd is back. The answer path never sees etcd.
//! - **Everyone applies everything** the watch shows, by the rule of `record` (the later
//!   stamp wins, ties by instance id), so every instance ends in the same state.
//! - **Quorum health.** This instance publishes under its lease the keys it judges
//!   degraded; routing reads the fleet's verdict (`quorum`) while the session is up, and
//!   this instance's own verdicts when it is not.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::fleet::FleetConfig;
use crate::health::keys::FleetVerdict;
use crate::metrics::Metrics;
use crate::overrides::format_time;
use crate::state::command::{AdminError, Command};
use crate::state::view::FleetStatus;

pub(crate) mod local;
pub(crate) mod quorum;
pub(crate) mod record;
pub(crate) mod store;

use etcd_client::{LeaseKeepAliveStream, WatchStream};
use local::Local;
use quorum::{FleetHealth, HealthKey};
use record::{Change, Record};
use store::{Opened, Session, StoreError, Written};

/// The reply word of a change written to etcd.
pub(crate) const SHARED: &str = "shared";
/// The reply word of a change applied here only, for now.
pub(crate) const LOCAL: &str = "local, not yet shared";
/// The reply word of a change that etcd already holds a later change for (the conflict
/// rule): applied here, then replaced by the later one from the watch.
pub(crate) const SUPERSEDED: &str = "superseded by a later fleet change";

/// Commands buffered from the admin API.
const QUEUE: usize = 64;

type Verdicts = Arc<HashMap<Arc<str>, FleetVerdict>>;

/// Start the link: returns the sender the admin API sends its commands to (they reach
/// `writer` through the link) and the task, which ends on `shutdown`. Fails when the fleet
/// file cannot be read.
pub(crate) fn spawn(
    cfg: FleetConfig,
    writer: mpsc::Sender<Command>,
    own: watch::Receiver<Arc<BTreeSet<Arc<str>>>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<(mpsc::Sender<Command>, JoinHandle<()>)> {
    let local = Local::load(&cfg.state_file).map_err(std::io::Error::other)?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let link = Link {
        cfg,
        writer,
        own,
        metrics,
        local,
        session: None,
        watch: None,
        alive: None,
        connecting: None,
        health: FleetHealth::default(),
        published: BTreeSet::new(),
        sent: None,
        lost: 0,
        since: SystemTime::now(),
        last_alive: Instant::now(),
        unreachable_told: false,
    };
    Ok((tx, tokio::spawn(link.run(rx, shutdown))))
}

struct Link {
    cfg: FleetConfig,
    writer: mpsc::Sender<Command>,
    own: watch::Receiver<Arc<BTreeSet<Arc<str>>>>,
    metrics: Arc<Metrics>,
    local: Local,
    session: Option<Session>,
    watch: Option<WatchStream>,
    alive: Option<LeaseKeepAliveStream>,
    connecting: Option<JoinHandle<Result<Opened, StoreError>>>,
    health: FleetHealth,
    /// This instance's exceptions as written to etcd in this session.
    published: BTreeSet<Arc<str>>,
    /// The verdicts last sent to the writer (None: own verdicts).
    sent: Option<Verdicts>,
    lost: u64,
    since: SystemTime,
    last_alive: Instant,
    /// Whether the failure to reach etcd was logged since the last session.
    unreachable_told: bool,
}

/// Waits on a stream that may not be there (then forever).
async fn next<T, F: Future<Output = T>>(f: Option<F>) -> T {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

impl Link {
    async fn run(mut self, mut admin: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut retry = tokio::time::interval(self.cfg.retry);
        retry.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let beat = self.cfg.lease_ttl / 3;
        let mut keepalive = tokio::time::interval(beat);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.status().await;
        let prefix = format!("{}/", self.cfg.cluster);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(command) = admin.recv() => self.admin(command).await,
                opened = next(self.connecting.as_mut()) => {
                    self.connecting = None;
                    match opened {
                        Ok(Ok(o)) => self.opened(o).await,
                        Ok(Err(e)) => self.failed("connect", &e),
                        Err(e) => warn!(error = %e, "fleet: the connect task failed"),
                    }
                }
                changes = next(self.watch.as_mut().map(|w| store::changes(w, &prefix))) => match changes {
                    Ok(changes) => {
                        for (key, value) in changes {
                            self.seen(key, value).await;
                        }
                        self.verdicts().await;
                        self.status().await;
                    }
                    Err(e) => self.lost_session(&e).await,
                },
                alive = next(self.alive.as_mut().map(store::alive)) => match alive {
                    Ok(true) => self.last_alive = Instant::now(),
                    Ok(false) => self.lost_session(&StoreError::Closed("lease (expired)")).await,
                    Err(e) => self.lost_session(&e).await,
                },
                Ok(()) = self.own.changed() => self.publish_own().await,
                _ = keepalive.tick() => self.keep_alive(beat).await,
                _ = retry.tick() => {
                    if self.session.is_none() && self.connecting.is_none() {
                        let cfg = self.cfg.clone();
                        self.connecting = Some(tokio::spawn(async move { store::open(&cfg).await }));
                    }
                }
            }
        }
        if let Some(c) = self.connecting.take() {
            c.abort();
        }
        if let Some(s) = self.session.as_mut() {
            // The fleet stops counting this instance now rather than after its lease TTL.
            let _ = s.revoke().await;
        }
    }

    // === admin changes ===

    /// An admin command: a shared change is applied here first, then written to etcd;
    /// anything else goes to the writer as it is.
    async fn admin(&mut self, command: Command) {
        let Some(change) = Change::of(&command, SystemTime::now()) else {
            if self.writer.send(command).await.is_err() {
                warn!("fleet: the state task is gone");
            }
            return;
        };
        match command {
            Command::Override { command, reply } => {
                self.relay(
                    change,
                    reply,
                    |tx| Command::Override { command, reply: tx },
                    |e, w| e.fleet = Some(w),
                )
                .await
            }
            Command::Mode { command, reply } => {
                self.relay(
                    change,
                    reply,
                    |tx| Command::Mode { command, reply: tx },
                    |a, w| a.fleet = Some(w),
                )
                .await
            }
            Command::PutRegistry {
                key,
                request,
                who,
                reply,
            } => {
                self.relay(
                    change,
                    reply,
                    |tx| Command::PutRegistry {
                        key,
                        request,
                        who,
                        reply: tx,
                    },
                    |a, w| a.fleet = Some(w),
                )
                .await
            }
            Command::DeleteRegistry { key, who, reply } => {
                self.relay(
                    change,
                    reply,
                    |tx| Command::DeleteRegistry {
                        key,
                        who,
                        reply: tx,
                    },
                    |a, w| a.fleet = Some(w),
                )
                .await
            }
            other => {
                let _ = self.writer.send(other).await;
            }
        }
    }

    async fn relay<T>(
        &mut self,
        change: Change,
        reply: oneshot::Sender<Result<T, AdminError>>,
        make: impl FnOnce(oneshot::Sender<Result<T, AdminError>>) -> Command,
        mark: impl FnOnce(&mut T, String),
    ) {
        let (tx, rx) = oneshot::channel();
        if self.writer.send(make(tx)).await.is_err() {
            let _ = reply.send(Err(AdminError::Unavailable(
                "the state task is not running".into(),
            )));
            return;
        }
        let r = match rx.await {
            Ok(r) => r,
            Err(_) => Err(AdminError::Unavailable(
                "the state task dropped the request".into(),
            )),
        };
        let r = match r {
            Ok(mut v) => {
                let key = change.key();
                let record = Record {
                    stamp: self.local.next_stamp(&key, &self.cfg.instance),
                    change,
                    base: self.local.stamps.get(&key).cloned(),
                };
                let word = self.share(key, record).await;
                mark(&mut v, word.to_string());
                Ok(v)
            }
            Err(e) => Err(e),
        };
        let _ = reply.send(r);
    }

    /// Record a change made here and write it to etcd if the session is up.
    async fn share(&mut self, key: String, record: Record) -> &'static str {
        self.local.stamps.insert(key.clone(), record.stamp.clone());
        let word = match self.session.as_mut() {
            Some(s) => match s.put_latest(&key, &record).await {
                Ok(Written::Stored(replaced)) => {
                    if let Some(earlier) = replaced.filter(|e| record.overrides_unseen(e)) {
                        self.lose(&key, &earlier, &record);
                    }
                    SHARED
                }
                Ok(Written::Lost(there)) => {
                    // A later change is in etcd already; the watch brings it.
                    self.lose(&key, &record, &there);
                    SUPERSEDED
                }
                Err(e) => {
                    self.defer(&key, record.clone());
                    self.lost_session(&e).await;
                    LOCAL
                }
            },
            None => {
                self.defer(&key, record.clone());
                LOCAL
            }
        };
        info!(key, stamp = %record.stamp, fleet = word, "fleet: admin change applied here");
        self.save();
        self.status().await;
        word
    }

    /// Keep a change made here for writing later. A second change to the same key replaces
    /// the first but keeps its base: what this instance had seen before either.
    fn defer(&mut self, key: &str, mut record: Record) {
        if let Some(first) = self.local.pending.get(key) {
            record.base = first.base.clone();
        }
        self.local.pending.insert(key.to_string(), record);
    }

    fn lose(&mut self, key: &str, loser: &Record, winner: &Record) {
        self.lost += 1;
        self.metrics.fleet().lost.inc();
        warn!(key, lost = %loser.stamp, won = %winner.stamp, "fleet change lost: a later change to the same key wins");
    }

    fn save(&self) {
        if let Err(e) = self.local.save() {
            warn!(error = %e, "fleet: cannot write the fleet state file");
        }
    }

    // === what etcd shows ===

    /// One key changed in etcd (or was there at the first read).
    async fn seen(&mut self, key: String, value: Option<Vec<u8>>) {
        if let Some(k) = HealthKey::parse(&key) {
            self.health.apply(&k, value.is_some());
            return;
        }
        if !key.starts_with("ops/") {
            return;
        }
        let Some(value) = value else { return };
        let record: Record = match serde_json::from_slice(&value) {
            Ok(r) => r,
            Err(e) => {
                warn!(key, error = %e, "fleet: ignoring an unreadable record");
                return;
            }
        };
        if let Some(mine) = self.local.pending.get(&key).cloned() {
            if record.stamp <= mine.stamp {
                // Ours is later: it replaces that one when it is written, and the loss is
                // logged then (once).
                return;
            }
            self.lose(&key, &mine, &record);
            self.local.pending.remove(&key);
        } else if self
            .local
            .stamps
            .get(&key)
            .is_some_and(|s| *s >= record.stamp)
        {
            return;
        }
        let (command, outcome) = record.change.command(SystemTime::now());
        if self.writer.send(command).await.is_err() {
            return;
        }
        match outcome.settled().await {
            Ok(()) => info!(key, stamp = %record.stamp, "fleet: change applied from the fleet"),
            Err(e) => {
                warn!(key, stamp = %record.stamp, error = %e, "fleet: a change from the fleet does not apply here")
            }
        }
        self.local.stamps.insert(key, record.stamp);
        self.save();
        self.status().await;
    }

    /// A session opened: take in what etcd holds (oldest change first, so the result is
    /// what applying them in order gives), share what was made here meanwhile, publish this
    /// instance's exceptions.
    async fn opened(&mut self, o: Opened) {
        let Opened {
            session,
            watch,
            alive,
            mut initial,
        } = o;
        self.session = Some(session);
        self.unreachable_told = false;
        self.watch = Some(watch);
        self.alive = Some(alive);
        self.last_alive = Instant::now();
        self.since = SystemTime::now();
        self.health = FleetHealth::default();
        self.published.clear();
        let stamp_of = |(_, v): &(String, Option<Vec<u8>>)| {
            v.as_deref()
                .and_then(|v| serde_json::from_slice::<Record>(v).ok())
                .map(|r| r.stamp)
        };
        initial.sort_by_cached_key(stamp_of);
        let mine = format!("health/{}/", self.cfg.instance);
        for (key, value) in initial {
            if let Some(k) = key.strip_prefix(&mine) {
                // Left by an earlier session of this instance: deleted below unless still so.
                self.published.insert(k.into());
            }
            self.seen(key, value).await;
        }
        // Leftovers still judged degraded are put again under this session's lease.
        let own = self.own.borrow().clone();
        self.published.retain(|k| !own.contains(k));
        let mut pending: Vec<(String, Record)> = std::mem::take(&mut self.local.pending)
            .into_iter()
            .collect();
        pending.sort_by(|a, b| a.1.stamp.cmp(&b.1.stamp));
        let mut rest = pending.into_iter();
        while let Some((key, record)) = rest.next() {
            let Some(s) = self.session.as_mut() else {
                self.local.pending.insert(key, record);
                continue;
            };
            match s.put_latest(&key, &record).await {
                Ok(Written::Stored(replaced)) => {
                    if let Some(earlier) = replaced.filter(|e| record.overrides_unseen(e)) {
                        self.lose(&key, &earlier, &record);
                    }
                    info!(key, stamp = %record.stamp, "fleet: local change shared")
                }
                Ok(Written::Lost(there)) => self.lose(&key, &record, &there),
                Err(e) => {
                    self.local.pending.insert(key, record);
                    self.local.pending.extend(rest.by_ref());
                    self.lost_session(&e).await;
                }
            }
        }
        self.save();
        if self.session.is_some() {
            info!(instance = %self.cfg.instance, endpoints = ?self.cfg.endpoints, "fleet: connected to etcd; routing on the fleet's verdicts");
            self.publish_own().await;
        }
        self.verdicts().await;
        self.status().await;
    }

    /// Bring this instance's exceptions in etcd in line with its own verdicts.
    async fn publish_own(&mut self) {
        let own = self.own.borrow_and_update().clone();
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let mut result = Ok(());
        for k in own.difference(&self.published) {
            result = s
                .put_leased(&format!("health/{}/{k}", self.cfg.instance), "degraded")
                .await;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            for k in self.published.difference(&own) {
                result = s.delete(&format!("health/{}/{k}", self.cfg.instance)).await;
                if result.is_err() {
                    break;
                }
            }
        }
        match result {
            Ok(()) => self.published = (*own).clone(),
            Err(e) => self.lost_session(&e).await,
        }
    }

    async fn keep_alive(&mut self, beat: std::time::Duration) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if self.last_alive.elapsed() > beat + self.cfg.timeout {
            let e = StoreError::Timeout(beat + self.cfg.timeout);
            return self.lost_session(&e).await;
        }
        if let Err(e) = store::within(self.cfg.timeout, s.keeper.keep_alive()).await {
            self.lost_session(&e).await;
        }
    }

    /// A connect attempt failed: one warning until the next success, then debug lines.
    fn failed(&mut self, what: &str, e: &StoreError) {
        if self.unreachable_told {
            tracing::debug!(what, error = %e, "fleet: etcd still unreachable");
        } else {
            warn!(what, error = %e, endpoints = ?self.cfg.endpoints, "fleet: etcd unreachable; routing on this instance's own verdicts, admin changes stay local; retrying");
            self.unreachable_told = true;
        }
    }

    /// The session is gone: route on own verdicts, take admin changes locally, reconnect.
    async fn lost_session(&mut self, e: &StoreError) {
        if self.session.take().is_some() {
            warn!(error = %e, "fleet: lost etcd; routing on this instance's own verdicts, admin changes stay local until it is back");
            self.since = SystemTime::now();
            // That was the line for this outage; failed reconnects log at debug.
            self.unreachable_told = true;
        }
        self.watch = None;
        self.alive = None;
        self.verdicts().await;
        self.status().await;
    }

    /// Send the writer the fleet's verdicts (or None) when they changed.
    async fn verdicts(&mut self) {
        let next = self
            .session
            .as_ref()
            .map(|_| Arc::new(self.health.verdicts(self.cfg.quorum)));
        if next == self.sent {
            return;
        }
        self.sent = next.clone();
        let _ = self
            .writer
            .send(Command::FleetVerdicts { verdicts: next })
            .await;
        self.status().await;
    }

    /// Tell the writer (for `/v1/status`) and the metrics the link's state.
    async fn status(&self) {
        let connected = self.session.is_some();
        let live: Vec<String> = self.health.live.iter().cloned().collect();
        let f = self.metrics.fleet();
        f.connected.set(i64::from(connected));
        f.pending
            .set(i64::try_from(self.local.pending.len()).unwrap_or(i64::MAX));
        f.live.set(i64::try_from(live.len()).unwrap_or(i64::MAX));
        let status = FleetStatus {
            instance: self.cfg.instance.clone(),
            connected,
            needed: self.cfg.quorum.needed(live.len()),
            live,
            quorum: self.cfg.quorum.to_string(),
            pending: self.local.pending.keys().cloned().collect(),
            lost: self.lost,
            since: Some(format_time(self.since)),
        };
        let _ = self.writer.send(Command::FleetStatus { status }).await;
    }
}
