//! The triangle mesh every loader produces and every exporter consumes.

use glam::Vec3;

/// An indexed triangle mesh. Polygons are fan-triangulated by the loaders.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TriMesh {
    /// Vertex positions, in the mesh's own units.
    pub positions: Vec<Vec3>,
    /// Triangles as indices into `positions`, counter-clockwise seen from outside.
    pub triangles: Vec<[u32; 3]>,
    /// Optional per-vertex unit normals (same length as `positions`).
    pub normals: Option<Vec<Vec3>>,
}

impl TriMesh {
    pub fn new(positions: Vec<Vec3>, triangles: Vec<[u32; 3]>) -> Self {
        TriMesh { positions, triangles, normals: None }
    }

    /// Axis-aligned bounding box (min, max) of the vertices; `None` for an empty mesh.
    pub fn bounds(&self) -> Option<(Vec3, Vec3)> {
        let first = *self.positions.first()?;
        Some(self.positions.iter().fold((first, first), |(lo, hi), p| (lo.min(*p), hi.max(*p))))
    }

    /// Total surface area.
    pub fn area(&self) -> f64 {
        self.triangles
            .iter()
            .map(|t| {
                let [a, b, c] = t.map(|i| self.positions[i as usize].as_dvec3());
                0.5 * (b - a).cross(c - a).length()
            })
            .sum()
    }

    /// Signed enclosed volume (positive for a closed, outward-oriented mesh).
    pub fn signed_volume(&self) -> f64 {
        self.triangles
            .iter()
            .map(|t| {
                let [a, b, c] = t.map(|i| self.positions[i as usize].as_dvec3());
                a.dot(b.cross(c)) / 6.0
            })
            .sum()
    }

    /// Area-weighted per-vertex normals, normalised (zero where a vertex touches no area).
    pub fn compute_vertex_normals(&mut self) {
        let mut normals = vec![Vec3::ZERO; self.positions.len()];
        for t in &self.triangles {
            let [a, b, c] = t.map(|i| self.positions[i as usize]);
            let n = (b - a).cross(c - a); // length = 2 × area: area weighting
            for &i in t {
                normals[i as usize] += n;
            }
        }
        for n in &mut normals {
            *n = n.normalize_or_zero();
        }
        self.normals = Some(normals);
    }

    /// Checks the mesh is non-empty, with finite coordinates and indices in range; the message
    /// says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.positions.is_empty() {
            return Err("mesh has no vertices".into());
        }
        if self.triangles.is_empty() {
            return Err("mesh has no faces".into());
        }
        self.check_coordinates_and_indices()
    }

    /// Checks coordinates are finite and indices in range (an empty mesh passes).
    pub fn check_coordinates_and_indices(&self) -> Result<(), String> {
        if let Some(i) = self.positions.iter().position(|p| !p.is_finite()) {
            return Err(format!("vertex {i} has a non-finite coordinate {:?}", self.positions[i]));
        }
        let n = self.positions.len();
        if let Some((f, t)) =
            self.triangles.iter().enumerate().find(|(_, t)| t.iter().any(|&i| i as usize >= n))
        {
            return Err(format!("face {f} refers to vertex {t:?} but the mesh has {n} vertices"));
        }
        Ok(())
    }
}
