//! Regularisers on the field: total variation on the rendered grid (MRI, CT with grid
//! rendering) and along each ray's samples (CT with ray rendering).
//!
//! |·| is smoothed with Charbonnier's ε so the gradient is defined everywhere:
//!
//! ```text
//! isotropic    TV(p) = mean_v ( √(Σ_a (∂_a p)_v² + ε²) − ε )
//! anisotropic  TV(p) = mean_v Σ_a ( √((∂_a p)_v² + ε²) − ε )
//! ```
//!
//! with forward differences (∂_a p)_v = p[v + e_a] − p[v], 0 on the last plane of each axis
//! (Neumann boundary). The term added to the loss is λ·TV(p), and λ·∂TV/∂p is added to ∂L/∂p
//! (the jobs then take it through σ with the data term's gradient). Along rays, the same
//! smoothed |·| of the differences between consecutive samples of a ray, summed along the ray
//! and averaged over the rays.
//!
//! Every sum runs over fixed blocks in a fixed order: results do not depend on the thread count.

use rayon::prelude::*;

/// Voxels per block of the parallel passes.
const BLOCK: usize = 4096;

/// A total-variation term: weight λ, isotropic or anisotropic, Charbonnier ε.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TotalVariation {
    pub weight: f32,
    pub anisotropic: bool,
    pub epsilon: f32,
}

/// The default Charbonnier ε (intensities are in [0, 1]).
pub const DEFAULT_EPSILON: f32 = 1e-3;

/// serde helpers of the `[train]` tables' `tv`, `tv_anisotropic` and `tv_epsilon` (written only
/// when they differ from the defaults, so a run without TV keeps its old `run.toml`).
pub fn default_epsilon() -> f32 {
    DEFAULT_EPSILON
}
pub fn is_default_epsilon(e: &f32) -> bool {
    *e == DEFAULT_EPSILON
}
pub fn is_zero(v: &f32) -> bool {
    *v == 0.0
}
pub fn is_false(b: &bool) -> bool {
    !*b
}

impl TotalVariation {
    /// `None` when the weight is 0 (no term).
    pub fn new(weight: f32, anisotropic: bool, epsilon: f32) -> Option<Self> {
        (weight != 0.0).then_some(TotalVariation { weight, anisotropic, epsilon })
    }

