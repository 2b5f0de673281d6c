//! CGLS: conjugate gradients on the normal equations AᵀA x = Aᵀb, without forming them
//! (Björck; TIGRE's `CGLS`). From x₀ = 0:
//!
//! ```text
//! r = b − A x,  p = s = Aᵀ r,  γ = ‖s‖²
//! repeat:  q = A p,  α = γ / ‖q‖²,  x += α p,  r −= α q,
//!          s = Aᵀ r,  γ' = ‖s‖²,  p = s + (γ'/γ) p,  γ = γ'
//! ```
//!
//! The k-th iterate minimises ‖b − A x‖ over the k-th Krylov space, so the residual never
//! grows; the number of iterations is the regularisation (early stopping). No positivity.
//! Vectors are f32 (the projector's), every inner product is summed in f64 in a fixed order.

use super::sart::check_iterations;
use crate::operator::ray::RayProjector;
use crate::train::metrics::ordered_sum;
use crate::{Error, Result};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug)]
pub struct CglsOptions {
    pub iterations: usize,
}

impl Default for CglsOptions {
    fn default() -> Self {
        CglsOptions { iterations: 20 }
    }
}

/// The reconstruction and ‖b − A x_k‖ for k = 0 (x = 0) to the last iteration.
pub struct CglsOutcome {
    pub volume: Vec<f32>,
    pub residuals: Vec<f64>,
    /// Iterations run: fewer than asked when the residual's gradient vanished (exact solve).
    pub iterations: usize,
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    ordered_sum(a.len(), |i| a[i] as f64 * b[i] as f64)
}

/// CGLS on `projector` x = `proj`.
pub fn cgls(projector: &RayProjector, proj: &[f32], opts: CglsOptions) -> Result<CglsOutcome> {
    check_iterations("--iterations", opts.iterations)?;
    if proj.len() != projector.n_rays() {
        return Err(Error::Input(format!(
            "CGLS: {} measurements for {} rays",
            proj.len(),
            projector.n_rays()
        )));
    }
    let n = projector.n_voxels();
    let mut x = vec![0.0f32; n];
    let mut r = proj.to_vec();
    let mut s = vec![0.0f32; n];
    projector.adjoint(&r, &mut s);
    let mut p = s.clone();
    let mut gamma = dot(&s, &s);
    let mut q = vec![0.0f32; r.len()];
    let mut residuals = vec![dot(&r, &r).sqrt()];
    let mut done = 0;
    for _ in 0..opts.iterations {
        if !(gamma > 0.0) {
            break;
        }
        projector.forward(&p, &mut q);
        let qq = dot(&q, &q);
        if !(qq > 0.0) {
            break;
        }
        let alpha = (gamma / qq) as f32;
        x.par_iter_mut().zip(&p).for_each(|(xi, &pi)| *xi += alpha * pi);
        r.par_iter_mut().zip(&q).for_each(|(ri, &qi)| *ri -= alpha * qi);
        projector.adjoint(&r, &mut s);
        let gamma_new = dot(&s, &s);
        let beta = (gamma_new / gamma) as f32;
        p.par_iter_mut().zip(&s).for_each(|(pi, &si)| *pi = si + beta * *pi);
        gamma = gamma_new;
        residuals.push(dot(&r, &r).sqrt());
        done += 1;
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::Input("CGLS diverged: the reconstruction has non-finite voxels".into()));
    }
    Ok(CglsOutcome { volume: x, residuals, iterations: done })
}
