//! The fleet link's series (`steerdns_fleet_*`), registered only with `[fleet]` so a single
//! server's scrape is unchanged.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::{FLEET_CONNECTED, FLEET_LIVE, FLEET_LOST, FLEET_PENDING, Metrics};

/// The fleet link's series, registered by [`Metrics::enable_fleet`] only.
#[derive(Clone, Debug, Default)]
pub(crate) struct FleetGauges {
    pub(crate) connected: Gauge,
    pub(crate) pending: Gauge,
    pub(crate) live: Gauge,
    pub(crate) lost: Counter,
}

impl Metrics {
    /// Register the fleet link's series (`steerdns_fleet_*`); only with `[fleet]`, so a
    /// single server's scrape is unchanged.
    pub fn enable_fleet(&mut self) {
        let f = self.fleet.clone();
        let r = &mut self.registry;
        r.register(
            FLEET_CONNECTED,
            "1 while the link to etcd is up and its watch current",
            f.connected,
        );
        r.register(
            FLEET_PENDING,
            "Admin changes applied here, not yet written to etcd",
            f.pending,
        );
        r.register(FLEET_LIVE, "Instances with a live lease", f.live);
        r.register(
            FLEET_LOST,
            "Changes that lost to a later one by the conflict rule",
            f.lost,
        );
    }

    /// The fleet link's series.
    pub(crate) fn fleet(&self) -> &FleetGauges {
        &self.fleet
    }
}
