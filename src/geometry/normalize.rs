//! The paper's normalisation of a mesh into the unit box.

use glam::{DVec3, Vec3};

/// Similarity transform `point_in_unit = scale * (point_in_mesh - centroid) + 0.5`.
///
/// As in the paper's occupancy code: the vertex centroid maps to (0.5, 0.5, 0.5) and the largest
/// |coordinate − centroid| maps to 0.5 − margin, so the whole shape sits inside [0,1]^3.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UnitFromMesh {
    pub centroid: [f64; 3],
    /// Unit-box lengths per mesh unit.
    pub scale: f64,
}

impl UnitFromMesh {
    /// Fits the transform to a mesh's vertices. `margin` is in unit-box lengths (the paper: 1e-3
    /// padding of the box; we also keep the shape off the box walls so the exported surface closes).
    pub fn fit(positions: &[Vec3], margin: f64) -> Self {
        let n = positions.len().max(1) as f64;
        let centroid = positions.iter().fold(DVec3::ZERO, |s, p| s + p.as_dvec3()) / n;
        let extent = positions
            .iter()
            .map(|p| (p.as_dvec3() - centroid).abs().max_element())
            .fold(0.0f64, f64::max)
            .max(1e-12);
        UnitFromMesh { centroid: centroid.to_array(), scale: (0.5 - margin) / extent }
    }

    pub fn apply(&self, p: Vec3) -> Vec3 {
        ((p.as_dvec3() - DVec3::from_array(self.centroid)) * self.scale + DVec3::splat(0.5)).as_vec3()
    }

    /// The inverse: `point_in_mesh = mesh_from_unit(point_in_unit)`.
    pub fn invert(&self, p: Vec3) -> Vec3 {
        ((p.as_dvec3() - DVec3::splat(0.5)) / self.scale + DVec3::from_array(self.centroid)).as_vec3()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_into_unit_box_and_back() {
        let pts = vec![Vec3::new(-3.0, 1.0, 2.0), Vec3::new(5.0, 2.0, -1.0), Vec3::new(0.0, 0.0, 0.0)];
        let t = UnitFromMesh::fit(&pts, 0.05);
        for p in &pts {
            let u = t.apply(*p);
            assert!(u.min_element() >= 0.05 - 1e-6 && u.max_element() <= 0.95 + 1e-6, "{u:?}");
            assert!((t.invert(u) - *p).length() < 1e-5);
        }
    }
}
