//! SART and ordered-subset SART (OS-SART) with positivity.
//!
//! One sub-iteration takes a subset S of the views and updates every voxel j by
//!
//! ```text
//! x_j ← max(0, x_j + λ · Σ_{i∈S} a_ij (b_i − (A x)_i) / r_i  /  c_j(S))
//! ```
//!
//! with r_i = Σ_j a_ij (the ray's row sum; rays with r_i ≈ 0 are skipped) and
//! c_j(S) = Σ_{i∈S} a_ij (the voxel's column sum over the subset). One subset per view is SART
//! (Andersen & Kak 1984), one subset of all views is SIRT, anything between is OS-SART (TIGRE's
//! `OS_SART` with `blocksize` = views / subsets). Subset s holds the views v with v mod S = s,
//! so every subset spans the whole angular range; the subsets are visited in a spread-out order
//! (a stride near S/φ, coprime with S). λ is multiplied by `relaxation_decay` after every pass.

use crate::operator::ray::RayProjector;
use crate::{Error, Result};
use rayon::prelude::*;

/// SART settings.
#[derive(Clone, Copy, Debug)]
pub struct SartOptions {
    /// Passes over all views.
    pub iterations: usize,
    /// Relaxation λ.
    pub relaxation: f32,
    /// Ordered subsets: 0 (the default) for one per view (SART), 1 for SIRT.
    pub subsets: usize,
    /// λ is multiplied by this after every pass (TIGRE's `lambda_red`); 1 keeps it fixed.
    pub relaxation_decay: f32,
}

impl Default for SartOptions {
    fn default() -> Self {
        SartOptions { iterations: 20, relaxation: 1.0, subsets: 0, relaxation_decay: 1.0 }
    }
}

/// Largest number of passes any iterative reconstruction accepts.
pub const MAX_ITERATIONS: usize = 100_000;

impl SartOptions {
    /// Range checks, naming the flags: iterations 1..=100,000, λ in (0, 2), subsets
    /// 0..=views, decay in (0, 1].
    pub fn validate(&self, views: usize) -> Result<()> {
        check_iterations("--iterations", self.iterations)?;
        check_relaxation(self.relaxation, self.relaxation_decay)?;
        check_subsets(self.subsets, views)
    }
}

pub(crate) fn check_iterations(flag: &str, n: usize) -> Result<()> {
    if n == 0 || n > MAX_ITERATIONS {
        return Err(Error::Config(format!("{flag} must be between 1 and {MAX_ITERATIONS}, got {n}")));
    }
    Ok(())
}

pub(crate) fn check_relaxation(lambda: f32, decay: f32) -> Result<()> {
    if !(lambda > 0.0 && lambda < 2.0) {
        return Err(Error::Config(format!(
            "--relaxation must be in (0, 2) (SART converges for 0 < λ < 2), got {lambda}"
        )));
    }
    if !(decay > 0.0 && decay <= 1.0) {
        return Err(Error::Config(format!("--relaxation-decay must be in (0, 1], got {decay}")));
    }
    Ok(())
}

pub(crate) fn check_subsets(subsets: usize, views: usize) -> Result<()> {
    if subsets > views {
        return Err(Error::Config(format!(
            "--subsets {subsets}: the scan has only {views} views (0 or {views}: one view a subset, SART; 1: SIRT)"
        )));
    }
    Ok(())
}

/// SART or OS-SART ([`SartOptions::subsets`]) from zero, clipped to ≥ 0 after every update.
/// With one subset per view this is exactly the SART `recon sart` always ran.
pub fn sart(projector: &RayProjector, proj: &[f32], opts: SartOptions) -> Vec<f32> {
    let engine = OsSart::new(projector, proj, opts.subsets);
    let mut x = vec![0.0f32; projector.n_voxels()];
    let mut lambda = opts.relaxation;
    for _ in 0..opts.iterations {
        engine.pass(&mut x, lambda);
        lambda *= opts.relaxation_decay;
    }
    x
}

