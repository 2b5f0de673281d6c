//! A mesh made ready for the occupancy job: degenerate faces dropped, every face oriented for the
//! inside test ([`crate::geometry::orient`]), normalised into the unit box, with its sampling box
//! and its winding-number tree for inside/outside labels.

use crate::geometry::orient::{orient, OrientReport};
use crate::geometry::winding::WindingNumber;
use crate::geometry::{TriMesh, UnitFromMesh};
use crate::sample::Aabb;
use crate::{Error, Result};
use glam::Vec3;
use std::path::Path;

/// The mesh in unit coordinates, ready for sampling and labelling.
pub struct PreparedMesh {
    /// The oriented mesh (what the labels, the GPU labeller and the near-surface sampler use).
    pub mesh_in_unit: TriMesh,
    pub unit_from_mesh: UnitFromMesh,
    /// The box training and test points are drawn from: vertex bounds ± 1e-3 (the paper).
    pub bbox: Aabb,
    pub winding: WindingNumber,
    /// What orienting the mesh did (faces flipped, dropped, components).
    pub orientation: OrientReport,
}

impl PreparedMesh {
    /// Reads `path` ([`crate::io::read_mesh_or_bundled`]: the bundled bunny when `path` is the
    /// default that does not exist here) and prepares it.
    pub fn load(path: &Path) -> Result<Self> {
        let mesh = crate::io::read_mesh_or_bundled(path)?;
        Self::from_mesh(mesh).map_err(|msg| Error::format(path, msg))
    }

    /// Prepares a mesh with valid indices; the error says what is wrong (no area left after
    /// dropping degenerate faces).
    pub fn from_mesh(mesh: TriMesh) -> std::result::Result<Self, String> {
        let (mesh, orientation) = orient(&mesh);
        if mesh.triangles.is_empty() {
            return Err(format!(
                "every face is degenerate (zero area): {} face(s) dropped, none left",
                orientation.degenerate
            ));
        }
        let unit_from_mesh = UnitFromMesh::fit(&mesh.positions, 0.05);
        let positions: Vec<Vec3> = mesh.positions.iter().map(|p| unit_from_mesh.apply(*p)).collect();
        let mesh_in_unit = TriMesh::new(positions, mesh.triangles);
        let bbox = Aabb::from_points(&mesh_in_unit.positions, 1e-3);
        let winding = WindingNumber::new(&mesh_in_unit);
        Ok(PreparedMesh { mesh_in_unit, unit_from_mesh, bbox, winding, orientation })
    }

    /// `out[i] = 1` when `points[i]` is inside (winding number of the oriented mesh > 1/2).
    pub fn label(&self, points: &[[f32; 3]], out: &mut [f32]) {
        self.winding.label_points(points, out);
    }
}
