//! Image quality of a fitted volume against the truth: PSNR and SSIM, both for intensities in
//! [0, 1] (data range 1), with one implementation of each.
//!
//! Two conventions are in use, and both go through the same code:
//!
//! - Volumes and MRI: PSNR over the (kept) voxels; SSIM with a 3-D Gaussian window whose weights
//!   are renormalised where it is cut off by the border ([`ssim`]).
//! - CT, as NAF and R²-Gaussian report it ([`psnr_ct`], [`ssim_ct`]): both volumes scaled by the
//!   truth's range to [0, 1] (a no-op for truth already in [0, 1]) and the prediction clipped to
//!   [0, 1]; SSIM with the 2-D window over each z slice, averaged over the voxels where the window
//!   fits inside the slice ("valid" region). K1 = 0.01, K2 = 0.03, σ = 1.5, 11 taps throughout.

use rayon::prelude::*;

/// PSNR in dB, `10·log10(1 / MSE)`, over the voxels where `keep` is true (all when `None`).
/// Infinite for a perfect fit; NaN when no voxel is kept.
pub fn psnr(pred: &[f32], truth: &[f32], keep: Option<&[bool]>) -> f64 {
    assert_eq!(pred.len(), truth.len());
    let count = keep.map_or(pred.len(), |k| k.iter().filter(|&&b| b).count());
    let sum = crate::train::metrics::ordered_sum(pred.len(), |i| {
        if keep.is_none_or(|k| k[i]) {
            let d = (pred[i] - truth[i]) as f64;
            d * d
        } else {
            0.0
        }
    });
    if count == 0 {
        return f64::NAN;
    }
    -10.0 * (sum / count as f64).log10()
}

/// Window of the SSIM: a Gaussian of σ = 1.5 voxels, truncated at radius 5 (Wang et al. 2004's
/// 11-tap window, here in 3-D and separable).
const SSIM_SIGMA: f64 = 1.5;
const SSIM_RADIUS: usize = 5;

/// The SSIM map of a 3-D volume (x fastest), data range 1, with C1 = 0.01², C2 = 0.03². Near the
/// border the window is cut off and renormalised.
pub fn ssim_map(pred: &[f32], truth: &[f32], dims: [usize; 3]) -> Vec<f32> {
    ssim_map_over(pred, truth, dims, 3)
}

/// The SSIM map with the window over the first `axes` axes (2: within each z slice; 3: the volume).
///
/// Computed a slab of z-planes at a time (with the window's reach of planes on either side when
/// the window spans z), so its working set is a slab's, not ten grid-sized f64 arrays. The blur
/// is separable and runs along x and y within planes first, so every plane's result is the same
/// as over the whole volume, to the bit.
fn ssim_map_over(pred: &[f32], truth: &[f32], dims: [usize; 3], axes: usize) -> Vec<f32> {
    ssim_map_slabs(pred, truth, dims, axes, SSIM_SLAB_POINTS)
}

/// [`ssim_map_over`] in slabs of about `slab_points` points (at least 4 window radii thick).
fn ssim_map_slabs(
    pred: &[f32],
    truth: &[f32],
    dims: [usize; 3],
    axes: usize,
    slab_points: usize,
) -> Vec<f32> {
    assert_eq!(pred.len(), truth.len());
    assert_eq!(pred.len(), dims.iter().product::<usize>());
    let [nx, ny, nz] = dims;
    let plane = nx * ny;
    let halo = if axes == 3 { SSIM_RADIUS } else { 0 };
    let thick = (slab_points / plane.max(1)).max(4 * SSIM_RADIUS).max(1);
    if thick >= nz {
        return ssim_map_slab(pred, truth, dims, axes);
    }
    let mut out = Vec::with_capacity(pred.len());
    for z0 in (0..nz).step_by(thick) {
        let z1 = (z0 + thick).min(nz);
        let (lo, hi) = (z0.saturating_sub(halo), (z1 + halo).min(nz));
        let range = lo * plane..hi * plane;
        let map = ssim_map_slab(&pred[range.clone()], &truth[range], [nx, ny, hi - lo], axes);
        out.extend_from_slice(&map[(z0 - lo) * plane..(z1 - lo) * plane]);
    }
    out
}

