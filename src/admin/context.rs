//! The seam between the admin router and the rest of the server.
//!
//! The router only sees an [`AdminContext`]: reads are synchronous (the current snapshot plus
//! a status view), mutations return a future (they go to the single writer, the state task,
//! as a [`Command`] with a oneshot reply). [`ChannelContext`] is that wiring, ready-made: the
//! wiring gives it the state task's command sender and closures for the reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::overrides::AuditEvent;
pub use crate::state::command::{
    AdminError, Command, ModeCommand, OverrideAction, OverrideCommand,
};
use crate::state::events::EventLog;
use crate::state::view::{
    Ack, EventView, ExplainQuery, IncidentPage, IncidentQuery, IncidentsView, RegistryPage,
    RegistryRequest, StatusQuery, StatusView,
};

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
    /// `GET /v1/events/stream`: follow the event log from just after event `after` (None:
    /// from now). None: this context has no live log.
    fn subscribe(&self, after: Option<u64>) -> Option<crate::state::events::Subscription> {
        let _ = after;
        None
    }
    /// `GET /v1/traffic`: answers per minute by client group and answered replica.
    fn traffic(
        &self,
        query: &crate::metrics::traffic::TrafficQuery,
    ) -> Result<crate::metrics::traffic::TrafficView, AdminError> {
        let _ = query;
        Err(AdminError::Unavailable("no traffic record here".into()))
    }
    /// `GET /v1/incidents`: open and recent incidents, from the writer.
    fn incidents(&self, query: IncidentQuery) -> Reply<IncidentsView> {
        let _ = query;
        Box::pin(async { Err(AdminError::Unavailable("no incidents here".into())) })
    }
    /// `GET /v1/incidents/ID/registries`: one page of an incident's registries.
    fn incident_registries(&self, id: u64, query: IncidentPage) -> Reply<RegistryPage> {
        let _ = (id, query);
        Box::pin(async { Err(AdminError::Unavailable("no incidents here".into())) })
    }
}

type ExplainFn = dyn Fn(&ExplainQuery) -> Result<serde_json::Value, AdminError> + Send + Sync;

/// An [`AdminContext`] wired to the state task by channel, with reads from closures.
pub struct ChannelContext {
    commands: mpsc::Sender<Command>,
    explain: Box<ExplainFn>,
    metrics: Arc<Metrics>,
    events: EventLog,
    traffic: Option<Arc<crate::metrics::traffic::Traffic>>,
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
            traffic: None,
        }
    }

    /// Serve `/v1/traffic` from this record.
    pub fn with_traffic(mut self, traffic: Arc<crate::metrics::traffic::Traffic>) -> Self {
        self.traffic = Some(traffic);
        self
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

    fn subscribe(&self, after: Option<u64>) -> Option<crate::state::events::Subscription> {
        Some(self.events.subscribe(after))
    }

    fn traffic(
        &self,
        query: &crate::metrics::traffic::TrafficQuery,
    ) -> Result<crate::metrics::traffic::TrafficView, AdminError> {
        let t = self
            .traffic
            .as_ref()
            .ok_or_else(|| AdminError::Unavailable("no traffic record here".into()))?;
        t.view(query, std::time::SystemTime::now()).map_err(|e| {
            if e.starts_with("registry ") {
                AdminError::NotFound(e)
            } else {
                AdminError::BadRequest(e)
            }
        })
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

    fn incidents(&self, query: IncidentQuery) -> Reply<IncidentsView> {
        self.ask(|reply| Command::Incidents { query, reply })
    }

    fn incident_registries(&self, id: u64, query: IncidentPage) -> Reply<RegistryPage> {
        self.ask(|reply| Command::IncidentRegistries { id, query, reply })
    }
}
