//! The discrete ray projector A and its exact adjoint Aᵀ.
//!
//! ## Design
//!
//! Each ray is clipped to the volume box and sampled at the midpoints of `n` equal steps (the
//! step at most `step_fraction` of the smallest voxel); at each sample the volume is read by
//! bilinear (2D) or trilinear (3D) interpolation, with zero outside the grid. A measurement is
//! `scale · Σ_k h · interp(x_k)`. The back-projector scatters the same weights, so it is the
//! exact transpose: ⟨A x, y⟩ = ⟨x, Aᵀ y⟩ to rounding. Rays are precomputed once, view-major,
//! so one view's rays are a contiguous range (SART works view by view).
//!
//! The scatter is parallel over a fixed number of ray chunks, each into its own buffer, summed
//! in a fixed order: results do not depend on the thread count.

use super::ct_geometry::Scan;
use rayon::prelude::*;

/// One clipped ray in voxel coordinates (voxel centre i at coordinate i).
#[derive(Clone, Copy, Debug)]
struct Segment {
    /// The first sample.
    start: [f32; 3],
    /// From one sample to the next.
    delta: [f32; 3],
    /// Samples (0 for a ray that misses the volume).
    n: u32,
    /// Step length × measurement scale.
    weight: f32,
}

/// Fixed number of scatter buffers, so sums do not depend on the thread count.
const SCATTER_CHUNKS: usize = 4;

pub struct RayProjector {
    dims: usize,
    voxels: [usize; 3],
    segments: Vec<Segment>,
    rays_per_view: usize,
}

impl RayProjector {
    /// Rays of `scan`, sampled every `step_fraction` (e.g. 0.5) of the smallest voxel edge.
    pub fn new(scan: &Scan, step_fraction: f64) -> Self {
        let d = scan.dims;
        let h_max = scan.voxel_size[..d].iter().cloned().fold(f64::INFINITY, f64::min) * step_fraction;
        let lo = scan.vol_min();
        let vs = scan.voxel_size;
        let scale = scan.measurement_scale();
        let to_voxel = |p: [f64; 3]| -> [f32; 3] {
            std::array::from_fn(|a| if a < d { ((p[a] - lo[a]) / vs[a] - 0.5) as f32 } else { 0.0 })
        };
        let segments = (0..scan.n_rays())
            .into_par_iter()
            .map(|i| {
                let ray = scan.ray(i);
                match scan.clip(&ray) {
                    None => Segment { start: [0.0; 3], delta: [0.0; 3], n: 0, weight: 0.0 },
                    Some((t0, t1)) => {
                        let n = ((t1 - t0) / h_max).ceil().max(1.0);
                        let h = (t1 - t0) / n;
                        let at = |t: f64| std::array::from_fn(|a| ray.origin[a] + t * ray.dir[a]);
                        let p0 = to_voxel(at(t0 + 0.5 * h));
                        let step: [f64; 3] =
                            std::array::from_fn(|a| if a < d { h * ray.dir[a] / vs[a] } else { 0.0 });
                        Segment {
                            start: p0,
                            delta: step.map(|x| x as f32),
                            n: n as u32,
                            weight: (h * scale) as f32,
                        }
                    }
                }
            })
            .collect();
        RayProjector { dims: d, voxels: scan.voxels, segments, rays_per_view: scan.rays_per_view() }
    }

    pub fn n_rays(&self) -> usize {
        self.segments.len()
    }
    pub fn n_voxels(&self) -> usize {
        self.voxels.iter().product()
    }
    pub fn rays_per_view(&self) -> usize {
        self.rays_per_view
    }
    /// 2 or 3.
    pub fn dims(&self) -> usize {
        self.dims
    }
    /// [nx, ny, nz] (nz = 1 in 2D).
    pub fn voxels(&self) -> [usize; 3] {
        self.voxels
    }
    /// Ray `i` as sampled, in voxel coordinates (voxel centre i at coordinate i): the first
    /// sample, the step from one sample to the next, the number of samples (0: the ray misses)
    /// and the weight (step length × measurement scale). The GPU projector uploads these, so
    /// both projectors sample the same points.
    pub fn segment(&self, i: usize) -> ([f32; 3], [f32; 3], u32, f32) {
        let s = &self.segments[i];
        (s.start, s.delta, s.n, s.weight)
    }

