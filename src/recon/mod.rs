//! Classical reconstructions: filtered back-projection (parallel beam), FDK (fan and cone beam,
//! flat detector), SART and OS-SART with positivity ([`sart`]), ASD-POCS (TV-regularised, as
//! TIGRE ships it: [`asd_pocs`], with the TV steps in [`tv`]) and CGLS ([`cgls`]).
//!
//! FBP and FDK use the band-limited ramp filter of Kak & Slaney (the spatial kernel
//! h(0) = 1/4τ², h(odd k) = −1/(kπτ)², applied by FFT with zero padding to at least twice the
//! detector, so there is no wrap-around and no DC offset), then a voxel-driven back-projection
//! with linear interpolation on the detector. Parallel-beam views are weighted by the angle each
//! covers (π / views for evenly spaced angles over [0, π); half the gap to its neighbours, modulo
//! π, for any other list, e.g. a subset of a scan's views); fan and cone views are weighted
//! π / views and assume [0, 2π) evenly (or a short scan, with Parker weights). FDK rescales the detector to the
//! rotation axis, weights each pixel by DSO/√(DSO² + u² + v²), and weights each back-projected
//! view by (DSO/L)², L the voxel's depth from the source along the central ray.

use crate::operator::ct_geometry::{Beam, Scan};
use rayon::prelude::*;
use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

pub mod asd_pocs;
pub mod center;
pub mod cgls;
pub mod sart;
pub mod tv;

pub use asd_pocs::{asd_pocs, AsdPocsOptions};
pub use cgls::{cgls, CglsOptions};
pub use sart::{sart, SartOptions};

/// Ramp-filters every detector row of `rows` (row-major, `nu` wide) with sample spacing `tau`.
pub fn ramp_filter(rows: &mut [f64], nu: usize, tau: f64) {
    let p = (2 * nu).next_power_of_two().max(64);
    let mut h = vec![Complex::new(0.0, 0.0); p];
    for (k, hk) in h.iter_mut().enumerate() {
        let j = if k <= p / 2 { k as i64 } else { k as i64 - p as i64 };
        let v = if j == 0 {
            1.0 / (4.0 * tau * tau)
        } else if j % 2 != 0 {
            -1.0 / ((j as f64 * std::f64::consts::PI * tau).powi(2))
        } else {
            0.0
        };
        *hk = Complex::new(v * tau, 0.0);
    }
    let mut planner = FftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(p);
    let inv = planner.plan_fft_inverse(p);
    fwd.process(&mut h);
    // one row buffer and one FFT scratch per rayon job (was a buffer and two scratches per row)
    let zero = Complex::new(0.0, 0.0);
    let scratch_len = fwd.get_inplace_scratch_len().max(inv.get_inplace_scratch_len());
    rows.par_chunks_mut(nu).for_each_init(
        || (vec![zero; p], vec![zero; scratch_len]),
        |(buf, scratch), row| {
            for (k, b) in buf.iter_mut().enumerate() {
                *b = row.get(k).map_or(zero, |&r| Complex::new(r, 0.0));
            }
            fwd.process_with_scratch(buf, scratch);
            for (b, hk) in buf.iter_mut().zip(&h) {
                *b *= hk;
            }
            inv.process_with_scratch(buf, scratch);
            for (r, b) in row.iter_mut().zip(buf.iter()) {
                *r = b.re / p as f64;
            }
        },
    );
}

/// A fan or cone scan over less than a full turn: its angular span (views × step) and the
/// half fan angle δ its Parker weights use, (span − π) / 2 (at least the detector's own half
/// fan angle when the data suffice).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShortScan {
    pub span: f64,
    pub delta: f64,
    /// The detector's largest |γ| (fan angle of a ray from the central ray).
    pub gamma_max: f64,
}

impl ShortScan {
    /// Whether every ray has its conjugate in the scan (span ≥ π + 2 γ_max).
    pub fn complete(&self) -> bool {
        self.delta >= self.gamma_max - 1e-9
    }

