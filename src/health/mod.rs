//! Health: probe settings, outcomes, the health state machine and the prober.

pub mod spec;
