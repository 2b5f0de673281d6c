//! Simulation: phantoms (Shepp–Logan in 2D and 3D) and simulated CT scans.

pub mod ct;
pub mod phantom;