/// Points per slab of the SSIM map (each costs about 80 bytes while the slab is computed).
const SSIM_SLAB_POINTS: usize = 1 << 20;

/// [`ssim_map_over`] on one block of whole planes.
fn ssim_map_slab(pred: &[f32], truth: &[f32], dims: [usize; 3], axes: usize) -> Vec<f32> {
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let p: Vec<f64> = pred.iter().map(|&v| v as f64).collect();
    let t: Vec<f64> = truth.iter().map(|&v| v as f64).collect();
    let prod = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).collect::<Vec<f64>>();
    let mu_p = blur(&p, dims, axes);
    let mu_t = blur(&t, dims, axes);
    let pp = blur(&prod(&p, &p), dims, axes);
    let tt = blur(&prod(&t, &t), dims, axes);
    let pt = blur(&prod(&p, &t), dims, axes);
    (0..p.len())
        .into_par_iter()
        .map(|i| {
            let (mp, mt) = (mu_p[i], mu_t[i]);
            let vp = pp[i] - mp * mp;
            let vt = tt[i] - mt * mt;
            let cov = pt[i] - mp * mt;
            (((2.0 * mp * mt + c1) * (2.0 * cov + c2)) / ((mp * mp + mt * mt + c1) * (vp + vt + c2))) as f32
        })
        .collect()
}

/// Mean SSIM over the voxels where `keep` is true (all when `None`).
pub fn ssim(pred: &[f32], truth: &[f32], dims: [usize; 3], keep: Option<&[bool]>) -> f64 {
    mean_kept(&ssim_map(pred, truth, dims), keep)
}

