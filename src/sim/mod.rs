//! Simulation: phantoms (Shepp–Logan in 2D and 3D), simulated CT scans, text images.

pub mod ct;
pub mod phantom;
pub mod text;
