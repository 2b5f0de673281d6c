//! A mesh made ready for the occupancy job: normalised into the unit box, with its sampling box
//! and its winding-number tree for inside/outside labels.

use crate::geometry::winding::WindingNumber;
use crate::geometry::{TriMesh, UnitFromMesh};
use crate::sample::Aabb;
use crate::{Error, Result};
use glam::Vec3;
use std::path::Path;

/// The mesh in unit coordinates, ready for sampling and labelling.
pub struct PreparedMesh {
    pub mesh_in_unit: TriMesh,
    pub unit_from_mesh: UnitFromMesh,
    /// The box training and test points are drawn from: vertex bounds ± 1e-3 (the paper).
    pub bbox: Aabb,
    pub winding: WindingNumber,
}

impl PreparedMesh {
    pub fn load(path: &Path) -> Result<Self> {
        let mesh = crate::io::read_mesh(path)?;
        if mesh.area().partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return Err(Error::format(path, "every face is degenerate (the mesh has no area)"));
        }
        Ok(Self::from_mesh(mesh))
    }

    pub fn from_mesh(mesh: TriMesh) -> Self {
        let unit_from_mesh = UnitFromMesh::fit(&mesh.positions, 0.05);
        let positions: Vec<Vec3> = mesh.positions.iter().map(|p| unit_from_mesh.apply(*p)).collect();
        let mesh_in_unit = TriMesh::new(positions, mesh.triangles);
        let bbox = Aabb::from_points(&mesh_in_unit.positions, 1e-3);
        let winding = WindingNumber::new(&mesh_in_unit);
        PreparedMesh { mesh_in_unit, unit_from_mesh, bbox, winding }
    }

    pub fn label(&self, points: &[[f32; 3]], out: &mut [f32]) {
        self.winding.label_points(points, out);
    }
}
