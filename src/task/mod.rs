//! Whole jobs: each wires data, sampler, operator, loss, metrics and exports together.

pub mod bench;
pub mod ct;
pub mod ct_metrics;
pub mod ct_phantom;
pub mod ct_recon;
pub mod device;
pub mod mri;
pub mod occupancy;
pub mod run;
pub mod volume;
pub mod volume_field;
pub mod volume_masks;
