//! `server.udp_workers` and `server.udp_pin`: how many threads answer UDP on each listen
//! address, and on which CPUs, validated.

use crate::problem::Problem;

/// How the UDP worker threads are pinned to CPUs (`server.udp_pin`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UdpPin {
    /// Not pinned: the scheduler places them (`false`, the default).
    Off,
    /// Worker K of each address on the K-th CPU the process may run on, round robin (`true`).
    Allowed,
    /// Worker K of each address on `cpus[K % len]` (a list of CPU numbers).
    Cpus(Vec<usize>),
}

/// The UDP worker settings, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UdpConfig {
    /// SO_REUSEPORT sockets, one thread each, per UDP listen address (at least 1).
    pub(crate) workers: usize,
    /// CPU pinning of those threads.
    pub(crate) pin: UdpPin,
}

impl UdpConfig {
    /// Validate `udp_workers` (None: one per CPU the process may run on) and `udp_pin`;
    /// `at(key, reason)` places a problem on the key's line.
    pub(super) fn from_spec(
        workers: Option<usize>,
        pin: Option<super::file::PinSpec>,
        problems: &mut Vec<Problem>,
        at: impl Fn(&str, String) -> Problem,
    ) -> Self {
        use super::file::PinSpec;
        if workers == Some(0) {
            problems.push(at(
                "udp_workers",
                "udp_workers must be at least 1 (leave it out for one per CPU)".into(),
            ));
        }
        if workers.is_some_and(|w| w > MAX_WORKERS) {
            problems.push(at(
                "udp_workers",
                format!("udp_workers must be at most {MAX_WORKERS}"),
            ));
        }
        let pin = match pin {
            None | Some(PinSpec::Flag(false)) => UdpPin::Off,
            Some(PinSpec::Flag(true)) => UdpPin::Allowed,
            Some(PinSpec::Cpus(cpus)) if cpus.is_empty() => {
                problems.push(at(
                    "udp_pin",
                    "udp_pin is true, false or a non-empty list of CPU numbers".into(),
                ));
                UdpPin::Off
            }
            Some(PinSpec::Cpus(cpus)) => UdpPin::Cpus(cpus),
        };
        Self {
            workers: workers.unwrap_or_else(cpus_allowed).clamp(1, MAX_WORKERS),
            pin,
        }
    }
}

/// Most UDP workers per address accepted.
const MAX_WORKERS: usize = 1024;

/// The number of CPUs this process may run on (its affinity mask and cgroup quota, as
/// `std::thread::available_parallelism` reads them); 1 when that cannot be read.
pub(crate) fn cpus_allowed() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