    /// y = A x for all rays.
    pub fn forward(&self, volume: &[f32], out: &mut [f32]) {
        self.forward_range(volume, 0..self.n_rays(), out);
    }

    /// The back-projection of all rays: out = Aᵀ values (overwritten).
    pub fn adjoint(&self, values: &[f32], out: &mut [f32]) {
        self.adjoint_range(0..self.n_rays(), values, out);
    }

    /// Measurements of rays `range` into `out` (len = range length).
    pub fn forward_range(&self, volume: &[f32], range: std::ops::Range<usize>, out: &mut [f32]) {
        assert_eq!(volume.len(), self.n_voxels(), "forward: volume has the wrong size");
        assert_eq!(out.len(), range.len(), "forward: output has the wrong size");
        self.forward_segments(volume, &self.segments[range], out);
    }

    /// The rays of `views` (each view's rays in detector order, the views in the order given),
    /// as one block: the subsets of ordered-subset SART. Views out of range panic (callers
    /// check them against the scan).
    fn view_segments(&self, views: &[usize]) -> Vec<Segment> {
        let rpv = self.rays_per_view;
        views.iter().flat_map(|&v| self.segments[v * rpv..(v + 1) * rpv].iter().copied()).collect()
    }

    /// Measurements of the rays of `views` into `out` (`views.len()` × rays per view), in the
    /// order of [`Self::adjoint_views`]. A single view gives [`Self::forward_range`]'s values.
    pub fn forward_views(&self, volume: &[f32], views: &[usize], out: &mut [f32]) {
        assert_eq!(volume.len(), self.n_voxels(), "forward: volume has the wrong size");
        assert_eq!(out.len(), views.len() * self.rays_per_view, "forward: output has the wrong size");
        self.forward_segments(volume, &self.view_segments(views), out);
    }

    /// out = Aᵀ values for the rays of `views` (laid out as [`Self::forward_views`] writes them);
    /// out is overwritten. A single view gives [`Self::adjoint_range`]'s values, bit for bit.
    pub fn adjoint_views(&self, views: &[usize], values: &[f32], out: &mut [f32]) {
        assert_eq!(out.len(), self.n_voxels(), "adjoint: volume has the wrong size");
        assert_eq!(values.len(), views.len() * self.rays_per_view, "adjoint: values have the wrong size");
        self.adjoint_segments(&self.view_segments(views), values, out);
    }

    fn forward_segments(&self, volume: &[f32], segments: &[Segment], out: &mut [f32]) {
        out.par_chunks_mut(256).zip(segments.par_chunks(256)).for_each(|(o, segs)| {
            for (y, s) in o.iter_mut().zip(segs) {
                *y = self.ray_sum(s, volume) * s.weight;
            }
        });
    }

    /// out = Aᵀ values for rays `range` (values has the range's length); out is overwritten.
    pub fn adjoint_range(&self, range: std::ops::Range<usize>, values: &[f32], out: &mut [f32]) {
        assert_eq!(out.len(), self.n_voxels(), "adjoint: volume has the wrong size");
        assert_eq!(values.len(), range.len(), "adjoint: values have the wrong size");
        self.adjoint_segments(&self.segments[range], values, out);
    }

    fn adjoint_segments(&self, segs: &[Segment], values: &[f32], out: &mut [f32]) {
        let chunk = segs.len().div_ceil(SCATTER_CHUNKS).max(1);
        let n = self.n_voxels();
        let mut partial: Vec<Vec<f32>> = segs
            .par_chunks(chunk)
            .zip(values.par_chunks(chunk))
            .map(|(ss, vs)| {
                let mut buf = vec![0.0f32; n];
                for (s, &v) in ss.iter().zip(vs) {
                    let c = v * s.weight;
                    if c != 0.0 {
                        self.walk(s, |idx, w| buf[idx] += c * w);
                    }
                }
                buf
            })
            .collect();
        out.iter_mut().for_each(|o| *o = 0.0);
        for p in partial.iter_mut() {
            out.par_chunks_mut(8192).zip(p.par_chunks(8192)).for_each(|(o, q)| {
                for (a, b) in o.iter_mut().zip(q) {
                    *a += b;
                }
            });
        }
    }

    /// Calls `f(voxel index, interpolation weight)` for every sample of `s`, in order.
    #[inline]
    fn walk(&self, s: &Segment, mut f: impl FnMut(usize, f32)) {
        for k in 0..s.n {
            self.taps(sample(s, k), &mut f);
        }
    }

