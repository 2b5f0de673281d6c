//! Centre of rotation of a parallel-beam scan, estimated from its line integrals.
//!
//! Two stages, both on the sinogram summed over the detector rows:
//!
//! 1. **Centroids.** In a parallel beam, the centre of mass of each projection is the projection
//!    of the object's centre of mass, so over the views it traces `u(θ) = c + a·sin θ + b·cos θ`
//!    (Helgason–Ludwig, order 1), `c` the detector column of the axis. A least-squares fit over
//!    all views gives `c` for any angle list, with no need for opposing views. Each view's
//!    baseline (the median of its outermost pixels) is removed first, so a flat-field offset in
//!    the air does not pull the centroid towards the detector's middle. Exact for an object that
//!    stays inside the field of view.
//! 2. **Refinement**, only when the fit is inconsistent (RMS residual above 1 px: an object
//!    leaving the field of view, drifting flats). FBP on a coarse grid (at most 256² over the field of view) for candidate
//!    centres within ±4 px of the first estimate, in quarter-pixel steps; a wrong centre smears
//!    every edge into arcs whose undershoots are negative, so the centre is where the negative
//!    mass inside the reconstruction circle is smallest (a parabola through the best three
//!    candidates). If the minimum sits at the edge of the window, the centroid estimate stands
//!    and the report says so. (On the tooth scan the centroids give 296.0 and 296.05 for its two
//!    rows, FBP negativity at full resolution 295.75–296.0; on a 256² grid it is biased to 295.5.)
//!
//! Columns are 0-based with pixel centres at integers: on an `n`-pixel detector a centred axis
//! is at `(n − 1) / 2`, and the geometry's detector offset is `((n − 1) / 2 − c) · du`.

use crate::operator::ct_geometry::{Beam, Quantity, Scan};

/// The centroid fit's RMS residual (px) above which the FBP refinement runs.
pub const REFINE_ABOVE_RMS: f64 = 1.0;

/// What the estimate found.
#[derive(Clone, Debug, PartialEq)]
pub struct CenterEstimate {
    /// The centre used: the refined one where the refinement found an interior minimum.
    pub center: f64,
    /// Stage 1: the centroid fit.
    pub centroid: f64,
    /// RMS residual of the centroid fit, pixels (large when the object leaves the field of view).
    pub centroid_rms: f64,
    /// Stage 2: the FBP negativity minimum, if it ran and found an interior minimum.
    pub refined: Option<f64>,
    /// Whether stage 2 ran (the centroid fit's residual was above [`REFINE_ABOVE_RMS`]).
    pub refine_ran: bool,
}

impl CenterEstimate {
    pub fn describe(&self, nu: usize) -> String {
        let refined = match (self.refine_ran, self.refined) {
            (false, _) => "consistent, kept".to_string(),
            (true, Some(r)) => format!("inconsistent: refined to the FBP negativity minimum {r:.2}"),
            (true, None) => {
                "inconsistent, and FBP refinement found no minimum within ±4 px (centroid kept)".into()
            }
        };
        format!(
            "centre of rotation: column {:.2} of 0..{} (detector middle {:.1}); sinogram centroids {:.2} \
             (fit rms {:.2} px), {refined}",
            self.center,
            nu - 1,
            (nu as f64 - 1.0) / 2.0,
            self.centroid,
            self.centroid_rms
        )
    }
}

/// The detector offset (mm) that puts the axis at column `center`.
pub fn offset_for_center(scan: &Scan, center: f64) -> f64 {
    ((scan.det_pixels[0] as f64 - 1.0) / 2.0 - center) * scan.det_pixel_size[0]
}

/// The column of the axis for the scan's detector offset.
pub fn center_of(scan: &Scan) -> f64 {
    (scan.det_pixels[0] as f64 - 1.0) / 2.0 - scan.det_offset[0] / scan.det_pixel_size[0]
}

/// Estimates the axis column of a parallel-beam scan from its projections (any detector offset
/// in `scan` is ignored).
pub fn estimate_center(scan: &Scan, proj: &[f32]) -> std::result::Result<CenterEstimate, String> {
    if scan.beam != Beam::Parallel {
        return Err("estimating the centre of rotation needs a parallel beam".into());
    }
    let [nu, nv] = scan.det_pixels;
    let views = scan.n_views();
    if proj.len() != views * nu * nv {
        return Err(format!("{} projection values for {views} views of {nu} × {nv} pixels", proj.len()));
    }
    if nu < 8 {
        return Err(format!("a detector of {nu} columns is too narrow to estimate the centre"));
    }
    // the sinogram summed over rows
    let mut sino = vec![0.0f64; views * nu];
    for v in 0..views {
        for r in 0..nv {
            let row = &proj[(v * nv + r) * nu..(v * nv + r + 1) * nu];
            for (s, &p) in sino[v * nu..(v + 1) * nu].iter_mut().zip(row) {
                *s += p as f64;
            }
        }
    }
    let (centroid, rms) = centroid_fit(&sino, nu, &scan.angles)?;
    // a consistent fit (sub-pixel residual) is the answer; otherwise (truncation, drift) refine
    let refined = if rms > REFINE_ABOVE_RMS { refine(scan, &sino, centroid) } else { None };
    Ok(CenterEstimate {
        center: refined.unwrap_or(centroid),
        centroid,
        centroid_rms: rms,
        refined,
        refine_ran: rms > REFINE_ABOVE_RMS,
    })
}

