//! Query points: uniform in a box, near a surface (the paper's test protocol).

pub mod kspace;
pub mod rays;
pub mod rng;
pub mod voxels;

use crate::geometry::TriMesh;
use glam::Vec3;
use rayon::prelude::*;
pub use rng::CounterRng;

/// An axis-aligned box in unit coordinates.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Aabb {
    pub min: [f32; 3],
    pub max: [f32; 3],
}

impl Aabb {
    pub fn from_points(points: &[Vec3], pad: f32) -> Self {
        let (lo, hi) = points
            .iter()
            .fold((Vec3::splat(f32::INFINITY), Vec3::splat(f32::NEG_INFINITY)), |(lo, hi), p| {
                (lo.min(*p), hi.max(*p))
            });
        Aabb { min: (lo - pad).to_array(), max: (hi + pad).to_array() }
    }
    pub fn size(&self) -> Vec3 {
        Vec3::from(self.max) - Vec3::from(self.min)
    }
}

/// Fills `out` with points uniform in `bbox`; point i uses counters 3i..3i+2 offset by `first`.
pub fn uniform_in_box(bbox: &Aabb, rng: &CounterRng, first: u64, out: &mut [[f32; 3]]) {
    let lo = Vec3::from(bbox.min);
    let size = bbox.size();
    out.par_chunks_mut(4096).enumerate().for_each(|(c, chunk)| {
        for (j, p) in chunk.iter_mut().enumerate() {
            let i = first + 3 * (c * 4096 + j) as u64;
            let u = Vec3::new(rng.uniform(i), rng.uniform(i + 1), rng.uniform(i + 2));
            *p = (lo + u * size).to_array();
        }
    });
}

/// The paper's near-surface points: a face chosen uniformly at random (not by area), a uniform
/// point on it, plus N(0, sigma²) noise per axis. Point i uses counters 10i..10i+9 offset by `first`
/// (rounded up to even).
pub fn near_surface(mesh: &TriMesh, sigma: f32, rng: &CounterRng, first: u64, out: &mut [[f32; 3]]) {
    let nf = mesh.triangles.len() as u64;
    let first = first + (first & 1);
    out.par_chunks_mut(4096).enumerate().for_each(|(c, chunk)| {
        for (j, p) in chunk.iter_mut().enumerate() {
            let i = first + 10 * (c * 4096 + j) as u64;
            let t = mesh.triangles[rng.below(i, nf) as usize];
            let [a, b, cc] = t.map(|v| mesh.positions[v as usize]);
            let (mut u, mut v) = (rng.uniform(i + 1), rng.uniform(i + 2));
            if u + v > 1.0 {
                u = 1.0 - u;
                v = 1.0 - v;
            }
            // Box–Muller takes counters 2k and 2k+1: k = i/2 + 2..=4 uses i+4..=i+9.
            let k = i / 2 + 2;
            let noise = Vec3::new(rng.normal(k), rng.normal(k + 1), rng.normal(k + 2)) * sigma;
            *p = (a + (b - a) * u + (cc - a) * v + noise).to_array();
        }
    });
}
