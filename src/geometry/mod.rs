//! Geometry: the mesh type, normalisation into the unit box, the BVH, the inside test
//! (generalized winding numbers, after orienting the mesh: [`orient`]), and marching cubes.

pub mod bvh;
pub mod components;
pub mod marching_cubes;
pub mod mesh;
pub mod normalize;
pub mod orient;
pub mod prepared;
pub mod shapes;
pub mod winding;

pub use bvh::Bvh;
pub use marching_cubes::{edge_manifold_report, marching_cubes, marching_cubes_padded, Grid3};
pub use mesh::TriMesh;
pub use normalize::UnitFromMesh;
pub use winding::{inside_by_ray_parity, WindingNumber};
