//! Export: evaluate a field on a grid and write it as the files people open elsewhere — meshes
//! (iso-surfaces), NIfTI volumes and PNG images.

pub mod grid;
pub mod hausdorff;
pub mod image;
pub mod normals;
pub mod plot;
pub mod simplify;
pub mod surface;
pub mod volume;