    /// What a reconstruction prints about the short scan.
    pub fn describe(&self) -> String {
        let deg = f64::to_degrees;
        if self.complete() {
            format!(
                "short scan over {:.1}°: Parker weights (δ = {:.1}°, fan half-angle {:.1}°)",
                deg(self.span),
                deg(self.delta),
                deg(self.gamma_max)
            )
        } else {
            format!(
                "warning: the views cover {:.1}°, less than 180° + the fan angle ({:.1}°): some lines are \
                 never measured; Parker weights with δ = {:.1}°",
                deg(self.span),
                180.0 + 2.0 * deg(self.gamma_max),
                deg(self.delta)
            )
        }
    }
}

/// The short-scan description of a divergent-beam scan whose evenly spaced views (in increasing
/// order) cover less than a full turn; `None` for parallel beams and full scans.
pub fn short_scan(scan: &Scan) -> Option<ShortScan> {
    let n = scan.angles.len();
    if scan.beam == Beam::Parallel || n < 2 {
        return None;
    }
    let step = (scan.angles[n - 1] - scan.angles[0]) / (n - 1) as f64;
    let span = step * n as f64;
    if !(step > 0.0) || span >= 2.0 * std::f64::consts::PI * (1.0 - 1e-3) {
        return None;
    }
    let [nu, _] = scan.det_pixels;
    let gamma_max =
        [0, nu - 1].iter().map(|&iu| (scan.detector_uv(iu, 0).0 / scan.dsd).atan().abs()).fold(0.0, f64::max);
    Some(ShortScan { span, delta: ((span - std::f64::consts::PI) / 2.0).max(1e-6), gamma_max })
}

/// Parker's weight (1982) of the ray at fan angle γ in the view β after the first
/// (0 ≤ β ≤ π + 2δ): ramps the doubly measured rays at both ends of a short scan so that every
/// line counts once. With our geometry the conjugate of (β, γ) is (β + π − 2γ, −γ).
pub fn parker_weight(beta: f64, gamma: f64, delta: f64) -> f64 {
    use std::f64::consts::{FRAC_PI_4, PI};
    let g = -gamma; // Parker's convention: the conjugate of (β, g) is (β + π + 2g, −g)
    let w = if beta < 0.0 {
        0.0
    } else if beta < 2.0 * (delta - g) {
        (FRAC_PI_4 * beta / (delta - g)).sin().powi(2)
    } else if beta <= PI - 2.0 * g {
        1.0
    } else if beta <= PI + 2.0 * delta {
        (FRAC_PI_4 * (PI + 2.0 * delta - beta) / (delta + g)).sin().powi(2)
    } else {
        0.0
    };
    if w.is_finite() {
        w
    } else {
        0.0
    }
}

/// FBP for parallel beams, FDK for fan and cone beams; `proj` laid out as in [`Scan`]. A fan or
/// cone scan over less than a full turn gets Parker's short-scan weights ([`short_scan`]).
pub fn fbp(scan: &Scan, proj: &[f32]) -> Vec<f32> {
    let [nu, nv] = scan.det_pixels;
    let scale = scan.measurement_scale();
    let divergent = scan.beam != Beam::Parallel;
    let mag = if divergent { scan.dso / scan.dsd } else { 1.0 };
    let short = short_scan(scan);
    // pre-weight (FDK cosine weights) and convert measurements to line integrals
    let mut q: Vec<f64> = proj
        .par_iter()
        .enumerate()
        .map(|(i, &p)| {
            let mut v = p as f64 / scale;
            if divergent {
                let (iu, iv) = (i % nu, (i / nu) % nv);
                let (u_det, w) = scan.detector_uv(iu, iv);
                let (u, w) = (u_det * mag, w * mag);
                v *= scan.dso / (scan.dso * scan.dso + u * u + w * w).sqrt();
                if let Some(sh) = &short {
                    // Parker's weight, and span/π in place of the full turn's 2π/2π: back-projection
                    // weighs every view by π / views
                    let view = i / (nu * nv);
                    let beta = scan.angles[view] - scan.angles[0];
                    v *= parker_weight(beta, (u_det / scan.dsd).atan(), sh.delta) * sh.span
                        / std::f64::consts::PI;
                }
            }
            v
        })
        .collect();
    ramp_filter(&mut q, nu, scan.det_pixel_size[0] * mag);
    backproject(scan, &q)
}

