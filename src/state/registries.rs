//! Catalog changes through the admin API (`PUT`/`DELETE /v1/registries/KEY`): one record
//! validated and put into a copy of one shard, journaled before the reply, the masks of a new
//! profile computed before the one publish.

use std::sync::Arc;
use std::time::SystemTime;

use tracing::info;

use crate::catalog::file::{CatalogEntry, JournalOp};
use crate::global::{Globals, SetKind};
use crate::overrides::format_time;
use crate::state::catalog::{Entry, profile_keys};
use crate::state::command::AdminError;
use crate::state::view::{Ack, RegistryRequest};
use crate::state::{HealthMasks, Snapshot};

use super::apply::World;

impl World {
    /// Add or change one registry of the catalog.
    pub(super) fn put_registry(
        &mut self,
        snap: &Snapshot,
        key: String,
        req: RegistryRequest,
        who: &str,
    ) -> Result<(Ack, Snapshot), AdminError> {
        let bad = AdminError::BadRequest;
        if self.journal.is_none() {
            return Err(AdminError::Conflict(
                "no [catalog] is configured: registries of the config file change by reload".into(),
            ));
        }
        let g = &snap.globals;
        if let Some(r) = self.registry(g, &key)
            && g.parts(&r)
                .is_some_and(|(s, _)| s.kind == SetKind::Registry)
        {
            return Err(AdminError::Conflict(format!(
                "registry {key} is defined in the config file; change it there"
            )));
        }
        let entry = crate::catalog::file::entry(
            &key,
            &req.name,
            &req.template,
            req.depends_on.as_deref().filter(|d| !d.is_empty()),
            req.ttl.as_deref().filter(|t| !t.is_empty()),
            req.answers,
        )
        .map_err(|reasons| bad(reasons.join("; ")))?;
        let set = self
            .index
            .template(&entry.template)
            .ok_or_else(|| AdminError::NotFound(format!("no template {}", entry.template)))?;
        let mut next = (**g).clone();
        let put = self
            .index
            .put(
                &mut next,
                &snap.zones,
                Entry {
                    key: entry.key.clone(),
                    name: entry.name.clone(),
                    set,
                    depends_on: entry.depends_on.clone(),
                    ttl: entry.ttl,
                    answers: entry.answers,
                },
            )
            .map_err(bad)?;
        let op = JournalOp::Put {
            entry: CatalogEntry { line: 0, ..entry },
            at: format_time(SystemTime::now()),
            who: who.to_string(),
        };
        if let Some(j) = &mut self.journal
            && let Err(e) = j.append(&op)
        {
            // Not on disk: undo, so what is served is what a restart would serve.
            self.index.delete(&mut next, &key);
            return Err(AdminError::Failed(format!(
                "cannot write the catalog journal: {e}"
            )));
        }
        let mut h = (*snap.health).clone();
        if let Some(p) = put.new_profile {
            let keys = profile_keys(&next, &next.profiles[p as usize]);
            self.book.add_profile(&keys);
            h.profiles
                .push(self.profile_masks(&next, p, SystemTime::now()));
        }
        if let Some(old) = &put.replaced {
            h.exceptions.remove(&old.id);
        }
        if let Some(reg) = self.registry(&next, &key)
            && let Some(m) = self.exception(&next, &reg, SystemTime::now())
        {
            h.exceptions.insert(put.id, m);
        }
        // Member counts moved: the incidents the registry's profiles feed follow.
        let mut touched: Vec<u32> = put.replaced.iter().map(|r| r.profile).collect();
        if let Some(reg) = self.registry(&next, &key) {
            touched.push(reg.profile);
        }
        self.note_incidents(&next, &h, Some(&touched));
        info!(registry = %key, who, "registry put");
        Ok(catalog_changed(
            snap,
            next,
            h,
            format!("registry {key} put"),
        ))
    }

    /// Remove one registry of the catalog.
    pub(super) fn delete_registry(
        &mut self,
        snap: &Snapshot,
        key: &str,
        who: &str,
    ) -> Result<(Ack, Snapshot), AdminError> {
        let g = &snap.globals;
        let reg = self
            .registry(g, key)
            .ok_or_else(|| AdminError::NotFound(format!("no registry {key}")))?;
        if g.parts(&reg)
            .is_some_and(|(s, _)| s.kind == SetKind::Registry)
            || self.journal.is_none()
        {
            return Err(AdminError::Conflict(format!(
                "registry {key} is defined in the config file; change it there"
            )));
        }
        let op = JournalOp::Delete {
            key: key.into(),
            at: format_time(SystemTime::now()),
            who: who.to_string(),
        };
        if let Some(j) = &mut self.journal {
            j.append(&op).map_err(|e| {
                AdminError::Failed(format!("cannot write the catalog journal: {e}"))
            })?;
        }
        let mut next = (**g).clone();
        self.index.delete(&mut next, key);
        let mut h = (*snap.health).clone();
        h.exceptions.remove(&reg.id);
        self.note_incidents(&next, &h, Some(&[reg.profile]));
        info!(registry = %key, who, "registry deleted");
        Ok(catalog_changed(
            snap,
            next,
            h,
            format!("registry {key} deleted"),
        ))
    }
}

/// The reply and the next snapshot after a catalog change: the new name table with the
/// masks computed for it, published together.
fn catalog_changed(
    snap: &Snapshot,
    g: Globals,
    h: HealthMasks,
    message: String,
) -> (Ack, Snapshot) {
    (
        Ack {
            message,
            generation: Some(snap.generation + 1),
            fleet: None,
        },
        Snapshot {
            globals: Arc::new(g),
            health: Arc::new(h),
            ..snap.clone()
        },
    )
}