/// The mean of `map` where `keep` is true (all when `None`); NaN when nothing is kept.
fn mean_kept(map: &[f32], keep: Option<&[bool]>) -> f64 {
    let (sum, count) = map
        .iter()
        .enumerate()
        .filter(|(i, _)| keep.is_none_or(|k| k[*i]))
        .fold((0.0f64, 0usize), |a, (_, &v)| (a.0 + v as f64, a.1 + 1));
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// Normalised Gaussian blur along each of the first `axes` axes in turn (weights renormalised at
/// the borders).
fn blur(data: &[f64], dims: [usize; 3], axes: usize) -> Vec<f64> {
    let w: Vec<f64> = (0..=2 * SSIM_RADIUS)
        .map(|k| {
            let d = k as f64 - SSIM_RADIUS as f64;
            (-0.5 * d * d / (SSIM_SIGMA * SSIM_SIGMA)).exp()
        })
        .collect();
    let [nx, ny, _] = dims;
    let strides = [1, nx, nx * ny];
    let mut cur = data.to_vec();
    for axis in 0..axes {
        let n = dims[axis];
        let stride = strides[axis];
        let src = cur.clone();
        cur.par_iter_mut().enumerate().for_each(|(i, out)| {
            let pos = (i / stride) % n;
            let (mut s, mut ws) = (0.0, 0.0);
            for (k, &wk) in w.iter().enumerate() {
                let q = pos as isize + k as isize - SSIM_RADIUS as isize;
                if q >= 0 && (q as usize) < n {
                    s += wk * src[i - pos * stride + q as usize * stride];
                    ws += wk;
                }
            }
            *out = s / ws;
        });
    }
    cur
}

/// The CT convention's scaling: truth scaled to [0, 1] by its own min/max (when it is outside
/// [0, 1]) and the prediction scaled the same way and clipped to [0, 1].
pub fn scaled_to_truth(pred: &[f32], truth: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (lo, hi) = truth.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo >= 0.0 && hi <= 1.0 { (0.0, 1.0) } else { (lo, hi) };
    let span = (hi - lo).max(1e-12);
    let t = truth.iter().map(|&v| (v - lo) / span).collect();
    let p = pred.iter().map(|&v| ((v - lo) / span).clamp(0.0, 1.0)).collect();
    (p, t)
}

/// PSNR of a CT reconstruction (see the module docs).
pub fn psnr_ct(pred: &[f32], truth: &[f32]) -> f64 {
    let (p, t) = scaled_to_truth(pred, truth);
    psnr(&p, &t, None)
}

/// SSIM of a CT reconstruction: 2-D windows within each z slice of an nx×ny×nz volume, over the
/// voxels whose window lies inside the slice. NaN when a slice is smaller than the window.
pub fn ssim_ct(pred: &[f32], truth: &[f32], dims: [usize; 3]) -> f64 {
    let (p, t) = scaled_to_truth(pred, truth);
    let [nx, ny, nz] = dims;
    let r = SSIM_RADIUS;
    if nx <= 2 * r || ny <= 2 * r {
        return f64::NAN;
    }
    let valid: Vec<bool> = (0..nx * ny * nz)
        .map(|i| {
            let (x, y) = (i % nx, (i / nx) % ny);
            (r..nx - r).contains(&x) && (r..ny - r).contains(&y)
        })
        .collect();
    let map = ssim_map_over(&p, &t, dims, 2);
    mean_kept(&map, Some(&valid))
}

/// SSIM of a 3-D CT reconstruction as NAF and R²-Gaussian report it: the 2-D slice SSIM of
/// [`ssim_ct`] taken over the slices along each of the three axes in turn (z slices, y slices,
/// x slices), each axis the mean over its slices whose truth is not all zero (R²-Gaussian's
/// `metric_vol` skips those), and the three means averaged. Returns the average and the three
/// (z, y, x); NaN when any side is smaller than the window (11 voxels) or no slice has signal.
pub fn ssim_ct_3axes(pred: &[f32], truth: &[f32], dims: [usize; 3]) -> (f64, [f64; 3]) {
    let (p, t) = scaled_to_truth(pred, truth);
    let [nx, ny, nz] = dims;
    assert_eq!(p.len(), nx * ny * nz);
    // (slice width, slice height, slices) and the index of (a, b, slice) in the volume
    let axes: [([usize; 3], Box<dyn Fn(usize, usize, usize) -> usize + Sync>); 3] = [
        ([nx, ny, nz], Box::new(move |a, b, k| a + nx * (b + ny * k))),
        ([nx, nz, ny], Box::new(move |a, b, k| a + nx * (k + ny * b))),
        ([ny, nz, nx], Box::new(move |a, b, k| k + nx * (a + ny * b))),
    ];
    let r = SSIM_RADIUS;
    let mut per_axis = [f64::NAN; 3];
    for (m, (d, index)) in axes.iter().enumerate() {
        let [w, h, slices] = *d;
        if w <= 2 * r || h <= 2 * r {
            return (f64::NAN, [f64::NAN; 3]);
        }
        let (mut sum, mut count) = (0.0f64, 0usize);
        for k in 0..slices {
            let gather = |v: &[f32]| -> Vec<f32> {
                let mut out = Vec::with_capacity(w * h);
                for b in 0..h {
                    for a in 0..w {
                        out.push(v[index(a, b, k)]);
                    }
                }
                out
            };
            let ts = gather(&t);
            if !ts.iter().any(|&v| v > 0.0) {
                continue;
            }
            let map = ssim_map_over(&gather(&p), &ts, [w, h, 1], 2);
            let valid: Vec<bool> =
                (0..w * h).map(|i| (r..w - r).contains(&(i % w)) && (r..h - r).contains(&(i / w))).collect();
            sum += mean_kept(&map, Some(&valid));
            count += 1;
        }
        per_axis[m] = if count == 0 { f64::NAN } else { sum / count as f64 };
    }
    ((per_axis[0] + per_axis[1] + per_axis[2]) / 3.0, per_axis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_a_known_error() {
        let t = vec![0.5f32; 100];
        let mut p = t.clone();
        p.iter_mut().for_each(|v| *v += 0.1);
        assert!((psnr(&p, &t, None) - 20.0).abs() < 1e-4);
        let keep: Vec<bool> = (0..100).map(|i| i < 50).collect();
        p[99] = 0.5 + 1.0; // outside the kept set: no effect
        assert!((psnr(&p, &t, Some(&keep)) - 20.0).abs() < 1e-4);
    }

    /// The CT convention: the prediction clipped at the truth's range; SSIM 1 for identical
    /// slices and below 1 for a shifted one.
    #[test]
    fn ct_convention_known_values() {
        let t: Vec<f32> = (0..32 * 32).map(|i| (i % 32) as f32 / 31.0).collect();
        assert!(psnr_ct(&t, &t).is_infinite());
        let p: Vec<f32> = t.iter().map(|v| v + 0.1).collect();
        // clipped at 1: errors are 0.1 except where t > 0.9
        let mse = t.iter().map(|&v| ((v + 0.1).min(1.0) - v).powi(2) as f64).sum::<f64>() / t.len() as f64;
        assert!((psnr_ct(&p, &t) - 10.0 * (1.0 / mse).log10()).abs() < 1e-4);
        assert!((ssim_ct(&t, &t, [32, 32, 1]) - 1.0).abs() < 1e-6);
        let s = ssim_ct(&p, &t, [32, 32, 1]);
        assert!(s < 0.99 && s > 0.9, "{s}");
        assert!(ssim_ct(&t[..100], &t[..100], [10, 10, 1]).is_nan());
    }

    #[test]
    fn ssim_is_one_for_identical_exact_for_constants_and_falls_with_noise() {
        let dims = [12, 10, 8];
        let n = 960;
        let t: Vec<f32> = (0..n).map(|i| (i as f32 * 0.13).sin() * 0.5 + 0.5).collect();
        assert!((ssim(&t, &t, dims, None) - 1.0).abs() < 1e-9);
        // Two constants a, b: only the luminance term is left, (2ab + C1) / (a² + b² + C1).
        let (a, b) = (0.5f32, 0.3f32);
        let want = (2.0 * 0.5 * 0.3 + 1e-4) / (0.25 + 0.09 + 1e-4);
        assert!((ssim(&vec![b; n], &vec![a; n], dims, None) - want).abs() < 1e-6);
        let noisy: Vec<f32> =
            t.iter().enumerate().map(|(i, v)| v + 0.8 * ((i * 7919 % 13) as f32 / 13.0 - 0.5)).collect();
        let s = ssim(&noisy, &t, dims, None);
        assert!(s < 0.9 && s > 0.0, "{s}");
    }

    /// The three-axis SSIM: 1 for identical volumes; for a volume that is the same along z
    /// (every z slice equal), the z-axis term is the 2-D SSIM of that slice.
    #[test]
    fn ssim_three_axes_known_values() {
        let dims = [16, 14, 12];
        let n = 16 * 14 * 12;
        let t: Vec<f32> = (0..n)
            .map(|i| ((i % 16) as f32 * 0.37 + (i / 16 % 14) as f32 * 0.11).sin() * 0.5 + 0.5)
            .collect();
        let (s, axes) = ssim_ct_3axes(&t, &t, dims);
        assert!((s - 1.0).abs() < 1e-9 && axes.iter().all(|a| (a - 1.0).abs() < 1e-9));
        let p: Vec<f32> =
            t.iter().enumerate().map(|(i, v)| v + 0.3 * ((i * 7919 % 13) as f32 / 13.0 - 0.5)).collect();
        let (s, axes) = ssim_ct_3axes(&p, &t, dims);
        assert!(s < 0.95 && s > 0.0, "{s}");
        assert!((axes[0] - ssim_ct(&p, &t, dims)).abs() < 1e-9, "z term {} against ssim_ct", axes[0]);
        assert!((s - (axes[0] + axes[1] + axes[2]) / 3.0).abs() < 1e-12);
        assert!(ssim_ct_3axes(&t[..16 * 14 * 8], &t[..16 * 14 * 8], [16, 14, 8]).0.is_nan());
    }

    /// The map computed slab by slab is the whole volume's, to the bit, with the window over
    /// the volume (halo planes) and within slices.
    #[test]
    fn slabs_give_the_whole_volume_map() {
        let dims = [12, 10, 53];
        let n: usize = dims.iter().product();
        let t: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 0.5 + 0.5).collect();
        let p: Vec<f32> = (0..n).map(|i| t[i] + 0.2 * ((i * 7919 % 17) as f32 / 17.0 - 0.5)).collect();
        for axes in [2, 3] {
            let whole = ssim_map_slab(&p, &t, dims, axes);
            let slabs = ssim_map_slabs(&p, &t, dims, axes, 1);
            assert_eq!(whole.len(), slabs.len());
            let same = whole.iter().zip(&slabs).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "axes {axes}: the slab map differs");
        }
    }
}
