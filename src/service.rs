//! The service manager's side of the process (systemd `Type=notify`), and the log format.
//!
//! - `READY=1` once zones are loaded and the first probe round is done: the latch `/ready`
//!   reports.
//! - `WATCHDOG=1` every half `WatchdogSec=`, only while every background task `/live`
//!   watches is alive (the writer, the DNS task, each UDP thread and TCP listener): a wedged
//!   or dead thread stops the pings and systemd restarts the service.
//! - `RELOADING=1` with `MONOTONIC_USEC` when SIGHUP starts a reload, `READY=1` with the
//!   outcome in `STATUS=` when it ends (systemd's reload protocol).
//! - `STOPPING=1` at shutdown.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op; a failed send is logged once and ignored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::app::Handles;

static SEND_FAILED: AtomicBool = AtomicBool::new(false);

/// Send `states` to the service manager, if there is one.
pub(crate) fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states)
        && !SEND_FAILED.swap(true, Ordering::Relaxed)
    {
        warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// Tell the service manager when the server is ready and, with `WatchdogSec=`, keep pinging
/// it while every watched task lives; `STOPPING=1` at shutdown.
pub(crate) fn spawn(handles: &Handles, shutdown: CancellationToken) {
    let mut first = handles.control.first_round.clone();
    let zones = handles.shared.load().zones.len();
    let registries = handles.shared.load().globals.len();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            r = first.wait_for(|done| *done) => if r.is_ok() {
                let status = format!("serving {zones} zones, {registries} registries");
                notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
                info!("told the service manager: ready");
            }
        }
        stop.cancelled().await;
        notify(&[NotifyState::Stopping]);
    });
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let liveness = handles.liveness.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval((period / 2).max(Duration::from_millis(10)));
        let mut quiet = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let dead = liveness.dead();
            if dead.is_empty() {
                notify(&[NotifyState::Watchdog]);
                quiet = false;
            } else if !quiet {
                // One line; systemd restarts the service when the pings stay away.
                warn!(dead = %dead.join(", "), "not pinging the watchdog: tasks are dead");
                quiet = true;
            }
        }
    });
}

/// Around a SIGHUP reload: `RELOADING=1` now, then `READY=1` with `outcome` when it is done.
pub(crate) fn reloading() {
    let now = NotifyState::monotonic_usec_now().ok();
    match now {
        Some(m) => notify(&[NotifyState::Reloading, m]),
        None => notify(&[NotifyState::Reloading]),
    }
}

/// The reload ended (ok or rejected, the old configuration still serving).
pub(crate) fn reloaded(outcome: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(outcome)]);
}

//------------ logs ---------------------------------------------------------------------------

/// `[log] format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human lines (without timestamps when stderr is the journal, which stamps them).
    #[default]
    Text,
    /// One JSON object a line: timestamp, level, target, message and the event's fields.
    Json,
}

/// Whether stderr is the journal's stream (`JOURNAL_STREAM` names its device and inode).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(m) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino())
}

/// The `[log]` table of the config file at `path`, read before anything else so that the
/// first lines are in the right format; a file that does not parse gives the default (its
/// problems are reported when it is loaded for real).
pub fn log_format_of(path: &std::path::Path) -> LogFormat {
    #[derive(serde::Deserialize)]
    struct Top {
        #[serde(default)]
        log: Option<crate::config::LogSpec>,
    }
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| toml::from_str::<Top>(&t).ok())
        .and_then(|t| t.log)
        .and_then(|l| l.format)
        .unwrap_or_default()
}

/// Install the global subscriber: `RUST_LOG` or info; text (ANSI on a terminal, no
/// timestamps into the journal) or JSON lines, on stderr.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
        LogFormat::Text if stderr_is_journal() => b.with_ansi(false).without_time().init(),
        LogFormat::Text => b
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}