fn centroid_fit(sino: &[f64], nu: usize, angles: &[f64]) -> std::result::Result<(f64, f64), String> {
    let edge = (nu / 40).max(2);
    let mut pts = Vec::with_capacity(angles.len());
    let mut edges = Vec::with_capacity(2 * edge);
    let peak = sino.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for (v, &th) in angles.iter().enumerate() {
        let row = &sino[v * nu..(v + 1) * nu];
        edges.clear();
        edges.extend_from_slice(&row[..edge]);
        edges.extend_from_slice(&row[nu - edge..]);
        edges.sort_by(|a, b| a.total_cmp(b));
        let base = 0.5 * (edges[edges.len() / 2] + edges[(edges.len() - 1) / 2]);
        let (mut m, mut mu) = (0.0, 0.0);
        for (u, &p) in row.iter().enumerate() {
            let w = p - base;
            m += w;
            mu += w * u as f64;
        }
        if m.is_finite() && m > 1e-9 * peak.max(1e-30) * nu as f64 {
            pts.push((th, mu / m));
        }
    }
    if pts.len() < 3 {
        return Err(format!("only {} views carry signal; the centre needs at least 3", pts.len()));
    }
    // least squares on [1, sin θ, cos θ]
    let mut a = [[0.0f64; 3]; 3];
    let mut b = [0.0f64; 3];
    for &(th, c) in &pts {
        let x = [1.0, th.sin(), th.cos()];
        for i in 0..3 {
            for j in 0..3 {
                a[i][j] += x[i] * x[j];
            }
            b[i] += x[i] * c;
        }
    }
    let coef = solve3(a, b).ok_or("the views do not span enough angles to estimate the centre")?;
    let rms = (pts
        .iter()
        .map(|&(th, c)| (coef[0] + coef[1] * th.sin() + coef[2] * th.cos() - c).powi(2))
        .sum::<f64>()
        / pts.len() as f64)
        .sqrt();
    if !(coef[0].is_finite() && coef[0] >= 0.0 && coef[0] <= (nu - 1) as f64) {
        return Err(format!("the centroid fit puts the axis at column {:.1}, off the detector", coef[0]));
    }
    Ok((coef[0], rms))
}

/// Cramer's rule; `None` when singular.
fn solve3(a: [[f64; 3]; 3], b: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(a);
    let scale = a.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
    if !(d.abs() > 1e-9 * scale.powi(3)) {
        return None;
    }
    let mut x = [0.0; 3];
    for (k, xk) in x.iter_mut().enumerate() {
        let mut m = a;
        for i in 0..3 {
            m[i][k] = b[i];
        }
        *xk = det(m) / d;
    }
    Some(x)
}

/// FBP-negativity refinement around `c0`; `None` if the minimum is at the window's edge.
fn refine(scan: &Scan, sino: &[f64], c0: f64) -> Option<f64> {
    let nu = scan.det_pixels[0];
    let du = scan.det_pixel_size[0];
    let g = nu.min(256);
    let width = nu as f64 * du;
    let mut s2 = Scan {
        beam: Beam::Parallel,
        dims: 2,
        dso: 0.0,
        dsd: 0.0,
        quantity: Quantity::Integral,
        det_pixels: [nu, 1],
        det_pixel_size: [du, 1.0],
        det_offset: [0.0; 2],
        voxels: [g, g, 1],
        voxel_size: [width / g as f64, width / g as f64, 1.0],
        vol_offset: [0.0; 3],
        angles: scan.angles.clone(),
    };
    let proj: Vec<f32> = sino.iter().map(|&x| x as f32).collect();
    let radius = 0.95 * width / 2.0;
    let lo = s2.vol_min();
    let inside: Vec<bool> = (0..g * g)
        .map(|i| {
            let (x, y) = (
                lo[0] + ((i % g) as f64 + 0.5) * s2.voxel_size[0],
                lo[1] + ((i / g) as f64 + 0.5) * s2.voxel_size[1],
            );
            x.hypot(y) < radius
        })
        .collect();
    let steps: Vec<f64> = (-16..=16).map(|k| c0 + 0.25 * k as f64).collect();
    let metric: Vec<f64> = steps
        .iter()
        .map(|&c| {
            s2.det_offset[0] = offset_for_center(&s2, c);
            let img = super::fbp(&s2, &proj);
            img.iter().zip(&inside).filter(|(_, &m)| m).map(|(&f, _)| (-(f as f64)).max(0.0)).sum()
        })
        .collect();
    let k = (0..metric.len()).min_by(|&a, &b| metric[a].total_cmp(&metric[b]))?;
    if k == 0 || k == metric.len() - 1 {
        return None;
    }
    let (m0, m1, m2) = (metric[k - 1], metric[k], metric[k + 1]);
    let denom = m0 - 2.0 * m1 + m2;
    let shift = if denom > 0.0 { (0.5 * (m0 - m2) / denom).clamp(-0.5, 0.5) } else { 0.0 };
    Some(steps[k] + 0.25 * shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve3_solves_and_refuses_singular() {
        let x = solve3([[2.0, 0.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 1.0]], [2.0, 5.0, 3.0]).unwrap();
        assert!((x[0] - 1.0).abs() < 1e-12 && (x[1] - 1.0).abs() < 1e-12 && (x[2] - 2.0).abs() < 1e-12);
        assert!(solve3([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [1.0, 1.0, 1.0]).is_none());
    }
}
