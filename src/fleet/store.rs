//! The etcd side of the fleet link: one session (client, lease, keep-alive stream, watch of
//! the cluster prefix) and the few calls the link makes, each bounded by `[fleet] timeout`.
//!
//! ```text
//!  CLUSTER/ops/...                 shared changes, one record per key (`record`), no lease
//!  CLUSTER/members/INSTANCE        this instance is alive            (under its lease)
//!  CLUSTER/health/INSTANCE/KEY     this instance judges KEY degraded (under its lease)
//! ```

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, TlsOptions, Txn, TxnOp, WatchOptions,
    WatchStream,
};

use super::record::Record;
use crate::config::fleet::FleetConfig;

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The call did not finish within `[fleet] timeout`.
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// etcd or the transport said no.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A watch or keep-alive stream ended.
    #[error("etcd closed the {0} stream")]
    Closed(&'static str),
}

/// Bound one call by `t`.
pub(crate) async fn within<T, E: Into<StoreError>>(
    t: Duration,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(t, f).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(StoreError::Timeout(t)),
    }
}

/// One key's change seen on the watch or in the first read: its key below `CLUSTER/` and
/// its value (None: deleted).
pub(crate) type KeyChange = (String, Option<Vec<u8>>);

/// A live session.
pub(crate) struct Session {
    client: Client,
    prefix: String,
    timeout: Duration,
    pub(crate) lease: i64,
    pub(crate) keeper: LeaseKeeper,
}

/// A session just opened, with everything under the prefix as of its first read.
pub(crate) struct Opened {
    pub(crate) session: Session,
    /// The watch of the prefix.
    pub(crate) watch: WatchStream,
    /// The lease's keep-alive answers.
    pub(crate) alive: LeaseKeepAliveStream,
    pub(crate) initial: Vec<KeyChange>,
}

