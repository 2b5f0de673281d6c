//! Export: evaluate a field on a grid and write it as the files people open elsewhere — meshes
//! (iso-surfaces), NIfTI volumes and PNG images.

pub mod grid;
pub mod image;
pub mod plot;
pub mod surface;
pub mod volume;