/// The fixed parts of (OS-)SART: row sums, the subsets and their order, cached column sums.
pub(crate) struct OsSart<'a> {
    projector: &'a RayProjector,
    proj: &'a [f32],
    row_sums: Vec<f32>,
    /// The subsets in the order they are visited, each a list of views.
    order: Vec<Vec<usize>>,
    /// Column sums per subset (in `order`'s order), when they fit in 2^26 floats.
    cached: Vec<Vec<f32>>,
}

impl<'a> OsSart<'a> {
    /// `subsets`: 0 for one per view.
    pub(crate) fn new(projector: &'a RayProjector, proj: &'a [f32], subsets: usize) -> Self {
        let n = projector.n_voxels();
        let rpv = projector.rays_per_view();
        let views = projector.n_rays() / rpv;
        let s = if subsets == 0 { views } else { subsets.min(views) };
        let ones_vol = vec![1.0f32; n];
        let mut row_sums = vec![0.0f32; projector.n_rays()];
        projector.forward(&ones_vol, &mut row_sums);
        // spread-out order: stride near s/φ, coprime with s
        let mut stride = ((s as f64 / 1.618).round() as usize).max(1);
        while gcd(stride, s) != 1 {
            stride += 1;
        }
        let order: Vec<Vec<usize>> =
            (0..s).map(|k| (k * stride) % s).map(|first| (first..views).step_by(s).collect()).collect();
        let mut engine = OsSart { projector, proj, row_sums, order, cached: vec![] };
        if s.saturating_mul(n) <= 1 << 26 {
            engine.cached = engine
                .order
                .iter()
                .map(|subset| {
                    let mut c = vec![0.0; n];
                    engine.column_sums(subset, &mut c);
                    c
                })
                .collect();
        }
        engine
    }

    fn column_sums(&self, subset: &[usize], out: &mut [f32]) {
        let rpv = self.projector.rays_per_view();
        let ones = vec![1.0f32; subset.len() * rpv];
        if let [v] = subset {
            self.projector.adjoint_range(v * rpv..(v + 1) * rpv, &ones, out);
        } else {
            self.projector.adjoint_views(subset, &ones, out);
        }
    }

    /// One pass over every subset with relaxation `lambda`, positivity after each update.
    pub(crate) fn pass(&self, x: &mut [f32], lambda: f32) {
        let n = self.projector.n_voxels();
        let rpv = self.projector.rays_per_view();
        let mut back = vec![0.0f32; n];
        let mut cs = vec![0.0f32; if self.cached.is_empty() { n } else { 0 }];
        for (k, subset) in self.order.iter().enumerate() {
            let mut y = vec![0.0f32; subset.len() * rpv];
            if let [v] = subset.as_slice() {
                let range = v * rpv..(v + 1) * rpv;
                self.projector.forward_range(x, range.clone(), &mut y);
                for ((yi, &m), &rs) in
                    y.iter_mut().zip(&self.proj[range.clone()]).zip(&self.row_sums[range.clone()])
                {
                    *yi = if rs > 1e-8 { (m - *yi) / rs } else { 0.0 };
                }
                self.projector.adjoint_range(range, &y, &mut back);
            } else {
                self.projector.forward_views(x, subset, &mut y);
                for (chunk, &v) in y.chunks_mut(rpv).zip(subset) {
                    let range = v * rpv..(v + 1) * rpv;
                    for ((yi, &m), &rs) in
                        chunk.iter_mut().zip(&self.proj[range.clone()]).zip(&self.row_sums[range])
                    {
                        *yi = if rs > 1e-8 { (m - *yi) / rs } else { 0.0 };
                    }
                }
                self.projector.adjoint_views(subset, &y, &mut back);
            }
            let c: &[f32] = if self.cached.is_empty() {
                self.column_sums(subset, &mut cs);
                &cs
            } else {
                &self.cached[k]
            };
            x.par_iter_mut().zip(&back).zip(c).for_each(|((xi, &b), &c)| {
                if c > 1e-8 {
                    *xi = (*xi + lambda * b / c).max(0.0);
                }
            });
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
