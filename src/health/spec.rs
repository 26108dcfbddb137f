//! Placeholder for the health-check settings table (replaced by the health subsystem).

use serde::Deserialize;

/// `[health]` settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// Deep-health URL.
    pub url: Option<String>,
    /// Mode.
    pub mode: Option<String>,
    /// Interval.
    pub interval: Option<String>,
    /// Timeout.
    pub timeout: Option<String>,
    /// Failures to degrade.
    pub failure_threshold: Option<u32>,
    /// Successes to recover.
    pub success_threshold: Option<u32>,
}
