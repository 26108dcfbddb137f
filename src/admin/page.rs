//! The status page served at `GET /`: one self-contained HTML document (inline CSS, JS and
//! SVG charts; no external assets, so it works with no network beyond the server) that
//! refreshes every 5 s from reads bounded by resources, regions and page size, never by
//! registries: the summary with one page of 20 registries (or a server-side key-prefix
//! search), the open and 10 recent incidents, answers per replica per minute, the last 20
//! events; for a selected registry (`#registry=KEY`), its traffic and failover timeline.

/// The page.
pub(super) const PAGE: &str = include_str!("page.html");
