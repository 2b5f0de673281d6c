//! ASD-POCS (Sidky & Pan 2008), as TIGRE ships it (`ASD_POCS.m`, `OS_ASD_POCS`, and
//! `pocs_algorithms.py`), with TIGRE's defaults.
//!
//! Each iteration is a data step and a TV step:
//!
//! ```text
//! f₀ = f;  one (OS-)SART pass with relaxation β, positivity       (POCS: data + f ≥ 0)
//! dd = ‖A f − b‖,  dp = ‖f − f₀‖;  on the first iteration dtvg = α · dp
//! f₀ = f;  minimize_tv(f, dtvg, ng)                                 (ASD: ng TV steps)
//! dg = ‖f − f₀‖;  if dg > r_max · dp and dd > ε: dtvg ← dtvg · α_red
//! β ← β · β_red
//! stop when (c < −0.99 and dd ≤ ε) or β < 0.005 or the iterations are done,
//!   c = ⟨f_TV − f₀, f_SART − f_prev⟩ / max(dg · dp, 1e-6)
//! ```
//!
//! Defaults (TIGRE's): α = 0.002, α_red = 0.95, ng = 20, r_max = 0.95, β = 1, β_red = 0.99,
//! one view a subset (`blocksize` 1); ε = 0.2 ‖A·FDK(b) − b‖ (TIGRE's Python default; its
//! MATLAB code takes 0.2 ‖FDK(b)‖, an image norm compared with a projection norm). The TV steps
//! can leave voxels slightly below zero, and TIGRE returns them so; here the returned image is
//! clipped to ≥ 0 once more (the positivity constraint every iterate of the data step meets).

use super::sart::{check_iterations, check_relaxation, check_subsets, OsSart};
use super::tv::{minimize_tv, tv};
use crate::operator::ct_geometry::Scan;
use crate::operator::ray::RayProjector;
use crate::train::metrics::ordered_sum;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug)]
pub struct AsdPocsOptions {
    /// Outer iterations (data step + TV step).
    pub iterations: usize,
    /// TV steps per iteration (TIGRE's `TViter`, ng).
    pub tv_iterations: usize,
    /// The TV step as a fraction of the first data step's change (α).
    pub alpha: f64,
    /// Reduction of the TV step when it outweighs the data step (α_red).
    pub alpha_red: f64,
    /// Largest allowed ratio of the TV change to the data change (r_max).
    pub ratio: f64,
    /// SART relaxation β and its reduction per iteration.
    pub relaxation: f32,
    pub relaxation_decay: f32,
    /// Ordered subsets of the data step (0: one per view).
    pub subsets: usize,
    /// ε, the L2 projection error below which an image is accepted; `None`: 0.2 ‖A·FDK − b‖.
    pub max_l2_err: Option<f64>,
}

impl Default for AsdPocsOptions {
    fn default() -> Self {
        AsdPocsOptions {
            iterations: 20,
            tv_iterations: 20,
            alpha: 0.002,
            alpha_red: 0.95,
            ratio: 0.95,
            relaxation: 1.0,
            relaxation_decay: 0.99,
            subsets: 0,
            max_l2_err: None,
        }
    }
}

impl AsdPocsOptions {
    /// Range checks, naming the flags.
    pub fn validate(&self, views: usize) -> Result<()> {
        check_iterations("--iterations", self.iterations)?;
        check_iterations("--tv-iterations", self.tv_iterations)?;
        check_relaxation(self.relaxation, self.relaxation_decay)?;
        check_subsets(self.subsets, views)?;
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(Error::Config(format!("--alpha must be in (0, 1], got {}", self.alpha)));
        }
        if !(self.alpha_red > 0.0 && self.alpha_red <= 1.0) {
            return Err(Error::Config(format!("--alpha-red must be in (0, 1], got {}", self.alpha_red)));
        }
        if !(self.ratio > 0.0 && self.ratio <= 1.0) {
            return Err(Error::Config(format!("--ratio must be in (0, 1], got {}", self.ratio)));
        }
        if let Some(e) = self.max_l2_err {
            if !(e.is_finite() && e >= 0.0) {
                return Err(Error::Config(format!("--max-l2-err must be finite and ≥ 0, got {e}")));
            }
        }
        Ok(())
    }
}