    /// Σ_k interp(x_k) along `s` (without the weight): each sample's taps are summed first and
    /// then added to the ray's total, as cuda/ct.cu's `ct_interp` does; that keeps the ray's
    /// running sum off the critical path of every tap.
    #[inline]
    fn ray_sum(&self, s: &Segment, volume: &[f32]) -> f32 {
        let mut acc = 0.0f32;
        for k in 0..s.n {
            let mut v = 0.0f32;
            self.taps(sample(s, k), |idx, w| v += w * volume[idx]);
            acc += v;
        }
        acc
    }

    /// Calls `f(voxel index, interpolation weight)` for the interpolation taps of point `p`
    /// (voxel coordinates): z, then y, then x, each low corner first, weights `wx · wy · wz`,
    /// skipping taps outside the grid. A 2D scan is the 3D case with nz = 1 and every sample at
    /// z = 0: its z weights are exactly 1 and 0 (the second outside the grid), so it reads the
    /// same four voxels with the same weights.
    ///
    /// A point whose whole interpolation cell lies inside the grid (most of them) takes a path
    /// with no per-tap bounds checks; it visits the same taps in the same order with the same
    /// f32 weights (truncation equals floor for p ≥ 0), so both paths give bit-identical sums.
    #[inline(always)]
    fn taps(&self, p: [f32; 3], mut f: impl FnMut(usize, f32)) {
        let [nx, ny, nz] = self.voxels;
        let flat = nz == 1;
        let (sy, sz) = (nx, nx * ny);
        // the cell [x0, x0 + 1] is inside the grid along an axis when 0 ≤ p < n − 1
        if p[0] >= 0.0 && p[0] < (nx - 1) as f32 && p[1] >= 0.0 && p[1] < (ny - 1) as f32 {
            // the z planes the cell spans: one in 2D (p_z = 0, wz = 1 exactly), two in 3D
            let plane = if flat {
                (p[2] == 0.0).then_some((0, 0.0, 1))
            } else {
                (p[2] >= 0.0 && p[2] < (nz - 1) as f32)
                    .then(|| (p[2] as usize, p[2] - (p[2] as usize) as f32, 2))
            };
            if let Some((z0, tz, planes)) = plane {
                let (x0, y0) = (p[0] as usize, p[1] as usize);
                let (tx, ty) = (p[0] - x0 as f32, p[1] - y0 as f32);
                let (ux, uy) = (1.0 - tx, 1.0 - ty);
                let b = x0 + sy * y0 + sz * z0;
                for (o, wz) in [(0, 1.0 - tz), (sz, tz)].into_iter().take(planes) {
                    f(b + o, ux * uy * wz);
                    f(b + o + 1, tx * uy * wz);
                    f(b + o + sy, ux * ty * wz);
                    f(b + o + sy + 1, tx * ty * wz);
                }
                return;
            }
        }
        let (nxi, nyi, nzi) = (nx as i64, ny as i64, nz as i64);
        let f0 = p.map(f32::floor);
        let (tx, ty, tz) = (p[0] - f0[0], p[1] - f0[1], p[2] - f0[2]);
        let (x0, y0, z0) = (f0[0] as i64, f0[1] as i64, f0[2] as i64);
        for (dz, wz) in [(0, 1.0 - tz), (1, tz)] {
            let z = z0 + dz;
            if z < 0 || z >= nzi {
                continue;
            }
            for (dy, wy) in [(0, 1.0 - ty), (1, ty)] {
                let y = y0 + dy;
                if y < 0 || y >= nyi {
                    continue;
                }
                for (dx, wx) in [(0, 1.0 - tx), (1, tx)] {
                    let x = x0 + dx;
                    if x < 0 || x >= nxi {
                        continue;
                    }
                    f((x + nxi * (y + nyi * z)) as usize, wx * wy * wz);
                }
            }
        }
    }
}

