//! The status page served at `GET /`: one self-contained HTML document (inline CSS and JS,
//! no external assets) that fetches `/v1/status` and `/v1/events` every 2 s and renders the
//! registries × replicas table, overrides, failing dependencies and recent events.

/// The page.
pub(super) const PAGE: &str = include_str!("page.html");