/// What one iteration did (for tests and the log).
#[derive(Clone, Copy, Debug)]
pub struct AsdPocsIteration {
    /// ‖A f − b‖ after the data step.
    pub residual: f64,
    /// ‖Δf‖ of the data step and of the TV step.
    pub data_change: f64,
    pub tv_change: f64,
    /// The TV step length used (dtvg) and TV before and after the TV steps.
    pub tv_step: f64,
    pub tv_before: f64,
    pub tv_after: f64,
    /// The minimum voxel after the data step (≥ 0: positivity).
    pub min_after_data: f32,
}

pub struct AsdPocsOutcome {
    pub volume: Vec<f32>,
    pub epsilon: f64,
    pub history: Vec<AsdPocsIteration>,
    /// Why it stopped: "iterations", "converged" (c < −0.99 and dd ≤ ε) or "relaxation" (β < 0.005).
    pub stop: &'static str,
}

fn norm(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    ordered_sum(v.len(), |i| v[i] * v[i]).sqrt()
}

/// ASD-POCS on the scan's rays (`projector` built from `scan`).
pub fn asd_pocs(
    scan: &Scan,
    projector: &RayProjector,
    proj: &[f32],
    opts: AsdPocsOptions,
) -> Result<AsdPocsOutcome> {
    opts.validate(scan.n_views())?;
    if proj.len() != projector.n_rays() {
        return Err(Error::Input(format!(
            "ASD-POCS: {} measurements for {} rays",
            proj.len(),
            projector.n_rays()
        )));
    }
    let dims = projector.voxels();
    let residual = |f: &[f32]| -> f64 {
        let mut g = vec![0.0f32; proj.len()];
        projector.forward(f, &mut g);
        norm(g.iter().zip(proj).map(|(&a, &b)| a as f64 - b as f64))
    };
    let epsilon = match opts.max_l2_err {
        Some(e) => e,
        None => 0.2 * residual(&super::fbp(scan, proj)),
    };
    let engine = OsSart::new(projector, proj, opts.subsets);
    let mut f = vec![0.0f32; projector.n_voxels()];
    let mut beta = opts.relaxation;
    let mut dtvg = 0.0f64;
    let mut history = Vec::new();
    let mut stop = "iterations";
    for iter in 1..=opts.iterations {
        let prev = f.clone();
        engine.pass(&mut f, beta);
        let min_after_data = f.iter().cloned().fold(f32::INFINITY, f32::min);
        let dd = residual(&f);
        let dp_vec: Vec<f64> = f.iter().zip(&prev).map(|(&a, &b)| a as f64 - b as f64).collect();
        let dp = norm(dp_vec.iter().copied());
        if iter == 1 {
            dtvg = opts.alpha * dp;
        }
        let before_tv = f.clone();
        let tv_before = tv(&f, dims);
        minimize_tv(&mut f, dims, dtvg as f32, opts.tv_iterations);
        let tv_after = tv(&f, dims);
        let dg_vec: Vec<f64> = f.iter().zip(&before_tv).map(|(&a, &b)| a as f64 - b as f64).collect();
        let dg = norm(dg_vec.iter().copied());
        history.push(AsdPocsIteration {
            residual: dd,
            data_change: dp,
            tv_change: dg,
            tv_step: dtvg,
            tv_before,
            tv_after,
            min_after_data,
        });
        if dg > opts.ratio * dp && dd > epsilon {
            dtvg *= opts.alpha_red;
        }
        beta *= opts.relaxation_decay;
        let c = ordered_sum(dg_vec.len(), |i| dg_vec[i] * dp_vec[i]) / (dg * dp).max(1e-6);
        if c < -0.99 && dd <= epsilon {
            stop = "converged";
            break;
        }
        if beta < 0.005 {
            stop = "relaxation";
            break;
        }
    }
    f.iter_mut().for_each(|v| *v = v.max(0.0));
    if f.iter().any(|v| !v.is_finite()) {
        return Err(Error::Input("ASD-POCS diverged: the reconstruction has non-finite voxels".into()));
    }
    Ok(AsdPocsOutcome { volume: f, epsilon, history, stop })
}
