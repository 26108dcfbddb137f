//! `[server.rrl]`: response rate limiting settings, validated.

use super::file;
use crate::problem::Problem;

/// Response rate limiting settings (`[server.rrl]`), validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RrlConfig {
    /// Limit at all.
    pub(crate) enabled: bool,
    /// Responses per second per (prefix, class).
    pub(crate) rate: u32,
    /// Bucket size.
    pub(crate) burst: u32,
    /// Every Nth limited response is truncated; 0: none.
    pub(crate) slip: u32,
    /// IPv4 prefix length.
    pub(crate) ipv4_prefix: u8,
    /// IPv6 prefix length.
    pub(crate) ipv6_prefix: u8,
    /// Never limited.
    pub(crate) whitelist: Vec<ipnet::IpNet>,
    /// Buckets per UDP socket.
    pub(crate) table_size: usize,
}

impl RrlConfig {
    pub(super) fn from_spec(
        s: file::RrlSpec,
        problems: &mut Vec<Problem>,
        at: impl Fn(&str, String) -> Problem,
    ) -> Self {
        let file::RrlSpec {
            enabled,
            responses_per_second,
            burst,
            slip,
            ipv4_prefix,
            ipv6_prefix,
            whitelist,
            table_size,
        } = s;
        if responses_per_second == 0 {
            problems.push(at(
                "responses_per_second",
                "responses_per_second must be at least 1".into(),
            ));
        }
        if burst == Some(0) {
            problems.push(at("burst", "burst must be at least 1".into()));
        }
        if !(1..=32).contains(&ipv4_prefix) {
            problems.push(at(
                "ipv4_prefix",
                "ipv4_prefix must be between 1 and 32".into(),
            ));
        }
        if !(1..=128).contains(&ipv6_prefix) {
            problems.push(at(
                "ipv6_prefix",
                "ipv6_prefix must be between 1 and 128".into(),
            ));
        }
        if !(16..=1 << 24).contains(&table_size) {
            problems.push(at(
                "table_size",
                "table_size must be between 16 and 16777216".into(),
            ));
        }
        Self {
            enabled,
            rate: responses_per_second,
            burst: burst.unwrap_or(responses_per_second),
            slip,
            ipv4_prefix,
            ipv6_prefix,
            whitelist,
            table_size,
        }
    }
}
