//! Whole jobs: each wires data, sampler, operator, loss, metrics and exports together.

pub mod bench;
pub mod device;
pub mod occupancy;