    /// The settings' check: λ ≥ 0 and ε > 0, finite; `what` names the table.
    pub fn validate(weight: f32, epsilon: f32, what: &str) -> crate::Result<()> {
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(crate::Error::Config(format!("{what}.tv must be finite and ≥ 0, got {weight}")));
        }
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(crate::Error::Config(format!(
                "{what}.tv_epsilon must be finite and > 0, got {epsilon}"
            )));
        }
        Ok(())
    }

    /// λ·TV(`p`) on the grid `dims` (x fastest, then y, then z; 1 for absent axes), and
    /// λ·∂TV/∂p added to `dp`.
    pub fn add_grid(&self, p: &[f32], dims: [usize; 3], dp: &mut [f32]) -> f64 {
        let n = p.len();
        assert_eq!(n, dims.iter().product::<usize>(), "TV: the image does not fill its grid");
        assert_eq!(dp.len(), n);
        let strides = [1, dims[0], dims[0] * dims[1]];
        let axes: Vec<usize> = (0..3).filter(|&a| dims[a] > 1).collect();
        let na = axes.len();
        if na == 0 {
            return 0.0;
        }
        let eps = self.epsilon as f64;
        let coord = |v: usize, a: usize| v / strides[a] % dims[a];
        // pass 1: per voxel, ∂r_v/∂(∂_a p)_v for each axis, and the block sums of r
        let mut g = vec![0.0f32; n * na];
        let sums: Vec<f64> = g
            .par_chunks_mut(BLOCK * na)
            .enumerate()
            .map(|(b, gb)| {
                let mut s = 0.0f64;
                for (k, gv) in gb.chunks_exact_mut(na).enumerate() {
                    let v = b * BLOCK + k;
                    let mut d = [0.0f64; 3];
                    for (j, &a) in axes.iter().enumerate() {
                        if coord(v, a) + 1 < dims[a] {
                            d[j] = p[v + strides[a]] as f64 - p[v] as f64;
                        }
                    }
                    if self.anisotropic {
                        for j in 0..na {
                            let r = (d[j] * d[j] + eps * eps).sqrt();
                            s += r - eps;
                            gv[j] = (d[j] / r) as f32;
                        }
                    } else {
                        let r = (d[..na].iter().map(|x| x * x).sum::<f64>() + eps * eps).sqrt();
                        s += r - eps;
                        for j in 0..na {
                            gv[j] = (d[j] / r) as f32;
                        }
                    }
                }
                s
            })
            .collect();
        // pass 2: ∂/∂p[v] = Σ_a g_a(v − e_a) − g_a(v), a gather (no two blocks write one voxel)
        let scale = self.weight / n as f32;
        dp.par_chunks_mut(BLOCK).enumerate().for_each(|(b, db)| {
            for (k, dv) in db.iter_mut().enumerate() {
                let v = b * BLOCK + k;
                let mut acc = 0.0f32;
                for (j, &a) in axes.iter().enumerate() {
                    acc -= g[v * na + j];
                    if coord(v, a) > 0 {
                        acc += g[(v - strides[a]) * na + j];
                    }
                }
                *dv += scale * acc;
            }
        });
        self.weight as f64 * sums.iter().sum::<f64>() / n as f64
    }

    /// λ·TV along rays: `p` holds `s` consecutive samples per ray; the smoothed |·| of each
    /// difference between neighbouring samples, summed along a ray and averaged over the rays;
    /// λ·∂/∂p added to `dp`.
    pub fn add_along_rays(&self, p: &[f32], s: usize, dp: &mut [f32]) -> f64 {
        assert!(s > 0 && p.len().is_multiple_of(s) && dp.len() == p.len());
        let rays = p.len() / s;
        let eps = self.epsilon as f64;
        let scale = self.weight as f64 / rays as f64;
        let sums: Vec<f64> = p
            .par_chunks(s * 64)
            .zip(dp.par_chunks_mut(s * 64))
            .map(|(pb, db)| {
                let mut total = 0.0f64;
                for (pr, dr) in pb.chunks_exact(s).zip(db.chunks_exact_mut(s)) {
                    for j in 0..s - 1 {
                        let d = pr[j + 1] as f64 - pr[j] as f64;
                        let r = (d * d + eps * eps).sqrt();
                        total += r - eps;
                        let g = (scale * d / r) as f32;
                        dr[j + 1] += g;
                        dr[j] -= g;
                    }
                }
                total
            })
            .collect();
        scale * sums.iter().sum::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::CounterRng;

    /// ∂(λ·TV)/∂p against central differences in f64, isotropic and anisotropic, 2D and 3D
    /// grids and rays, on images with flat regions (where the smoothing matters) and edges.
    #[test]
    fn gradient_matches_finite_differences() {
        let rng = CounterRng::new(11, 3);
        for dims in [[7, 5, 1], [4, 3, 5], [9, 1, 1]] {
            let n: usize = dims.iter().product();
            let p: Vec<f32> = (0..n)
                .map(|i| if rng.uniform(i as u64) < 0.3 { 0.5 } else { rng.uniform(1000 + i as u64) })
                .collect();
            for anisotropic in [false, true] {
                let tv = TotalVariation { weight: 0.7, anisotropic, epsilon: 0.05 };
                let mut dp = vec![0.0; n];
                let value = tv.add_grid(&p, dims, &mut dp);
                let f = |q: &[f32]| tv.add_grid(q, dims, &mut vec![0.0; n]);
                assert!((value - f(&p)).abs() < 1e-12);
                for j in 0..n {
                    let h = 1e-3f32;
                    let (mut a, mut b) = (p.clone(), p.clone());
                    a[j] += h;
                    b[j] -= h;
                    let fd = (f(&a) - f(&b)) / (a[j] as f64 - b[j] as f64);
                    assert!(
                        (fd - dp[j] as f64).abs() < 2e-3 * fd.abs().max(0.01),
                        "{dims:?} aniso {anisotropic} voxel {j}: analytic {} fd {fd}",
                        dp[j]
                    );
                }
            }
        }
        let (s, rays) = (6, 4);
        let p: Vec<f32> = (0..s * rays).map(|i| rng.uniform(5000 + i as u64)).collect();
        let tv = TotalVariation { weight: 1.3, anisotropic: false, epsilon: 0.02 };
        let mut dp = vec![0.0; p.len()];
        tv.add_along_rays(&p, s, &mut dp);
        for j in 0..p.len() {
            let h = 1e-3f32;
            let (mut a, mut b) = (p.clone(), p.clone());
            a[j] += h;
            b[j] -= h;
            let fa = tv.add_along_rays(&a, s, &mut vec![0.0; p.len()]);
            let fb = tv.add_along_rays(&b, s, &mut vec![0.0; p.len()]);
            let fd = (fa - fb) / (a[j] as f64 - b[j] as f64);
            assert!(
                (fd - dp[j] as f64).abs() < 2e-3 * fd.abs().max(0.01),
                "ray sample {j}: {} vs {fd}",
                dp[j]
            );
        }
    }

    /// A constant image has no variation; a step edge of height h across a column has about
    /// λ·h per edge voxel, averaged over the image.
    #[test]
    fn values_are_the_definition() {
        let tv = TotalVariation { weight: 2.0, anisotropic: false, epsilon: 1e-6 };
        let mut dp = vec![0.0; 64];
        assert!(tv.add_grid(&[0.3; 64], [8, 8, 1], &mut dp).abs() < 1e-9);
        assert!(dp.iter().all(|&g| g == 0.0));
        let step: Vec<f32> = (0..64).map(|v| if v % 8 < 4 { 0.0 } else { 0.5 }).collect();
        let value = tv.add_grid(&step, [8, 8, 1], &mut dp);
        // 8 rows with one jump of 0.5 each, over 64 voxels
        assert!((value - 2.0 * 8.0 * 0.5 / 64.0).abs() < 1e-5, "{value}");
    }
}