/// Voxel-driven back-projection of filtered rows, each view weighted by [`view_weights`].
fn backproject(scan: &Scan, q: &[f64]) -> Vec<f32> {
    let [nu, nv] = scan.det_pixels;
    let [nx, ny, nz] = scan.voxels;
    let lo = scan.vol_min();
    let vs = scan.voxel_size;
    let trig: Vec<(f64, f64)> = scan.angles.iter().map(|a| a.sin_cos()).collect();
    let divergent = scan.beam != Beam::Parallel;
    let (du, dv) = (scan.det_pixel_size[0], scan.det_pixel_size[1]);
    // evenly weighted views: one factor at the end (as before per-view weights existed, bit for bit)
    let mut weights = view_weights(scan);
    let common = if weights.iter().all(|&w| w == weights[0]) { weights[0] } else { 1.0 };
    if common != 1.0 {
        weights.iter_mut().for_each(|w| *w = 1.0);
    }
    let sample = |view: usize, fu: f64, fv: f64| -> f64 {
        let at = |iv: usize, fu: f64| -> f64 {
            let f = fu.floor();
            let t = fu - f;
            let i = f as i64;
            let row = &q[(view * nv + iv) * nu..(view * nv + iv + 1) * nu];
            let get = |k: i64| if k >= 0 && (k as usize) < nu { row[k as usize] } else { 0.0 };
            (1.0 - t) * get(i) + t * get(i + 1)
        };
        if nv == 1 {
            return at(0, fu);
        }
        let f = fv.floor();
        let t = fv - f;
        let i = f as i64;
        let mut v = 0.0;
        if i >= 0 && (i as usize) < nv {
            v += (1.0 - t) * at(i as usize, fu);
        }
        if i + 1 >= 0 && ((i + 1) as usize) < nv {
            v += t * at((i + 1) as usize, fu);
        }
        v
    };
    let mut out = vec![0.0f32; nx * ny * nz];
    out.par_chunks_mut(nx).enumerate().for_each(|(row, o)| {
        let (iy, iz) = (row % ny, row / ny);
        let y = lo[1] + (iy as f64 + 0.5) * vs[1];
        let z = if scan.dims == 3 { lo[2] + (iz as f64 + 0.5) * vs[2] } else { 0.0 };
        for (ix, val) in o.iter_mut().enumerate() {
            let x = lo[0] + (ix as f64 + 0.5) * vs[0];
            let mut acc = 0.0;
            for (view, (&(s, c), &weight)) in trig.iter().zip(&weights).enumerate() {
                let xu = -x * s + y * c;
                if divergent {
                    let l = scan.dso - (x * c + y * s);
                    let (u, v) = (scan.dsd * xu / l, scan.dsd * z / l);
                    let fu = (u - scan.det_offset[0]) / du + (nu as f64 - 1.0) / 2.0;
                    let fv = (v - scan.det_offset[1]) / dv + (nv as f64 - 1.0) / 2.0;
                    let w = scan.dso / l;
                    acc += weight * w * w * sample(view, fu, fv);
                } else {
                    let fu = (xu - scan.det_offset[0]) / du + (nu as f64 - 1.0) / 2.0;
                    let fv = (z - scan.det_offset[1]) / dv + (nv as f64 - 1.0) / 2.0;
                    acc += weight * sample(view, fu, fv);
                }
            }
            *val = (acc * common) as f32;
        }
    });
    out
}

/// The back-projection weight of each view: π / views for divergent beams and for parallel views
/// evenly spaced modulo π; otherwise (parallel) half the angular gap to the neighbouring views,
/// the angles taken modulo π and sorted, so the weights sum to π.
pub fn view_weights(scan: &Scan) -> Vec<f64> {
    use std::f64::consts::PI;
    let n = scan.n_views();
    let even = vec![PI / n as f64; n];
    if scan.beam != Beam::Parallel || n < 2 {
        return even;
    }
    let mut order: Vec<(f64, usize)> = scan.angles.iter().map(|a| a.rem_euclid(PI)).zip(0..n).collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let gap = |k: usize| -> f64 {
        // from sorted angle k to k + 1, wrapping past π
        if k + 1 < n {
            order[k + 1].0 - order[k].0
        } else {
            order[0].0 + PI - order[k].0
        }
    };
    let step = PI / n as f64;
    if (0..n).all(|k| (gap(k) - step).abs() < 1e-6 * step) {
        return even;
    }
    let mut w = vec![0.0; n];
    for k in 0..n {
        let before = gap((k + n - 1) % n);
        w[order[k].1] = 0.5 * (before + gap(k));
    }
    w
}
