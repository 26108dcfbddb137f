//! The domain commands the writer executes, and their errors. The admin API and SIGHUP send
//! them; the admin API maps [`AdminError`] to HTTP statuses ([`AdminError::status`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::health::keys::FleetVerdict;
use crate::overrides::{AuditEvent, Target};
use crate::state::view::{
    Ack, FleetStatus, IncidentPage, IncidentQuery, IncidentsView, ModeName, RegistryPage,
    RegistryRequest, StatusQuery, StatusView,
};

/// Disable or enable.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum OverrideAction {
    /// `PUT /v1/overrides`.
    Disable,
    /// `DELETE /v1/overrides`.
    Enable,
}

/// A validated override request.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct OverrideCommand {
    /// Disable or enable.
    pub action: OverrideAction,
    /// What.
    pub target: Target,
    /// Why (may be empty for enable).
    pub reason: String,
    /// `token:NAME` or the client address.
    pub who: String,
    /// How long a disable lasts (None: until enabled).
    pub duration: Option<Duration>,
}

/// A validated mode switch.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ModeCommand {
    /// The new mode.
    pub mode: ModeName,
    /// One registry, or None for server-wide.
    pub registry: Option<String>,
    /// Who.
    pub(crate) who: String,
}

/// Why an admin request failed; maps to an HTTP status.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum AdminError {
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// It names a registry, replica or region that does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// It conflicts with the current state, e.g. enabling what is not disabled (409).
    #[error("{0}")]
    Conflict(String),
    /// The state task is not there or did not answer (503).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else, e.g. a reload that failed validation or a state file write (500).
    #[error("{0}")]
    Failed(String),
}

impl AdminError {
    /// The HTTP status for it.
    pub(crate) fn status(&self) -> u16 {
        match self {
            AdminError::BadRequest(_) => 400,
            AdminError::NotFound(_) => 404,
            AdminError::Conflict(_) => 409,
            AdminError::Unavailable(_) => 503,
            AdminError::Failed(_) => 500,
        }
    }
}

/// A mutation for the single writer, with its reply channel.
#[derive(Debug)]
pub enum Command {
    /// Reload config, zones and geo data.
    Reload {
        /// Who asked.
        who: String,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<Ack, AdminError>>,
    },
    /// Disable or enable a replica or region.
    Override {
        /// What to do.
        command: OverrideCommand,
        /// Where the audit event (or error) goes.
        reply: oneshot::Sender<Result<AuditEvent, AdminError>>,
    },
    /// Switch the health mode.
    Mode {
        /// What to do.
        command: ModeCommand,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<Ack, AdminError>>,
    },
    /// Add or change one catalog registry.
    PutRegistry {
        /// Its key.
        key: String,
        /// Its columns.
        request: RegistryRequest,
        /// Who.
        who: String,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<Ack, AdminError>>,
    },
    /// Remove one catalog registry.
    DeleteRegistry {
        /// Its key.
        key: String,
        /// Who.
        who: String,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<Ack, AdminError>>,
    },
    /// Read one status page.
    Status {
        /// Which page.
        query: StatusQuery,
        /// Where it goes.
        reply: oneshot::Sender<Result<StatusView, AdminError>>,
    },
    /// The open and recent incidents.
    Incidents {
        /// How many recent.
        query: IncidentQuery,
        /// Where it goes.
        reply: oneshot::Sender<Result<IncidentsView, AdminError>>,
    },
    /// One page of an incident's registries.
    IncidentRegistries {
        /// The incident.
        id: u64,
        /// Which page.
        query: IncidentPage,
        /// Where it goes.
        reply: oneshot::Sender<Result<RegistryPage, AdminError>>,
    },
    /// The keys of these registry ids (the heavy hitters, sampled by id); None for an id
    /// that no longer exists.
    RegistryKeys {
        /// Registry ids.
        ids: Vec<u32>,
        /// Where they go, in the same order.
        reply: oneshot::Sender<Vec<Option<String>>>,
    },
    /// The fleet link (`crate::fleet`): route on these fleet verdicts (health keys some live
    /// instance reports, by fleet name), or on this instance's own (None: the fleet's view is
    /// not current).
    FleetVerdicts {
        /// The verdicts.
        verdicts: Option<Arc<HashMap<Arc<str>, FleetVerdict>>>,
    },
    /// The fleet link's state, for `/v1/status`.
    FleetStatus {
        /// The state.
        status: FleetStatus,
    },
}
