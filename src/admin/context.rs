//! The seam between the admin router and the rest of the server.
//!
//! The router only sees an [`AdminContext`]: reads are synchronous (the current snapshot plus
//! a status view), mutations return a future (they go to the single writer, the state task,
//! as a [`Command`] with a oneshot reply). [`ChannelContext`] is that wiring, ready-made: the
//! wiring gives it the state task's command sender and closures for the reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::events::EventLog;
use super::view::{
    Ack, EventView, ExplainQuery, ModeName, RegistryRequest, StatusQuery, StatusView,
};
use crate::metrics::Metrics;
use crate::overrides::{AuditEvent, Target};

/// A boxed reply future (the trait is used as `Arc<dyn AdminContext>`).
pub type Reply<T> = Pin<Box<dyn Future<Output = Result<T, AdminError>> + Send + 'static>>;

/// What the admin router needs from the server.
pub trait AdminContext: Send + Sync + 'static {
    /// `GET /v1/status`: one page of the current state and the summary, built by the writer
    /// from one snapshot and the health book.
    fn status(&self, query: StatusQuery) -> Reply<StatusView>;
    /// `GET /metrics`: OpenMetrics text ([`Metrics::render`]).
    fn metrics(&self) -> String;
    /// `GET /v1/explain`: the same decision code as DNS, with its reasons (any JSON).
    fn explain(&self, query: &ExplainQuery) -> Result<serde_json::Value, AdminError>;
    /// `GET /v1/events`: the bounded history, oldest first.
    fn events(&self) -> Vec<EventView>;
    /// `POST /v1/reload`: reload config, zones and geo data; `who` as in [`OverrideCommand`].
    fn reload(&self, who: String) -> Reply<Ack>;
    /// `PUT`/`DELETE /v1/overrides`.
    fn set_override(&self, command: OverrideCommand) -> Reply<AuditEvent>;
    /// `PUT /v1/mode`.
    fn set_mode(&self, command: ModeCommand) -> Reply<Ack>;
    /// `PUT /v1/registries/KEY`: add or change one catalog registry.
    fn put_registry(&self, key: String, request: RegistryRequest, who: String) -> Reply<Ack>;
    /// `DELETE /v1/registries/KEY`.
    fn delete_registry(&self, key: String, who: String) -> Reply<Ack>;
}

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
    pub who: String,
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
    pub fn status(&self) -> u16 {
        match self {
            AdminError::BadRequest(_) => 400,
            AdminError::NotFound(_) => 404,
            AdminError::Conflict(_) => 409,
            AdminError::Unavailable(_) => 503,
            AdminError::Failed(_) => 500,
        }
    }
}

//------------ Commands to the state task ----------------------------------------------------

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
}

type ExplainFn = dyn Fn(&ExplainQuery) -> Result<serde_json::Value, AdminError> + Send + Sync;

/// An [`AdminContext`] wired to the state task by channel, with reads from closures.
pub struct ChannelContext {
    commands: mpsc::Sender<Command>,
    explain: Box<ExplainFn>,
    metrics: Arc<Metrics>,
    events: EventLog,
}

impl std::fmt::Debug for ChannelContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelContext").finish_non_exhaustive()
    }
}

impl ChannelContext {
    /// Wire the router to the state task (`commands`), the explain function, the metrics and
    /// the event log.
    pub fn new(
        commands: mpsc::Sender<Command>,
        explain: impl Fn(&ExplainQuery) -> Result<serde_json::Value, AdminError> + Send + Sync + 'static,
        metrics: Arc<Metrics>,
        events: EventLog,
    ) -> Self {
        Self {
            commands,
            explain: Box::new(explain),
            metrics,
            events,
        }
    }

    fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, AdminError>>) -> Command,
    ) -> Reply<T> {
        let tx = self.commands.clone();
        let (reply, rx) = oneshot::channel();
        let cmd = make(reply);
        Box::pin(async move {
            tx.send(cmd)
                .await
                .map_err(|_| AdminError::Unavailable("the state task is not running".into()))?;
            rx.await
                .map_err(|_| AdminError::Unavailable("the state task dropped the request".into()))?
        })
    }
}

impl AdminContext for ChannelContext {
    fn status(&self, query: StatusQuery) -> Reply<StatusView> {
        self.ask(|reply| Command::Status { query, reply })
    }

    fn metrics(&self) -> String {
        self.metrics.render()
    }

    fn explain(&self, query: &ExplainQuery) -> Result<serde_json::Value, AdminError> {
        (self.explain)(query)
    }

    fn events(&self) -> Vec<EventView> {
        self.events.snapshot()
    }

    fn reload(&self, who: String) -> Reply<Ack> {
        self.ask(|reply| Command::Reload { who, reply })
    }

    fn set_override(&self, command: OverrideCommand) -> Reply<AuditEvent> {
        self.ask(|reply| Command::Override { command, reply })
    }

    fn set_mode(&self, command: ModeCommand) -> Reply<Ack> {
        self.ask(|reply| Command::Mode { command, reply })
    }

    fn put_registry(&self, key: String, request: RegistryRequest, who: String) -> Reply<Ack> {
        self.ask(|reply| Command::PutRegistry {
            key,
            request,
            who,
            reply,
        })
    }

    fn delete_registry(&self, key: String, who: String) -> Reply<Ack> {
        self.ask(|reply| Command::DeleteRegistry { key, who, reply })
    }
}