fn options(cfg: &FleetConfig) -> ConnectOptions {
    let mut o = ConnectOptions::new()
        .with_connect_timeout(cfg.timeout)
        .with_timeout(cfg.timeout)
        .with_keep_alive(cfg.timeout, cfg.timeout)
        .with_keep_alive_while_idle(true);
    if let Some((u, p)) = &cfg.auth {
        o = o.with_user(u.clone(), p.clone());
    }
    if let Some(tls) = &cfg.tls {
        let mut t = TlsOptions::new();
        if let Some(ca) = &tls.ca {
            t = t.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &tls.identity {
            t = t.identity(Identity::from_pem(cert, key));
        }
        o = o.with_tls(t);
    }
    o
}

/// Connect, take a lease, announce this instance, read everything under the prefix and
/// watch it from the revision after that read (so nothing falls between the two).
pub(crate) async fn open(cfg: &FleetConfig) -> Result<Opened, StoreError> {
    let t = cfg.timeout;
    let prefix = format!("{}/", cfg.cluster);
    let mut client = within(t, Client::connect(&cfg.endpoints, Some(options(cfg)))).await?;
    let ttl = i64::try_from(cfg.lease_ttl.as_secs()).unwrap_or(i64::MAX);
    let lease = within(t, client.lease_grant(ttl, None)).await?.id();
    let (keeper, alive) = within(t, client.lease_keep_alive(lease)).await?;
    let member = format!("{prefix}members/{}", cfg.instance);
    let put = PutOptions::new().with_lease(lease);
    within(t, client.put(member, cfg.instance.as_str(), Some(put))).await?;
    let got = within(
        t,
        client.get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let revision = got.header().map_or(0, |h| h.revision());
    let initial = got
        .kvs()
        .iter()
        .filter_map(|kv| {
            let key = kv.key_str().ok()?.strip_prefix(&prefix)?.to_string();
            Some((key, Some(kv.value().to_vec())))
        })
        .collect();
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let watch = within(t, client.watch(prefix.as_str(), Some(opts))).await?;
    Ok(Opened {
        session: Session {
            client,
            prefix,
            timeout: t,
            lease,
            keeper,
        },
        watch,
        alive,
        initial,
    })
}

/// What writing a shared change found.
#[derive(Debug)]
pub(crate) enum Written {
    /// It is in etcd now, in place of this earlier record (if there was one).
    Stored(Option<Box<Record>>),
    /// etcd holds a later change for the key (by the conflict rule), which stays.
    Lost(Box<Record>),
}

impl Session {
    /// Write `record` under `key` unless etcd holds a later one: read, compare stamps, then
    /// put in a transaction guarded by the revision read, retried when another instance
    /// wrote in between. The whole exchange is bounded by `[fleet] timeout`: beyond it the
    /// change counts as not shared.
    pub(crate) async fn put_latest(
        &mut self,
        key: &str,
        record: &Record,
    ) -> Result<Written, StoreError> {
        let t = self.timeout;
        within(t, self.put_latest_unbounded(key, record)).await
    }

    async fn put_latest_unbounded(
        &mut self,
        key: &str,
        record: &Record,
    ) -> Result<Written, StoreError> {
        let full = format!("{}{key}", self.prefix);
        let value = serde_json::to_vec(record)
            .map_err(|e| StoreError::Etcd(etcd_client::Error::InvalidArgs(e.to_string())))?;
        loop {
            let got = within(self.timeout, self.client.get(full.as_str(), None)).await?;
            let mut replaced = None;
            let guard = match got.kvs().first() {
                Some(kv) => {
                    if let Ok(there) = serde_json::from_slice::<Record>(kv.value()) {
                        if there.stamp >= record.stamp {
                            return Ok(if there == *record {
                                Written::Stored(None)
                            } else {
                                Written::Lost(Box::new(there))
                            });
                        }
                        replaced = Some(Box::new(there));
                    }
                    Compare::mod_revision(full.as_str(), CompareOp::Equal, kv.mod_revision())
                }
                None => Compare::version(full.as_str(), CompareOp::Equal, 0),
            };
            let txn =
                Txn::new()
                    .when([guard])
                    .and_then([TxnOp::put(full.as_str(), value.clone(), None)]);
            if within(self.timeout, self.client.txn(txn))
                .await?
                .succeeded()
            {
                return Ok(Written::Stored(replaced));
            }
        }
    }

    /// Put `key` under this instance's lease.
    pub(crate) async fn put_leased(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        let put = PutOptions::new().with_lease(self.lease);
        let full = format!("{}{key}", self.prefix);
        within(self.timeout, self.client.put(full, value, Some(put))).await?;
        Ok(())
    }

    /// Delete `key`.
    pub(crate) async fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        let full = format!("{}{key}", self.prefix);
        within(self.timeout, self.client.delete(full, None)).await?;
        Ok(())
    }

    /// Give the lease back (on shutdown: the fleet stops counting this instance at once
    /// instead of after the TTL).
    pub(crate) async fn revoke(&mut self) -> Result<(), StoreError> {
        within(self.timeout, self.client.lease_revoke(self.lease)).await?;
        Ok(())
    }
}

/// The next batch of key changes on the watch.
pub(crate) async fn changes(
    watch: &mut WatchStream,
    prefix: &str,
) -> Result<Vec<KeyChange>, StoreError> {
    let resp = watch.message().await?.ok_or(StoreError::Closed("watch"))?;
    if resp.canceled() {
        return Err(StoreError::Closed("watch"));
    }
    Ok(resp
        .events()
        .iter()
        .filter_map(|e| {
            let kv = e.kv()?;
            let key = kv.key_str().ok()?.strip_prefix(prefix)?.to_string();
            let value = (e.event_type() == EventType::Put).then(|| kv.value().to_vec());
            Some((key, value))
        })
        .collect())
}

/// The next keep-alive answer: whether the lease is still alive.
pub(crate) async fn alive(stream: &mut LeaseKeepAliveStream) -> Result<bool, StoreError> {
    let r = stream
        .message()
        .await?
        .ok_or(StoreError::Closed("keep-alive"))?;
    Ok(r.ttl() > 0)
}
