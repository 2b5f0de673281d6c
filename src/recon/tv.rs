//! Total variation and TIGRE's steepest descent on it (the TV half of ASD-POCS).
//!
//! The isotropic TV of a volume (x fastest, then y, then z; 2-D volumes have nz = 1) with
//! backward differences, as TIGRE's `POCS_TV.cu` takes it:
//!
//! ```text
//! TV(f) = Σ_v |∇f(v)|,   ∇f(v) = (f(v) − f(v − e_x), f(v) − f(v − e_y), f(v) − f(v − e_z))
//! ```
//!
//! where a difference whose neighbour lies outside the grid is 0. Its gradient at v collects
//! v's own term and the terms of its three forward neighbours:
//!
//! ```text
//! ∂TV/∂f(v) = Σ_a ∇_a f(v) / (|∇f(v)| + ε) − Σ_a ∇_a f(v + e_a) / (|∇f(v + e_a)| + ε)
//! ```
//!
//! with ε = 1e-8 outside the square root (TIGRE's guard against 0/0; where |∇f| ≫ ε it is the
//! exact derivative, which `tests/recon_tv.rs` checks against finite differences).
//! [`minimize_tv`] takes `steps` normalised steepest-descent steps of length `step`:
//! f ← f − step · g/‖g‖₂ (TIGRE's `minimizeTV`; ‖g‖² gets 1e-7 added, as there).

use rayon::prelude::*;

const EPS: f64 = 1e-8;

/// Backward differences of `f` at voxel (x, y, z), zero where the neighbour is outside.
#[inline]
fn backward(f: &[f32], dims: [usize; 3], x: usize, y: usize, z: usize) -> [f64; 3] {
    let [nx, ny, _] = dims;
    let i = x + nx * (y + ny * z);
    let v = f[i] as f64;
    [
        if x > 0 { v - f[i - 1] as f64 } else { 0.0 },
        if y > 0 { v - f[i - nx] as f64 } else { 0.0 },
        if z > 0 { v - f[i - nx * ny] as f64 } else { 0.0 },
    ]
}

fn norm3(d: [f64; 3]) -> f64 {
    (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
}

fn check(f: &[f32], dims: [usize; 3]) {
    assert_eq!(f.len(), dims.iter().product::<usize>(), "tv: the volume does not have dims' size");
}

/// TV(f), summed in a fixed order (rows in parallel, then the rows' sums in order).
pub fn tv(f: &[f32], dims: [usize; 3]) -> f64 {
    check(f, dims);
    let [nx, ny, nz] = dims;
    let rows: Vec<f64> = (0..ny * nz)
        .into_par_iter()
        .map(|r| (0..nx).map(|x| norm3(backward(f, dims, x, r % ny, r / ny))).sum())
        .collect();
    rows.iter().sum()
}

/// ∂TV/∂f into `out` (see the module docs).
pub fn tv_gradient(f: &[f32], dims: [usize; 3], out: &mut [f32]) {
    check(f, dims);
    assert_eq!(out.len(), f.len(), "tv_gradient: output has the wrong size");
    let [nx, ny, nz] = dims;
    out.par_chunks_mut(nx).enumerate().for_each(|(r, row)| {
        let (y, z) = (r % ny, r / ny);
        for (x, o) in row.iter_mut().enumerate() {
            let d = backward(f, dims, x, y, z);
            let mut g = (d[0] + d[1] + d[2]) / (norm3(d) + EPS);
            if x + 1 < nx {
                let d = backward(f, dims, x + 1, y, z);
                g -= d[0] / (norm3(d) + EPS);
            }
            if y + 1 < ny {
                let d = backward(f, dims, x, y + 1, z);
                g -= d[1] / (norm3(d) + EPS);
            }
            if z + 1 < nz {
                let d = backward(f, dims, x, y, z + 1);
                g -= d[2] / (norm3(d) + EPS);
            }
            *o = g as f32;
        }
    });
}

/// `steps` steepest-descent steps on TV, each of length `step` (in the units of f, L2 over
/// the volume): TIGRE's `minimizeTV(f, dtvg, ng)`.
pub fn minimize_tv(f: &mut [f32], dims: [usize; 3], step: f32, steps: usize) {
    let mut g = vec![0.0f32; f.len()];
    for _ in 0..steps {
        tv_gradient(f, dims, &mut g);
        let norm =
            (crate::train::metrics::ordered_sum(g.len(), |i| (g[i] as f64) * (g[i] as f64)) + 1e-7).sqrt();
        let scale = (step as f64 / norm) as f32;
        f.par_iter_mut().zip(&g).for_each(|(v, &d)| *v -= scale * d);
    }
}