/// Sample `k` of `s` at start + k·delta (not p += delta, which drifts by 4e-4 over a 512² ray):
/// the same f32 roundings as cuda/ct.cu's `ct_sample`.
#[inline(always)]
fn sample(s: &Segment, k: u32) -> [f32; 3] {
    let kf = k as f32;
    [s.start[0] + kf * s.delta[0], s.start[1] + kf * s.delta[1], s.start[2] + kf * s.delta[2]]
}
/// `fit ct`'s loss on the host (grid rendering): the image σ(z), r = A σ(z) − measured over the
/// m rays, the loss ½·mean(r²), and ∂L/∂z = Aᵀ(r / m) · σ'(z).
///
/// With a ramp weight β ([`RayLoss::with_ramp`]) the residual is measured in the metric
/// W = I + β·F, F the ramp filter of filtered back-projection along each detector row (Ram–Lak,
/// detector pixels as the unit, zero-padded to twice the row): L = ½·rᵀ W r / m and
/// ∂L/∂z = Aᵀ(W r / m) · σ'(z). F is symmetric positive semidefinite, so W only re-weights the
/// residual's frequencies (the same minimisers on consistent data); but AᵀFA is close to the
/// identity where AᵀA is a 1/|ω| blur, so the gradient steps see a far better conditioned
/// problem (Landweber with FBP's filter as preconditioner).
pub struct RayLoss<'a> {
    pub projector: &'a RayProjector,
    pub measured: &'a [f32],
    image: Vec<f32>,
    predicted: Vec<f32>,
    back: Vec<f32>,
    /// (detector pixels a row, β) of the ramp-weighted metric.
    ramp: Option<(usize, f64)>,
    filtered: Vec<f64>,
}

impl<'a> RayLoss<'a> {
    pub fn new(projector: &'a RayProjector, measured: &'a [f32]) -> Self {
        RayLoss {
            projector,
            measured,
            image: vec![],
            predicted: vec![0.0; projector.n_rays()],
            back: vec![0.0; projector.n_voxels()],
            ramp: None,
            filtered: vec![],
        }
    }

    /// Measures the residual in I + β·F (see the type's docs); `nu` is the detector's pixels a
    /// row (the measurements are rows of `nu`). β = 0 is the plain loss.
    pub fn with_ramp(mut self, nu: usize, beta: f64) -> Self {
        self.ramp = (beta > 0.0 && nu > 0 && self.predicted.len() % nu == 0).then_some((nu, beta));
        self
    }
}

impl super::GridLoss for RayLoss<'_> {
    fn describe(&self) -> String {
        let metric = if self.ramp.is_some() { ", ramp-weighted loss" } else { "" };
        format!("cpu ({} threads{metric})", rayon::current_num_threads())
    }

    fn set_ramp_weight(&mut self, beta: f64) -> crate::Result<()> {
        match &mut self.ramp {
            Some((_, b)) => *b = beta,
            None => {
                return Err(crate::Error::Config(
                    "set_ramp_weight: the loss was made without a ramp weight".into(),
                ))
            }
        }
        Ok(())
    }

    fn sigmoid_loss_and_gradient(&mut self, z: &[f32], dz: &mut [f32]) -> crate::Result<f64> {
        use crate::train::loss::{sigmoid, through_sigmoid};
        self.image.clear();
        self.image.extend(z.iter().map(|&v| sigmoid(v)));
        self.projector.forward(&self.image, &mut self.predicted);
        let m = self.predicted.len() as f32;
        let mut total = 0.0f64;
        for (p, &y) in self.predicted.iter_mut().zip(self.measured) {
            let r = *p - y;
            total += 0.5 * (r as f64) * (r as f64);
            *p = r / m;
        }
        if let Some((nu, beta)) = self.ramp {
            // predicted holds r / m: add β·F(r / m), and ½·β·rᵀF r to the sum
            self.filtered.clear();
            self.filtered.extend(self.predicted.iter().map(|&v| v as f64));
            crate::recon::ramp_filter(&mut self.filtered, nu, 1.0);
            let m2 = (m as f64) * (m as f64);
            let mut quad = 0.0f64;
            for (p, &f) in self.predicted.iter_mut().zip(&self.filtered) {
                quad += f * *p as f64;
                *p += (beta * f) as f32;
            }
            total += 0.5 * beta * quad * m2;
        }
        self.projector.adjoint(&self.predicted, &mut self.back);
        for ((d, &g), &p) in dz.iter_mut().zip(&self.back).zip(&self.image) {
            *d = through_sigmoid(g, p);
        }
        // the loss as f32, as the step reports it
        Ok((total / m as f64) as f32 as f64)
    }

    fn image(&mut self, out: &mut Vec<f32>) -> crate::Result<()> {
        out.clear();
        out.extend_from_slice(&self.image);
        Ok(())
    }
}
