//! Whole jobs, each a short wiring of the stages: which data, which sampler, which operator,
//! which loss, which metrics, which exports. The training loop itself is [`crate::train::fit`].

pub mod bench;
pub mod ct;
pub mod field;
pub mod image;
pub mod mri;
pub mod ntk;
pub mod occupancy;
pub mod volume;
