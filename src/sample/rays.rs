//! Query points along detector rays: stratified samples inside the volume, for quadrature of
//! the field's line integrals.

use crate::operator::ct_geometry::Scan;
use crate::sample::CounterRng;
use rayon::prelude::*;

/// Samples of a batch of rays: `samples` points per ray, in unit coordinates of the field.
#[derive(Clone, Debug, Default)]
pub struct RaySamples {
    pub dims: usize,
    pub samples: usize,
    /// Row-major (rays·samples)×dims, in [0,1]^dims.
    pub points: Vec<f32>,
    /// Per ray: the quadrature weight of each sample (segment length / samples × measurement
    /// scale); 0 for a ray that misses the volume.
    pub weights: Vec<f32>,
}

/// Stratified samples along rays `ids` of `scan`: the clipped segment is cut into `samples`
/// equal strata and each gets one uniform point (counters `first + ray_slot·samples + k`);
/// with `rng = None`, the strata midpoints.
pub fn stratified(
    scan: &Scan,
    ids: &[usize],
    samples: usize,
    rng: Option<&CounterRng>,
    first: u64,
    out: &mut RaySamples,
) {
    let d = scan.dims;
    out.dims = d;
    out.samples = samples;
    out.points.resize(ids.len() * samples * d, 0.5);
    out.weights.resize(ids.len(), 0.0);
    let scale = scan.measurement_scale();
    out.points.par_chunks_mut(samples * d).zip(out.weights.par_iter_mut()).enumerate().for_each(
        |(slot, (pts, w))| {
            let ray = scan.ray(ids[slot]);
            let Some((t0, t1)) = scan.clip(&ray) else {
                pts.iter_mut().for_each(|p| *p = 0.5);
                *w = 0.0;
                return;
            };
            let h = (t1 - t0) / samples as f64;
            *w = (h * scale) as f32;
            for k in 0..samples {
                let u = rng.map(|g| g.uniform_f64(first + (slot * samples + k) as u64)).unwrap_or(0.5);
                let t = t0 + (k as f64 + u) * h;
                let p = std::array::from_fn(|a| ray.origin[a] + t * ray.dir[a]);
                scan.unit_from_world(p, &mut pts[k * d..(k + 1) * d]);
                for x in &mut pts[k * d..(k + 1) * d] {
                    *x = x.clamp(0.0, 1.0);
                }
            }
        },
    );
}
